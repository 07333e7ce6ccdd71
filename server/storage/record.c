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
#define INS2_FIXED 16u
#define TRAIN_FIXED 16u
#define RESHARD_FIXED 16u

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

int rec_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > REC_MAX_NAME) return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* Checks an encoder's name; *len gets its length. */
static npvdb_code name_arg(const char *name, size_t *len, npvdb_error *err)
{
    *len = name ? strnlen(name, REC_MAX_NAME + 1) : 0;
    if (!rec_name_valid(name, *len))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "log record: bad collection name");
    return NPVDB_OK;
}

/* Writes name and its zero padding at p; returns the end. */
static uint8_t *put_name(uint8_t *p, const char *name, size_t len)
{
    memcpy(p, name, len);
    memset(p + len, 0, align8(len) - len);
    return p + align8(len);
}

npvdb_code rec_encode_init(const char *name, const npvdb_config *cfg,
                           const float *train, size_t n_train, rec_buf *out,
                           npvdb_error *err)
{
    size_t nl;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc != NPVDB_OK) return rc;
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
    rc = rec_alloc(INIT_FIXED + align8(nl) + rows_bytes, out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_INIT;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, 2);
    st_put_u32(p + 4, cfg->dim);
    st_put_u32(p + 8, (uint32_t)cfg->metric);
    st_put_u32(p + 12, cfg->n_shards);
    st_put_u32(p + 16, cfg->train_per_shard);
    st_put_u32(p + 20, cfg->kmeans_iters);
    st_put_u32(p + 24, cfg->default_nprobe);
    st_put_u32(p + 28, (uint32_t)nl);
    st_put_u64(p + 32, cfg->seed);
    st_put_u64(p + 40, n_train);
    p = put_name(p + INIT_FIXED, name, nl);
    if (rows_bytes) memcpy(p, train, rows_bytes);
    return NPVDB_OK;
}

/* Bytes of the payload section of n rows: 0 when no row has one. */
static npvdb_code payloads_size(const npvdb_payload *pl, size_t n,
                                size_t *total, npvdb_error *err)
{
    size_t sum = 0;
    int any = 0;
    for (size_t i = 0; pl && i < n; i++) {
        if (pl[i].len == 0) continue;
        if (!pl[i].data || pl[i].len > NPVDB_MAX_PAYLOAD)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "insert record: payload %zu is malformed",
                                   i);
        any = 1;
        sum += pl[i].len;
        if (sum > REC_MAX_PAYLOAD)
            return npvdb_set_error(err, NPVDB_ELIMIT,
                                   "insert record: payloads are over %u bytes",
                                   REC_MAX_PAYLOAD);
    }
    *total = any ? sum + 4 * n : 0;
    return NPVDB_OK;
}

npvdb_code rec_encode_insert(const char *name, const char *const *keys,
                             const float *rows, const npvdb_payload *payloads,
                             size_t n, uint32_t dim, rec_buf *out,
                             npvdb_error *err)
{
    size_t nl, kbytes = 0, pbytes = 0;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc != NPVDB_OK) return rc;
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
    rc = keys_size(keys, n, &kbytes, err);
    if (rc == NPVDB_OK) rc = payloads_size(payloads, n, &pbytes, err);
    if (rc != NPVDB_OK) return rc;
    size_t rows_bytes = n * dim * sizeof(float);
    size_t fixed = INS2_FIXED + align8(nl);
    if (rows_bytes + kbytes + pbytes > REC_MAX_PAYLOAD - fixed)
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "insert record: %zu rows are over "
                               "the log's record size limit",
                               n);
    rc = rec_alloc(fixed + rows_bytes + kbytes + pbytes, out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_INSERT2;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, dim);
    st_put_u32(p + 4, (uint32_t)n);
    st_put_u32(p + 8, pbytes ? 1u : 0u);
    st_put_u32(p + 12, (uint32_t)nl);
    p = put_name(p + INS2_FIXED, name, nl);
    if (rows_bytes) memcpy(p, rows, rows_bytes);
    p = put_keys(p + rows_bytes, keys, n);
    if (!pbytes) return NPVDB_OK;
    for (size_t i = 0; i < n; i++)
        st_put_u32(p + 4 * i, payloads[i].len);
    p += 4 * n;
    for (size_t i = 0; i < n; i++) {
        if (payloads[i].len) memcpy(p, payloads[i].data, payloads[i].len);
        p += payloads[i].len;
    }
    return NPVDB_OK;
}

