/*
 * codec.c -- request bytes -> validated request structs (see codec.h).
 *
 * Everything from the network is distrusted: sizes are checked before any
 * read, multiplications are checked for overflow, and keys are checked on the
 * wire because protobuf-c copies a string with an embedded NUL as a shorter C
 * string, which would silently write under a different key.
 */
#include "codec.h"
#include "codec_wire.h"

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

/* ---- collection names ------------------------------------------------ */

static npvdb_code set_name(const uint8_t *p, size_t n, codec_name *out,
                           npvdb_error *err)
{
    if (n > CODEC_MAX_NAME)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "collection name of %zu bytes is over %d", n,
                               CODEC_MAX_NAME);
    memcpy(out->s, p, n);
    out->s[n] = 0;
    out->len = n;
    return NPVDB_OK;
}

/* Reads the string field `field` of a serialized message into *out with
 * its wire length (protobuf-c would cut it at a NUL); the last occurrence
 * wins, as in protobuf. Absent: "". */
static npvdb_code wire_name(const uint8_t *buf, size_t len, unsigned field,
                            const char *what, codec_name *out, npvdb_error *err)
{
    size_t pos = 0;
    wire_item it, last = {0};
    int seen = 0;
    out->s[0] = 0;
    out->len = 0;
    while (pos < len) {
        if (wire_next(buf, len, &pos, &it))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed %s (%zu bytes)", what, len);
        if (it.field != field) continue;
        if (it.wt != WT_LEN)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed %s (collection field)", what);
        last = it;
        seen = 1;
    }
    return seen ? set_name(last.p, last.len, out, err) : NPVDB_OK;
}

/* ---- vectors ------------------------------------------------------------- */

/* Index of the first non-finite value of f[0..n), or n. Checks a block at
 * a time with a branch-free test (exponent bits all ones) the compiler can
 * vectorise, and looks closer only at a block that failed. */
static size_t first_nonfinite(const float *f, size_t n)
{
    enum { BLOCK = 1024 };
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        uint32_t bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, &f[b + i], sizeof u);
            bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
        }
        if (!bad) continue;
        for (size_t i = 0; i < m; i++)
            if (!isfinite(f[b + i])) return b + i;
    }
    return n;
}

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
    size_t bad = first_nonfinite(f, rows * dim);
    if (bad < rows * dim) {
        free(f);
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s %zu has a NaN or Inf at component %zu", what,
                               bad / dim, bad % dim);
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
    if (rc == NPVDB_OK)
        rc = wire_name(buf, len, 7, "InitRequest", &out->collection, err);
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

/* Checks that `b` holds exactly rows x dim floats, in place: protobuf-c
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
    return NPVDB_OK; /* values (NaN, Inf, norms) are the engine's to check */
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
    if (rc == NPVDB_OK)
        rc = wire_name(buf, len, 3, "InsertRequest", &out->collection, err);
    if (rc == NPVDB_OK)
        rc = codec_decode_payloads(buf, len, out->n, &out->payloads, err);
    if (rc != NPVDB_OK) codec_insert_free(out);
    return rc;
}

npvdb_code codec_insert_collection(const uint8_t *buf, size_t len,
                                   codec_name *out, npvdb_error *err)
{
    return wire_name(buf, len, 3, "InsertRequest", out, err);
}

void codec_insert_free(codec_insert *r)
{
    if (!r) return;
    codec_payloads_free(r->payloads, r->n);
    if (r->msg_) npvdb__v1__insert_request__free_unpacked(r->msg_, NULL);
    memset(r, 0, sizeof *r);
}

/* ---- GetClosest and Search ---------------------------------------------- */

/* GetClosestRequest and SearchRequest share field numbers and meaning, so
 * one parser reads both. It walks the wire format itself instead of calling
 * protobuf-c's unpack: a request of 10,000 queries is 5 MB, and unpack
 * would first copy the bytes field whole, then copy_rows again. Here the
 * queries are copied once, straight from the received slices (which need
 * not be contiguous) into the aligned array the engine reads. */
enum {
    Q_QUERIES = 1,
    Q_K = 2,
    Q_NPROBE = 3,
    Q_DIM = 4,
    Q_COLLECTION = 5,
    Q_FILTER = 6,
    Q_WITH_PAYLOAD = 7
};

