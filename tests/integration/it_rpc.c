/*
 * it_rpc.c -- every RPC of a real npvdb-server through the C client, with
 * the answers checked against the engine linked into the test.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>

#include <cmocka.h>

#define DIM 16

static void init_ok(npvdb_client *c, uint32_t dim, npvdb_client_metric m,
                    uint32_t shards, const it_data *train, int replace,
                    int want_trained)
{
    npvdb_client_init_params p = {.dim = dim,
                                  .metric = m,
                                  .n_shards = shards,
                                  .train = train ? train->rows : NULL,
                                  .n_train = train ? train->n : 0,
                                  .replace = replace};
    int trained = -1, replaced = -1;
    npvdb_client_error err;
    int rc = npvdb_client_init(c, &p, &trained, &replaced, &err);
    if (rc != NPVDB_STATUS_OK)
        fail_msg("init: %s (%s)", err.msg, npvdb_status_name(rc));
    assert_int_equal(trained, want_trained);
    assert_int_equal(replaced, replace ? 1 : 0);
}

static void insert_ok(npvdb_client *c, const it_data *d, size_t batch,
                      uint64_t want_new, uint64_t want_replaced)
{
    npvdb_client_insert_reply r;
    npvdb_client_error err;
    int rc = npvdb_client_insert(c, d->dim, (const char *const *)d->keys,
                                 d->rows, d->n, batch, NULL, NULL, &r, &err);
    if (rc != NPVDB_STATUS_OK)
        fail_msg("insert: %s (%s)", err.msg, npvdb_status_name(rc));
    assert_int_equal(r.inserted, want_new);
    assert_int_equal(r.replaced, want_replaced);
}

static void info_ok(npvdb_client *c, npvdb_client_info *info)
{
    npvdb_client_error err;
    int rc = npvdb_client_info_get(c, info, &err);
    if (rc != NPVDB_STATUS_OK) fail_msg("info: %s", err.msg);
}

static void test_health_and_info_before_init(void **state)
{
    it_server *s = *state;
    int serving = 0;
    npvdb_client_error err;
    assert_int_equal(npvdb_client_health(s->client, "", &serving, &err),
                     NPVDB_STATUS_OK);
    assert_true(serving);
    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_false(info.initialized);
    assert_int_equal(info.vectors, 0);
    assert_true(strlen(info.server_version) > 0);
    npvdb_client_info_free(&info);
}

typedef struct progress {
    size_t calls, last, total;
} progress;

static int on_progress(void *ctx, size_t sent, size_t total)
{
    progress *p = ctx;
    assert_true(sent > p->last);
    p->calls++;
    p->last = sent;
    p->total = total;
    return 0;
}

/* Trained L2 collection: exact search (nprobe >= shards) equals the
 * engine's, Info and Get describe what was inserted. */