npvdb_code rec_encode_delete(const char *name, const char *const *keys,
                             size_t n, rec_buf *out, npvdb_error *err)
{
    size_t nl, kbytes;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc == NPVDB_OK) rc = keys_size(keys, n, &kbytes, err);
    if (rc != NPVDB_OK) return rc;
    rc = rec_alloc(KEYS_FIXED + align8(nl) + kbytes, out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_DELETE2;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, (uint32_t)n);
    st_put_u32(p + 4, (uint32_t)nl);
    p = put_name(p + KEYS_FIXED, name, nl);
    put_keys(p, keys, n);
    return NPVDB_OK;
}

npvdb_code rec_encode_drop(const char *name, rec_buf *out, npvdb_error *err)
{
    size_t nl;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc == NPVDB_OK) rc = rec_alloc(8 + align8(nl), out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_DROP;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, 0);
    st_put_u32(p + 4, (uint32_t)nl);
    put_name(p + 8, name, nl);
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

/* Reads the name of name_len bytes at p[0..avail) with its zero padding
 * into out; *used gets the bytes taken. */
static npvdb_code get_name(const uint8_t *p, size_t avail, uint32_t name_len,
                           char out[REC_MAX_NAME + 1], size_t *used,
                           npvdb_error *err)
{
    if (name_len == 0 || name_len > REC_MAX_NAME || align8(name_len) > avail)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record: collection name length %u is bad",
                               name_len);
    if (!rec_name_valid((const char *)p, name_len))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record: collection name is malformed");
    for (size_t i = name_len; i < align8(name_len); i++)
        if (p[i] != 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "record: name padding is not zero");
    memcpy(out, p, name_len);
    out[name_len] = '\0';
    *used = align8(name_len);
    return NPVDB_OK;
}

/* ---- the index section (INIT v3, TRAIN) ---- */

/* Bytes of ix's index section, or 0 past the record limit. */
static size_t index_size(const npvdb_index *ix)
{
    uint64_t floats = ((uint64_t)ix->n_shards + ix->n_groups) * ix->dim;
    uint64_t bytes = 8 + 4 * floats + (ix->n_groups ? 4ull * ix->n_shards : 0);
    return bytes > REC_MAX_PAYLOAD ? 0 : (size_t)bytes;
}

static npvdb_code index_arg(const npvdb_index *ix, npvdb_error *err)
{
    if (!ix || ix->dim == 0 || ix->dim > NPVDB_MAX_DIM || ix->n_shards == 0 ||
        ix->n_shards > NPVDB_MAX_SHARDS || ix->n_groups > ix->n_shards ||
        !ix->centroids ||
        (ix->n_groups && (!ix->group_centres || !ix->group_of)))
        return npvdb_set_error(err, NPVDB_EINVAL, "index record: bad index");
    if (!index_size(ix))
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "index record: %u centroids of dim %u are over "
                               "the log's record size limit",
                               ix->n_shards, ix->dim);
    return NPVDB_OK;
}

static void put_index(uint8_t *p, const npvdb_index *ix)
{
    size_t cb = (size_t)ix->n_shards * ix->dim * 4;
    size_t gb = (size_t)ix->n_groups * ix->dim * 4;
    st_put_u32(p, ix->n_shards);
    st_put_u32(p + 4, ix->n_groups);
    memcpy(p + 8, ix->centroids, cb);
    if (gb) memcpy(p + 8 + cb, ix->group_centres, gb);
    for (uint32_t j = 0; ix->n_groups && j < ix->n_shards; j++)
        st_put_u32(p + 8 + cb + gb + 4 * (size_t)j, ix->group_of[j]);
}

/* Decodes an index section filling exactly p[0..len) into *ix (copies,
 * owned by ix; freed on failure). */
