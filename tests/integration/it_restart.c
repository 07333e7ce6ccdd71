/*
 * it_restart.c -- a real npvdb-server stopped with SIGTERM and started again
 * on the same data directory gives the same answers: from a snapshot, from
 * a snapshot plus the log written after it, and from the log alone; and one
 * killed with SIGKILL after an automatic snapshot loses nothing.
 */
#include "harness.h"

#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define DIM 24

static void restart(it_server *s)
{
    int status = it_server_stop(s);
    if (status != 0)
        fail_msg("npvdb-server did not exit cleanly on SIGTERM (status %d)",
                 status);
    it_server_start(s, NULL);
}

static void ok(int rc, const npvdb_client_error *err, const char *what)
{
    if (rc != NPVDB_STATUS_OK)
        fail_msg("%s: %s (%s)", what, err->msg,
                 npvdb_status_name((npvdb_status)rc));
}

static void search(it_server *s, const it_data *q, uint32_t k, uint32_t nprobe,
                   npvdb_client_results *out)
{
    npvdb_client_error err;
    ok(npvdb_client_get_closest(s->client, q->rows, q->n, DIM, k, nprobe, out,
                                &err),
       &err, "get_closest");
}

/* Same keys and bit-identical distances. */
static void assert_identical(const npvdb_client_results *a,
                             const npvdb_client_results *b)
{
    assert_int_equal(a->nq, b->nq);
    for (size_t i = 0; i < a->nq; i++) {
        assert_int_equal(a->counts[i], b->counts[i]);
        for (uint32_t j = 0; j < a->counts[i]; j++) {
            size_t x = i * a->k + j;
            if (strcmp(a->keys[x], b->keys[x]) ||
                a->distances[x] != b->distances[x])
                fail_msg("query %zu rank %u: %s %g before, %s %g after", i, j,
                         a->keys[x], (double)a->distances[x], b->keys[x],
                         (double)b->distances[x]);
        }
    }
}

static void assert_same_info(const npvdb_client_info *a,
                             const npvdb_client_info *b)
{
    assert_int_equal(a->initialized, b->initialized);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->metric, b->metric);
    assert_int_equal(a->vectors, b->vectors);
    assert_int_equal(a->n_shards, b->n_shards);
    assert_int_equal(a->trained, b->trained);
    assert_int_equal(a->n_shard_sizes, b->n_shard_sizes);
    for (size_t i = 0; i < a->n_shard_sizes; i++)
        assert_int_equal(a->shard_sizes[i], b->shard_sizes[i]);
}

static void info(it_server *s, npvdb_client_info *out)
{
    npvdb_client_error err;
    ok(npvdb_client_info_get(s->client, out, &err), &err, "info");
}

/* Trained cosine collection with deletes, snapshot, restart: same Info,
 * identical approximate answers (same centroids and shards), exact answers
 * equal the engine's. */
