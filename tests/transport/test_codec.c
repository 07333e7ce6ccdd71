/*
 * test_codec.c -- the request decoders: valid requests decode to exactly the
 * values sent (also from unaligned buffers), and every kind of bad input is
 * an NPVDB_EINVAL naming what was wrong, never a crash or a silent change.
 */
#include "codec.h"

#include "grpc/health/v1/health.pb-c.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A packed message in a buffer that starts one byte past malloc's
 * alignment, so float fields inside it are misaligned. */
typedef struct packed {
    uint8_t *base;
    uint8_t *buf;
    size_t len;
} packed;

static packed pack(const ProtobufCMessage *m)
{
    packed p;
    p.len = protobuf_c_message_get_packed_size(m);
    p.base = malloc(p.len + 1);
    assert_non_null(p.base);
    p.buf = p.base + 1;
    protobuf_c_message_pack(m, p.buf);
    return p;
}

static void packed_free(packed *p)
{
    free(p->base);
}

static void assert_msg_has(const npvdb_error *err, const char *needle)
{
    if (!strstr(err->msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* ---- Init ---- */

static void test_init_valid(void **state)
{
    float train[6] = {1, 2, 3, 4, 5, 6};
    Npvdb__V1__InitRequest m = NPVDB__V1__INIT_REQUEST__INIT;
    m.dim = 2;
    m.metric = NPVDB__V1__METRIC__L2;
    m.n_shards = 7;
    m.default_nprobe = 3;
    m.replace = 1;
    m.train_vectors.data = (uint8_t *)train;
    m.train_vectors.len = sizeof train;
    packed p = pack(&m.base);
    codec_init r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_init(p.buf, p.len, &r, &err), NPVDB_OK);
    assert_int_equal(r.cfg.dim, 2);
    assert_int_equal(r.cfg.metric, NPVDB_METRIC_L2);
    assert_int_equal(r.cfg.n_shards, 7);
    assert_int_equal(r.cfg.default_nprobe, 3);
    assert_true(r.replace);
    assert_int_equal(r.n_train, 3);
    assert_memory_equal(r.train, train, sizeof train);
    codec_init_free(&r);
    packed_free(&p);
}

static void test_init_metric_default_is_cosine(void **state)
{
    Npvdb__V1__InitRequest m = NPVDB__V1__INIT_REQUEST__INIT;
    m.dim = 8;
    packed p = pack(&m.base);
    codec_init r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_init(p.buf, p.len, &r, &err), NPVDB_OK);
    assert_int_equal(r.cfg.metric, NPVDB_METRIC_COSINE);
    assert_int_equal(r.n_train, 0);
    assert_null(r.train);
    assert_false(r.replace);
    codec_init_free(&r);
    packed_free(&p);
}

/* Decodes an InitRequest expected to fail with `needle` in its message. */
static void expect_init_error(const Npvdb__V1__InitRequest *m,
                              const char *needle)
{
    packed p = pack(&m->base);
    codec_init r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_init(p.buf, p.len, &r, &err), NPVDB_EINVAL);
    assert_int_equal(err.code, NPVDB_EINVAL);
    assert_msg_has(&err, needle);
    assert_null(r.train);
    codec_init_free(&r);
    packed_free(&p);
}

static void test_init_errors(void **state)
{
    float train[5] = {1, 2, 3, 4, NAN};
    Npvdb__V1__InitRequest m = NPVDB__V1__INIT_REQUEST__INIT;
    expect_init_error(&m, "dim must be 1..4096 (got 0)");
    m.dim = NPVDB_MAX_DIM + 1;
    expect_init_error(&m, "dim must be");
    m.dim = 2;
    m.metric = 9;
    expect_init_error(&m, "unknown metric 9");
    m.metric = NPVDB__V1__METRIC__COSINE;
    m.n_shards = NPVDB_MAX_SHARDS + 1;
    expect_init_error(&m, "n_shards");
    m.n_shards = 0;
    m.train_vectors.data = (uint8_t *)train;
    m.train_vectors.len = 5 * sizeof(float); /* 2.5 rows */
    expect_init_error(&m, "not a multiple of dim 2");
    m.train_vectors.len = 4 * sizeof(float);
    train[3] = INFINITY;
    expect_init_error(&m, "training vector 1 has a NaN or Inf at component 1");
}