static npvdb_code decode_index(const uint8_t *p, size_t len, uint32_t dim,
                               npvdb_index *ix, npvdb_error *err)
{
    memset(ix, 0, sizeof *ix);
    if (len < 8)
        return npvdb_set_error(err, NPVDB_EINVAL, "index record: short");
    uint32_t nc = st_get_u32(p), G = st_get_u32(p + 4);
    if (nc == 0 || nc > NPVDB_MAX_SHARDS || G > nc)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "index record: %u centroids in %u groups", nc,
                               G);
    ix->dim = dim;
    ix->n_shards = nc;
    ix->n_groups = G;
    size_t want = index_size(ix);
    if (!want || want != len) {
        memset(ix, 0, sizeof *ix);
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "index record: %u centroids of dim %u do not "
                               "fill %zu bytes",
                               nc, dim, len);
    }
    size_t cb = (size_t)nc * dim * 4, gb = (size_t)G * dim * 4;
    ix->centroids = malloc(cb);
    ix->group_centres = malloc(gb ? gb : 4);
    ix->group_of = malloc(G ? 4 * (size_t)nc : 4);
    if (!ix->centroids || !ix->group_centres || !ix->group_of) {
        npvdb_index_free(ix);
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for %u centroids",
                               nc);
    }
    memcpy(ix->centroids, p + 8, cb);
    if (gb) memcpy(ix->group_centres, p + 8 + cb, gb);
    for (uint32_t j = 0; G && j < nc; j++) {
        ix->group_of[j] = st_get_u32(p + 8 + cb + gb + 4 * (size_t)j);
        if (ix->group_of[j] >= G) {
            npvdb_index_free(ix);
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "index record: centroid %u in group %u of "
                                   "%u",
                                   j, st_get_u32(p + 8 + cb + gb + 4 * j), G);
        }
    }
    return NPVDB_OK;
}

npvdb_code rec_encode_init_index(const char *name, const npvdb_config *cfg,
                                 const npvdb_index *ix, rec_buf *out,
                                 npvdb_error *err)
{
    npvdb_code rc = rec_encode_init(name, cfg, NULL, 0, out, err);
    if (rc != NPVDB_OK) return rc;
    rc = index_arg(ix, err);
    if (rc == NPVDB_OK && ix->dim != cfg->dim)
        rc = npvdb_set_error(err, NPVDB_EINVAL, "init record: index dim %u",
                             ix->dim);
    size_t head = out->len;
    rec_buf big = {0};
    if (rc == NPVDB_OK) rc = rec_alloc(head + index_size(ix), &big, err);
    if (rc == NPVDB_OK) {
        memcpy(big.buf + REC_HEADROOM, out->buf + REC_HEADROOM, head);
        st_put_u32(big.buf + REC_HEADROOM, 3);
        put_index(big.buf + REC_HEADROOM + head, ix);
        big.type = REC_INIT;
    }
    free(out->buf);
    *out = big;
    return rc;
}

npvdb_code rec_encode_train(const char *name, const npvdb_index *ix,
                            rec_buf *out, npvdb_error *err)
{
    size_t nl;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc == NPVDB_OK) rc = index_arg(ix, err);
    if (rc == NPVDB_OK)
        rc = rec_alloc(TRAIN_FIXED + align8(nl) + index_size(ix), out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_TRAIN;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, 1);
    st_put_u32(p + 4, ix->dim);
    st_put_u32(p + 8, (uint32_t)nl);
    st_put_u32(p + 12, 0);
    put_index(put_name(p + TRAIN_FIXED, name, nl), ix);
    return NPVDB_OK;
}

npvdb_code rec_decode_train(const uint8_t *p, size_t len, rec_train *out,
                            npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < TRAIN_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "train record: %zu bytes is short", len);
    uint32_t version = st_get_u32(p), dim = st_get_u32(p + 4);
    if (version != 1)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "train record: unknown version %u", version);
    if (dim == 0 || dim > NPVDB_MAX_DIM || st_get_u32(p + 12) != 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "train record: bad header");
    size_t used;
    npvdb_code rc = get_name(p + TRAIN_FIXED, len - TRAIN_FIXED,
                             st_get_u32(p + 8), out->name, &used, err);
    if (rc == NPVDB_OK)
        rc = decode_index(p + TRAIN_FIXED + used, len - TRAIN_FIXED - used, dim,
                          &out->index, err);
    if (rc != NPVDB_OK) out->name[0] = '\0';
    return rc;
}

