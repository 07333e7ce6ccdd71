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
#include <stdio.h>
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

/* A NaN is a value, not a wire fault: the codec passes it on (bit for bit,
 * without a second pass over the vectors) and the engine refuses it,
 * naming the row and component (tests/engine). */
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
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(p.buf, p.len, 2, &r, &err), NPVDB_OK);
    assert_int_equal(r.n, 2);
    assert_memory_equal(r.rows, rows, sizeof rows);
    codec_insert_free(&r);
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

/* Non-finite values pass through the codec, bit for bit, however the
 * message is split: the engine refuses them (tests/engine). */
static void test_query_nonfinite_late(void **state)
{
    enum { DIM = 8, ROWS = 400 };
    float *q = calloc(DIM * ROWS, sizeof *q);
    assert_non_null(q);
    q[333 * DIM + 5] = NAN;
    q[390 * DIM + 1] = INFINITY;
    for (int kind = 0; kind < N_KINDS; kind++) {
        packed p = query_msg_dim(kind, q, DIM * ROWS, 4, 0);
        codec_query r;
        npvdb_error err = {0};
        assert_int_equal(decoders[kind](p.buf, p.len, DIM, &r, &err), NPVDB_OK);
        assert_int_equal(r.nq, ROWS);
        assert_memory_equal(r.queries, q, DIM * ROWS * sizeof *q);
        codec_query_free(&r);
        packed_free(&p);
    }
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
    msg[n++] = 0x4d; /* field 9, fixed32: unknown */
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
    const uint8_t group[] = {0x4b}; /* field 9, start group */
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

/* ---- collections ---- */

static void test_collection_names(void **state)
{
    npvdb_error err = {0};
    Npvdb__V1__InitRequest im = NPVDB__V1__INIT_REQUEST__INIT;
    im.dim = 2;
    im.collection = "docs.v2";
    packed p = pack(&im.base);
    codec_init ri;
    assert_int_equal(codec_decode_init(p.buf, p.len, &ri, &err), NPVDB_OK);
    assert_string_equal(ri.collection.s, "docs.v2");
    assert_int_equal(ri.collection.len, 7);
    codec_init_free(&ri);
    packed_free(&p);

    /* Old clients send no collection: "" (the server reads "default"). */
    im.collection = "";
    p = pack(&im.base);
    assert_int_equal(codec_decode_init(p.buf, p.len, &ri, &err), NPVDB_OK);
    assert_int_equal(ri.collection.len, 0);
    codec_init_free(&ri);
    packed_free(&p);

    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = 0;
    Npvdb__V1__DeleteRequest dm = NPVDB__V1__DELETE_REQUEST__INIT;
    dm.collection = longname;
    p = pack(&dm.base);
    codec_keys rk;
    assert_int_equal(codec_decode_delete(p.buf, p.len, &rk, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "collection name of 256 bytes is over 255");
    packed_free(&p);
    longname[255] = 0; /* 255 bytes is the limit, allowed */
    p = pack(&dm.base);
    assert_int_equal(codec_decode_delete(p.buf, p.len, &rk, &err), NPVDB_OK);
    assert_int_equal(rk.collection.len, 255);
    codec_keys_free(&rk);
    packed_free(&p);

    /* A NUL inside is kept with the wire length (the server's name check
     * refuses it) rather than cut into another name. */
    const uint8_t nul[] = {0x0a, 3, 'a', 0, 'b'};
    codec_name name;
    assert_int_equal(codec_decode_collection(nul, sizeof nul, &name, &err),
                     NPVDB_OK);
    assert_int_equal(name.len, 3);
    assert_memory_equal(name.s, "a\0b", 3);

    Npvdb__V1__GetRequest gm = NPVDB__V1__GET_REQUEST__INIT;
    gm.collection = "g";
    gm.with_payload = 1;
    p = pack(&gm.base);
    assert_int_equal(codec_decode_get(p.buf, p.len, &rk, &err), NPVDB_OK);
    assert_string_equal(rk.collection.s, "g");
    assert_int_equal(rk.with_payload, 1);
    codec_keys_free(&rk);
    packed_free(&p);

    Npvdb__V1__InfoRequest inf = NPVDB__V1__INFO_REQUEST__INIT;
    inf.collection = "x-1";
    p = pack(&inf.base);
    assert_int_equal(codec_decode_collection(p.buf, p.len, &name, &err),
                     NPVDB_OK);
    assert_string_equal(name.s, "x-1");
    packed_free(&p);
    const uint8_t bad[] = {0x0a, 9, 'a'};
    assert_int_equal(codec_decode_collection(bad, sizeof bad, &name, &err),
                     NPVDB_EINVAL);
}

/* ---- payloads ---- */

static Npvdb__V1__Payload__FieldsEntry *entry(const char *key,
                                              Npvdb__V1__Value *v)
{
    Npvdb__V1__Payload__FieldsEntry *e = malloc(sizeof *e);
    assert_non_null(e);
    *e =
        (Npvdb__V1__Payload__FieldsEntry)NPVDB__V1__PAYLOAD__FIELDS_ENTRY__INIT;
    e->key = (char *)key;
    e->value = v;
    return e;
}

/* One payload of every kind: tag (string), n (int), price (double), ok
 * (bool), tags (strings). */
typedef struct every_kind {
    Npvdb__V1__Value vs, vi, vd, vb, vl;
    Npvdb__V1__StringList list;
    char *items[2];
    Npvdb__V1__Payload__FieldsEntry *e[5];
    Npvdb__V1__Payload pl;
} every_kind;

static void every_kind_init(every_kind *k)
{
    Npvdb__V1__Value v0 = NPVDB__V1__VALUE__INIT;
    Npvdb__V1__StringList l0 = NPVDB__V1__STRING_LIST__INIT;
    k->vs = k->vi = k->vd = k->vb = k->vl = v0;
    k->vs.kind_case = NPVDB__V1__VALUE__KIND_STRING_VALUE;
    k->vs.string_value = "hello";
    k->vi.kind_case = NPVDB__V1__VALUE__KIND_INT_VALUE;
    k->vi.int_value = -42;
    k->vd.kind_case = NPVDB__V1__VALUE__KIND_DOUBLE_VALUE;
    k->vd.double_value = 2.5;
    k->vb.kind_case = NPVDB__V1__VALUE__KIND_BOOL_VALUE;
    k->vb.bool_value = 1;
    k->list = l0;
    k->items[0] = "x";
    k->items[1] = "";
    k->list.n_values = 2;
    k->list.values = k->items;
    k->vl.kind_case = NPVDB__V1__VALUE__KIND_STRINGS_VALUE;
    k->vl.strings_value = &k->list;
    /* Not in name order: the blob sorts them. */
    k->e[0] = entry("tags", &k->vl);
    k->e[1] = entry("n", &k->vi);
    k->e[2] = entry("price", &k->vd);
    k->e[3] = entry("ok", &k->vb);
    k->e[4] = entry("tag", &k->vs);
    Npvdb__V1__Payload p0 = NPVDB__V1__PAYLOAD__INIT;
    k->pl = p0;
    k->pl.n_fields = 5;
    k->pl.fields = k->e;
}

static void every_kind_free(every_kind *k)
{
    for (int i = 0; i < 5; i++)
        free(k->e[i]);
}

/* The blob npvdb_payload_build makes of every_kind's fields. */
static npvdb_payload every_kind_blob(void)
{
    const char *items[2] = {"x", ""};
    const uint32_t lens[2] = {1, 0};
    npvdb_field f[5];
    memset(f, 0, sizeof f);
    f[0] = (npvdb_field){.name = "tag",
                         .name_len = 3,
                         .type = NPVDB_VALUE_STRING,
                         .s = "hello",
                         .s_len = 5};
    f[1] = (npvdb_field){
        .name = "n", .name_len = 1, .type = NPVDB_VALUE_INT, .i = -42};
    f[2] = (npvdb_field){
        .name = "price", .name_len = 5, .type = NPVDB_VALUE_DOUBLE, .d = 2.5};
    f[3] = (npvdb_field){
        .name = "ok", .name_len = 2, .type = NPVDB_VALUE_BOOL, .b = 1};
    f[4] = (npvdb_field){.name = "tags",
                         .name_len = 4,
                         .type = NPVDB_VALUE_STRINGS,
                         .n_items = 2,
                         .items = items,
                         .item_lens = lens};
    npvdb_payload out;
    npvdb_error err = {0};
    assert_int_equal(npvdb_payload_build(f, 5, &out, &err), NPVDB_OK);
    return out;
}

static void test_insert_payloads(void **state)
{
    every_kind k;
    every_kind_init(&k);
    float rows[4] = {1, 2, 3, 4};
    char *keys[2] = {"a", "b"};
    Npvdb__V1__Payload empty = NPVDB__V1__PAYLOAD__INIT;
    Npvdb__V1__Payload *pls[2] = {&k.pl, &empty};
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 2;
    m.keys = keys;
    m.vectors.data = (uint8_t *)rows;
    m.vectors.len = sizeof rows;
    m.collection = "c";
    m.n_payloads = 2;
    m.payloads = pls;
    packed p = pack(&m.base);
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(p.buf, p.len, 2, &r, &err), NPVDB_OK);
    assert_string_equal(r.collection.s, "c");
    assert_non_null(r.payloads);
    npvdb_payload want = every_kind_blob();
    assert_int_equal(r.payloads[0].len, want.len);
    assert_memory_equal(r.payloads[0].data, want.data, want.len);
    assert_int_equal(r.payloads[1].len, 0); /* empty Payload: none */
    codec_insert_free(&r);
    packed_free(&p);

    /* Without payloads: NULL. */
    m.n_payloads = 0;
    p = pack(&m.base);
    assert_int_equal(codec_decode_insert(p.buf, p.len, 2, &r, &err), NPVDB_OK);
    assert_null(r.payloads);
    codec_insert_free(&r);
    packed_free(&p);

    /* One payload for two keys. */
    m.n_payloads = 1;
    p = pack(&m.base);
    assert_int_equal(codec_decode_insert(p.buf, p.len, 2, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "payloads has 1 entries for 2 keys");
    packed_free(&p);
    free((void *)want.data);
    every_kind_free(&k);
}

/* Decodes an Insert of one key with payload `pl`; returns the code. */
static npvdb_code insert_one(Npvdb__V1__Payload *pl, npvdb_error *err)
{
    float row[1] = {1};
    char *keys[1] = {"k"};
    Npvdb__V1__InsertRequest m = NPVDB__V1__INSERT_REQUEST__INIT;
    m.n_keys = 1;
    m.keys = keys;
    m.vectors.data = (uint8_t *)row;
    m.vectors.len = sizeof row;
    m.n_payloads = 1;
    m.payloads = &pl;
    packed p = pack(&m.base);
    codec_insert r;
    npvdb_code rc = codec_decode_insert(p.buf, p.len, 1, &r, err);
    codec_insert_free(&r);
    packed_free(&p);
    return rc;
}

static void test_insert_payload_errors(void **state)
{
    npvdb_error err = {0};
    Npvdb__V1__Value v = NPVDB__V1__VALUE__INIT;
    Npvdb__V1__Payload__FieldsEntry *e[2] = {entry("f", &v), NULL};
    Npvdb__V1__Payload pl = NPVDB__V1__PAYLOAD__INIT;
    pl.n_fields = 1;
    pl.fields = e;
    /* A Value with nothing set. */
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "payloads[0] field 'f': value has nothing set");
    v.kind_case = NPVDB__V1__VALUE__KIND_DOUBLE_VALUE;
    v.double_value = NAN;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "payloads[0]");
    assert_msg_has(&err, "'f'");
    assert_msg_has(&err, "NaN or Inf");
    v.double_value = INFINITY;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    /* An oversized string value. */
    char *big = malloc(NPVDB_MAX_STRING + 2);
    assert_non_null(big);
    memset(big, 's', NPVDB_MAX_STRING + 1);
    big[NPVDB_MAX_STRING + 1] = 0;
    v.kind_case = NPVDB__V1__VALUE__KIND_STRING_VALUE;
    v.string_value = big;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "payloads[0] field 'f': string of 65536 bytes");
    big[NPVDB_MAX_STRING] = 0; /* exactly the limit: fine */
    assert_int_equal(insert_one(&pl, &err), NPVDB_OK);
    /* An oversized name, and an empty one. */
    char name[300];
    memset(name, 'n', 256);
    name[256] = 0;
    v.string_value = "ok";
    e[0]->key = name;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "payloads[0]: field 0 has a name of 256 bytes");
    e[0]->key = "";
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "name of 0 bytes");
    /* A name given twice. */
    e[0]->key = "f";
    e[1] = entry("f", &v);
    pl.n_fields = 2;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "given twice");
    /* A list over 1024 strings. */
    Npvdb__V1__StringList l = NPVDB__V1__STRING_LIST__INIT;
    char **items = calloc(NPVDB_MAX_LIST + 1, sizeof *items);
    assert_non_null(items);
    for (size_t i = 0; i <= NPVDB_MAX_LIST; i++)
        items[i] = "i";
    l.n_values = NPVDB_MAX_LIST + 1;
    l.values = items;
    Npvdb__V1__Value lv = NPVDB__V1__VALUE__INIT;
    lv.kind_case = NPVDB__V1__VALUE__KIND_STRINGS_VALUE;
    lv.strings_value = &l;
    e[1]->key = "g";
    e[1]->value = &lv;
    assert_int_equal(insert_one(&pl, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "payloads[0] field 'g': list of 1025 strings");
    /* 65 fields. */
    Npvdb__V1__Payload__FieldsEntry *many[65];
    char names[65][4];
    for (int i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "f%d", i);
        many[i] = entry(names[i], &v);
    }
    Npvdb__V1__Payload pm = NPVDB__V1__PAYLOAD__INIT;
    pm.n_fields = 65;
    pm.fields = many;
    assert_int_equal(insert_one(&pm, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "more than 64 fields");
    pm.n_fields = 64;
    assert_int_equal(insert_one(&pm, &err), NPVDB_OK);
    for (int i = 0; i < 65; i++)
        free(many[i]);
    free(items);
    free(big);
    free(e[0]);
    free(e[1]);
}

