/*
 * codec.c -- request bytes -> validated request structs (see codec.h).
 *
 * Everything from the network is distrusted: sizes are checked before any
 * read, multiplications are checked for overflow, and keys are checked on the
 * wire because protobuf-c copies a string with an embedded NUL as a shorter C
 * string, which would silently write under a different key.
 */
#include "codec.h"

#include "grpc/health/v1/health.pb-c.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The wire layout is little-endian float32; we memcpy it as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npvdb's codec assumes a little-endian host"
#endif

/* protobuf-c's wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* The repeated string field holding keys in InsertRequest, DeleteRequest and
 * GetRequest. */
#define KEYS_FIELD 1

/* ---- keys ---------------------------------------------------------------- */

npvdb_code codec_check_key(const uint8_t *key, size_t len, size_t index,
                           npvdb_error *err)
{
    if (len == 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is empty", index);
    if (len > NPVDB_MAX_KEY_LEN)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "key %zu is %zu bytes, over the %d limit", index,
                               len, NPVDB_MAX_KEY_LEN);
    /* protobuf-c would hand the engine a C string cut at the NUL. */
    const uint8_t *nul = memchr(key, 0, len);
    if (nul)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "key %zu contains a NUL byte at offset %zu",
                               index, (size_t)(nul - key));
    if (!npvdb_utf8_valid((const char *)key, len))
        return npvdb_set_error(err, NPVDB_EINVAL, "key %zu is not valid UTF-8",
                               index);
    return NPVDB_OK;
}

/* Reads a varint at buf[*pos..len); 0 on success, -1 if truncated/too long. */
static int read_varint(const uint8_t *buf, size_t len, size_t *pos,
                       uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Skips one field's payload of wire type `wt`; 0 on success. */
static int skip_field(const uint8_t *buf, size_t len, size_t *pos, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case WT_VARINT:
        return read_varint(buf, len, pos, &v);
    case WT_I64:
        if (len - *pos < 8) return -1;
        *pos += 8;
        return 0;
    case WT_I32:
        if (len - *pos < 4) return -1;
        *pos += 4;
        return 0;
    case WT_LEN:
        if (read_varint(buf, len, pos, &v) || v > len - *pos) return -1;
        *pos += (size_t)v;
        return 0;
    default: /* groups (3, 4) are not used by proto3 */
        return -1;
    }
}

/* Walks the top-level fields of a serialized message and checks every value
 * of the repeated string field `field` with codec_check_key. */
static npvdb_code check_wire_keys(const uint8_t *buf, size_t len,
                                  unsigned field, npvdb_error *err)
{
    size_t pos = 0, index = 0;
    while (pos < len) {
        uint64_t tag, klen;
        if (read_varint(buf, len, &pos, &tag))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed message (bad tag)");
        unsigned wt = (unsigned)(tag & 7);
        if ((tag >> 3) != field || wt != WT_LEN) {
            if (skip_field(buf, len, &pos, wt))
                return npvdb_set_error(err, NPVDB_EINVAL,
                                       "malformed message (field)");
            continue;
        }
        if (read_varint(buf, len, &pos, &klen) || klen > len - pos)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed message (key length)");
        npvdb_code rc = codec_check_key(buf + pos, (size_t)klen, index, err);
        if (rc != NPVDB_OK) return rc;
        pos += (size_t)klen;
        index++;
    }
    return NPVDB_OK;
}

/* ---- vectors ------------------------------------------------------------- */

/* Copies rows * dim little-endian floats out of `b` (whose length must be
 * exactly rows * dim * 4) into a new aligned array, refusing NaN and Inf.
 * `what` names a row in messages ("vector", "query"). */