void rec_train_free(rec_train *r)
{
    if (!r) return;
    npvdb_index_free(&r->index);
    memset(r, 0, sizeof *r);
}

/* ---- RESHARD ---- */

static size_t reshard_floats(const npvdb_reshard *op)
{
    return op->kind == NPVDB_RESHARD_SPLIT ? 2 * (size_t)op->dim : 0;
}

npvdb_code rec_encode_reshard(const char *name, const npvdb_reshard *op,
                              rec_buf *out, npvdb_error *err)
{
    size_t nl;
    npvdb_code rc = name_arg(name, &nl, err);
    if (rc != NPVDB_OK) return rc;
    if ((op->kind != NPVDB_RESHARD_SPLIT && op->kind != NPVDB_RESHARD_MERGE) ||
        op->dim == 0 || op->dim > NPVDB_MAX_DIM ||
        op->shard >= NPVDB_MAX_SHARDS ||
        (op->kind == NPVDB_RESHARD_SPLIT && !op->centroids))
        return npvdb_set_error(err, NPVDB_EINVAL, "reshard record: bad change");
    size_t nf = reshard_floats(op);
    rc = rec_alloc(RESHARD_FIXED + align8(nl) + 8 + 4 * nf, out, err);
    if (rc != NPVDB_OK) return rc;
    out->type = REC_RESHARD;
    uint8_t *p = out->buf + REC_HEADROOM;
    st_put_u32(p, 2);
    st_put_u32(p + 4, op->dim);
    st_put_u32(p + 8, (uint32_t)nl);
    st_put_u32(p + 12, (uint32_t)op->kind);
    p = put_name(p + RESHARD_FIXED, name, nl);
    st_put_u32(p, op->shard);
    st_put_u32(p + 4, op->n_shards);
    if (nf) memcpy(p + 8, op->centroids, 4 * nf);
    return NPVDB_OK;
}

npvdb_code rec_decode_reshard(const uint8_t *p, size_t len, rec_reshard *out,
                              npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < RESHARD_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "reshard record: %zu bytes is short", len);
    uint32_t version = st_get_u32(p), dim = st_get_u32(p + 4);
    uint32_t kind = st_get_u32(p + 12);
    if (version != 1 && version != 2)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "reshard record: unknown version %u", version);
    if (dim == 0 || dim > NPVDB_MAX_DIM ||
        (kind != NPVDB_RESHARD_SPLIT && kind != NPVDB_RESHARD_MERGE))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "reshard record: bad header (dim %u, kind %u)",
                               dim, kind);
    size_t used;
    npvdb_code rc = get_name(p + RESHARD_FIXED, len - RESHARD_FIXED,
                             st_get_u32(p + 8), out->name, &used, err);
    if (rc != NPVDB_OK) return rc;
    out->op = (npvdb_reshard){.kind = (npvdb_reshard_kind)kind, .dim = dim};
    size_t nf = reshard_floats(&out->op), at = RESHARD_FIXED + used;
    /* Version 1 reserved the word version 2 gives the shard count in. */
    if (len - at != 8 + 4 * nf || (version == 1 && st_get_u32(p + at + 4))) {
        out->name[0] = '\0';
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "reshard record: %zu bytes after the name, "
                               "want %zu",
                               len - at, 8 + 4 * nf);
    }
    out->op.shard = st_get_u32(p + at);
    out->op.n_shards = st_get_u32(p + at + 4);
    if (nf) {
        out->op.centroids = malloc(4 * nf);
        if (!out->op.centroids) {
            out->name[0] = '\0';
            return npvdb_set_error(err, NPVDB_ENOMEM,
                                   "no memory for a split's centroids");
        }
        memcpy(out->op.centroids, p + at + 8, 4 * nf);
    }
    return NPVDB_OK;
}

