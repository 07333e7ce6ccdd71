/* validate.c -- checks of everything that arrives from outside the engine. */
#include "validate.h"

#include <math.h>

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
    for (size_t i = 0; i < n; i++) {
        if (rows_finite(rows + i * dim, dim)) continue;
        uint32_t j = 0;
        while (j < dim && isfinite(rows[i * dim + j]))
            j++;
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s %zu has a NaN or Inf at component %u", what,
                               i, j);
    }
    return NPVDB_OK;
}

/* Every |x| below 2^56: then |row| <= 2^56 * sqrt(NPVDB_MAX_DIM) = 2^62. A
 * bit test on the exponent, so the loop vectorises. */
static int rows_small(const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    unsigned big = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, p + 4 * i, 4);
        big |= (b & 0x7f800000u) >= (uint32_t)(127 + 56) << 23;
    }
    return !big;
}

npvdb_code check_magnitude(const npvdb_collection *c, const float *rows,
                           size_t n, const char *what, npvdb_error *err)
{
    uint32_t dim = c->cfg.dim;
    if (c->cfg.metric == NPVDB_METRIC_COSINE || rows_small(rows, n * dim))
        return NPVDB_OK;
    for (size_t i = 0; i < n; i++) {
        double nrm = row_norm_exact(rows + i * dim, dim);
        if (nrm > NPVDB_MAX_NORM)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s %zu has norm %.3g, over the %.3g (2^62) "
                                   "that %s distances can hold in float32",
                                   what, i, nrm, NPVDB_MAX_NORM,
                                   npvdb_metric_name(c->cfg.metric));
    }
    return NPVDB_OK;
}

npvdb_code prepare_rows(const npvdb_collection *c, const float *rows, size_t n,
                        const char *what, float **owned, const float **use,
                        npvdb_error *err)
{
    *owned = NULL;
    *use = rows;
    npvdb_code rc = check_rows(rows, n, c->cfg.dim, what, err);
    if (rc == NPVDB_OK) rc = check_magnitude(c, rows, n, what, err);
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
