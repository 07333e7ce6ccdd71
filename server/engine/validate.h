/* validate.h -- input checks shared by the engine's entry points. */
#ifndef NPVDB_VALIDATE_H
#define NPVDB_VALIDATE_H

#include "internal.h"

/* Key i: present, 1..NPVDB_MAX_KEY_LEN bytes, valid UTF-8; *len gets it. */
npvdb_code check_key(const char *key, size_t i, size_t *len, npvdb_error *err);
/* n rows of dim floats, all finite; `what` names them in the message. */
npvdb_code check_rows(const float *rows, size_t n, uint32_t dim,
                      const char *what, npvdb_error *err);

/* L2 and inner product: refuses a row whose Euclidean norm is over
 * NPVDB_MAX_NORM (2^62). Then |q|^2 + |x|^2 + 2|q||x| <= 2^126 < FLT_MAX, so
 * no term of the sgemm norm expansion (nor -q.x) overflows float32 for any
 * query and stored row. Cosine rows are normalised, so any finite non-zero
 * row is fine. */
#define NPVDB_MAX_NORM 0x1p62
npvdb_code check_magnitude(const npvdb_collection *c, const float *rows,
                           size_t n, const char *what, npvdb_error *err);

/* Checks n rows (check_rows, check_magnitude); for cosine, normalises them into
 * *owned (caller frees), else *use is rows itself. Zero rows are refused for
 * cosine. */
npvdb_code prepare_rows(const npvdb_collection *c, const float *rows, size_t n,
                        const char *what, float **owned, const float **use,
                        npvdb_error *err);

#endif