/* blob -> wire -> protobuf-c gives the same fields. */
static void test_payload_encode(void **state)
{
    npvdb_payload b = every_kind_blob();
    size_t n = codec_payload_size(&b);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_ptr_equal(codec_payload_put(&b, buf), buf + n);
    Npvdb__V1__Payload *m = npvdb__v1__payload__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_int_equal(m->n_fields, 5);
    /* Sorted by name: n, ok, price, tag, tags. */
    assert_string_equal(m->fields[0]->key, "n");
    assert_int_equal(m->fields[0]->value->int_value, -42);
    assert_string_equal(m->fields[1]->key, "ok");
    assert_int_equal(m->fields[1]->value->kind_case,
                     NPVDB__V1__VALUE__KIND_BOOL_VALUE);
    assert_int_equal(m->fields[1]->value->bool_value, 1);
    assert_true(m->fields[2]->value->double_value == 2.5);
    assert_string_equal(m->fields[3]->value->string_value, "hello");
    assert_int_equal(m->fields[4]->value->strings_value->n_values, 2);
    assert_string_equal(m->fields[4]->value->strings_value->values[0], "x");
    assert_string_equal(m->fields[4]->value->strings_value->values[1], "");
    npvdb__v1__payload__free_unpacked(m, NULL);

    /* And back through the Insert decoder: the same blob. */
    Npvdb__V1__Payload *pl = npvdb__v1__payload__unpack(NULL, n, buf);
    assert_non_null(pl);
    float row[1] = {1};
    char *keys[1] = {"k"};
    Npvdb__V1__InsertRequest im = NPVDB__V1__INSERT_REQUEST__INIT;
    im.n_keys = 1;
    im.keys = keys;
    im.vectors.data = (uint8_t *)row;
    im.vectors.len = 4;
    im.n_payloads = 1;
    im.payloads = &pl;
    packed p = pack(&im.base);
    codec_insert r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_insert(p.buf, p.len, 1, &r, &err), NPVDB_OK);
    assert_int_equal(r.payloads[0].len, b.len);
    assert_memory_equal(r.payloads[0].data, b.data, b.len);
    codec_insert_free(&r);
    packed_free(&p);
    npvdb__v1__payload__free_unpacked(pl, NULL);
    free(buf);
    free((void *)b.data);
}

