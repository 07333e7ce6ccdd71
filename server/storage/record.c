/*
 * record.c -- encoders and bounds-checked decoders of log record payloads.
 * See record.h for the layouts.
 */
#include "record.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INIT_FIXED 48u
#define KEYS_FIXED 8u

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Allocates headroom + payload + padding, zeroed (padding must be zero). */
static npvdb_code rec_alloc(size_t payload, rec_buf *out, npvdb_error *err)
{
    if (payload > REC_MAX_PAYLOAD)
        return npvdb_set_error(
            err, NPVDB_ELIMIT,
            "log record of %zu bytes is over the %u byte limit", payload,
            REC_MAX_PAYLOAD);
    /* Not calloc: the encoders write every payload byte, and zeroing half a
     * megabyte per insert message showed in profiles. */
    size_t total = REC_HEADROOM + align8(payload);
    out->buf = malloc(total);
    if (!out->buf)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "no memory for a %zu byte log record", payload);
    memset(out->buf, 0, REC_HEADROOM);
    memset(out->buf + REC_HEADROOM + payload, 0,
           total - REC_HEADROOM - payload);
    out->len = payload;
    return NPVDB_OK;
}

/* Sums the encoded size of n keys; fails on a key over the engine's limit so
 * that the u32 length field can never wrap. */
static npvdb_code keys_size(const char *const *keys, size_t n, size_t *total,
                            npvdb_error *err)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keys || !keys[i])
            return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is NULL", i);
        size_t kl = strnlen(keys[i], NPVDB_MAX_KEY_LEN + 1);
        if (kl > NPVDB_MAX_KEY_LEN)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "key %zu is over %d bytes", i,
                                   NPVDB_MAX_KEY_LEN);
        sum += 5 + kl;
        if (sum > REC_MAX_PAYLOAD)
            return npvdb_set_error(err, NPVDB_ELIMIT, "keys are over %u bytes",
                                   REC_MAX_PAYLOAD);
    }
    *total = sum;
    return NPVDB_OK;
}

static uint8_t *put_keys(uint8_t *p, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        st_put_u32(p, (uint32_t)kl);
        memcpy(p + 4, keys[i], kl);
        p[4 + kl] = 0;
        p += 5 + kl;
    }
    return p;
}

npvdb_code rec_encode_init(const npvdb_config *cfg, const float *train,
                           size_t n_train, rec_buf *out, npvdb_error *err)
{
    if (!cfg || cfg->dim == 0 || cfg->dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "init record: bad dim");
    if (n_train > 0 && !train)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: train rows are NULL");
    if (n_train > REC_MAX_PAYLOAD / 4 / cfg->dim)
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "init record: %zu training rows "
                               "are over the log's record size limit",
                               n_train);
    size_t rows_bytes = n_train * cfg->dim * sizeof(float);
    npvdb_code rc = rec_alloc(INIT_FIXED + rows_bytes, out, err);
    if (rc != NPVDB_OK) return rc;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, 1);
    st_put_u32(p + 4, cfg->dim);
    st_put_u32(p + 8, (uint32_t)cfg->metric);
    st_put_u32(p + 12, cfg->n_shards);
    st_put_u32(p + 16, cfg->train_per_shard);
    st_put_u32(p + 20, cfg->kmeans_iters);
    st_put_u32(p + 24, cfg->default_nprobe);
    st_put_u32(p + 28, 0);
    st_put_u64(p + 32, cfg->seed);
    st_put_u64(p + 40, n_train);
    if (rows_bytes) memcpy(p + INIT_FIXED, train, rows_bytes);
    return NPVDB_OK;
}

npvdb_code rec_encode_insert(const char *const *keys, const float *rows,
                             size_t n, uint32_t dim, rec_buf *out,
                             npvdb_error *err)
{
    if (dim == 0 || dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "insert record: bad dim %u",
                               dim);
    if (n > 0 && !rows)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: rows are NULL");
    if (n > REC_MAX_PAYLOAD / 4 / dim)
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "insert record: %zu rows are over "
                               "the log's record size limit",
                               n);
    size_t kbytes;
    npvdb_code rc = keys_size(keys, n, &kbytes, err);
    if (rc != NPVDB_OK) return rc;
    size_t rows_bytes = n * dim * sizeof(float);
    rc = rec_alloc(KEYS_FIXED + rows_bytes + kbytes, out, err);
    if (rc != NPVDB_OK) return rc;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, dim);
    st_put_u32(p + 4, (uint32_t)n);
    if (rows_bytes) memcpy(p + KEYS_FIXED, rows, rows_bytes);
    put_keys(p + KEYS_FIXED + rows_bytes, keys, n);
    return NPVDB_OK;
}

npvdb_code rec_encode_delete(const char *const *keys, size_t n, rec_buf *out,
                             npvdb_error *err)
{
    size_t kbytes;
    npvdb_code rc = keys_size(keys, n, &kbytes, err);
    if (rc != NPVDB_OK) return rc;
    rc = rec_alloc(KEYS_FIXED + kbytes, out, err);
    if (rc != NPVDB_OK) return rc;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, (uint32_t)n);
    st_put_u32(p + 4, 0);
    put_keys(p + KEYS_FIXED, keys, n);
    return NPVDB_OK;
}