static void test_restart_after_snapshot(void **state)
{
    it_server *s = *state;
    it_data train, d, q;
    it_data_make(&train, 600, DIM, 41, "t");
    it_data_make(&d, 2500, DIM, 42, "r");
    it_data_make(&q, 30, DIM, 43, "q");
    npvdb_client_error err;
    npvdb_client_init_params p = {.dim = DIM,
                                  .metric = NPVDB_CLIENT_COSINE,
                                  .n_shards = 10,
                                  .train = train.rows,
                                  .n_train = train.n};
    ok(npvdb_client_init(s->client, &p, NULL, NULL, &err), &err, "init");
    npvdb_client_insert_reply r;
    ok(npvdb_client_insert(s->client, DIM, (const char *const *)d.keys, d.rows,
                           d.n, 400, NULL, NULL, &r, &err),
       &err, "insert");
    const char *del[] = {"r1", "r10", "r100", "r1000"};
    ok(npvdb_client_delete(s->client, del, 4, NULL, &err), &err, "delete");
    npvdb_collection *ref =
        it_engine_make(DIM, NPVDB_METRIC_COSINE, 10, &train, &d);
    npvdb_error e;
    assert_int_equal(npvdb_delete(ref, del, 4, NULL, &e), NPVDB_OK);

    npvdb_client_snapshot_info snap;
    ok(npvdb_client_snapshot(s->client, &snap, &err), &err, "snapshot");
    assert_int_equal(snap.vectors, 2496);
    npvdb_client_info before, after;
    info(s, &before);
    npvdb_client_results approx_before, approx_after;
    search(s, &q, 10, 2, &approx_before);

    restart(s);
    info(s, &after);
    assert_same_info(&before, &after);
    search(s, &q, 10, 2, &approx_after);
    assert_identical(&approx_before, &approx_after);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 65536);
    npvdb_client_vectors v;
    ok(npvdb_client_get(s->client, del, 2, DIM, &v, &err), &err, "get");
    assert_int_equal(v.n_found, 0);
    npvdb_client_vectors_free(&v);

    npvdb_client_results_free(&approx_before);
    npvdb_client_results_free(&approx_after);
    npvdb_client_info_free(&before);
    npvdb_client_info_free(&after);
    npvdb_free(ref);
    it_data_free(&train);
    it_data_free(&d);
    it_data_free(&q);
}

/* Writes after the snapshot (inserts, upserts, deletes) come back from the
 * log; a second restart without any new write changes nothing. */
static void test_restart_replays_log(void **state)
{
    it_server *s = *state;
    it_data d, more, q;
    it_data_make(&d, 800, DIM, 44, "a");
    it_data_make(&more, 300, DIM, 45, "a"); /* a0..a299: upserts */
    it_data_make(&q, 15, DIM, 46, "q");
    npvdb_client_error err;
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    ok(npvdb_client_init(s->client, &p, NULL, NULL, &err), &err, "init");
    ok(npvdb_client_insert(s->client, DIM, (const char *const *)d.keys, d.rows,
                           400, 100, NULL, NULL, NULL, &err),
       &err, "insert");
    npvdb_client_snapshot_info snap;
    ok(npvdb_client_snapshot(s->client, &snap, &err), &err, "snapshot");
    ok(npvdb_client_insert(s->client, DIM, (const char *const *)d.keys + 400,
                           d.rows + 400 * DIM, 400, 100, NULL, NULL, NULL,
                           &err),
       &err, "insert after snapshot");
    ok(npvdb_client_insert(s->client, DIM, (const char *const *)more.keys,
                           more.rows, more.n, 100, NULL, NULL, NULL, &err),
       &err, "upsert after snapshot");
    const char *del[] = {"a5", "a450"};
    ok(npvdb_client_delete(s->client, del, 2, NULL, &err), &err, "delete");

    npvdb_collection *ref = it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &d);
    npvdb_error e;
    assert_int_equal(npvdb_insert(ref, (const char *const *)more.keys,
                                  more.rows, more.n, NULL, &e),
                     NPVDB_OK);
    assert_int_equal(npvdb_delete(ref, del, 2, NULL, &e), NPVDB_OK);

    restart(s);
    npvdb_client_info inf;
    info(s, &inf);
    assert_int_equal(inf.vectors, 798);
    npvdb_client_info_free(&inf);
    it_assert_search_same(s->client, ref, q.rows, q.n, 20, 65536);
    npvdb_client_vectors v;
    ok(npvdb_client_get(s->client, (const char *const *)more.keys + 7, 1, DIM,
                        &v, &err),
       &err, "get");
    assert_int_equal(v.n_found, 1);
    assert_memory_equal(v.vectors, more.rows + 7 * DIM, DIM * sizeof(float));
    npvdb_client_vectors_free(&v);

    restart(s);
    info(s, &inf);
    assert_int_equal(inf.vectors, 798);
    npvdb_client_info_free(&inf);
    it_assert_search_same(s->client, ref, q.rows, q.n, 20, 65536);
    npvdb_free(ref);
    it_data_free(&d);
    it_data_free(&more);
    it_data_free(&q);
}