/* ---- filters ---- */

static Npvdb__V1__Condition *cond_new(void)
{
    Npvdb__V1__Condition *c = malloc(sizeof *c);
    assert_non_null(c);
    *c = (Npvdb__V1__Condition)NPVDB__V1__CONDITION__INIT;
    return c;
}

static npvdb_code decode_filter_msg(const Npvdb__V1__Filter *f,
                                    codec_filter *out, npvdb_error *err)
{
    packed p = pack(&f->base);
    npvdb_code rc = codec_decode_filter(p.buf, p.len, out, err);
    packed_free(&p);
    return rc;
}

static void test_filter_valid(void **state)
{
    /* must: tenant = 42, price in [10, 20); should: lang in {en, de},
     * has_field x; must_not: nested {must: flag = true}. */
    Npvdb__V1__Match m1 = NPVDB__V1__MATCH__INIT;
    m1.kind_case = NPVDB__V1__MATCH__KIND_INTEGER;
    m1.integer = 42;
    Npvdb__V1__Range r = NPVDB__V1__RANGE__INIT;
    r.lower_case = NPVDB__V1__RANGE__LOWER_GTE;
    r.gte = 10;
    r.upper_case = NPVDB__V1__RANGE__UPPER_LT;
    r.lt = 20;
    char *kw[2] = {"en", "de"};
    Npvdb__V1__StringList sl = NPVDB__V1__STRING_LIST__INIT;
    sl.n_values = 2;
    sl.values = kw;
    Npvdb__V1__Match m2 = NPVDB__V1__MATCH__INIT;
    m2.kind_case = NPVDB__V1__MATCH__KIND_KEYWORDS;
    m2.keywords = &sl;
    Npvdb__V1__Match m3 = NPVDB__V1__MATCH__INIT;
    m3.kind_case = NPVDB__V1__MATCH__KIND_BOOLEAN;
    m3.boolean = 1;
    Npvdb__V1__Condition *c[6];
    for (int i = 0; i < 6; i++)
        c[i] = cond_new();
    c[0]->key = "tenant";
    c[0]->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c[0]->match = &m1;
    c[1]->key = "price";
    c[1]->condition_case = NPVDB__V1__CONDITION__CONDITION_RANGE;
    c[1]->range = &r;
    c[2]->key = "lang";
    c[2]->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c[2]->match = &m2;
    c[3]->condition_case = NPVDB__V1__CONDITION__CONDITION_HAS_FIELD;
    c[3]->has_field = "x";
    c[4]->key = "flag";
    c[4]->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c[4]->match = &m3;
    Npvdb__V1__Filter inner = NPVDB__V1__FILTER__INIT;
    inner.n_must = 1;
    inner.must = &c[4];
    c[5]->condition_case = NPVDB__V1__CONDITION__CONDITION_FILTER;
    c[5]->filter = &inner;
    Npvdb__V1__Filter f = NPVDB__V1__FILTER__INIT;
    f.n_must = 2;
    f.must = c;
    f.n_should = 2;
    f.should = c + 2;
    f.n_must_not = 1;
    f.must_not = c + 5;
    codec_filter out;
    npvdb_error err = {0};
    assert_int_equal(decode_filter_msg(&f, &out, &err), NPVDB_OK);
    const npvdb_filter *t = out.root;
    assert_int_equal(t->n_must, 2);
    assert_int_equal(t->must[0].kind, NPVDB_COND_MATCH);
    assert_int_equal(t->must[0].field_len, 6);
    assert_memory_equal(t->must[0].field, "tenant", 6);
    assert_int_equal(t->must[0].n_values, 1);
    assert_int_equal(t->must[0].values[0].type, NPVDB_VALUE_INT);
    assert_int_equal(t->must[0].values[0].i, 42);
    assert_int_equal(t->must[1].kind, NPVDB_COND_RANGE);
    assert_true(t->must[1].has_lower && t->must[1].lower_inclusive);
    assert_true(t->must[1].has_upper && !t->must[1].upper_inclusive);
    assert_true(t->must[1].lower == 10 && t->must[1].upper == 20);
    assert_int_equal(t->n_should, 2);
    assert_int_equal(t->should[0].n_values, 2);
    assert_int_equal(t->should[0].values[1].s_len, 2);
    assert_memory_equal(t->should[0].values[1].s, "de", 2);
    assert_int_equal(t->should[1].kind, NPVDB_COND_HAS_FIELD);
    assert_int_equal(t->n_must_not, 1);
    assert_int_equal(t->must_not[0].kind, NPVDB_COND_FILTER);
    const npvdb_filter *sub = t->must_not[0].sub;
    assert_int_equal(sub->n_must, 1);
    assert_int_equal(sub->must[0].values[0].type, NPVDB_VALUE_BOOL);
    assert_int_equal(sub->must[0].values[0].b, 1);
    codec_filter_free(&out);

    /* An empty Filter passes everything: a root with no conditions. */
    Npvdb__V1__Filter none = NPVDB__V1__FILTER__INIT;
    assert_int_equal(decode_filter_msg(&none, &out, &err), NPVDB_OK);
    assert_non_null(out.root);
    assert_int_equal(
        out.root->n_must + out.root->n_should + out.root->n_must_not, 0);
    codec_filter_free(&out);
    for (int i = 0; i < 6; i++)
        free(c[i]);
}

