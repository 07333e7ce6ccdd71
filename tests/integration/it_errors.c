/*
 * it_errors.c -- every bad request gets its status code from a real
 * npvdb-server, and after each one the server still serves with nothing
 * lost (a good search still equals the engine's, the count is unchanged).
 */
#include "harness.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DIM 16
#define N 500

typedef struct fixture {
    it_server s;
    it_data data, q;
    npvdb_collection *ref; /* what the server should hold */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    it_server_init(&f->s);
    it_server_start(&f->s, NULL);
    it_data_make(&f->data, N, DIM, 21, "e");
    it_data_make(&f->q, 8, DIM, 22, "q");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int status = it_server_stop(&f->s);
    it_server_destroy(&f->s);
    npvdb_free(f->ref);
    it_data_free(&f->data);
    it_data_free(&f->q);
    free(f);
    return status == 0 ? 0 : -1;
}

static void expect(int rc, npvdb_status want, const npvdb_client_error *err,
                   const char *what)
{
    if (rc != (int)want)
        fail_msg("%s: got %s (%s), want %s", what,
                 npvdb_status_name((npvdb_status)rc), err ? err->msg : "",
                 npvdb_status_name(want));
    /* A status without a message does not help a user. */
    if (want != NPVDB_STATUS_OK && err && !err->msg[0])
        fail_msg("%s: %s without a message", what, npvdb_status_name(want));
}

/* Init (dim DIM, L2, untrained) and load the fixture's vectors. */
static void load(fixture *f)
{
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    npvdb_client_error err;
    expect(npvdb_client_init(f->s.client, &p, NULL, NULL, &err),
           NPVDB_STATUS_OK, &err, "init");
    npvdb_client_insert_reply r;
    expect(npvdb_client_insert(f->s.client, DIM,
                               (const char *const *)f->data.keys, f->data.rows,
                               N, 100, NULL, NULL, &r, &err),
           NPVDB_STATUS_OK, &err, "insert");
    f->ref = it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &f->data);
}

/* The good call after a bad one: same count, same answers as the engine. */
static void still_serving(fixture *f, uint64_t want_vectors)
{
    npvdb_client_info info;
    npvdb_client_error err;
    expect(npvdb_client_info_get(f->s.client, &info, &err), NPVDB_STATUS_OK,
           &err, "info after a bad call");
    assert_int_equal(info.vectors, want_vectors);
    npvdb_client_info_free(&info);
    if (f->ref)
        it_assert_search_same(f->s.client, f->ref, f->q.rows, f->q.n, 10,
                              65536);
}

/* One Insert stream of a single message; returns the final status. */
static int insert_one(fixture *f, uint32_t dim, const char *const *keys,
                      const float *rows, size_t n, npvdb_client_error *err)
{
    npvdb_client_stream *st = npvdb_client_insert_begin(f->s.client, dim, err);
    if (!st) return err->code;
    int rc = npvdb_client_stream_send(st, keys, rows, n, err);
    npvdb_client_error e2;
    int rc2 = npvdb_client_stream_finish(st, NULL, &e2);
    if (rc == NPVDB_STATUS_OK) {
        *err = e2;
        rc = rc2;
    }
    return rc;
}

/* Before Init the collection "default" does not exist: every data call on
 * it is NOT_FOUND, naming it. */
static void expect_missing(int rc, const npvdb_client_error *err,
                           const char *what)
{
    expect(rc, NPVDB_STATUS_NOT_FOUND, err, what);
    if (!strstr(err->msg, "collection 'default' not found"))
        fail_msg("%s: message does not name the collection: %s", what,
                 err->msg);
}

