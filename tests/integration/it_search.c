/*
 * it_search.c -- the unary Search RPC through the C client: its answers
 * equal GetClosest's and the engine's (short rows and their padding
 * included), the `dim` field is checked only when set, a handle shared by
 * threads mixes both RPCs, and the client refuses a reply that breaks the
 * contract (checked against a fake server that sends crafted replies).
 * Bad requests to a real server are in it_errors.
 */
#include "harness.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DIM 16

static void init_insert(npvdb_client *c, npvdb_client_metric m, uint32_t shards,
                        const it_data *train, const it_data *data)
{
    npvdb_client_init_params p = {.dim = data->dim,
                                  .metric = m,
                                  .n_shards = shards,
                                  .train = train ? train->rows : NULL,
                                  .n_train = train ? train->n : 0};
    npvdb_client_error err;
    int rc = npvdb_client_init(c, &p, NULL, NULL, &err);
    if (rc != NPVDB_STATUS_OK) fail_msg("init: %s", err.msg);
    rc = npvdb_client_insert(c, data->dim, (const char *const *)data->keys,
                             data->rows, data->n, 500, NULL, NULL, NULL, &err);
    if (rc != NPVDB_STATUS_OK) fail_msg("insert: %s", err.msg);
}

static void search_ok(it_search_fn fn, npvdb_client *c, const float *q,
                      size_t nq, uint32_t dim, uint32_t k, uint32_t nprobe,
                      npvdb_client_results *out)
{
    npvdb_client_error err;
    int rc = fn(c, q, nq, dim, k, nprobe, out, &err);
    if (rc != NPVDB_STATUS_OK)
        fail_msg("%s: %s (%s)",
                 fn == npvdb_client_search ? "search" : "get_closest", err.msg,
                 npvdb_status_name(rc));
}

/* Search and GetClosest on the same server give the same results, at an
 * approximate nprobe too. */
static void assert_rpcs_agree(npvdb_client *c, const float *q, size_t nq,
                              uint32_t k, uint32_t nprobe)
{
    npvdb_client_results a, b;
    search_ok(npvdb_client_get_closest, c, q, nq, DIM, k, nprobe, &a);
    search_ok(npvdb_client_search, c, q, nq, DIM, k, nprobe, &b);
    it_assert_results_equal(&a, &b);
    npvdb_client_results_free(&a);
    npvdb_client_results_free(&b);
}

/* Trained L2, untrained cosine (replace), trained IP: Search equals the
 * engine's exact results and GetClosest's at every nprobe. */