static void expect_filter_error(const Npvdb__V1__Filter *f, const char *msg)
{
    codec_filter out;
    npvdb_error err = {0};
    assert_int_equal(decode_filter_msg(f, &out, &err), NPVDB_EINVAL);
    assert_msg_has(&err, msg);
    assert_null(out.root);
}

static void test_filter_errors(void **state)
{
    Npvdb__V1__Condition *c[2] = {cond_new(), cond_new()};
    Npvdb__V1__Filter inner = NPVDB__V1__FILTER__INIT;
    inner.n_should = 1;
    inner.should = &c[1];
    c[0]->condition_case = NPVDB__V1__CONDITION__CONDITION_FILTER;
    c[0]->filter = &inner;
    Npvdb__V1__Condition *ok = cond_new();
    ok->condition_case = NPVDB__V1__CONDITION__CONDITION_HAS_FIELD;
    ok->has_field = "a";
    Npvdb__V1__Condition *must[2] = {ok, c[0]};
    Npvdb__V1__Filter f = NPVDB__V1__FILTER__INIT;
    f.n_must = 2;
    f.must = must;
    /* c[1] has nothing set. */
    expect_filter_error(&f,
                        "filter.must[1].should[0]: condition has nothing set");
    Npvdb__V1__Match m = NPVDB__V1__MATCH__INIT;
    c[1]->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c[1]->match = &m;
    expect_filter_error(&f, "filter.must[1].should[0]: match needs a key");
    c[1]->key = "k";
    expect_filter_error(&f, "filter.must[1].should[0]: match has nothing set");
    Npvdb__V1__StringList sl = NPVDB__V1__STRING_LIST__INIT;
    m.kind_case = NPVDB__V1__MATCH__KIND_KEYWORDS;
    m.keywords = &sl;
    expect_filter_error(&f, "match.keywords is empty");
    Npvdb__V1__IntList il = NPVDB__V1__INT_LIST__INIT;
    m.kind_case = NPVDB__V1__MATCH__KIND_INTEGERS;
    m.integers = &il;
    expect_filter_error(&f, "match.integers is empty");
    int64_t *ints = calloc(NPVDB_MAX_LIST + 1, sizeof *ints);
    assert_non_null(ints);
    il.n_values = NPVDB_MAX_LIST + 1;
    il.values = ints;
    expect_filter_error(&f, "match list of 1025 values");
    free(ints);
    Npvdb__V1__Range r = NPVDB__V1__RANGE__INIT;
    c[1]->condition_case = NPVDB__V1__CONDITION__CONDITION_RANGE;
    c[1]->range = &r;
    expect_filter_error(&f, "filter.must[1].should[0]: range has no bound");
    r.upper_case = NPVDB__V1__RANGE__UPPER_LTE;
    r.lte = NAN;
    expect_filter_error(&f, "range.lte is not finite");
    r.lte = 1;
    r.lower_case = NPVDB__V1__RANGE__LOWER_GT;
    r.gt = -INFINITY;
    expect_filter_error(&f, "range.gt is not finite");
    c[1]->condition_case = NPVDB__V1__CONDITION__CONDITION_HAS_FIELD;
    c[1]->has_field = "";
    expect_filter_error(&f, "has_field is empty");
    free(c[0]);
    free(c[1]);
    free(ok);
}