/* A cursor over the message's spans. */
typedef struct span_reader {
    const codec_span *s;
    size_t n, i, off; /* span i, offset off inside it */
} span_reader;

/* Moves to the next non-empty span when the current one is used up; 0 if
 * a byte is available. */
static int sr_ready(span_reader *r)
{
    while (r->i < r->n && r->off == r->s[r->i].len) {
        r->i++;
        r->off = 0;
    }
    return r->i < r->n ? 0 : -1;
}

static int sr_at_end(span_reader *r)
{
    return sr_ready(r) != 0;
}

static int sr_varint(span_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (sr_ready(r)) return -1;
        uint8_t b = r->s[r->i].data[r->off++];
        if (shift < 64) v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Skips n bytes; -1 when fewer are left. */
static int sr_skip(span_reader *r, uint64_t n)
{
    while (n > 0) {
        if (sr_ready(r)) return -1;
        size_t left = r->s[r->i].len - r->off;
        size_t step = n < left ? (size_t)n : left;
        r->off += step;
        n -= step;
    }
    return 0;
}

static int sr_skip_field(span_reader *r, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case WT_VARINT:
        return sr_varint(r, &v);
    case WT_I64:
        return sr_skip(r, 8);
    case WT_I32:
        return sr_skip(r, 4);
    case WT_LEN:
        return sr_varint(r, &v) || sr_skip(r, v);
    default: /* groups (3, 4) are not used by proto3 */
        return -1;
    }
}

/* Copies n bytes at the reader into dst (the caller checked they exist). */
static void sr_copy(span_reader *r, uint8_t *dst, size_t n)
{
    size_t done = 0;
    while (done < n && !sr_ready(r)) {
        size_t left = r->s[r->i].len - r->off, want = n - done;
        size_t step = want < left ? want : left;
        memcpy(dst + done, r->s[r->i].data + r->off, step);
        r->off += step;
        done += step;
    }
}

/* Bytes left from the reader to the end of the message. */
static size_t sr_left(const span_reader *r)
{
    size_t n = 0;
    for (size_t i = r->i; i < r->n; i++)
        n += r->s[i].len - (i == r->i ? r->off : 0);
    return n;
}

static npvdb_code q_malformed(const char *what, size_t total, npvdb_error *err)
{
    return npvdb_set_error(err, NPVDB_EINVAL, "malformed %s (%zu bytes)", what,
                           total);
}

/* Field 6: the Filter's bytes, read in place when they lie in one span and
 * joined into a copy only when they straddle spans. */
static npvdb_code query_filter(span_reader *r, uint64_t v, codec_query *q,
                               npvdb_error *err)
{
    if (q->filter.msg_)
        return npvdb_set_error(err, NPVDB_EINVAL, "filter is given twice");
    if (sr_ready(r) && v > 0) return NPVDB_EINVAL;
    uint8_t *joined = NULL;
    const uint8_t *p = v ? r->s[r->i].data + r->off : (const uint8_t *)"";
    if (v > 0 && v > r->s[r->i].len - r->off) {
        joined = malloc((size_t)v);
        if (!joined)
            return npvdb_set_error(err, NPVDB_ENOMEM,
                                   "out of memory for a filter of %llu bytes",
                                   (unsigned long long)v);
        sr_copy(r, joined, (size_t)v);
        p = joined;
    } else if (v > 0) {
        r->off += (size_t)v;
    }
    npvdb_code rc = codec_decode_filter(p, (size_t)v, &q->filter, err);
    free(joined);
    return rc;
}

/* One field; NPVDB_EINVAL without a message (the caller names the message)
 * when malformed, or an error with its message. A scalar that appears twice
 * keeps its last value, as protobuf decoders do. */
