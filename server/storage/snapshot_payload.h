/*
 * snapshot_payload.h -- a collection's payloads as HDF5 columns (layout in
 * snapshot.h): built from the export's canonical blobs when writing, turned
 * back into the exact blobs when reading. Internal to server/storage.
 *
 * Both directions hold one collection's payload columns in memory (about
 * the payload bytes of that collection, plus a field entry per value when
 * reading): simple, and one collection at a time. Streaming each column in
 * bounded pieces (a cursor per column, rows being ascending) is the better
 * way for collections whose payloads do not fit twice in memory; not
 * needed yet.
 */
#ifndef NPVDB_STORAGE_SNAPSHOT_PAYLOAD_H
#define NPVDB_STORAGE_SNAPSHOT_PAYLOAD_H

#include "npvdb.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* ---- writing ---- */
typedef struct pcols pcols;

pcols *pcols_new(void); /* NULL for no memory */
void pcols_free(pcols *p);
/* Adds the fields of row `row`'s checked blob (rows come ascending). */
npvdb_code pcols_add(pcols *p, uint64_t row, const npvdb_payload *pl,
                     npvdb_error *err);
/* Writes group `payload` under loc with one subgroup per column; *n gets
 * the number of columns. Holds one column open at a time. */
npvdb_code pcols_write(pcols *p, hid_t loc, uint64_t *n, npvdb_error *err);

/* ---- reading ---- */
typedef struct prows prows;

/* Reads and verifies n_cols columns under loc/payload for a collection of
 * n_rows rows; *out NULL when n_cols is 0. */
npvdb_code prows_read(hid_t loc, uint64_t n_rows, uint64_t n_cols, prows **out,
                      npvdb_error *err);
void prows_free(prows *p);
/* Builds the canonical blobs of rows [at, at+n) into out[0..n) (len 0 for
 * a row without fields; else out[i].data is malloc'ed: free it). On error
 * every blob built is freed and out is zeroed. */
npvdb_code prows_build(prows *p, uint64_t at, size_t n, npvdb_payload *out,
                       npvdb_error *err);

#endif /* NPVDB_STORAGE_SNAPSHOT_PAYLOAD_H */