static npvdb_code copy_rows(const ProtobufCBinaryData *b, size_t rows,
                            uint32_t dim, const char *field, const char *what,
                            float **out, npvdb_error *err)
{
    *out = NULL;
    size_t row_bytes = (size_t)dim * sizeof(float);
    if (rows > SIZE_MAX / row_bytes || b->len != rows * row_bytes)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s is %zu bytes, expected %zu rows x dim %u x 4 = %zu", field,
            b->len, rows, dim,
            rows > SIZE_MAX / row_bytes ? SIZE_MAX : rows * row_bytes);
    if (rows == 0) return NPVDB_OK;
    float *f = malloc(b->len);
    if (!f)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory copying %zu bytes of %s", b->len,
                               field);
    memcpy(f, b->data, b->len);
    for (size_t i = 0; i < rows * dim; i++) {
        if (!isfinite(f[i])) {
            free(f);
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s %zu has a NaN or Inf at component %zu",
                                   what, i / dim, i % dim);
        }
    }
    *out = f;
    return NPVDB_OK;
}

/* rows = len / (dim * 4), or an error if len is not a whole number of rows. */
static npvdb_code count_rows(size_t len, uint32_t dim, const char *field,
                             size_t *rows, npvdb_error *err)
{
    size_t row_bytes = (size_t)dim * sizeof(float);
    if (len % row_bytes != 0)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s is %zu bytes, not a multiple of dim %u x 4 = %zu", field, len,
            dim, row_bytes);
    *rows = len / row_bytes;
    return NPVDB_OK;
}

static npvdb_code check_dim(uint32_t dim, npvdb_error *err)
{
    if (dim == 0 || dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "dim must be 1..%d (got %u)",
                               NPVDB_MAX_DIM, dim);
    return NPVDB_OK;
}

/* ---- Init ---------------------------------------------------------------- */

static npvdb_code map_metric(int m, npvdb_metric *out, npvdb_error *err)
{
    switch (m) {
    case NPVDB__V1__METRIC__METRIC_UNSPECIFIED:
    case NPVDB__V1__METRIC__COSINE:
        *out = NPVDB_METRIC_COSINE;
        return NPVDB_OK;
    case NPVDB__V1__METRIC__L2:
        *out = NPVDB_METRIC_L2;
        return NPVDB_OK;
    case NPVDB__V1__METRIC__INNER_PRODUCT:
        *out = NPVDB_METRIC_IP;
        return NPVDB_OK;
    default:
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "unknown metric %d (COSINE=1, L2=2, INNER_PRODUCT=3)", m);
    }
}

static npvdb_code fill_init(const Npvdb__V1__InitRequest *m, codec_init *out,
                            npvdb_error *err)
{
    npvdb_code rc = check_dim(m->dim, err);
    if (rc == NPVDB_OK) rc = map_metric((int)m->metric, &out->cfg.metric, err);
    if (rc != NPVDB_OK) return rc;
    if (m->n_shards > NPVDB_MAX_SHARDS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "n_shards must be 0..%d (got %u)",
                               NPVDB_MAX_SHARDS, m->n_shards);
    out->cfg.dim = m->dim;
    out->cfg.n_shards = m->n_shards;
    out->cfg.default_nprobe = m->default_nprobe;
    out->replace = m->replace != 0;
    rc = count_rows(m->train_vectors.len, m->dim, "train_vectors",
                    &out->n_train, err);
    if (rc != NPVDB_OK) return rc;
    return copy_rows(&m->train_vectors, out->n_train, m->dim, "train_vectors",
                     "training vector", &out->train, err);
}

npvdb_code codec_decode_init(const uint8_t *buf, size_t len, codec_init *out,
                             npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    Npvdb__V1__InitRequest *m = npvdb__v1__init_request__unpack(NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "malformed InitRequest (%zu bytes)", len);
    npvdb_code rc = fill_init(m, out, err);
    npvdb__v1__init_request__free_unpacked(m, NULL);
    if (rc != NPVDB_OK) codec_init_free(out);
    return rc;
}

void codec_init_free(codec_init *r)
{
    if (!r) return;
    free(r->train);
    memset(r, 0, sizeof *r);
}

/* ---- Insert -------------------------------------------------------------- */

/* Checks that `b` holds exactly rows x dim finite floats, in place: protobuf-c
 * gave the bytes field its own malloc'ed copy, which is aligned for floats,
 * so an Insert costs no second copy of its vectors. */