static npvdb_code query_field(span_reader *r, codec_query *q, npvdb_error *err)
{
    uint64_t tag, v;
    if (sr_varint(r, &tag) || (tag >> 3) == 0) return NPVDB_EINVAL;
    uint64_t field = tag >> 3;
    unsigned wt = (unsigned)(tag & 7);
    if ((field == Q_QUERIES || field == Q_COLLECTION || field == Q_FILTER) &&
        wt == WT_LEN) {
        if (sr_varint(r, &v) || v > SIZE_MAX || v > sr_left(r))
            return NPVDB_EINVAL;
        if (field == Q_QUERIES) {
            q->at_.spans = r->s;
            q->at_.n = r->n;
            q->at_.i = r->i;
            q->at_.off = r->off;
            q->qlen_ = (size_t)v;
            return sr_skip(r, v) ? NPVDB_EINVAL : NPVDB_OK;
        }
        if (field == Q_FILTER) return query_filter(r, v, q, err);
        if (v > CODEC_MAX_NAME)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "collection name of %llu bytes is over %d",
                                   (unsigned long long)v, CODEC_MAX_NAME);
        sr_copy(r, (uint8_t *)q->collection.s, (size_t)v);
        q->collection.s[v] = 0;
        q->collection.len = (size_t)v;
        return NPVDB_OK;
    }
    if (((field >= Q_K && field <= Q_DIM) || field == Q_WITH_PAYLOAD) &&
        wt == WT_VARINT) {
        if (sr_varint(r, &v)) return NPVDB_EINVAL;
        uint32_t u = (uint32_t)v; /* uint32 keeps the low bits */
        if (field == Q_K) q->k = u;
        if (field == Q_NPROBE) q->nprobe = u;
        if (field == Q_DIM) q->dim_ = u;
        if (field == Q_WITH_PAYLOAD) q->with_payload = v != 0;
        return NPVDB_OK;
    }
    if (field >= Q_QUERIES && field <= Q_WITH_PAYLOAD)
        return NPVDB_EINVAL; /* wrong type */
    return sr_skip_field(r, wt) ? NPVDB_EINVAL : NPVDB_OK;
}

/* Copies the queries (rows x dim floats, checked length) out of the spans
 * into a new aligned array. */
static npvdb_code copy_queries(const codec_query *m, size_t rows, uint32_t dim,
                               float **out, npvdb_error *err)
{
    float *q = malloc(m->qlen_);
    if (!q)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory copying %zu bytes of queries",
                               m->qlen_);
    span_reader r = {m->at_.spans, m->at_.n, m->at_.i, m->at_.off};
    sr_copy(&r, (uint8_t *)q, m->qlen_);
    /* NaN and Inf are the engine's to refuse (npvdb_search_ex), in the
     * same pass that normalises the queries. */
    *out = q;
    return NPVDB_OK;
}

npvdb_code codec_query_load(codec_query *m, uint32_t dim, npvdb_error *err)
{
    npvdb_code rc = check_dim(dim, err);
    if (rc != NPVDB_OK) return rc;
    /* First: with the wrong width every other check would mislead. */
    if (m->dim_ != 0 && m->dim_ != dim)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "query dim %u does not match the collection's dim %u", m->dim_,
            dim);
    if (m->k == 0 || m->k > NPVDB_MAX_K)
        return npvdb_set_error(err, NPVDB_EINVAL, "k must be 1..%d (got %u)",
                               NPVDB_MAX_K, m->k);
    if (m->qlen_ == 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "queries is empty: send q x dim %u "
                               "float32 values",
                               dim);
    rc = count_rows(m->qlen_, dim, "queries", &m->nq, err);
    if (rc != NPVDB_OK) return rc;
    return copy_queries(m, m->nq, dim, &m->queries, err);
}

npvdb_code codec_query_parse_spans(const char *what, const codec_span *spans,
                                   size_t n, codec_query *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += spans[i].len;
    span_reader r = {spans, n, 0, 0};
    while (!sr_at_end(&r)) {
        npvdb_error e = {0};
        npvdb_code rc = query_field(&r, out, &e);
        if (rc != NPVDB_OK) {
            codec_query_free(out);
            if (e.msg[0]) {
                *err = e;
                return rc;
            }
            return q_malformed(what, total, err);
        }
    }
    out->parsed_ = 1;
    return NPVDB_OK;
}

/* Parses and loads a GetClosestRequest or a SearchRequest (named `what` in
 * errors) held in spans[0..n). */