/* Counts snap-*.h5 files in dir. */
static int count_snapshots(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += !strncmp(e->d_name, "snap-", 5) && len > 3 &&
             !strcmp(e->d_name + len - 3, ".h5");
    }
    closedir(d);
    return n;
}

/* With --snapshot-every-mb 1 the server snapshots on its own once the log
 * grows past 1 MiB, and a kill -9 afterwards restores from that snapshot plus
 * the log's tail: every acknowledged vector is back. */
static void test_automatic_snapshot(void **state)
{
    it_server *s = *state;
    it_server_stop(s);
    it_server_start(s, "--snapshot-every-mb", "1", NULL);
    it_data d, q;
    it_data_make(&d, 24000, DIM, 47, "s"); /* ~2.7 MiB of log records */
    it_data_make(&q, 10, DIM, 48, "q");
    npvdb_client_error err;
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    ok(npvdb_client_init(s->client, &p, NULL, NULL, &err), &err, "init");
    assert_int_equal(count_snapshots(s->data_dir), 0);
    for (size_t i = 0; i < d.n; i += 2000)
        ok(npvdb_client_insert(s->client, DIM, (const char *const *)d.keys + i,
                               d.rows + i * DIM, 2000, 500, NULL, NULL, NULL,
                               &err),
           &err, "insert");
    int snaps = 0;
    for (int i = 0; i < 200 && snaps < 1; i++) { /* up to 10 s */
        snaps = count_snapshots(s->data_dir);
        if (snaps < 1) usleep(50000);
    }
    assert_true(snaps >= 1);
    char *log = it_server_log(s);
    assert_non_null(strstr(log, "automatic snapshot"));
    free(log);

    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    npvdb_client_close(s->client);
    s->client = NULL;
    it_server_start(s, NULL);
    npvdb_client_info inf;
    info(s, &inf);
    assert_int_equal(inf.vectors, d.n);
    npvdb_client_info_free(&inf);
    npvdb_collection *ref = it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &d);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 65536);
    npvdb_free(ref);
    it_data_free(&d);
    it_data_free(&q);
}

/* Without any snapshot, the log alone restores the collection; without an
 * Init, a restart has no collection. */
static void test_restart_log_only_and_empty(void **state)
{
    it_server *s = *state;
    npvdb_client_info inf;
    restart(s);
    info(s, &inf);
    assert_false(inf.initialized);
    npvdb_client_info_free(&inf);

    it_data d, q;
    it_data_make(&d, 300, DIM, 47, "l");
    it_data_make(&q, 10, DIM, 48, "q");
    npvdb_client_error err;
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_IP};
    ok(npvdb_client_init(s->client, &p, NULL, NULL, &err), &err, "init");
    ok(npvdb_client_insert(s->client, DIM, (const char *const *)d.keys, d.rows,
                           d.n, 64, NULL, NULL, NULL, &err),
       &err, "insert");
    restart(s);
    info(s, &inf);
    assert_true(inf.initialized);
    assert_int_equal(inf.metric, NPVDB_CLIENT_IP);
    assert_int_equal(inf.vectors, 300);
    npvdb_client_info_free(&inf);
    npvdb_collection *ref = it_engine_make(DIM, NPVDB_METRIC_IP, 0, NULL, &d);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 65536);
    /* Init twice is still refused after a restart. */
    npvdb_client_init_params p2 = {.dim = 4};
    assert_int_equal(npvdb_client_init(s->client, &p2, NULL, NULL, &err),
                     NPVDB_STATUS_ALREADY_EXISTS);
    npvdb_free(ref);
    it_data_free(&d);
    it_data_free(&q);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_after_snapshot,
                                        it_setup_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_restart_replays_log,
                                        it_setup_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_automatic_snapshot,
                                        it_setup_server, it_teardown_server),
        cmocka_unit_test_setup_teardown(test_restart_log_only_and_empty,
                                        it_setup_server, it_teardown_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