void rec_reshard_free(rec_reshard *r)
{
    if (!r) return;
    free(r->op.centroids);
    memset(r, 0, sizeof *r);
}

npvdb_code rec_decode_init(const uint8_t *p, size_t len, rec_init *out,
                           npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < INIT_FIXED)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: %zu bytes is short", len);
    uint32_t version = st_get_u32(p);
    if (version < 1 || version > 3)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: unknown version %u", version);
    uint32_t dim = st_get_u32(p + 4);
    uint32_t metric = st_get_u32(p + 8);
    if (dim == 0 || dim > NPVDB_MAX_DIM || metric > NPVDB_METRIC_IP)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "init record: bad dim or metric");
    size_t at = INIT_FIXED, used = 0;
    if (version == 1) {
        if (st_get_u32(p + 28) != 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "init record: v1 reserved field is set");
        memcpy(out->name, REC_DEFAULT_NAME, sizeof REC_DEFAULT_NAME);
    } else {
        npvdb_code rc = get_name(p + at, len - at, st_get_u32(p + 28),
                                 out->name, &used, err);
        if (rc != NPVDB_OK) return rc;
        at += used;
    }
    out->cfg.dim = dim;
    out->cfg.metric = (npvdb_metric)metric;
    out->cfg.n_shards = st_get_u32(p + 12);
    out->cfg.train_per_shard = st_get_u32(p + 16);
    out->cfg.kmeans_iters = st_get_u32(p + 20);
    out->cfg.default_nprobe = st_get_u32(p + 24);
    out->cfg.seed = st_get_u64(p + 32);
    if (version == 3) {
        if (st_get_u64(p + 40) != 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "init record: v3 holds no training rows");
        out->has_index = 1;
        return decode_index(p + at, len - at, dim, &out->index, err);
    }
    uint64_t n_train = st_get_u64(p + 40);
    size_t rest = len - at;
    /* Division first: n_train * dim * 4 could overflow for a corrupt count. */
    if (rest % ((size_t)dim * 4) != 0 || n_train != rest / ((size_t)dim * 4))
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "init record: %llu training rows do not fill %zu bytes",
            (unsigned long long)n_train, rest);
    out->n_train = (size_t)n_train;
    return rows_view(p + at, rest, &out->train, &out->owned_, err);
}

/* Decodes n keys from p[0..len), which they must fill exactly when exact;
 * *end gets the bytes they take. */
static npvdb_code decode_keys(const uint8_t *p, size_t len, size_t n, int exact,
                              size_t *end, rec_keys *out, npvdb_error *err)
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
    if (exact && pos != len)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record: %zu bytes after the keys", len - pos);
    *end = pos;
    out->n = n;
    return NPVDB_OK;
}

/* Decodes the payload section of n rows filling exactly p[0..len). */
static npvdb_code decode_payloads(const uint8_t *p, size_t len, size_t n,
                                  rec_keys *out, npvdb_error *err)
{
    if (n > len / 4)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: %zu payload lengths cannot fit "
                               "in %zu bytes",
                               n, len);
    out->payloads = calloc(n ? n : 1, sizeof *out->payloads);
    if (!out->payloads)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for %zu payloads",
                               n);
    size_t pos = 4 * n;
    for (size_t i = 0; i < n; i++) {
        uint32_t pl = st_get_u32(p + 4 * i);
        if (pl > len - pos)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "insert record: payload %zu is past the end",
                                   i);
        npvdb_error e = {0};
        if (pl && npvdb_payload_check(p + pos, pl, &e) != NPVDB_OK)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "insert record: payload %zu: %s", i, e.msg);
        out->payloads[i].data = pl ? p + pos : NULL;
        out->payloads[i].len = pl;
        pos += pl;
    }
    if (pos != len)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: %zu bytes after the payloads",
                               len - pos);
    return NPVDB_OK;
}

/* After the fixed part and name: rows[n*dim], keys, then payloads when
 * has_payloads. Keys end where the payload section starts, which the key
 * walk finds itself (decode_keys is told the bytes to the end). */
