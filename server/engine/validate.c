/* validate.c -- checks of everything that arrives from outside the engine. */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

npvdb_code check_key(const char *key, size_t i, size_t *len, npvdb_error *err)
{
    if (!key)
        return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is missing", i);
    size_t n = strnlen(key, NPVDB_MAX_KEY_LEN + 1);
    if (n == 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is empty", i);
    if (n > NPVDB_MAX_KEY_LEN)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "key %zu is longer than %d bytes", i,
                               NPVDB_MAX_KEY_LEN);
    if (!npvdb_utf8_valid(key, n))
        return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is not valid UTF-8",
                               i);
    *len = n;
    return NPVDB_OK;
}

npvdb_code check_rows(const float *rows, size_t n, uint32_t dim,
                      const char *what, npvdb_error *err)
{
    if (n && !rows)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: no data for %zu rows",
                               what, n);
    /* A cheap whole-block test first; the per-row scan only names the row. */
    if (rows_finite(rows, n * dim)) return NPVDB_OK;
    for (size_t i = 0; i < n; i++)
        if (!rows_finite(rows + i * dim, dim))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s %zu contains NaN or Inf", what, i);
    return NPVDB_OK;
}

npvdb_code prepare_rows(const npvdb_collection *c, const float *rows, size_t n,
                        const char *what, float **owned, const float **use,
                        npvdb_error *err)
{
    *owned = NULL;
    *use = rows;
    npvdb_code rc = check_rows(rows, n, c->cfg.dim, what, err);
    if (rc || c->cfg.metric != NPVDB_METRIC_COSINE) return rc;
    size_t bytes = n * c->cfg.dim * sizeof(float);
    float *copy = malloc(bytes ? bytes : 1);
    if (!copy)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for %zu vectors", n);
    memcpy(copy, rows, bytes);
    long zero = rows_normalise(copy, n, c->cfg.dim);
    if (zero >= 0) {
        free(copy);
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s %ld has zero norm: cosine needs a direction",
                               what, zero);
    }
    *owned = copy;
    *use = copy;
    return NPVDB_OK;
}