static void test_l2_trained_equals_engine(void **state)
{
    it_server *s = *state;
    it_data train, data, q;
    it_data_make(&train, 800, DIM, 1, "t");
    it_data_make(&data, 3000, DIM, 2, "");
    it_data_make(&q, 40, DIM, 3, "q");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 8, &train, 0, 1);

    progress pr = {0};
    npvdb_client_insert_reply r;
    npvdb_client_error err;
    assert_int_equal(
        npvdb_client_insert(s->client, DIM, (const char *const *)data.keys,
                            data.rows, data.n, 500, on_progress, &pr, &r, &err),
        NPVDB_STATUS_OK);
    assert_int_equal(r.inserted, 3000);
    assert_int_equal(r.replaced, 0);
    assert_int_equal(r.messages, 6);
    assert_int_equal(pr.calls, 6);
    assert_int_equal(pr.last, 3000);

    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_true(info.initialized);
    assert_int_equal(info.dim, DIM);
    assert_int_equal(info.metric, NPVDB_CLIENT_L2);
    assert_int_equal(info.vectors, 3000);
    assert_int_equal(info.n_shards, 8);
    assert_true(info.trained);
    assert_int_equal(info.n_shard_sizes, 8);
    uint64_t sum = 0;
    for (size_t i = 0; i < info.n_shard_sizes; i++)
        sum += info.shard_sizes[i];
    assert_int_equal(sum, 3000);
    assert_true(info.memory_bytes >= 3000 * DIM * sizeof(float));
    npvdb_client_info_free(&info);

    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 8, &train, &data);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 8);
    it_assert_search_same(s->client, ref, q.rows, q.n, 1, 100);
    it_assert_search_same(s->client, ref, q.rows, 3, 3000, 8);
    /* Approximate search still returns k ascending hits per query. */
    npvdb_client_results res;
    assert_int_equal(npvdb_client_get_closest(s->client, q.rows, q.n, DIM, 10,
                                              1, &res, &err),
                     NPVDB_STATUS_OK);
    for (size_t i = 0; i < q.n; i++) {
        assert_int_equal(res.counts[i], 10);
        for (uint32_t j = 1; j < 10; j++)
            assert_true(res.distances[i * 10 + j - 1] <=
                        res.distances[i * 10 + j]);
    }
    npvdb_client_results_free(&res);

    /* Get: found keys in request order with their exact vectors. */
    const char *keys[] = {"17", "nope", "2999", "0"};
    npvdb_client_vectors v;
    assert_int_equal(npvdb_client_get(s->client, keys, 4, DIM, &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 3);
    assert_string_equal(v.keys[0], "17");
    assert_string_equal(v.keys[1], "2999");
    assert_string_equal(v.keys[2], "0");
    assert_memory_equal(v.vectors, data.rows + 17 * DIM, DIM * sizeof(float));
    assert_memory_equal(v.vectors + DIM, data.rows + 2999 * DIM,
                        DIM * sizeof(float));
    assert_memory_equal(v.vectors + 2 * DIM, data.rows, DIM * sizeof(float));
    assert_int_equal(v.n_missing, 1);
    assert_string_equal(v.missing[0], "nope");
    npvdb_client_vectors_free(&v);

    npvdb_free(ref);
    it_data_free(&train);
    it_data_free(&data);
    it_data_free(&q);
}

/* Untrained cosine collection: every search is brute force; Get gives the
 * normalised vectors, as the engine stores them. */
static void test_cosine_untrained_equals_engine(void **state)
{
    it_server *s = *state;
    it_data data, q;
    it_data_make(&data, 300, DIM, 4, "c");
    it_data_make(&q, 25, DIM, 5, "q");
    init_ok(s->client, DIM, NPVDB_CLIENT_COSINE, 16, NULL, 0, 0);
    insert_ok(s->client, &data, 64, 300, 0);
    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_false(info.trained);
    assert_int_equal(info.metric, NPVDB_CLIENT_COSINE);
    assert_int_equal(info.vectors, 300);
    npvdb_client_info_free(&info);

    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_COSINE, 16, NULL, &data);
    it_assert_search_same(s->client, ref, q.rows, q.n, 7, 65536);
    it_assert_search_same(s->client, ref, q.rows, q.n, 300, 1);

    const char *keys[] = {"c5", "c299"};
    npvdb_client_vectors v;
    npvdb_client_error err;
    assert_int_equal(npvdb_client_get(s->client, keys, 2, DIM, &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 2);
    for (int i = 0; i < 2; i++) {
        float want[DIM];
        npvdb_error e;
        assert_int_equal(npvdb_get(ref, keys[i], want, &e), NPVDB_OK);
        for (int j = 0; j < DIM; j++)
            assert_float_equal(v.vectors[i * DIM + j], want[j], 1e-6);
    }
    npvdb_client_vectors_free(&v);
    npvdb_free(ref);
    it_data_free(&data);
    it_data_free(&q);
}