static npvdb_code decode_insert_body(const uint8_t *p, size_t len, uint32_t dim,
                                     uint32_t n, int has_payloads,
                                     rec_keys *out, npvdb_error *err)
{
    if (dim == 0 || dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "insert record: bad dim %u",
                               dim);
    /* n < 2^32 and dim <= 4096: the product fits in 64 bits. */
    uint64_t rows_bytes = (uint64_t)n * dim * 4;
    if (rows_bytes > len)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "insert record: %u rows of dim %u "
                               "do not fit in %zu bytes",
                               n, dim, len);
    size_t kend;
    npvdb_code rc = decode_keys(p + rows_bytes, len - (size_t)rows_bytes, n,
                                !has_payloads, &kend, out, err);
    if (rc == NPVDB_OK && has_payloads)
        rc = decode_payloads(p + rows_bytes + kend,
                             len - (size_t)rows_bytes - kend, n, out, err);
    if (rc == NPVDB_OK)
        rc = rows_view(p, (size_t)rows_bytes, &out->rows, &out->owned_, err);
    if (rc == NPVDB_OK) out->dim = dim;
    return rc;
}

static npvdb_code decode_keys_rec(uint8_t type, const uint8_t *p, size_t len,
                                  rec_keys *out, npvdb_error *err)
{
    const char *what =
        type == REC_INSERT || type == REC_INSERT2 ? "insert" : "delete";
    size_t fixed = type == REC_INSERT2 ? INS2_FIXED : KEYS_FIXED;
    if (len < fixed)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s record: %zu bytes is short", what, len);
    size_t at = fixed, used = 0, kend;
    npvdb_code rc = NPVDB_OK;
    if (type == REC_INSERT || type == REC_DELETE)
        memcpy(out->name, REC_DEFAULT_NAME, sizeof REC_DEFAULT_NAME);
    else
        rc = get_name(p + at, len - at,
                      st_get_u32(p + (type == REC_INSERT2 ? 12 : 4)), out->name,
                      &used, err);
    if (rc != NPVDB_OK) return rc;
    at += used;
    switch (type) {
    case REC_INSERT:
        return decode_insert_body(p + at, len - at, st_get_u32(p),
                                  st_get_u32(p + 4), 0, out, err);
    case REC_INSERT2: {
        uint32_t flags = st_get_u32(p + 8);
        if (flags > 1)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "insert record: unknown flags %u", flags);
        return decode_insert_body(p + at, len - at, st_get_u32(p),
                                  st_get_u32(p + 4), (int)flags, out, err);
    }
    case REC_DELETE:
        if (st_get_u32(p + 4) != 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "delete record: reserved field is set");
        /* fallthrough */
    default:
        return decode_keys(p + at, len - at, st_get_u32(p), 1, &kend, out, err);
    }
}

npvdb_code rec_decode_keys(uint8_t type, const uint8_t *p, size_t len,
                           rec_keys *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    if (type != REC_INSERT && type != REC_INSERT2 && type != REC_DELETE &&
        type != REC_DELETE2)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "record type %u holds no keys", type);
    npvdb_code rc = decode_keys_rec(type, p, len, out, err);
    if (rc != NPVDB_OK) rec_keys_free(out);
    return rc;
}

npvdb_code rec_decode_drop(const uint8_t *p, size_t len,
                           char name[REC_MAX_NAME + 1], npvdb_error *err)
{
    size_t used;
    name[0] = '\0';
    if (len < 8 || st_get_u32(p) != 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "drop record is malformed");
    npvdb_code rc =
        get_name(p + 8, len - 8, st_get_u32(p + 4), name, &used, err);
    if (rc == NPVDB_OK && 8 + used != len)
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "drop record: %zu bytes after the name",
                             len - 8 - used);
    if (rc != NPVDB_OK) name[0] = '\0';
    return rc;
}

void rec_init_free(rec_init *r)
{
    if (!r) return;
    free(r->owned_);
    npvdb_index_free(&r->index);
    memset(r, 0, sizeof *r);
}

void rec_keys_free(rec_keys *r)
{
    if (!r) return;
    free(r->keys);
    free(r->payloads);
    free(r->owned_);
    memset(r, 0, sizeof *r);
}