static void test_search_equals_get_closest_and_engine(void **state)
{
    it_server *s = *state;
    it_data train, data, q;
    it_data_make(&train, 800, DIM, 31, "t");
    it_data_make(&data, 3000, DIM, 32, "");
    it_data_make(&q, 40, DIM, 33, "q");
    init_insert(s->client, NPVDB_CLIENT_L2, 8, &train, &data);
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 8, &train, &data);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 8);
    it_assert_search_same(s->client, ref, q.rows, 1, 1, 65536);
    it_assert_search_same(s->client, ref, q.rows, 3, 3000, 8);
    for (uint32_t nprobe = 0; nprobe <= 4; nprobe++)
        assert_rpcs_agree(s->client, q.rows, q.n, 10, nprobe);
    npvdb_free(ref);

    /* Cosine, untrained: brute force, one row per query. */
    npvdb_client_init_params p = {
        .dim = DIM, .metric = NPVDB_CLIENT_COSINE, .replace = 1};
    npvdb_client_error err;
    assert_int_equal(npvdb_client_init(s->client, &p, NULL, NULL, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(
        npvdb_client_insert(s->client, DIM, (const char *const *)data.keys,
                            data.rows, 700, 0, NULL, NULL, NULL, &err),
        NPVDB_STATUS_OK);
    it_data part = data;
    part.n = 700;
    ref = it_engine_make(DIM, NPVDB_METRIC_COSINE, 0, NULL, &part);
    it_assert_search_same(s->client, ref, q.rows, q.n, 7, 0);
    it_assert_search_same(s->client, ref, q.rows, 2, 700, 0);
    npvdb_free(ref);

    /* Inner product, trained. */
    p = (npvdb_client_init_params){.dim = DIM,
                                   .metric = NPVDB_CLIENT_IP,
                                   .n_shards = 4,
                                   .train = train.rows,
                                   .n_train = train.n,
                                   .replace = 1};
    assert_int_equal(npvdb_client_init(s->client, &p, NULL, NULL, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(
        npvdb_client_insert(s->client, DIM, (const char *const *)data.keys,
                            data.rows, 1000, 0, NULL, NULL, NULL, &err),
        NPVDB_STATUS_OK);
    part.n = 1000;
    ref = it_engine_make(DIM, NPVDB_METRIC_IP, 4, &train, &part);
    it_assert_search_same(s->client, ref, q.rows, q.n, 12, 4);
    assert_rpcs_agree(s->client, q.rows, q.n, 12, 1);
    npvdb_free(ref);
    it_data_free(&train);
    it_data_free(&data);
    it_data_free(&q);
}

/* nprobe 1 over small shards finds fewer than k hits: Search's rows are
 * short with +inf padding on the wire, and the client turns them into the
 * same NULL / 0 slots as GetClosest's. */
static void test_search_short_rows(void **state)
{
    it_server *s = *state;
    it_data train, data, q;
    it_data_make(&train, 400, DIM, 34, "t");
    it_data_make(&data, 200, DIM, 35, "s");
    it_data_make(&q, 20, DIM, 36, "q");
    init_insert(s->client, NPVDB_CLIENT_L2, 8, &train, &data);
    npvdb_client_results r;
    search_ok(npvdb_client_search, s->client, q.rows, q.n, DIM, 100, 1, &r);
    size_t short_rows = 0;
    for (size_t i = 0; i < r.nq; i++) {
        short_rows += r.counts[i] < 100;
        for (uint32_t j = 1; j < r.counts[i]; j++)
            assert_true(r.distances[i * 100 + j - 1] <=
                        r.distances[i * 100 + j]);
    }
    if (short_rows == 0) fail_msg("no short row: the test lost its point");
    npvdb_client_results_free(&r);
    assert_rpcs_agree(s->client, q.rows, q.n, 100, 1);
    assert_rpcs_agree(s->client, q.rows, q.n, 100, 2);
    /* And exact search fills every row. */
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 8, &train, &data);
    it_assert_search_same(s->client, ref, q.rows, q.n, 100, 8);
    npvdb_free(ref);
    it_data_free(&train);
    it_data_free(&data);
    it_data_free(&q);
}

/* A raw SearchRequest; returns the status (message in msg). */
static int raw_search(const it_server *s, const float *q, size_t bytes,
                      uint32_t k, uint32_t dim, char *msg, size_t msg_len)
{
    Npvdb__V1__SearchRequest req = NPVDB__V1__SEARCH_REQUEST__INIT;
    req.queries.data = (uint8_t *)q;
    req.queries.len = bytes;
    req.k = k;
    req.dim = dim;
    size_t len = npvdb__v1__search_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    npvdb__v1__search_request__pack(&req, buf);
    int rc = it_raw_unary(s->addr, "/npvdb.v1.VectorDB/Search", buf, len, msg,
                          msg_len);
    free(buf);
    return rc;
}

/* dim 0 (an old client) is not checked; the client library always sends
 * it, so a mismatch is caught there (it_errors). */
static void test_search_dim_field(void **state)
{
    it_server *s = *state;
    it_data data;
    it_data_make(&data, 100, DIM, 37, "d");
    init_insert(s->client, NPVDB_CLIENT_L2, 0, NULL, &data);
    char msg[512];
    int rc = raw_search(s, data.rows, 2 * DIM * 4, 3, 0, msg, sizeof msg);
    if (rc != NPVDB_STATUS_OK) fail_msg("dim 0: status %d (%s)", rc, msg);
    rc = raw_search(s, data.rows, 2 * DIM * 4, 3, DIM, msg, sizeof msg);
    if (rc != NPVDB_STATUS_OK) fail_msg("dim %d: status %d (%s)", DIM, rc, msg);
    /* 2 rows of DIM/2 have the bytes of 1 row of DIM: only dim tells. */
    rc = raw_search(s, data.rows, DIM * 4, 3, DIM / 2, msg, sizeof msg);
    if (rc != NPVDB_STATUS_INVALID_ARGUMENT)
        fail_msg("dim %d on a dim %d collection: status %d (%s)", DIM / 2, DIM,
                 rc, msg);
    if (!strstr(msg, "dim")) fail_msg("message does not say dim: %s", msg);
    it_data_free(&data);
}

/* ---- threads ---- */

typedef struct searcher {
    npvdb_client *c;
    npvdb_collection *ref;
    const it_data *q;
    int id, failures;
} searcher;

/* Alternates the two RPCs; compares keys only (no cmocka off the main
 * thread). */
static void *search_loop(void *arg)
{
    searcher *w = arg;
    for (int round = 0; round < 12; round++) {
        it_search_fn fn = (round + w->id) % 2 ? npvdb_client_search
                                              : npvdb_client_get_closest;
        size_t nq = 1 + (size_t)(round % w->q->n);
        npvdb_client_results got;
        npvdb_client_error err;
        npvdb_results want;
        npvdb_error e;
        if (fn(w->c, w->q->rows, nq, DIM, 5, 65536, &got, &err) !=
            NPVDB_STATUS_OK) {
            w->failures++;
            continue;
        }
        if (npvdb_search(w->ref, w->q->rows, nq, 5, 65536, &want, &e) ==
            NPVDB_OK) {
            for (size_t i = 0; i < nq * 5; i++)
                if (!got.keys[i] || strcmp(got.keys[i], want.keys[i]))
                    w->failures++;
            npvdb_results_free(&want);
        } else {
            w->failures++;
        }
        npvdb_client_results_free(&got);
    }
    return NULL;
}

static void test_search_parallel_on_one_handle(void **state)
{
    it_server *s = *state;
    it_data data, q;
    it_data_make(&data, 1000, DIM, 38, "p");
    it_data_make(&q, 10, DIM, 39, "q");
    init_insert(s->client, NPVDB_CLIENT_L2, 0, NULL, &data);
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &data);
    searcher w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (searcher){s->client, ref, &q, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, search_loop, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    npvdb_free(ref);
    it_data_free(&data);
    it_data_free(&q);
}

/* ---- a fake server: the client distrusts the reply ---- */

/* Answers every Search call with `reply` (raw bytes, status OK) and every
 * other method (the client's health check) with UNIMPLEMENTED. One thread,
 * one call at a time: the client under test is blocking. */
typedef struct fake {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
    char addr[64];
    const uint8_t *reply; /* set by the test between calls */
    size_t reply_len;
    int shutting_down;
} fake;

static char tag_new, tag_op, tag_down;

static void fake_wait(fake *f, void *tag)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE) return;
        if (ev.tag == &tag_down) f->shutting_down = 1;
        if (ev.tag == tag) return;
    }
}