static void test_inner_product_equals_engine(void **state)
{
    it_server *s = *state;
    it_data train, data, q;
    it_data_make(&train, 400, DIM, 6, "t");
    it_data_make(&data, 1000, DIM, 7, "ip");
    it_data_make(&q, 20, DIM, 8, "q");
    init_ok(s->client, DIM, NPVDB_CLIENT_IP, 4, &train, 0, 1);
    insert_ok(s->client, &data, 0, 1000, 0);
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_IP, 4, &train, &data);
    it_assert_search_same(s->client, ref, q.rows, q.n, 12, 4);
    npvdb_free(ref);
    it_data_free(&train);
    it_data_free(&data);
    it_data_free(&q);
}

/* Upserts count as replaced, deletes count what existed, and searches keep
 * matching the engine given the same history. */
static void test_upsert_and_delete(void **state)
{
    it_server *s = *state;
    it_data data, upd, q;
    it_data_make(&data, 600, DIM, 9, "k");
    it_data_make(&upd, 150, DIM, 10, "k"); /* k0..k149 again, new rows */
    it_data_make(&q, 30, DIM, 11, "q");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 100, 600, 0);
    insert_ok(s->client, &upd, 100, 0, 150);
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &data);
    npvdb_error e;
    assert_int_equal(npvdb_insert(ref, (const char *const *)upd.keys, upd.rows,
                                  upd.n, NULL, &e),
                     NPVDB_OK);

    const char *del[] = {"k3", "k4", "k500", "missing-1", "k3", "k599"};
    uint64_t deleted = 0;
    npvdb_client_error err;
    assert_int_equal(npvdb_client_delete(s->client, del, 6, &deleted, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(deleted, 4);
    assert_int_equal(npvdb_delete(ref, del, 6, NULL, &e), NPVDB_OK);

    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_int_equal(info.vectors, 596);
    npvdb_client_info_free(&info);
    it_assert_search_same(s->client, ref, q.rows, q.n, 596, 65536);

    npvdb_client_vectors v;
    assert_int_equal(npvdb_client_get(s->client, del, 2, DIM, &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 0);
    assert_int_equal(v.n_missing, 2);
    npvdb_client_vectors_free(&v);
    /* The upserted vector is the new one. */
    const char *k7[] = {"k7"};
    assert_int_equal(npvdb_client_get(s->client, k7, 1, DIM, &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 1);
    assert_memory_equal(v.vectors, upd.rows + 7 * DIM, DIM * sizeof(float));
    npvdb_client_vectors_free(&v);

    npvdb_free(ref);
    it_data_free(&data);
    it_data_free(&upd);
    it_data_free(&q);
}

/* Init with replace drops the collection, even for another dim. */
static void test_init_replace(void **state)
{
    it_server *s = *state;
    it_data data, other;
    it_data_make(&data, 100, DIM, 12, "a");
    it_data_make(&other, 50, 8, 13, "b");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 0, 100, 0);
    init_ok(s->client, 8, NPVDB_CLIENT_COSINE, 0, NULL, 1, 0);
    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_int_equal(info.dim, 8);
    assert_int_equal(info.vectors, 0);
    assert_int_equal(info.metric, NPVDB_CLIENT_COSINE);
    npvdb_client_info_free(&info);
    insert_ok(s->client, &other, 0, 50, 0);
    npvdb_collection *ref =
        it_engine_make(8, NPVDB_METRIC_COSINE, 0, NULL, &other);
    it_assert_search_same(s->client, ref, other.rows, 5, 3, 65536);
    npvdb_free(ref);
    it_data_free(&data);
    it_data_free(&other);
}

static void test_snapshot_reply(void **state)
{
    it_server *s = *state;
    it_data data;
    it_data_make(&data, 500, DIM, 14, "s");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 0, 500, 0);
    npvdb_client_snapshot_info snap;
    npvdb_client_error err;
    int rc = npvdb_client_snapshot(s->client, &snap, &err);
    if (rc != NPVDB_STATUS_OK)
        fail_msg("snapshot: %s (%s)", err.msg, npvdb_status_name(rc));
    assert_int_equal(snap.vectors, 500);
    assert_true(snap.bytes > 500 * DIM * sizeof(float));
    assert_true(snap.seconds >= 0);
    struct stat st;
    char path[4400];
    /* The path may be relative to the data dir or absolute. */
    if (snap.path[0] == '/')
        snprintf(path, sizeof path, "%s", snap.path);
    else
        snprintf(path, sizeof path, "%s/%s", s->data_dir, snap.path);
    if (stat(path, &st) != 0 && stat(snap.path, &st) != 0)
        fail_msg("snapshot file %s does not exist", snap.path);
    assert_true(st.st_size > 0);
    it_data_free(&data);
}

/* ---- concurrency ---- */

typedef struct searcher {
    npvdb_client *c;
    npvdb_collection *ref;
    const it_data *q;
    int failures;
} searcher;

/* Compares keys only (no cmocka asserts off the main thread). */
static void *search_loop(void *arg)
{
    searcher *w = arg;
    for (int round = 0; round < 15; round++) {
        npvdb_client_results got;
        npvdb_client_error err;
        npvdb_results want;
        npvdb_error e;
        if (npvdb_client_get_closest(w->c, w->q->rows, w->q->n, DIM, 5, 65536,
                                     &got, &err) != NPVDB_STATUS_OK) {
            w->failures++;
            continue;
        }
        if (npvdb_search(w->ref, w->q->rows, w->q->n, 5, 65536, &want, &e) ==
            NPVDB_OK) {
            for (size_t i = 0; i < got.nq * 5; i++)
                if (strcmp(got.keys[i], want.keys[i])) w->failures++;
            npvdb_results_free(&want);
        }
        npvdb_client_results_free(&got);
    }
    return NULL;
}

/* An idle insert stream (a slow client) blocks nobody, and several threads
 * share one handle. */
static void test_slow_stream_and_parallel_calls(void **state)
{
    it_server *s = *state;
    it_data data, extra, q;
    it_data_make(&data, 1000, DIM, 15, "p");
    it_data_make(&extra, 10, DIM, 16, "x");
    it_data_make(&q, 10, DIM, 17, "q");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 0, 1000, 0);
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &data);

    npvdb_client_error err;
    npvdb_client_stream *slow = npvdb_client_insert_begin(s->client, DIM, &err);
    assert_non_null(slow);
    assert_int_equal(npvdb_client_stream_send(slow,
                                              (const char *const *)extra.keys,
                                              extra.rows, 5, &err),
                     NPVDB_STATUS_OK);
    /* The stream stays open while everything below runs. */
    searcher w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (searcher){s->client, ref, &q, 0};
        assert_int_equal(pthread_create(&th[i], NULL, search_loop, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    const char *k[] = {"p1"};
    uint64_t deleted = 0;
    assert_int_equal(npvdb_client_delete(s->client, k, 1, &deleted, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(
        npvdb_client_stream_send(slow, (const char *const *)extra.keys + 5,
                                 extra.rows + 5 * DIM, 5, &err),
        NPVDB_STATUS_OK);
    npvdb_client_insert_reply r;
    assert_int_equal(npvdb_client_stream_finish(slow, &r, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(r.inserted, 10);
    assert_int_equal(r.messages, 2);
    npvdb_client_info info;
    info_ok(s->client, &info);
    assert_int_equal(info.vectors, 1009);
    npvdb_client_info_free(&info);
    npvdb_free(ref);
    it_data_free(&data);
    it_data_free(&extra);
    it_data_free(&q);
}

/* A server that dies: calls fail fast with UNAVAILABLE naming the address
 * (no hang, no crash), and a restarted server on the same data dir is
 * reachable again with what was acknowledged. */
static void test_server_gone(void **state)
{
    it_server *s = *state;
    it_data data;
    it_data_make(&data, 200, DIM, 18, "g");
    init_ok(s->client, DIM, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 0, 200, 0);
    npvdb_client_error err;
    npvdb_client_stream *st = npvdb_client_insert_begin(s->client, DIM, &err);
    assert_non_null(st);

    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    npvdb_client_info info;
    int rc = npvdb_client_info_get(s->client, &info, &err);
    assert_int_equal(rc, NPVDB_STATUS_UNAVAILABLE);
    if (!strstr(err.msg, "cannot reach npvdb at") || !strstr(err.msg, s->addr))
        fail_msg("unhelpful message: %s", err.msg);
    rc = npvdb_client_stream_send(st, (const char *const *)data.keys, data.rows,
                                  10, &err);
    int frc = npvdb_client_stream_finish(st, NULL, &err);
    assert_true(rc != NPVDB_STATUS_OK || frc != NPVDB_STATUS_OK);
    npvdb_client *c2 = npvdb_client_connect(s->addr, 2000, &err);
    assert_null(c2);
    assert_int_equal(err.code, NPVDB_STATUS_UNAVAILABLE);

    npvdb_client_close(s->client);
    s->client = NULL;
    it_server_start(s, NULL);
    info_ok(s->client, &info);
    assert_int_equal(info.vectors, 200);
    npvdb_client_info_free(&info);
    it_data_free(&data);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The per-call deadline applies: the client gets DEADLINE_EXCEEDED and the
 * server keeps serving. The deadline cannot be met by construction: the same
 * exact search is first timed with no real deadline, and the deadline is an
 * eighth of that (at most 150 ms), so the test holds on a machine of any
 * speed, under the sanitizers as well. The expired search is still running
 * in the server when teardown sends SIGTERM, so this also checks a clean
 * shutdown with a handler busy on a dead call. */
static void test_deadline(void **state)
{
    it_server *s = *state;
    it_data data, q;
    it_data_make(&data, 50000, 64, 19, "d");
    it_data_make(&q, 2048, 64, 20, "q");
    init_ok(s->client, 64, NPVDB_CLIENT_L2, 0, NULL, 0, 0);
    insert_ok(s->client, &data, 0, 50000, 0);
    npvdb_client_results res;
    npvdb_client_error err;
    double t0 = now_ms();
    int rc = npvdb_client_get_closest(s->client, q.rows, q.n, 64, 100, 65536,
                                      &res, &err);
    double full_ms = now_ms() - t0;
    assert_int_equal(rc, NPVDB_STATUS_OK);
    npvdb_client_results_free(&res);
    int deadline_ms = (int)(full_ms / 8);
    if (deadline_ms > 150) deadline_ms = 150;
    if (deadline_ms < 1) deadline_ms = 1;
    npvdb_client_set_timeout(s->client, deadline_ms);
    t0 = now_ms();
    rc = npvdb_client_get_closest(s->client, q.rows, q.n, 64, 100, 65536, &res,
                                  &err);
    double failed_ms = now_ms() - t0;
    if (rc != NPVDB_STATUS_DEADLINE_EXCEEDED)
        fail_msg("the exact search took %.0f ms unhurried, yet with a %d ms "
                 "deadline it returned %s after %.0f ms",
                 full_ms, deadline_ms, npvdb_status_name(rc), failed_ms);
    npvdb_client_set_timeout(s->client, 60000);
    rc = npvdb_client_get_closest(s->client, q.rows, 2, 64, 3, 1, &res, &err);
    assert_int_equal(rc, NPVDB_STATUS_OK);
    npvdb_client_results_free(&res);
    it_data_free(&data);
    it_data_free(&q);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_info_before_init,
                                        it_setup_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_l2_trained_equals_engine,
                                        it_setup_fixed_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_cosine_untrained_equals_engine,
                                        it_setup_fixed_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_inner_product_equals_engine,
                                        it_setup_fixed_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(
            test_upsert_and_delete, it_setup_fixed_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(
            test_init_replace, it_setup_fixed_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_snapshot_reply, it_setup_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_slow_stream_and_parallel_calls,
                                        it_setup_fixed_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_server_gone, it_setup_server,
                                        it_teardown_server),
        cmocka_unit_test_setup_teardown(test_deadline, it_setup_server,
                                        it_teardown_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