static npvdb_code decode_query_spans(const char *what, const codec_span *spans,
                                     size_t n, uint32_t dim, codec_query *out,
                                     npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_code rc = check_dim(dim, err);
    if (rc == NPVDB_OK) rc = codec_query_parse_spans(what, spans, n, out, err);
    if (rc == NPVDB_OK) rc = codec_query_load(out, dim, err);
    if (rc != NPVDB_OK) codec_query_free(out);
    return rc;
}

npvdb_code codec_decode_query_spans(const codec_span *spans, size_t n,
                                    uint32_t dim, codec_query *out,
                                    npvdb_error *err)
{
    return decode_query_spans("GetClosestRequest", spans, n, dim, out, err);
}

npvdb_code codec_decode_search_spans(const codec_span *spans, size_t n,
                                     uint32_t dim, codec_query *out,
                                     npvdb_error *err)
{
    return decode_query_spans("SearchRequest", spans, n, dim, out, err);
}

npvdb_code codec_decode_query(const uint8_t *buf, size_t len, uint32_t dim,
                              codec_query *out, npvdb_error *err)
{
    codec_span s = {buf, len};
    return codec_decode_query_spans(&s, 1, dim, out, err);
}

npvdb_code codec_decode_search(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_query *out, npvdb_error *err)
{
    codec_span s = {buf, len};
    return codec_decode_search_spans(&s, 1, dim, out, err);
}

void codec_query_free(codec_query *r)
{
    if (!r) return;
    free(r->queries);
    codec_filter_free(&r->filter);
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
        out->with_payload = r->with_payload != 0;
    }
    npvdb_code rc = check_wire_keys(buf, len, KEYS_FIELD, err);
    /* Both have `string collection = 2`. */
    if (rc == NPVDB_OK)
        rc = wire_name(buf, len, 2, d->short_name, &out->collection, err);
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

/* ---- replies ------------------------------------------------------------- */

/* The search replies are written by hand, straight from the engine's
 * results: protobuf-c would need the keys in an array of its own and runs
 * strlen over each one twice (size, then pack), while the results already
 * know every key's length. The bytes are exactly what protobuf-c packs for
 * the same message (fields in number order, repeated numbers packed, proto3
 * defaults left out); test_codec compares the two. */

/* Bytes of the keys of row `row`, each as a length-delimited field. */
static size_t keys_size(const npvdb_results *r, size_t row)
{
    size_t n = 0, at = row * r->k;
    for (uint32_t j = 0; j < r->counts[row]; j++)
        n += len_field_size(r->key_lens[at + j]);
    return n;
}

static uint8_t *put_keys(uint8_t *p, const npvdb_results *r, size_t row,
                         unsigned field)
{
    size_t at = row * r->k;
    for (uint32_t j = 0; j < r->counts[row]; j++) {
        uint32_t len = r->key_lens[at + j];
        *p++ = wire_tag(field, WT_LEN);
        p = put_varint(p, len);
        memcpy(p, r->keys[at + j], len);
        p += len;
    }
    return p;
}

static size_t counts_payload(const npvdb_results *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nq; i++)
        n += varint_size(r->counts[i]);
    return n;
}

/* Row `row`'s payloads (r->payloads set) as repeated field `field`. */
static size_t row_payloads_size(const npvdb_results *r, size_t row)
{
    if (!r->payloads) return 0;
    return codec_payloads_field_size(r->payloads + row * r->k, r->counts[row]);
}

static uint8_t *put_row_payloads(uint8_t *p, const npvdb_results *r, size_t row,
                                 unsigned field)
{
    if (!r->payloads) return p;
    return codec_payloads_field_put(r->payloads + row * r->k, r->counts[row],
                                    field, p);
}

size_t codec_search_reply_size(const npvdb_results *r)
{
    size_t n = 1 + varint_size(r->k);
    n += len_field_size(counts_payload(r));
    for (size_t i = 0; i < r->nq; i++)
        n += keys_size(r, i);
    n += len_field_size(r->nq * r->k * sizeof(float));
    for (size_t i = 0; i < r->nq; i++)
        n += row_payloads_size(r, i);
    return n;
}