static void fake_answer(fake *f, grpc_call *call, int is_search)
{
    grpc_byte_buffer *in = NULL, *out = NULL;
    int cancelled = 0;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &in;
    if (grpc_call_start_batch(call, ops, 2, &tag_op, NULL) == GRPC_CALL_OK)
        fake_wait(f, &tag_op);
    if (in) grpc_byte_buffer_destroy(in);
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    grpc_slice details = grpc_slice_from_static_string("fake");
    if (is_search) {
        grpc_slice sl =
            grpc_slice_from_copied_buffer((const char *)f->reply, f->reply_len);
        out = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = out;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status =
        is_search ? GRPC_STATUS_OK : GRPC_STATUS_UNIMPLEMENTED;
    ops[n++].data.send_status_from_server.status_details = &details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &cancelled;
    if (grpc_call_start_batch(call, ops, n, &tag_op, NULL) == GRPC_CALL_OK)
        fake_wait(f, &tag_op);
    if (out) grpc_byte_buffer_destroy(out);
    grpc_call_unref(call);
}

static void *fake_loop(void *arg)
{
    fake *f = arg;
    while (!f->shutting_down) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        if (grpc_server_request_call(f->server, &call, &details, &md, f->cq,
                                     f->cq, &tag_new) != GRPC_CALL_OK)
            break;
        fake_wait(f, &tag_new);
        if (call && !f->shutting_down)
            fake_answer(f, call,
                        grpc_slice_str_cmp(details.method,
                                           "/npvdb.v1.VectorDB/Search") == 0);
        else if (call)
            grpc_call_unref(call);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
    }
    /* Wait for the shutdown notification itself. */
    while (!f->shutting_down)
        fake_wait(f, &tag_down);
    return NULL;
}