/* Points *rows at nbytes of floats at p, copying when p is not aligned for
 * float (a payload taken from an arbitrary buffer). */
static npvdb_code rows_view(const uint8_t *p, size_t nbytes, const float **rows,
                            float **owned, npvdb_error *err)
{
    *owned = NULL;
    if (nbytes == 0) {
        *rows = NULL;
        return NPVDB_OK;
    }
    if ((uintptr_t)p % _Alignof(float) == 0) {
        *rows = (const float *)(const void *)p;
        return NPVDB_OK;
    }
    *owned = malloc(nbytes);
    if (!*owned)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "no memory to copy %zu bytes of rows", nbytes);
    memcpy(*owned, p, nbytes);
    *rows = *owned;
    return NPVDB_OK;
}

npvdb_code rec_decode_init(const uint8_t *p, size_t len, rec_init *out,
                           npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < INIT_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: %zu bytes is short", len);
    if (st_get_u32(p) != 1)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: unknown version %u",
                               st_get_u32(p));
    uint32_t dim = st_get_u32(p + 4);
    uint32_t metric = st_get_u32(p + 8);
    if (dim == 0 || dim > NPVDB_MAX_DIM || metric > NPVDB_METRIC_IP)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: bad dim or metric");
    uint64_t n_train = st_get_u64(p + 40);
    size_t rest = len - INIT_FIXED;
    /* Division first: n_train * dim * 4 could overflow for a corrupt count. */
    if (rest % ((size_t)dim * 4) != 0 || n_train != rest / ((size_t)dim * 4))
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "init record: %llu training rows do not fill %zu bytes",
            (unsigned long long)n_train, rest);
    out->cfg.dim = dim;
    out->cfg.metric = (npvdb_metric)metric;
    out->cfg.n_shards = st_get_u32(p + 12);
    out->cfg.train_per_shard = st_get_u32(p + 16);
    out->cfg.kmeans_iters = st_get_u32(p + 20);
    out->cfg.default_nprobe = st_get_u32(p + 24);
    out->cfg.seed = st_get_u64(p + 32);
    out->n_train = (size_t)n_train;
    return rows_view(p + INIT_FIXED, rest, &out->train, &out->owned_, err);
}

/* Decodes n keys filling exactly p[0..len). */
static npvdb_code decode_keys(const uint8_t *p, size_t len, size_t n,
                              rec_keys *out, npvdb_error *err)
{
    /* Each key takes at least 5 bytes: bounds n before allocating. */
    if (n > len / 5)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record: %zu keys cannot fit in %zu "
                               "bytes",
                               n, len);
    out->keys = malloc((n ? n : 1) * sizeof *out->keys);
    if (!out->keys)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for %zu keys", n);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (len - pos < 5)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "record: key %zu is cut off", i);
        size_t kl = st_get_u32(p + pos);
        pos += 4;
        if (kl > len - pos - 1)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "record: key %zu length %zu is past the end",
                                   i, kl);
        const char *k = (const char *)p + pos;
        if (k[kl] != '\0' || memchr(k, 0, kl) != NULL)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "record: key %zu is malformed", i);
        out->keys[i] = k;
        pos += kl + 1;
    }
    if (pos != len)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record: %zu bytes after the keys", len - pos);
    out->n = n;
    return NPVDB_OK;
}

npvdb_code rec_decode_insert(const uint8_t *p, size_t len, rec_keys *out,
                             npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < KEYS_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: %zu bytes is short", len);
    uint32_t dim = st_get_u32(p);
    uint32_t n = st_get_u32(p + 4);
    if (dim == 0 || dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "insert record: bad dim %u",
                               dim);
    size_t rest = len - KEYS_FIXED;
    /* n < 2^32 and dim <= 4096: the product fits in 64 bits. */
    uint64_t rows_bytes = (uint64_t)n * dim * 4;
    if (rows_bytes > rest)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: %u rows of dim %u "
                               "do not fit in %zu bytes",
                               n, dim, rest);
    npvdb_code rc = decode_keys(p + KEYS_FIXED + rows_bytes,
                                rest - (size_t)rows_bytes, n, out, err);
    if (rc == NPVDB_OK)
        rc = rows_view(p + KEYS_FIXED, (size_t)rows_bytes, &out->rows,
                       &out->owned_, err);
    if (rc != NPVDB_OK) {
        rec_keys_free(out);
        return rc;
    }
    out->dim = dim;
    return NPVDB_OK;
}

npvdb_code rec_decode_delete(const uint8_t *p, size_t len, rec_keys *out,
                             npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < KEYS_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "delete record: %zu bytes is short", len);
    npvdb_code rc =
        decode_keys(p + KEYS_FIXED, len - KEYS_FIXED, st_get_u32(p), out, err);
    if (rc != NPVDB_OK) rec_keys_free(out);
    return rc;
}

void rec_init_free(rec_init *r)
{
    if (!r) return;
    free(r->owned_);
    memset(r, 0, sizeof *r);
}

void rec_keys_free(rec_keys *r)
{
    if (!r) return;
    free(r->keys);
    free(r->owned_);
    memset(r, 0, sizeof *r);
}