size_t codec_search_reply_encode(npvdb_results *r, uint8_t *buf)
{
    uint8_t *p = buf;
    *p++ = wire_tag(1, WT_VARINT);
    p = put_varint(p, r->k);
    *p++ = wire_tag(2, WT_LEN);
    p = put_varint(p, counts_payload(r));
    for (size_t i = 0; i < r->nq; i++)
        p = put_varint(p, r->counts[i]);
    for (size_t i = 0; i < r->nq; i++)
        p = put_keys(p, r, i, 3);
    /* The contract pads each row's distances past counts[i] with +inf. */
    for (size_t i = 0; i < r->nq; i++)
        for (uint32_t j = r->counts[i]; j < r->k; j++)
            r->distances[i * r->k + j] = INFINITY;
    size_t dbytes = r->nq * r->k * sizeof(float);
    *p++ = wire_tag(4, WT_LEN);
    p = put_varint(p, dbytes);
    memcpy(p, r->distances, dbytes);
    p += dbytes;
    for (size_t i = 0; i < r->nq; i++)
        p = put_row_payloads(p, r, i, 5);
    return (size_t)(p - buf);
}

size_t codec_closest_reply_size(const npvdb_results *r, size_t row,
                                uint32_t query_index)
{
    size_t n = query_index ? 1 + varint_size(query_index) : 0;
    n += keys_size(r, row);
    if (r->counts[row]) n += len_field_size(r->counts[row] * sizeof(float));
    return n + row_payloads_size(r, row);
}

size_t codec_closest_reply_encode(const npvdb_results *r, size_t row,
                                  uint32_t query_index, uint8_t *buf)
{
    uint8_t *p = buf;
    if (query_index) {
        *p++ = wire_tag(1, WT_VARINT);
        p = put_varint(p, query_index);
    }
    p = put_keys(p, r, row, 2);
    uint32_t c = r->counts[row];
    if (c) {
        *p++ = wire_tag(3, WT_LEN);
        p = put_varint(p, c * sizeof(float));
        memcpy(p, r->distances + row * r->k, c * sizeof(float));
        p += c * sizeof(float);
    }
    p = put_row_payloads(p, r, row, 4);
    return (size_t)(p - buf);
}

/* ---- ListCollections, Info, Snapshot, DropCollection, health ------------ */

npvdb_code codec_decode_empty(const uint8_t *buf, size_t len, npvdb_error *err)
{
    /* Unpacking checks the framing of any unknown fields. */
    Npvdb__V1__ListCollectionsRequest *m =
        npvdb__v1__list_collections_request__unpack(NULL, len, buf);
    if (!m)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "malformed request (%zu bytes)", len);
    npvdb__v1__list_collections_request__free_unpacked(m, NULL);
    return NPVDB_OK;
}

npvdb_code codec_decode_collection(const uint8_t *buf, size_t len,
                                   codec_name *out, npvdb_error *err)
{
    return wire_name(buf, len, 1, "request", out, err);
}

/* ---- Count and Scroll ------------------------------------------------------
 */

/* Both are read by hand, so the filter is bounded before protobuf-c sees
 * it (unpacking the whole request would unpack the filter unchecked). */
enum {
    S_COLLECTION = 1,
    S_FILTER = 2,
    S_LIMIT = 3,
    S_CURSOR = 4,
    S_WITH_VECTORS = 5,
    S_WITH_PAYLOAD = 6,
    S_N = 7
};

/* The last occurrence of fields 1..S_N-1 of a message, by wire type
 * `want[field]`; the filter field must appear at most once. */
static npvdb_code scan_fields(const uint8_t *buf, size_t len, const char *what,
                              const unsigned *want, unsigned filter_field,
                              wire_item *f, npvdb_error *err)
{
    size_t pos = 0;
    wire_item it;
    memset(f, 0, S_N * sizeof *f);
    while (pos < len) {
        if (wire_next(buf, len, &pos, &it))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed %s (%zu bytes)", what, len);
        if (it.field >= S_N || want[it.field] == 9) continue;
        if (it.wt != want[it.field])
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed %s (field %u has wire type %u)",
                                   what, (unsigned)it.field, it.wt);
        if (it.field == filter_field && f[it.field].field)
            return npvdb_set_error(err, NPVDB_EINVAL, "filter is given twice");
        f[it.field] = it;
    }
    return NPVDB_OK;
}

