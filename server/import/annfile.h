/*
 * annfile.h -- reads ann-benchmarks HDF5 files: float32 datasets `train`
 * (N x d) and `test` (Q x d), int32 `neighbors` (Q x K, exact nearest train
 * rows), float32 `distances` (Q x K), and the string attribute `distance`
 * ("angular", "euclidean", "ip"/"dot"). Rows are read in chunks (hyperslabs),
 * so files larger than memory stream through.
 *
 * Thread safety: one npvdb_annfile per thread (libhdf5 is not thread-safe in
 * Debian's build).
 */
#ifndef NPVDB_ANNFILE_H
#define NPVDB_ANNFILE_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

typedef struct npvdb_annfile npvdb_annfile;

/* Opens `path` read-only and checks the layout (train present, 2-D, float;
 * test/neighbors optional). Caller owns the result (npvdb_annfile_close). */
npvdb_annfile *npvdb_annfile_open(const char *path, npvdb_error *err);
void npvdb_annfile_close(npvdb_annfile *f);

uint32_t npvdb_annfile_dim(const npvdb_annfile *f);
/* angular -> COSINE, euclidean -> L2, ip/dot -> IP; L2 when absent. */
npvdb_metric npvdb_annfile_metric(const npvdb_annfile *f);
/* Row counts; 0 for a dataset the file does not have. */
size_t npvdb_annfile_train_rows(const npvdb_annfile *f);
size_t npvdb_annfile_test_rows(const npvdb_annfile *f);
/* Columns of `neighbors` (e.g. 100); 0 when absent. */
uint32_t npvdb_annfile_neighbors_width(const npvdb_annfile *f);

/* Reads rows [first, first+n) of "train" or "test" into out (n*dim floats,
 * caller-allocated). */
npvdb_code npvdb_annfile_read(npvdb_annfile *f, const char *dataset,
                              size_t first, size_t n, float *out,
                              npvdb_error *err);

/* Reads rows [first, first+n) of `neighbors` into out (n*width int32). */
npvdb_code npvdb_annfile_read_neighbors(npvdb_annfile *f, size_t first,
                                        size_t n, int32_t *out,
                                        npvdb_error *err);

#endif /* NPVDB_ANNFILE_H */