static npvdb_code check_rows_in_place(const ProtobufCBinaryData *b, size_t rows,
                                      uint32_t dim, npvdb_error *err)
{
    size_t row_bytes = (size_t)dim * sizeof(float);
    if (rows > SIZE_MAX / row_bytes || b->len != rows * row_bytes)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "vectors is %zu bytes, expected %zu rows x dim %u x 4 = %zu",
            b->len, rows, dim,
            rows > SIZE_MAX / row_bytes ? SIZE_MAX : rows * row_bytes);
    if (rows == 0) return NPVDB_OK;
    if ((uintptr_t)b->data % _Alignof(float) != 0)
        return npvdb_set_error(err, NPVDB_EINTERNAL, "vectors are not aligned");
    const float *f = (const float *)b->data;
    for (size_t i = 0; i < rows * dim; i++)
        if (!isfinite(f[i]))
            return npvdb_set_error(
                err, NPVDB_EINVAL,
                "vector %zu has a NaN or Inf at component %zu", i / dim,
                i % dim);
    return NPVDB_OK;
}

npvdb_code codec_decode_insert(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_insert *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_code rc = check_dim(dim, err);
    if (rc != NPVDB_OK) return rc;
    Npvdb__V1__InsertRequest *m =
        npvdb__v1__insert_request__unpack(NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "malformed InsertRequest (%zu bytes)", len);
    out->msg_ = m;
    out->n = m->n_keys;
    out->keys = (const char *const *)m->keys;
    rc = check_rows_in_place(&m->vectors, m->n_keys, dim, err);
    if (rc == NPVDB_OK && m->n_keys > 0)
        out->rows = (const float *)m->vectors.data;
    if (rc == NPVDB_OK) rc = check_wire_keys(buf, len, KEYS_FIELD, err);
    if (rc != NPVDB_OK) codec_insert_free(out);
    return rc;
}

void codec_insert_free(codec_insert *r)
{
    if (!r) return;
    if (r->msg_) npvdb__v1__insert_request__free_unpacked(r->msg_, NULL);
    memset(r, 0, sizeof *r);
}

/* ---- GetClosest and Search ---------------------------------------------- */

/* The fields GetClosestRequest and SearchRequest share (same numbers, same
 * meaning), so both go through one validation. */
typedef struct query_fields {
    const ProtobufCBinaryData *queries;
    uint32_t k, nprobe, dim;
} query_fields;

static npvdb_code fill_query(const query_fields *m, uint32_t dim,
                             codec_query *out, npvdb_error *err)
{
    /* First: with the wrong width every other check would mislead. */
    if (m->dim != 0 && m->dim != dim)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "query dim %u does not match the collection's dim %u", m->dim, dim);
    if (m->k == 0 || m->k > NPVDB_MAX_K)
        return npvdb_set_error(err, NPVDB_EINVAL, "k must be 1..%d (got %u)",
                               NPVDB_MAX_K, m->k);
    if (m->queries->len == 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "queries is empty: send q x dim %u "
                               "float32 values",
                               dim);
    npvdb_code rc = count_rows(m->queries->len, dim, "queries", &out->nq, err);
    if (rc != NPVDB_OK) return rc;
    out->k = m->k;
    out->nprobe = m->nprobe;
    return copy_rows(m->queries, out->nq, dim, "queries", "query",
                     &out->queries, err);
}

/* Unpacks a GetClosestRequest or a SearchRequest (descriptor `d`) and
 * validates it with fill_query. */