/* f->field is set when the field was present. */
static npvdb_code take_filter(const wire_item *f, codec_filter *out,
                              npvdb_error *err)
{
    if (!f->field) return NPVDB_OK;
    return codec_decode_filter(f->len ? f->p : (const uint8_t *)"", f->len, out,
                               err);
}

static npvdb_code take_name(const wire_item *f, codec_name *out,
                            npvdb_error *err)
{
    out->s[0] = 0;
    out->len = 0;
    return f->field ? set_name(f->p, f->len, out, err) : NPVDB_OK;
}

npvdb_code codec_decode_count(const uint8_t *buf, size_t len, codec_count *out,
                              npvdb_error *err)
{
    static const unsigned want[S_N] = {9, WT_LEN, WT_LEN, 9, 9, 9, 9};
    wire_item f[S_N];
    memset(out, 0, sizeof *out);
    npvdb_code rc =
        scan_fields(buf, len, "CountRequest", want, S_FILTER, f, err);
    if (rc == NPVDB_OK) rc = take_name(&f[S_COLLECTION], &out->collection, err);
    if (rc == NPVDB_OK) rc = take_filter(&f[S_FILTER], &out->filter, err);
    if (rc != NPVDB_OK) codec_count_free(out);
    return rc;
}

void codec_count_free(codec_count *r)
{
    if (!r) return;
    codec_filter_free(&r->filter);
}

/* The cursor: "npc1", the engine cursor (u64 LE), then a check (FNV-1a of
 * the first 12 bytes) so a corrupted or made-up cursor is refused instead
 * of silently starting somewhere. */
static uint32_t cursor_check(const uint8_t *b)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 12; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

void codec_scroll_cursor(uint64_t cursor, uint8_t out[CODEC_CURSOR_LEN])
{
    memcpy(out, "npc1", 4);
    memcpy(out + 4, &cursor, 8);
    uint32_t h = cursor_check(out);
    memcpy(out + 12, &h, 4);
}

static npvdb_code read_cursor(const wire_item *f, uint64_t *out,
                              npvdb_error *err)
{
    *out = 0;
    if (!f->field || f->len == 0) return NPVDB_OK;
    uint32_t h;
    if (f->len == CODEC_CURSOR_LEN && memcmp(f->p, "npc1", 4) == 0) {
        memcpy(&h, f->p + 12, 4);
        if (h == cursor_check(f->p)) {
            memcpy(out, f->p + 4, 8);
            return NPVDB_OK;
        }
    }
    return npvdb_set_error(err, NPVDB_EINVAL,
                           "cursor of %zu bytes is not a next_cursor this "
                           "server returned",
                           f->len);
}

npvdb_code codec_decode_scroll(const uint8_t *buf, size_t len,
                               codec_scroll *out, npvdb_error *err)
{
    static const unsigned want[S_N] = {9,      WT_LEN,    WT_LEN,   WT_VARINT,
                                       WT_LEN, WT_VARINT, WT_VARINT};
    wire_item f[S_N];
    memset(out, 0, sizeof *out);
    npvdb_code rc =
        scan_fields(buf, len, "ScrollRequest", want, S_FILTER, f, err);
    if (rc == NPVDB_OK) rc = take_name(&f[S_COLLECTION], &out->collection, err);
    if (rc == NPVDB_OK) rc = read_cursor(&f[S_CURSOR], &out->cursor, err);
    if (rc == NPVDB_OK) {
        uint32_t limit = (uint32_t)f[S_LIMIT].v;
        if (limit > NPVDB_MAX_K)
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "limit must be 0..%d (got %u; 0 means %d)",
                                 NPVDB_MAX_K, limit, CODEC_SCROLL_DEFAULT);
        out->limit = limit ? limit : CODEC_SCROLL_DEFAULT;
    }
    out->with_vectors = f[S_WITH_VECTORS].v != 0;
    out->with_payload = f[S_WITH_PAYLOAD].v != 0;
    if (rc == NPVDB_OK) rc = take_filter(&f[S_FILTER], &out->filter, err);
    if (rc != NPVDB_OK) codec_scroll_free(out);
    return rc;
}

void codec_scroll_free(codec_scroll *r)
{
    if (!r) return;
    codec_filter_free(&r->filter);
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