/* Nesting and counts are refused on the wire, before unpacking. */
static void test_filter_bounds(void **state)
{
    /* Depth: Filter{must: [Condition{filter: ...}]} nested by hand. */
    uint8_t *buf = NULL;
    size_t len = 0;
    npvdb_error err = {0};
    codec_filter out;
    for (int depth = 1; depth <= NPVDB_MAX_FILTER_DEPTH + 1; depth++) {
        if (depth > 1) {
            /* Condition{5: buf}, then Filter{1: condition}. */
            size_t cl = 1 + 1 + len; /* len < 128 */
            assert_true(len < 120);
            uint8_t *nb = malloc(2 + cl);
            assert_non_null(nb);
            nb[0] = 0x0a;
            nb[1] = (uint8_t)cl;
            nb[2] = 0x2a;
            nb[3] = (uint8_t)len;
            if (len) memcpy(nb + 4, buf, len);
            free(buf);
            buf = nb;
            len = 2 + cl;
        }
        npvdb_code rc =
            codec_decode_filter(buf ? buf : (uint8_t *)"", len, &out, &err);
        if (depth <= NPVDB_MAX_FILTER_DEPTH) {
            assert_int_equal(rc, NPVDB_OK);
            codec_filter_free(&out);
        } else {
            assert_int_equal(rc, NPVDB_EINVAL);
            assert_msg_has(&err, "nested deeper than 16");
        }
    }
    free(buf);
    /* Count: 4097 has_field conditions. */
    size_t n = NPVDB_MAX_FILTER_CONDS + 1;
    buf = malloc(n * 5);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * 5, "\x0a\x03\x22\x01z", 5);
    assert_int_equal(codec_decode_filter(buf, (n - 1) * 5, &out, &err),
                     NPVDB_OK);
    assert_int_equal(out.root->n_must, n - 1);
    codec_filter_free(&out);
    assert_int_equal(codec_decode_filter(buf, n * 5, &out, &err), NPVDB_EINVAL);
    assert_msg_has(&err, "more than 4096 conditions");
    free(buf);
    /* A NUL in a key, and a truncated message. */
    const uint8_t nul[] = {0x0a, 0x04, 0x22, 0x02, 'a', 0};
    assert_int_equal(codec_decode_filter(nul, sizeof nul, &out, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "NUL");
    const uint8_t cut[] = {0x0a, 0x09, 0x22};
    assert_int_equal(codec_decode_filter(cut, sizeof cut, &out, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "malformed");
}

/* Search with collection, filter and with_payload, in one piece and cut
 * into spans at every byte (the filter straddling two spans). */
static void test_search_new_fields(void **state)
{
    float q[3] = {1, 2, 3};
    Npvdb__V1__Match mt = NPVDB__V1__MATCH__INIT;
    mt.kind_case = NPVDB__V1__MATCH__KIND_KEYWORD;
    mt.keyword = "red";
    Npvdb__V1__Condition *c = cond_new();
    c->key = "color";
    c->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c->match = &mt;
    Npvdb__V1__Filter f = NPVDB__V1__FILTER__INIT;
    f.n_must_not = 1;
    f.must_not = &c;
    Npvdb__V1__SearchRequest m = NPVDB__V1__SEARCH_REQUEST__INIT;
    m.queries.data = (uint8_t *)q;
    m.queries.len = sizeof q;
    m.k = 4;
    m.collection = "colors";
    m.filter = &f;
    m.with_payload = 1;
    packed p = pack(&m.base);
    for (size_t cut = 0; cut <= p.len; cut++) {
        codec_span spans[2] = {{p.buf, cut}, {p.buf + cut, p.len - cut}};
        codec_query r;
        npvdb_error err = {0};
        assert_int_equal(
            codec_query_parse_spans("SearchRequest", spans, 2, &r, &err),
            NPVDB_OK);
        assert_string_equal(r.collection.s, "colors");
        assert_int_equal(r.with_payload, 1);
        assert_non_null(r.filter.root);
        assert_int_equal(r.filter.root->n_must_not, 1);
        assert_int_equal(r.filter.root->must_not[0].values[0].s_len, 3);
        assert_memory_equal(r.filter.root->must_not[0].values[0].s, "red", 3);
        assert_int_equal(codec_query_load(&r, 3, &err), NPVDB_OK);
        assert_int_equal(r.nq, 1);
        assert_memory_equal(r.queries, q, sizeof q);
        codec_query_free(&r);
    }
    packed_free(&p);
    /* A bad filter is refused with its place. */
    c->condition_case = NPVDB__V1__CONDITION__CONDITION__NOT_SET;
    p = pack(&m.base);
    codec_query r;
    npvdb_error err = {0};
    assert_int_equal(codec_decode_search(p.buf, p.len, 3, &r, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "filter.must_not[0]: condition has nothing set");
    packed_free(&p);
    /* No filter field: root NULL. */
    m.filter = NULL;
    p = pack(&m.base);
    assert_int_equal(codec_decode_query(p.buf, p.len, 3, &r, &err), NPVDB_OK);
    assert_null(r.filter.root);
    codec_query_free(&r);
    packed_free(&p);
    free(c);
}

/* Replies with payloads unpack with protobuf-c to the same fields. */
static void test_replies_with_payloads(void **state)
{
    fake_results f;
    fake_results_init(&f);
    npvdb_payload blob = every_kind_blob();
    npvdb_payload pls[12];
    memset(pls, 0, sizeof pls);
    pls[0] = blob; /* row 0 hit 0 has one, the others none */
    pls[9] = blob; /* row 3 hit 0 */
    f.r.payloads = pls;
    size_t size = codec_search_reply_size(&f.r);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(codec_search_reply_encode(&f.r, buf), size);
    Npvdb__V1__SearchReply *m =
        npvdb__v1__search_reply__unpack(NULL, size, buf);
    assert_non_null(m);
    assert_int_equal(m->n_keys, 6);
    assert_int_equal(m->n_payloads, 6); /* one per hit, flat */
    assert_int_equal(m->payloads[0]->n_fields, 5);
    assert_int_equal(m->payloads[1]->n_fields, 0);
    assert_int_equal(m->payloads[4]->n_fields, 5); /* row 3, hit 0 */
    assert_string_equal(m->payloads[4]->fields[3]->value->string_value,
                        "hello");
    npvdb__v1__search_reply__free_unpacked(m, NULL);
    free(buf);
    for (size_t i = 0; i < 4; i++) {
        size = codec_closest_reply_size(&f.r, i, (uint32_t)i);
        buf = malloc(size ? size : 1);
        assert_non_null(buf);
        assert_int_equal(codec_closest_reply_encode(&f.r, i, (uint32_t)i, buf),
                         size);
        Npvdb__V1__GetClosestReply *g =
            npvdb__v1__get_closest_reply__unpack(NULL, size, buf);
        assert_non_null(g);
        assert_int_equal(g->n_payloads, f.counts[i]);
        assert_int_equal(g->n_keys, f.counts[i]);
        if (i == 0 || i == 3)
            assert_int_equal(g->payloads[0]->fields[0]->value->int_value, -42);
        npvdb__v1__get_closest_reply__free_unpacked(g, NULL);
        free(buf);
    }
    free((void *)blob.data);
}

/* ---- Count and Scroll ---- */

static void test_count_scroll(void **state)
{
    npvdb_error err = {0};
    Npvdb__V1__Condition *c = cond_new();
    c->condition_case = NPVDB__V1__CONDITION__CONDITION_HAS_FIELD;
    c->has_field = "h";
    Npvdb__V1__Filter f = NPVDB__V1__FILTER__INIT;
    f.n_must = 1;
    f.must = &c;
    Npvdb__V1__CountRequest cm = NPVDB__V1__COUNT_REQUEST__INIT;
    cm.collection = "cc";
    packed p = pack(&cm.base);
    codec_count rc;
    assert_int_equal(codec_decode_count(p.buf, p.len, &rc, &err), NPVDB_OK);
    assert_string_equal(rc.collection.s, "cc");
    assert_null(rc.filter.root);
    codec_count_free(&rc);
    packed_free(&p);
    cm.filter = &f;
    p = pack(&cm.base);
    assert_int_equal(codec_decode_count(p.buf, p.len, &rc, &err), NPVDB_OK);
    assert_int_equal(rc.filter.root->n_must, 1);
    codec_count_free(&rc);
    packed_free(&p);

    Npvdb__V1__ScrollRequest sm = NPVDB__V1__SCROLL_REQUEST__INIT;
    codec_scroll rs;
    p = pack(&sm.base);
    assert_int_equal(codec_decode_scroll(p.buf, p.len, &rs, &err), NPVDB_OK);
    assert_int_equal(rs.limit, CODEC_SCROLL_DEFAULT);
    assert_int_equal(rs.cursor, 0);
    codec_scroll_free(&rs);
    packed_free(&p);
    uint8_t cur[CODEC_CURSOR_LEN];
    codec_scroll_cursor(0x123456789abcdefULL, cur);
    sm.cursor.data = cur;
    sm.cursor.len = sizeof cur;
    sm.limit = NPVDB_MAX_K;
    sm.with_vectors = 1;
    sm.filter = &f;
    p = pack(&sm.base);
    assert_int_equal(codec_decode_scroll(p.buf, p.len, &rs, &err), NPVDB_OK);
    assert_int_equal(rs.limit, NPVDB_MAX_K);
    assert_true(rs.cursor == 0x123456789abcdefULL);
    assert_int_equal(rs.with_vectors, 1);
    assert_int_equal(rs.with_payload, 0);
    assert_non_null(rs.filter.root);
    codec_scroll_free(&rs);
    packed_free(&p);
    sm.limit = NPVDB_MAX_K + 1;
    p = pack(&sm.base);
    assert_int_equal(codec_decode_scroll(p.buf, p.len, &rs, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "limit must be 0..16384 (got 16385");
    packed_free(&p);
    sm.limit = 5;
    cur[7] ^= 1; /* a flipped bit */
    p = pack(&sm.base);
    assert_int_equal(codec_decode_scroll(p.buf, p.len, &rs, &err),
                     NPVDB_EINVAL);
    assert_msg_has(&err, "cursor of 16 bytes is not a next_cursor");
    packed_free(&p);
    sm.cursor.len = 3;
    p = pack(&sm.base);
    assert_int_equal(codec_decode_scroll(p.buf, p.len, &rs, &err),
                     NPVDB_EINVAL);
    packed_free(&p);
    free(c);
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
        cmocka_unit_test(test_collection_names),
        cmocka_unit_test(test_insert_payloads),
        cmocka_unit_test(test_insert_payload_errors),
        cmocka_unit_test(test_payload_encode),
        cmocka_unit_test(test_filter_valid),
        cmocka_unit_test(test_filter_errors),
        cmocka_unit_test(test_filter_bounds),
        cmocka_unit_test(test_search_new_fields),
        cmocka_unit_test(test_replies_with_payloads),
        cmocka_unit_test(test_count_scroll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