static npvdb_code decode_query_msg(const ProtobufCMessageDescriptor *d,
                                   const uint8_t *buf, size_t len, uint32_t dim,
                                   codec_query *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_code rc = check_dim(dim, err);
    if (rc != NPVDB_OK) return rc;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL, "malformed %s (%zu bytes)",
                               d->short_name, len);
    query_fields f;
    if (d == &npvdb__v1__search_request__descriptor) {
        const Npvdb__V1__SearchRequest *r = (Npvdb__V1__SearchRequest *)m;
        f = (query_fields){&r->queries, r->k, r->nprobe, r->dim};
    } else {
        const Npvdb__V1__GetClosestRequest *r =
            (Npvdb__V1__GetClosestRequest *)m;
        f = (query_fields){&r->queries, r->k, r->nprobe, r->dim};
    }
    rc = fill_query(&f, dim, out, err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc != NPVDB_OK) codec_query_free(out);
    return rc;
}

npvdb_code codec_decode_query(const uint8_t *buf, size_t len, uint32_t dim,
                              codec_query *out, npvdb_error *err)
{
    return decode_query_msg(&npvdb__v1__get_closest_request__descriptor, buf,
                            len, dim, out, err);
}

npvdb_code codec_decode_search(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_query *out, npvdb_error *err)
{
    return decode_query_msg(&npvdb__v1__search_request__descriptor, buf, len,
                            dim, out, err);
}

void codec_query_free(codec_query *r)
{
    if (!r) return;
    free(r->queries);
    memset(r, 0, sizeof *r);
}

/* ---- Delete and Get ------------------------------------------------------ */

/* DeleteRequest and GetRequest have the same shape (repeated string keys = 1),
 * so one decoder serves both through protobuf-c's generic functions. */
static npvdb_code decode_keys(const ProtobufCMessageDescriptor *d,
                              const uint8_t *buf, size_t len, codec_keys *out,
                              npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL, "malformed %s (%zu bytes)",
                               d->short_name, len);
    out->msg_ = m;
    if (d == &npvdb__v1__delete_request__descriptor) {
        Npvdb__V1__DeleteRequest *r = (Npvdb__V1__DeleteRequest *)m;
        out->n = r->n_keys;
        out->keys = (const char *const *)r->keys;
    } else {
        Npvdb__V1__GetRequest *r = (Npvdb__V1__GetRequest *)m;
        out->n = r->n_keys;
        out->keys = (const char *const *)r->keys;
    }
    npvdb_code rc = check_wire_keys(buf, len, KEYS_FIELD, err);
    if (rc != NPVDB_OK) codec_keys_free(out);
    return rc;
}

npvdb_code codec_decode_delete(const uint8_t *buf, size_t len, codec_keys *out,
                               npvdb_error *err)
{
    return decode_keys(&npvdb__v1__delete_request__descriptor, buf, len, out,
                       err);
}

npvdb_code codec_decode_get(const uint8_t *buf, size_t len, codec_keys *out,
                            npvdb_error *err)
{
    return decode_keys(&npvdb__v1__get_request__descriptor, buf, len, out, err);
}

void codec_keys_free(codec_keys *r)
{
    if (!r) return;
    if (r->msg_) protobuf_c_message_free_unpacked(r->msg_, NULL);
    memset(r, 0, sizeof *r);
}

/* ---- Snapshot, Info, health ---------------------------------------------- */

npvdb_code codec_decode_empty(const uint8_t *buf, size_t len, npvdb_error *err)
{
    /* InfoRequest and SnapshotRequest are both empty; unpacking as either
     * checks the framing of any unknown fields. */
    Npvdb__V1__InfoRequest *m = npvdb__v1__info_request__unpack(NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "malformed request (%zu bytes)", len);
    npvdb__v1__info_request__free_unpacked(m, NULL);
    return NPVDB_OK;
}

npvdb_code codec_decode_health(const uint8_t *buf, size_t len, char *service,
                               size_t cap, npvdb_error *err)
{
    Grpc__Health__V1__HealthCheckRequest *m =
        grpc__health__v1__health_check_request__unpack(NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "malformed HealthCheckRequest");
    const char *s = m->service ? m->service : "";
    size_t n = strlen(s);
    npvdb_code rc = NPVDB_OK;
    if (n >= cap)
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "service name of %zu bytes is too long", n);
    else
        memcpy(service, s, n + 1);
    grpc__health__v1__health_check_request__free_unpacked(m, NULL);
    return rc;
}