static void test_malformed_bytes(void **state)
{
    /* A length-delimited field claiming more bytes than there are. */
    const uint8_t bad[] = {0x0a, 0x7f, 'a'};
    npvdb_error err = {0};
    codec_init ri;
    codec_insert rn;
    codec_query rq;
    codec_keys rk;
    char svc[16];
    assert_int_equal(codec_decode_init(bad, sizeof bad, &ri, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed InitRequest");
    assert_int_equal(codec_decode_insert(bad, sizeof bad, 4, &rn, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed InsertRequest");
    assert_int_equal(codec_decode_query(bad, sizeof bad, 4, &rq, &err),
                     NPVDB_EINVAL);
    assert_int_equal(codec_decode_delete(bad, sizeof bad, &rk, &err),
                     NPVDB_EINVAL);
    assert_int_equal(codec_decode_get(bad, sizeof bad, &rk, &err),
                     NPVDB_EINVAL);
    assert_int_equal(codec_decode_empty(bad, sizeof bad, &err), NPVDB_EINVAL);
    assert_int_equal(
        codec_decode_health(bad, sizeof bad, svc, sizeof svc, &err),
        NPVDB_EINVAL);
}

/* ---- Insert ---- */

static void test_insert_valid(void **state)
{
    float rows[6] = {0.5f, -1, 2, 3, 4, 1e30f};
    char *keys[2] = {"alpha", "\xc3\xa9t\xc3\xa9"}; /* "été" */
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 2;
    m.keys = keys;
    m.vectors.data = (uint8_t *)rows;
    m.vectors.len = sizeof rows;
    packed p = pack(&m.base);
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(p.buf, p.len, 3, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.keys[0], "alpha");
    assert_string_equal(r.keys[1], keys[1]);
    assert_memory_equal(r.rows, rows, sizeof rows);
    assert_int_equal((uintptr_t)r.rows % sizeof(float), 0);
    codec_insert_free(&r);
    packed_free(&p);
}

static void test_insert_empty_message(void **state)
{
    codec_insert r;
    npvdb_error err = {0};
    const uint8_t none[1] = {0};
    assert_int_equal(codec_decode_insert(none, 0, 3, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 0);
    assert_null(r.rows);
    codec_insert_free(&r);
}

static void expect_insert_error(const uint8_t *buf, size_t len, uint32_t dim,
                                const char *needle)
{
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(buf, len, dim, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, needle);
    assert_null(r.rows);
    assert_null(r.msg_);
}

static void test_insert_size_mismatch(void **state)
{
    float rows[5] = {0};
    char *keys[2] = {"a", "b"};
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 2;
    m.keys = keys;
    m.vectors.data = (uint8_t *)rows;
    m.vectors.len = sizeof rows;
    packed p = pack(&m.base);
    expect_insert_error(
        p.buf, p.len, 3,
        "vectors is 20 bytes, expected 2 rows x dim 3 x 4 = 24");
    /* Keys without vectors, and a bad dimension from the caller. */
    m.vectors.len = 0;
    packed q = pack(&m.base);
    expect_insert_error(q.buf, q.len, 3, "vectors is 0 bytes");
    expect_insert_error(q.buf, q.len, 0, "dim must be");
    packed_free(&p);
    packed_free(&q);
}

static void test_insert_nan(void **state)
{
    float rows[4] = {1, 2, 3, NAN};
    char *keys[2] = {"a", "b"};
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 2;
    m.keys = keys;
    m.vectors.data = (uint8_t *)rows;
    m.vectors.len = sizeof rows;
    packed p = pack(&m.base);
    expect_insert_error(p.buf, p.len, 2,
                        "vector 1 has a NaN or Inf at component 1");
    packed_free(&p);
}

/* InsertRequest {keys: KEY, vectors: 1.0f} for dim 1, built by hand so the
 * key can hold any bytes (protobuf-c packs C strings). */
static size_t insert_wire(uint8_t *out, const char *key, size_t klen)
{
    size_t n = 0;
    out[n++] = 0x0a; /* field 1, LEN */
    out[n++] = (uint8_t)klen;
    memcpy(out + n, key, klen);
    n += klen;
    const uint8_t one[] = {0x12, 0x04, 0x00, 0x00, 0x80, 0x3f};
    memcpy(out + n, one, sizeof one);
    return n + sizeof one;
}

static void test_insert_bad_keys(void **state)
{
    uint8_t wire[64];
    size_t n = insert_wire(wire, "a\0b", 3);
    expect_insert_error(wire, n, 1, "key 0 contains a NUL byte at offset 1");
    n = insert_wire(wire, "", 0);
    expect_insert_error(wire, n, 1, "key 0 is empty");
    n = insert_wire(wire, "\xff", 1);
    expect_insert_error(wire, n, 1, "key 0 is not valid UTF-8");
    n = insert_wire(wire, "ok", 2);
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(wire, n, 1, &r, &err), NPVDB_OK);
    assert_string_equal(r.keys[0], "ok");
    assert_true(r.rows[0] == 1.0f);
    codec_insert_free(&r);
}

static void test_insert_long_key(void **state)
{
    char *big = malloc(NPVDB_MAX_KEY_LEN + 2);
    assert_non_null(big);
    memset(big, 'k', NPVDB_MAX_KEY_LEN + 1);
    big[NPVDB_MAX_KEY_LEN + 1] = 0;
    char *keys[2] = {"fine", big};
    float rows[2] = {1, 2};
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 2;
    m.keys = keys;
    m.vectors.data = (uint8_t *)rows;
    m.vectors.len = sizeof rows;
    packed p = pack(&m.base);
    expect_insert_error(p.buf, p.len, 1, "key 1 is 1025 bytes, over the 1024");
    big[NPVDB_MAX_KEY_LEN] = 0; /* exactly at the limit: fine */
    packed q = pack(&m.base);
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(q.buf, q.len, 1, &r, &err), NPVDB_OK);
    codec_insert_free(&r);
    packed_free(&p);
    packed_free(&q);
    free(big);
}

/* ---- keys ---- */

static void test_check_key_utf8(void **state)
{
    npvdb_error err = {0};
    const char *good[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(
            codec_check_key((const uint8_t *)good[i], strlen(good[i]), i, &err),
            NPVDB_OK);
    const char *bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\x80",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xe2\x82",         /* truncated */
        "\x80",             /* lone continuation */
    };
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(
            codec_check_key((const uint8_t *)bad[i], strlen(bad[i]), 4, &err),
            NPVDB_EINVAL);
        assert_msg_has(&err, "key 4 is not valid UTF-8");
    }
}

/* ---- GetClosest and Search (one shared validation) ---- */

/* The two request kinds share field numbers and validation; every query test
 * runs through both decoders. */
enum { KIND_CLOSEST, KIND_SEARCH, N_KINDS };

typedef npvdb_code (*query_decoder)(const uint8_t *, size_t, uint32_t,
                                    codec_query *, npvdb_error *);

static const query_decoder decoders[N_KINDS] = {codec_decode_query,
                                                codec_decode_search};

/* A packed GetClosestRequest or SearchRequest with nprobe 5. */
static packed query_msg_dim(int kind, const float *q, size_t nfloats,
                            uint32_t k, uint32_t dim_field)
{
    if (kind == KIND_SEARCH) {
        Npvdb__V1__SearchRequest m = NPVDB__V1__SEARCH_REQUEST__INIT;
        m.queries.data = (uint8_t *)q;
        m.queries.len = nfloats * sizeof(float);
        m.k = k;
        m.nprobe = 5;
        m.dim = dim_field;
        return pack(&m.base);
    }
    Npvdb__V1__GetClosestRequest m = NPVDB__V1__GET_CLOSEST_REQUEST__INIT;
    m.queries.data = (uint8_t *)q;
    m.queries.len = nfloats * sizeof(float);
    m.k = k;
    m.nprobe = 5;
    m.dim = dim_field;
    return pack(&m.base);
}

static void expect_query_ok(int kind, uint32_t dim_field)
{
    float q[6] = {1, 2, 3, 4, 5, 6};
    packed p = query_msg_dim(kind, q, 6, 10, dim_field);
    codec_query r;
    npvdb_error err = {0};
    assert_int_equal(decoders[kind](p.buf, p.len, 3, &r, &err), NPVDB_OK);
    assert_int_equal(r.nq, 2);
    assert_int_equal(r.k, 10);
    assert_int_equal(r.nprobe, 5);
    assert_memory_equal(r.queries, q, sizeof q);
    codec_query_free(&r);
    packed_free(&p);
}

static void test_query_valid(void **state)
{
    for (int kind = 0; kind < N_KINDS; kind++) {
        expect_query_ok(kind, 0); /* dim 0: unchecked */
        expect_query_ok(kind, 3); /* dim equal to the collection's */
    }
}

static void expect_query_error_dim(int kind, const float *q, size_t nfloats,
                                   uint32_t k, uint32_t dim_field, uint32_t dim,
                                   const char *needle)
{
    packed p = query_msg_dim(kind, q, nfloats, k, dim_field);
    codec_query r;
    npvdb_error err = {0};
    assert_int_equal(decoders[kind](p.buf, p.len, dim, &r, &err), NPVDB_EINVAL);
    assert_int_equal(err.code, NPVDB_EINVAL);
    assert_msg_has(&err, needle);
    assert_null(r.queries);
    assert_int_equal(r.nq, 0);
    packed_free(&p);
}

static void expect_query_error(const float *q, size_t nfloats, uint32_t k,
                               uint32_t dim, const char *needle)
{
    for (int kind = 0; kind < N_KINDS; kind++)
        expect_query_error_dim(kind, q, nfloats, k, 0, dim, needle);
}

static void test_query_errors(void **state)
{
    float q[6] = {1, 2, 3, 4, 5, INFINITY};
    expect_query_error(q, 3, 0, 3, "k must be 1..16384 (got 0)");
    expect_query_error(q, 3, NPVDB_MAX_K + 1, 3, "k must be 1..16384");
    expect_query_error(q, 0, 5, 3, "queries is empty");
    expect_query_error(q, 4, 5, 3, "not a multiple of dim 3");
    expect_query_error(q, 6, 5, 3, "query 1 has a NaN or Inf at component 2");
}

/* 2 queries of dim 3 have the byte length of 1 query of dim 6 (and of 3 of
 * dim 2): only the dim field tells them apart. */
static void test_query_dim_mismatch(void **state)
{
    float q[6] = {1, 2, 3, 4, 5, 6};
    for (int kind = 0; kind < N_KINDS; kind++) {
        expect_query_error_dim(
            kind, q, 6, 10, 3, 6,
            "query dim 3 does not match the collection's dim 6");
        expect_query_error_dim(
            kind, q, 6, 10, 3, 2,
            "query dim 3 does not match the collection's dim 2");
        /* The dim is named before any other fault (here k = 0). */
        expect_query_error_dim(
            kind, q, 6, 0, 7, 3,
            "query dim 7 does not match the collection's dim 3");
    }
}

/* A SearchRequest is not mistaken for another message and vice versa only by
 * field numbers; the error names the right message type. */
static void test_search_malformed(void **state)
{
    const uint8_t bad[] = {0x0a, 0x7f, 'a'};
    npvdb_error err = {0};
    codec_query r;
    assert_int_equal(codec_decode_search(bad, sizeof bad, 4, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed SearchRequest (3 bytes)");
    assert_int_equal(codec_decode_query(bad, sizeof bad, 4, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed GetClosestRequest (3 bytes)");
    /* The collection's dim is checked before the bytes are looked at. */
    assert_int_equal(codec_decode_search(bad, 0, 0, &r, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "dim must be 1..4096");
}

/* A message decoded from pieces gives exactly what the whole buffer gives,
 * however it is cut: at every byte (fields and varints straddle pieces),
 * with empty pieces in between, and in pieces of one byte. */
static void expect_spans_equal(const packed *p, uint32_t dim, size_t *cuts,
                               size_t ncuts)
{
    codec_span spans[16];
    size_t n = 0, at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : p->len;
        spans[n++] = (codec_span){p->buf + at, end - at};
        if (i < ncuts) spans[n++] = (codec_span){p->buf + end, 0};
        at = end;
    }
    codec_query whole, parts;
    npvdb_error e1 = {0}, e2 = {0};
    npvdb_code r1 = codec_decode_search(p->buf, p->len, dim, &whole, &e1);
    npvdb_code r2 = codec_decode_search_spans(spans, n, dim, &parts, &e2);
    assert_int_equal(r1, r2);
    assert_string_equal(e1.msg, e2.msg);
    assert_int_equal(whole.nq, parts.nq);
    assert_int_equal(whole.k, parts.k);
    assert_int_equal(whole.nprobe, parts.nprobe);
    if (r1 == NPVDB_OK)
        assert_memory_equal(whole.queries, parts.queries,
                            whole.nq * dim * sizeof(float));
    codec_query_free(&whole);
    codec_query_free(&parts);
}

static void test_query_spans(void **state)
{
    /* 300 floats: a queries field whose length varint takes 2 bytes. */
    float q[300];
    for (size_t i = 0; i < 300; i++)
        q[i] = (float)i * 0.5f - 7.0f;
    packed p = query_msg_dim(KIND_SEARCH, q, 300, 300, 3);
    for (size_t cut = 0; cut <= p.len; cut++) {
        size_t cuts[2] = {cut / 2, cut};
        expect_spans_equal(&p, 3, cuts, 2);
    }
    /* One byte a piece (8 pieces of a time: cut the tail on its own). */
    for (size_t start = 0; start + 7 <= p.len; start += 7) {
        size_t cuts[7];
        for (size_t i = 0; i < 7; i++)
            cuts[i] = start + i;
        expect_spans_equal(&p, 3, cuts, 7);
    }
    /* A message cut short inside the queries is malformed either way. */
    codec_span half = {p.buf, p.len / 2};
    codec_query r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_search_spans(&half, 1, 3, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed SearchRequest");
    assert_null(r.queries);
    packed_free(&p);
}

/* A non-finite value past the first check block is found and named. */
static void test_query_nonfinite_late(void **state)
{
    enum { DIM = 8, ROWS = 400 };
    float *q = calloc(DIM * ROWS, sizeof *q);
    assert_non_null(q);
    q[333 * DIM + 5] = NAN;
    q[390 * DIM + 1] = INFINITY;
    for (int kind = 0; kind < N_KINDS; kind++)
        expect_query_error_dim(kind, q, DIM * ROWS, 4, 0, DIM,
                               "query 333 has a NaN or Inf at component 5");
    q[333 * DIM + 5] = -INFINITY;
    expect_query_error(q, DIM * ROWS, 4, DIM,
                       "query 333 has a NaN or Inf at component 5");
    free(q);
}

/* Unknown fields are skipped, a repeated scalar keeps its last value, and
 * a known field with the wrong wire type is malformed. */
static void test_query_wire_variants(void **state)
{
    float q[2] = {1.5f, -2.0f};
    uint8_t msg[64];
    size_t n = 0;
    msg[n++] = 0x10; /* k = 3 */
    msg[n++] = 3;
    msg[n++] = 0x2d; /* field 5, fixed32: unknown */
    memset(msg + n, 0xee, 4);
    n += 4;
    msg[n++] = 0x0a; /* queries: 8 bytes */
    msg[n++] = 8;
    memcpy(msg + n, q, 8);
    n += 8;
    msg[n++] = 0x10; /* k again = 5, wins */
    msg[n++] = 5;
    msg[n++] = 0x18; /* nprobe = 300 (2-byte varint) */
    msg[n++] = 0xac;
    msg[n++] = 0x02;
    codec_query r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_search(msg, n, 2, &r, &err), NPVDB_OK);
    assert_int_equal(r.nq, 1);
    assert_int_equal(r.k, 5);
    assert_int_equal(r.nprobe, 300);
    assert_memory_equal(r.queries, q, sizeof q);
    codec_query_free(&r);
    const uint8_t wrong_type[] = {0x15, 1, 2, 3, 4}; /* k as fixed32 */
    assert_int_equal(
        codec_decode_query(wrong_type, sizeof wrong_type, 2, &r, &err),
        NPVDB_EINVAL);
    assert_msg_has(&err, "malformed GetClosestRequest (5 bytes)");
    const uint8_t group[] = {0x2b}; /* field 5, start group */
    assert_int_equal(codec_decode_query(group, sizeof group, 2, &r, &err),
                     NPVDB_EINVAL);
}

/* ---- replies ---- */

/* Engine-shaped results: 4 queries, k 3, counts 3, 0, 1, 2; keys of 1, 130
 * (a 2-byte length varint) and 5 bytes. */
typedef struct fake_results {
    npvdb_results r;
    uint32_t counts[4];
    float dist[12];
    const char *keys[12];
    uint32_t lens[12];
    char long_key[131];
} fake_results;

static void fake_results_init(fake_results *f)
{
    memset(f, 0, sizeof *f);
    memset(f->long_key, 'L', 130);
    static const uint32_t counts[4] = {3, 0, 1, 2};
    memcpy(f->counts, counts, sizeof counts);
    const char *names[3] = {"a", f->long_key, "hello"};
    for (size_t i = 0; i < 4; i++)
        for (uint32_t j = 0; j < 3; j++) {
            size_t at = i * 3 + j;
            f->dist[at] = j < counts[i] ? (float)at * 0.25f : INFINITY;
            if (j < counts[i]) {
                f->keys[at] = names[(i + j) % 3];
                f->lens[at] = (uint32_t)strlen(f->keys[at]);
            }
        }
    f->r = (npvdb_results){.nq = 4,
                           .k = 3,
                           .counts = f->counts,
                           .distances = f->dist,
                           .keys = f->keys,
                           .key_lens = f->lens};
}

static void test_search_reply_matches_protobuf_c(void **state)
{
    fake_results f;
    fake_results_init(&f);
    f.dist[5] = 0; /* a pad the encoder must set to +inf */
    size_t size = codec_search_reply_size(&f.r);
    uint8_t *mine = malloc(size);
    assert_non_null(mine);
    assert_int_equal(codec_search_reply_encode(&f.r, mine), size);

    char *flat[12];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        for (uint32_t j = 0; j < f.counts[i]; j++)
            flat[n++] = (char *)f.keys[i * 3 + j];
    f.dist[5] = INFINITY;
    Npvdb__V1__SearchReply m = NPVDB__V1__SEARCH_REPLY__INIT;
    m.k = 3;
    m.n_counts = 4;
    m.counts = f.counts;
    m.n_keys = n;
    m.keys = flat;
    m.distances.data = (uint8_t *)f.dist;
    m.distances.len = sizeof f.dist;
    packed p = pack(&m.base);
    assert_int_equal(p.len, size);
    assert_memory_equal(mine, p.buf, size);
    packed_free(&p);
    free(mine);
}

static void test_closest_reply_matches_protobuf_c(void **state)
{
    fake_results f;
    fake_results_init(&f);
    const uint32_t index[4] = {0, 1, 200, 70000}; /* 0 is left out */
    for (size_t i = 0; i < 4; i++) {
        size_t size = codec_closest_reply_size(&f.r, i, index[i]);
        uint8_t *mine = malloc(size ? size : 1);
        assert_non_null(mine);
        assert_int_equal(codec_closest_reply_encode(&f.r, i, index[i], mine),
                         size);
        Npvdb__V1__GetClosestReply m = NPVDB__V1__GET_CLOSEST_REPLY__INIT;
        m.query_index = index[i];
        m.n_keys = m.n_distances = f.counts[i];
        m.keys = (char **)(f.keys + i * 3);
        m.distances = f.dist + i * 3;
        packed p = pack(&m.base);
        assert_int_equal(p.len, size);
        if (size) assert_memory_equal(mine, p.buf, size);
        packed_free(&p);
        free(mine);
    }
}

/* ---- Delete, Get, empty, health ---- */

static void test_keys_valid(void **state)
{
    char *keys[3] = {"x", "y", "x"};
    Npvdb__V1__DeleteRequest m = NPVDB__V1__DELETE_REQUEST__INIT;
    m.n_keys = 3;
    m.keys = keys;
    packed p = pack(&m.base);
    codec_keys r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_delete(p.buf, p.len, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.keys[2], "x");
    codec_keys_free(&r);
    /* GetRequest has the same layout. */
    assert_int_equal(codec_decode_get(p.buf, p.len, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 3);
    codec_keys_free(&r);
    /* No keys at all is a valid (empty) request. */
    assert_int_equal(codec_decode_get(p.buf, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 0);
    codec_keys_free(&r);
    packed_free(&p);
}

static void test_keys_nul(void **state)
{
    const uint8_t wire[] = {0x0a, 0x01, 'a', 0x0a, 0x02, 'b', 0x00};
    codec_keys r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_delete(wire, sizeof wire, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "key 1 contains a NUL byte");
    assert_null(r.msg_);
}

static void test_empty_and_health(void **state)
{
    npvdb_error err = {0};
    /* Unknown fields are fine in an empty request. */
    const uint8_t unknown[] = {0x78, 0x01}; /* field 15, varint */
    assert_int_equal(codec_decode_empty(unknown, sizeof unknown, &err),
                     NPVDB_OK);
    Grpc__Health__V1__HealthCheckRequest m =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    m.service = "npvdb.v1.VectorDB";
    packed p = pack(&m.base);
    char svc[64];
    assert_int_equal(codec_decode_health(p.buf, p.len, svc, sizeof svc, &err),
                     NPVDB_OK);
    assert_string_equal(svc, "npvdb.v1.VectorDB");
    assert_int_equal(codec_decode_health(p.buf, p.len, svc, 8, &err),
                     NPVDB_EINVAL);
    assert_int_equal(codec_decode_health(p.buf, 0, svc, sizeof svc, &err),
                     NPVDB_OK);
    assert_string_equal(svc, "");
    packed_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_valid),
        cmocka_unit_test(test_init_metric_default_is_cosine),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_malformed_bytes),
        cmocka_unit_test(test_insert_valid),
        cmocka_unit_test(test_insert_empty_message),
        cmocka_unit_test(test_insert_size_mismatch),
        cmocka_unit_test(test_insert_nan),
        cmocka_unit_test(test_insert_bad_keys),
        cmocka_unit_test(test_insert_long_key),
        cmocka_unit_test(test_check_key_utf8),
        cmocka_unit_test(test_query_valid),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_query_dim_mismatch),
        cmocka_unit_test(test_search_malformed),
        cmocka_unit_test(test_query_spans),
        cmocka_unit_test(test_query_nonfinite_late),
        cmocka_unit_test(test_query_wire_variants),
        cmocka_unit_test(test_search_reply_matches_protobuf_c),
        cmocka_unit_test(test_closest_reply_matches_protobuf_c),
        cmocka_unit_test(test_keys_valid),
        cmocka_unit_test(test_keys_nul),
        cmocka_unit_test(test_empty_and_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