static void test_not_found_before_init(void **state)
{
    fixture *f = *state;
    npvdb_client *c = f->s.client;
    npvdb_client_error err;
    npvdb_client_results res;
    expect_missing(
        npvdb_client_get_closest(c, f->q.rows, 1, DIM, 1, 0, &res, &err), &err,
        "get_closest before init");
    still_serving(f, 0);
    expect_missing(npvdb_client_search(c, f->q.rows, 1, DIM, 1, 0, &res, &err),
                   &err, "search before init");
    still_serving(f, 0);
    expect_missing(insert_one(f, DIM, (const char *const *)f->data.keys,
                              f->data.rows, 2, &err),
                   &err, "insert before init");
    still_serving(f, 0);
    const char *keys[] = {"e1"};
    expect_missing(npvdb_client_delete(c, keys, 1, NULL, &err), &err,
                   "delete before init");
    npvdb_client_vectors v;
    expect_missing(npvdb_client_get(c, keys, 1, DIM, &v, &err), &err,
                   "get before init");
    /* A snapshot covers every collection: of none, it is an empty one. */
    npvdb_client_snapshot_info snap;
    int rc = npvdb_client_snapshot(c, &snap, &err);
    expect(rc, NPVDB_STATUS_OK, &err, "snapshot");
    assert_int_equal(snap.vectors, 0);
    still_serving(f, 0);
    load(f);
    still_serving(f, N);
}

static void test_bad_init(void **state)
{
    fixture *f = *state;
    npvdb_client *c = f->s.client;
    npvdb_client_error err;
    npvdb_client_init_params p = {.dim = 0, .metric = NPVDB_CLIENT_L2};
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "init dim 0");
    p.dim = 4097;
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "init dim 4097");
    p.dim = DIM;
    p.metric = (npvdb_client_metric)7;
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "init metric 7");
    p.metric = NPVDB_CLIENT_L2;
    float train[64 * DIM];
    memcpy(train, f->data.rows, sizeof train);
    train[5 * DIM + 3] = NAN;
    p.train = train;
    p.n_train = 64;
    p.n_shards = 4;
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "init NaN training row");
    train[5 * DIM + 3] = INFINITY;
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "init Inf training row");
    /* Training bytes that are not whole rows. */
    Npvdb__V1__InitRequest req = NPVDB__V1__INIT_REQUEST__INIT;
    req.dim = DIM;
    req.metric = NPVDB__V1__METRIC__L2;
    req.train_vectors.len = 10 * DIM * 4 + 6;
    req.train_vectors.data = (uint8_t *)f->data.rows;
    uint8_t buf[1024];
    assert_true(npvdb__v1__init_request__get_packed_size(&req) <= sizeof buf);
    size_t len = npvdb__v1__init_request__pack(&req, buf);
    char msg[512];
    int rc = it_raw_unary(f->s.addr, "/npvdb.v1.VectorDB/Init", buf, len, msg,
                          sizeof msg);
    if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
        fail_msg("init with a partial training row: status %d (%s)", rc, msg);
    /* Bytes that are no protobuf at all. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99};
    rc = it_raw_unary(f->s.addr, "/npvdb.v1.VectorDB/Init", junk, sizeof junk,
                      msg, sizeof msg);
    if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
        fail_msg("init with malformed bytes: status %d (%s)", rc, msg);
    still_serving(f, 0);
    /* None of the bad calls created a collection. */
    npvdb_client_info info;
    expect(npvdb_client_info_get(c, &info, &err), NPVDB_STATUS_OK, &err,
           "info");
    assert_false(info.initialized);
    npvdb_client_info_free(&info);

    load(f);
    p = (npvdb_client_init_params){.dim = 8, .metric = NPVDB_CLIENT_COSINE};
    expect(npvdb_client_init(c, &p, NULL, NULL, &err),
           NPVDB_STATUS_ALREADY_EXISTS, &err, "init twice");
    still_serving(f, N);
}