static void fake_start(fake *f)
{
    memset(f, 0, sizeof *f);
    grpc_init();
    f->server = grpc_server_create(NULL, NULL);
    f->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(f->server, f->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(f->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    assert_true(port > 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", port);
    grpc_server_start(f->server);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_loop, f), 0);
}

static void fake_stop(fake *f)
{
    grpc_server_shutdown_and_notify(f->server, f->cq, &tag_down);
    grpc_server_cancel_all_calls(f->server);
    pthread_join(f->thread, NULL);
    grpc_server_destroy(f->server);
    grpc_completion_queue_shutdown(f->cq);
    while (grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(f->cq);
    grpc_shutdown();
}

/* A well-formed reply for 2 queries, k 3: query 0 has 3 hits, query 1 has
 * 1, the rest of its row is +inf. Cases break one thing at a time. */
typedef struct canned {
    uint32_t k;
    uint32_t counts[3];
    size_t n_counts;
    char *keys[5];
    size_t n_keys;
    float dist[8];
    size_t dist_bytes;
} canned;

static void canned_good(canned *c)
{
    static char *keys[] = {"a", "b", "c", "x"};
    memset(c, 0, sizeof *c);
    c->k = 3;
    c->counts[0] = 3;
    c->counts[1] = 1;
    c->n_counts = 2;
    memcpy(c->keys, keys, sizeof keys);
    c->n_keys = 4;
    float d[6] = {0.5f, 1.0f, 2.0f, 0.25f, INFINITY, INFINITY};
    memcpy(c->dist, d, sizeof d);
    c->dist_bytes = sizeof d;
}

/* Serves `c` and calls npvdb_client_search for 2 queries of k 3. */
static int search_canned(fake *f, npvdb_client *cl, const canned *c,
                         npvdb_client_results *out, npvdb_client_error *err)
{
    Npvdb__V1__SearchReply r = NPVDB__V1__SEARCH_REPLY__INIT;
    r.k = c->k;
    r.n_counts = c->n_counts;
    r.counts = (uint32_t *)c->counts;
    r.n_keys = c->n_keys;
    r.keys = (char **)c->keys;
    r.distances.data = (uint8_t *)c->dist;
    r.distances.len = c->dist_bytes;
    uint8_t buf[512];
    assert_true(npvdb__v1__search_reply__get_packed_size(&r) <= sizeof buf);
    f->reply_len = npvdb__v1__search_reply__pack(&r, buf);
    f->reply = buf;
    float q[2 * 4] = {0};
    int rc = npvdb_client_search(cl, q, 2, 4, 3, 0, out, err);
    f->reply = NULL;
    return rc;
}

static void expect_internal(fake *f, npvdb_client *cl, const canned *c,
                            const char *what, const char *text)
{
    npvdb_client_results r;
    npvdb_client_error err;
    int rc = search_canned(f, cl, c, &r, &err);
    if (rc != NPVDB_STATUS_INTERNAL)
        fail_msg("%s: got %s (%s), want INTERNAL", what,
                 npvdb_status_name((npvdb_status)rc), err.msg);
    if (!strstr(err.msg, text))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", what, err.msg,
                 text);
    /* On error the results are zeroed: nothing to free, nothing dangling. */
    assert_null(r.counts);
    assert_null(r.keys);
    assert_null(r.distances);
    assert_int_equal(r.nq, 0);
}

static void test_search_reply_contract_checked(void **state)
{
    (void)state;
    fake f;
    fake_start(&f);
    npvdb_client_error err;
    npvdb_client *cl = npvdb_client_connect(f.addr, 10000, &err);
    if (!cl) fail_msg("connect to the fake: %s", err.msg);

    /* The good reply decodes into get_closest's layout. */
    canned c;
    canned_good(&c);
    npvdb_client_results r;
    int rc = search_canned(&f, cl, &c, &r, &err);
    if (rc != NPVDB_STATUS_OK) fail_msg("good reply: %s", err.msg);
    assert_int_equal(r.nq, 2);
    assert_int_equal(r.k, 3);
    assert_int_equal(r.counts[0], 3);
    assert_int_equal(r.counts[1], 1);
    assert_string_equal(r.keys[0], "a");
    assert_string_equal(r.keys[2], "c");
    assert_string_equal(r.keys[3], "x");
    assert_null(r.keys[4]);
    assert_null(r.keys[5]);
    assert_float_equal(r.distances[1], 1.0f, 0);
    assert_float_equal(r.distances[3], 0.25f, 0);
    assert_float_equal(r.distances[4], 0.0f, 0);
    assert_float_equal(r.distances[5], 0.0f, 0);
    npvdb_client_results_free(&r);

    canned_good(&c);
    c.k = 4;
    expect_internal(&f, cl, &c, "reply k 4 for k 3", "k 4");
    canned_good(&c);
    c.n_counts = 3;
    expect_internal(&f, cl, &c, "3 counts for 2 queries", "3 counts");
    canned_good(&c);
    c.n_counts = 1;
    expect_internal(&f, cl, &c, "1 count for 2 queries", "1 counts");
    canned_good(&c);
    c.counts[1] = 4; /* more than k, though keys could still add up */
    expect_internal(&f, cl, &c, "count above k", "more than k");
    canned_good(&c);
    c.counts[1] = 2; /* 5 hits announced, 4 keys sent */
    c.dist[4] = 0.5f;
    expect_internal(&f, cl, &c, "counts vs keys", "add up to 5");
    canned_good(&c);
    c.keys[4] = "y"; /* 5 keys sent, 4 announced */
    c.n_keys = 5;
    expect_internal(&f, cl, &c, "keys vs counts", "5 keys");
    canned_good(&c);
    c.dist_bytes = 5 * sizeof(float); /* unpadded short row */
    expect_internal(&f, cl, &c, "distances too short", "bytes of distances");
    canned_good(&c);
    c.dist_bytes = 6 * sizeof(float) + 2;
    expect_internal(&f, cl, &c, "distances not whole floats",
                    "bytes of distances");
    canned_good(&c);
    c.dist[5] = 0.0f;
    expect_internal(&f, cl, &c, "padding 0, not +inf", "+inf");

    /* Bytes that are no SearchReply at all. */
    static const uint8_t junk[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f};
    f.reply = junk;
    f.reply_len = sizeof junk;
    float q[8] = {0};
    rc = npvdb_client_search(cl, q, 2, 4, 3, 0, &r, &err);
    f.reply = NULL;
    assert_int_equal(rc, NPVDB_STATUS_INTERNAL);
    if (!strstr(err.msg, "malformed")) fail_msg("junk reply: %s", err.msg);

    npvdb_client_close(cl);
    fake_stop(&f);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_search_equals_get_closest_and_engine, it_setup_fixed_server,
            it_teardown_server),
        cmocka_unit_test_setup_teardown(
            test_search_short_rows, it_setup_fixed_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_search_dim_field, it_setup_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_search_parallel_on_one_handle,
                                        it_setup_fixed_server,
                                        it_teardown_server),
        cmocka_unit_test(test_search_reply_contract_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
