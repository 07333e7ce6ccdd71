/* validate.h -- input checks shared by the engine's entry points. */
#ifndef NPVDB_VALIDATE_H
#define NPVDB_VALIDATE_H

#include "internal.h"

/* Key i: present, 1..NPVDB_MAX_KEY_LEN bytes, valid UTF-8; *len gets it. */
npvdb_code check_key(const char *key, size_t i, size_t *len, npvdb_error *err);
/* n rows of dim floats, all finite; `what` names them in the message. */
npvdb_code check_rows(const float *rows, size_t n, uint32_t dim,
                      const char *what, npvdb_error *err);

/* Checks n rows; for cosine, normalises them into *owned (caller frees),
 * else *use is rows itself. Zero rows are refused for cosine. */
npvdb_code prepare_rows(const npvdb_collection *c, const float *rows, size_t n,
                        const char *what, float **owned, const float **use,
                        npvdb_error *err);

#endif