static void test_bad_insert(void **state)
{
    fixture *f = *state;
    load(f);
    npvdb_client_error err;
    const char *const *keys = (const char *const *)f->data.keys;
    float rows[4 * DIM];
    memcpy(rows, f->q.rows, sizeof rows);
    const char *fresh[] = {"n0", "n1", "n2", "n3"};

    /* 3 keys with 3 rows of DIM+1 floats: wrong byte length. */
    float wide[3 * (DIM + 1)] = {0};
    expect(insert_one(f, DIM + 1, fresh, wide, 3, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "insert wrong byte length");
    still_serving(f, N);

    const char *empty[] = {"n0", "", "n2"};
    expect(insert_one(f, DIM, empty, rows, 3, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "insert empty key");
    still_serving(f, N);

    char *longkey = malloc(1026);
    assert_non_null(longkey);
    memset(longkey, 'a', 1025);
    longkey[1025] = '\0';
    const char *lk[] = {"n0", longkey};
    expect(insert_one(f, DIM, lk, rows, 2, &err), NPVDB_STATUS_INVALID_ARGUMENT,
           &err, "insert 1025-byte key");
    still_serving(f, N);

    rows[2 * DIM + 1] = NAN;
    expect(insert_one(f, DIM, fresh, rows, 4, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "insert NaN");
    still_serving(f, N);
    rows[2 * DIM + 1] = INFINITY;
    expect(insert_one(f, DIM, fresh, rows, 4, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "insert +Inf");
    still_serving(f, N);
    rows[2 * DIM + 1] = -INFINITY;
    expect(insert_one(f, DIM, fresh, rows, 4, &err),
           NPVDB_STATUS_INVALID_ARGUMENT, &err, "insert -Inf");
    still_serving(f, N);
    /* A bad row also keeps the good rows of its message out. */
    npvdb_client_vectors v;
    expect(npvdb_client_get(f->s.client, fresh, 4, DIM, &v, &err),
           NPVDB_STATUS_OK, &err, "get");
    assert_int_equal(v.n_found, 0);
    npvdb_client_vectors_free(&v);

    /* The limits themselves are fine: a 1024-byte key is accepted. */
    longkey[1024] = '\0';
    rows[2 * DIM + 1] = 0.5f;
    expect(insert_one(f, DIM, lk, rows, 2, &err), NPVDB_STATUS_OK, &err,
           "insert 1024-byte key");
    npvdb_error e;
    assert_int_equal(npvdb_insert(f->ref, lk, rows, 2, NULL, &e), NPVDB_OK);
    still_serving(f, N + 2);
    /* Existing keys were not touched by the failed upserts above. */
    expect(npvdb_client_get(f->s.client, keys, 1, DIM, &v, &err),
           NPVDB_STATUS_OK, &err, "get e0");
    assert_memory_equal(v.vectors, f->data.rows, DIM * sizeof(float));
    npvdb_client_vectors_free(&v);
    free(longkey);
}

/* The bad requests both search RPCs refuse alike. */
static void bad_queries(fixture *f, it_search_fn fn, const char *rpc)
{
    npvdb_client *c = f->s.client;
    npvdb_client_error err;
    npvdb_client_results res;
    const float *q = f->q.rows;
    char what[128];
#define EXPECT_BAD(call, label)                                                \
    do {                                                                       \
        snprintf(what, sizeof what, "%s: %s", rpc, label);                     \
        expect(call, NPVDB_STATUS_INVALID_ARGUMENT, &err, what);               \
        still_serving(f, N);                                                   \
    } while (0)
    EXPECT_BAD(fn(c, q, 2, DIM, 0, 0, &res, &err), "k 0");
    /* k past the vector count gives short rows (issue 9). */
    snprintf(what, sizeof what, "%s: k > vector count", rpc);
    expect(fn(c, q, 2, DIM, N + 1, 0, &res, &err), NPVDB_STATUS_OK, &err, what);
    if (res.counts[0] != N || res.counts[1] != N)
        fail_msg("%s: k > vector count: rows of %u and %u, want %d", rpc,
                 res.counts[0], res.counts[1], N);
    npvdb_client_results_free(&res);
    still_serving(f, N);
    EXPECT_BAD(fn(c, q, 1, DIM, 16385, 0, &res, &err), "k > 16384");
    /* One query of DIM+1 floats is not the collection's dim. */
    EXPECT_BAD(fn(c, q, 1, DIM + 1, 3, 0, &res, &err),
               "wrong query byte length");
    /* Two queries of DIM/2 have the byte length of one of DIM: only the
     * dim field tells them apart. */
    EXPECT_BAD(fn(c, q, 2, DIM / 2, 3, 0, &res, &err), "dim mismatch");
    if (!strstr(err.msg, "dim"))
        fail_msg("%s: dim mismatch message does not say dim: %s", rpc, err.msg);
    float bad[2 * DIM];
    memcpy(bad, q, sizeof bad);
    bad[DIM + 4] = NAN;
    EXPECT_BAD(fn(c, bad, 2, DIM, 3, 0, &res, &err), "NaN query");
    bad[DIM + 4] = -INFINITY;
    EXPECT_BAD(fn(c, bad, 2, DIM, 3, 0, &res, &err), "Inf query");
#undef EXPECT_BAD
    /* k equal to the count is the largest valid k. */
    snprintf(what, sizeof what, "%s: k = vector count", rpc);
    expect(fn(c, q, 2, DIM, N, 0, &res, &err), NPVDB_STATUS_OK, &err, what);
    assert_int_equal(res.counts[0], N);
    assert_int_equal(res.counts[1], N);
    npvdb_client_results_free(&res);
}

/* A raw request of `method` (GetClosest or Search: same field numbers)
 * whose queries bytes and dim field are given. */
static int raw_query(fixture *f, const char *method, size_t bytes, uint32_t dim,
                     char *msg, size_t msg_len)
{
    Npvdb__V1__SearchRequest req = NPVDB__V1__SEARCH_REQUEST__INIT;
    req.queries.data = (uint8_t *)f->q.rows;
    req.queries.len = bytes;
    req.k = 3;
    req.dim = dim;
    uint8_t buf[1024];
    assert_true(npvdb__v1__search_request__get_packed_size(&req) <= sizeof buf);
    size_t len = npvdb__v1__search_request__pack(&req, buf);
    return it_raw_unary(f->s.addr, method, buf, len, msg, msg_len);
}

static void test_bad_search(void **state)
{
    fixture *f = *state;
    load(f);
    bad_queries(f, npvdb_client_get_closest, "get_closest");
    bad_queries(f, npvdb_client_search, "search");
    static const char *const methods[] = {"/npvdb.v1.VectorDB/GetClosest",
                                          "/npvdb.v1.VectorDB/Search"};
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    char msg[512];
    for (int i = 0; i < 2; i++) {
        int rc = it_raw_unary(f->s.addr, methods[i], junk, sizeof junk, msg,
                              sizeof msg);
        if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
            fail_msg("malformed %s: status %d (%s)", methods[i], rc, msg);
        /* dim 0 is unchecked: whole rows of the collection's dim pass (one
         * query: it_raw_unary reads a single reply message). */
        rc = raw_query(f, methods[i], DIM * 4, 0, msg, sizeof msg);
        if (rc != NPVDB_STATUS_OK)
            fail_msg("%s with dim 0: status %d (%s)", methods[i], rc, msg);
        /* Bytes that are no whole number of rows, with or without dim. */
        rc = raw_query(f, methods[i], 2 * DIM * 4 + 4, 0, msg, sizeof msg);
        if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
            fail_msg("%s with a partial row: status %d (%s)", methods[i], rc,
                     msg);
        rc = raw_query(f, methods[i], 2 * DIM * 4 + 4, DIM, msg, sizeof msg);
        if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
            fail_msg("%s with a partial row, dim %d: status %d (%s)",
                     methods[i], DIM, rc, msg);
        still_serving(f, N);
    }
    int rc = it_raw_unary(f->s.addr, "/npvdb.v1.VectorDB/NoSuchMethod", junk,
                          sizeof junk, msg, sizeof msg);
    if (rc != NPVDB_STATUS_UNIMPLEMENTED)
        fail_msg("unknown method: status %d (%s)", rc, msg);
    still_serving(f, N);
}

/* Messages past the server's receive limit (--max-message-mb, 64 MiB by
 * default; 4 here to keep the test light). */
static void test_resource_exhausted(void **state)
{
    fixture *f = *state;
    assert_int_equal(it_server_stop(&f->s), 0);
    it_server_start(&f->s, "--max-message-mb", "4", NULL);
    load(f);
    npvdb_client_error err;
    size_t nq = (5u << 20) / (DIM * sizeof(float)); /* 5 MiB of queries */
    float *big = calloc(nq * DIM, sizeof(float));
    assert_non_null(big);
    npvdb_client_results res;
    expect(
        npvdb_client_get_closest(f->s.client, big, nq, DIM, 1, 0, &res, &err),
        NPVDB_STATUS_RESOURCE_EXHAUSTED, &err, "5 MiB GetClosest");
    still_serving(f, N);
    expect(npvdb_client_search(f->s.client, big, nq, DIM, 1, 0, &res, &err),
           NPVDB_STATUS_RESOURCE_EXHAUSTED, &err, "5 MiB Search request");
    still_serving(f, N);

    size_t n = nq;
    char **keys = malloc(n * sizeof *keys);
    char *kb = malloc(n * 12);
    assert_non_null(keys);
    assert_non_null(kb);
    for (size_t i = 0; i < n; i++) {
        keys[i] = kb + i * 12;
        snprintf(keys[i], 12, "b%zu", i);
    }
    expect(insert_one(f, DIM, (const char *const *)keys, big, n, &err),
           NPVDB_STATUS_RESOURCE_EXHAUSTED, &err, "5 MiB Insert message");
    still_serving(f, N);
    free(keys);
    free(kb);
    free(big);
}

/* A Search reply past the server's message limit (1 MiB here) is refused
 * with RESOURCE_EXHAUSTED, whether the server sees it before searching (the
 * distances alone are too big) or only once the keys are known; fewer
 * queries per call, or GetClosest (one message per query), get through. */
static void test_search_reply_too_big(void **state)
{
    fixture *f = *state;
    assert_int_equal(it_server_stop(&f->s), 0);
    it_server_start(&f->s, "--max-message-mb", "1", NULL);
    load(f);
    it_data q;
    it_data_make(&q, 600, DIM, 23, "q");
    npvdb_client *c = f->s.client;
    npvdb_client_error err;
    npvdb_client_results res, gc;
    /* k = N: each query's reply row is about 2000 bytes of distances and
     * 2900 of keys, so 300 queries need ~1.5 MiB but their distances fit. */
    expect(npvdb_client_search(c, q.rows, 300, DIM, N, 0, &res, &err),
           NPVDB_STATUS_RESOURCE_EXHAUSTED, &err, "Search reply of ~1.5 MiB");
    if (!strstr(err.msg, "fewer queries"))
        fail_msg("the message does not say what to do: %s", err.msg);
    still_serving(f, N);
    /* 600 x 500 distances alone are 1.2 MB. */
    expect(npvdb_client_search(c, q.rows, 600, DIM, N, 0, &res, &err),
           NPVDB_STATUS_RESOURCE_EXHAUSTED, &err, "Search reply over 1.2 MB");
    still_serving(f, N);
    /* The same 300 queries through GetClosest: small messages, fine. */
    expect(npvdb_client_get_closest(c, q.rows, 300, DIM, N, 0, &gc, &err),
           NPVDB_STATUS_OK, &err, "GetClosest of the same 300 queries");
    assert_int_equal(gc.counts[299], N);
    npvdb_client_results_free(&gc);
    /* And a Search of fewer queries fits and agrees. */
    expect(npvdb_client_search(c, q.rows, 100, DIM, N, 0, &res, &err),
           NPVDB_STATUS_OK, &err, "Search of 100 queries");
    expect(npvdb_client_get_closest(c, q.rows, 100, DIM, N, 0, &gc, &err),
           NPVDB_STATUS_OK, &err, "GetClosest of 100 queries");
    it_assert_results_equal(&res, &gc);
    npvdb_client_results_free(&res);
    npvdb_client_results_free(&gc);
    still_serving(f, N);
    it_data_free(&q);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_found_before_init, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resource_exhausted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_search_reply_too_big, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
