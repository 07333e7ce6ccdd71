/*
 * test_workers.c -- one worker pool shared by many collections (1,000 small
 * collections written and searched from several threads at once, with a
 * fixed cost per collection of a few KiB), and searches asking for more
 * neighbours than a collection holds (short rows, padded; an empty
 * collection answers rows of 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "npvdb.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_COLL 1000
#define PER_COLL 20
#define DIM 8

typedef struct fleet {
    npvdb_collection **c;
    const float *x;
    char **keys;
    int id, n_threads;
    int failures;
} fleet;

/* Each thread searches every collection: its own rows come back exactly. */
static void *search_all(void *arg)
{
    fleet *f = arg;
    for (int i = f->id; i < N_COLL; i += 1) {
        int ci = (i * 7 + f->id * 13) % N_COLL; /* threads interleave */
        npvdb_results r;
        const float *q = f->x + (size_t)(ci % PER_COLL) * DIM;
        if (npvdb_search(f->c[ci], q, 1, 3, 0, &r, NULL) != NPVDB_OK) {
            f->failures++;
            continue;
        }
        if (r.counts[0] != 3 || key_index(r.keys[0]) != (size_t)ci % PER_COLL)
            f->failures++;
        npvdb_results_free(&r);
    }
    return NULL;
}

/* Inserts into collections id, id + n_threads, ...: writers of different
 * collections run pool tasks at the same time. */
static void *insert_some(void *arg)
{
    fleet *f = arg;
    for (int ci = f->id; ci < N_COLL; ci += f->n_threads)
        if (npvdb_insert(f->c[ci], (const char *const *)f->keys, f->x, PER_COLL,
                         NULL, NULL) != NPVDB_OK)
            f->failures++;
    return NULL;
}

static void test_shared_pool_many_collections(void **s)
{
    (void)s;
    npvdb_error err;
    npvdb_workers *w = npvdb_workers_create(2, &err);
    assert_non_null(w);
    npvdb_collection **c = calloc(N_COLL, sizeof *c);
    float *x = random_rows(PER_COLL, DIM, 11);
    char **keys = make_keys(PER_COLL, "k");
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N_COLL; i++) {
        npvdb_config cfg = {
            .dim = DIM,
            .metric = (npvdb_metric)(i % 2), /* IP: not self-nearest */
            .n_workers = 77,                 /* ignored: the pool's size */
            .workers = w};
        c[i] = npvdb_create(&cfg, &err);
        assert_non_null(c[i]);
    }
    struct mallinfo2 after = mallinfo2();
    /* ASan replaces malloc and mallinfo2 then reports nothing. */
    if (after.uordblks > before.uordblks) {
        size_t per = (after.uordblks - before.uordblks) / N_COLL;
        print_message("fixed heap per collection: %zu bytes\n", per);
        assert_true(per < 4096);
    }
    npvdb_config got;
    npvdb_get_config(c[0], &got);
    assert_int_equal(got.n_workers, 2);
    fleet ins[4], se[4];
    pthread_t ti[4], ts[4];
    for (int t = 0; t < 4; t++) {
        ins[t] = (fleet){.c = c, .x = x, .keys = keys, .id = t, .n_threads = 4};
        pthread_create(&ti[t], NULL, insert_some, &ins[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(ti[t], NULL);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(ins[t].failures, 0);
        se[t] = (fleet){.c = c, .x = x, .keys = keys, .id = t};
        pthread_create(&ts[t], NULL, search_all, &se[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(ts[t], NULL);
        assert_int_equal(se[t].failures, 0);
    }
    /* Large batches use the shared pool for real (parallel apply, scans). */
    const size_t big = 4000;
    float *y = clustered_rows(big, DIM, 10, 0.1f, 12);
    char **bk = make_keys(big, "b");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            npvdb_insert(c[i], (const char *const *)bk, y, big, NULL, &err),
            NPVDB_OK);
        npvdb_results r;
        assert_int_equal(npvdb_search(c[i], y, 500, 5, 0, &r, &err), NPVDB_OK);
        for (size_t q = 0; q < 500; q++)
            assert_int_equal(r.counts[q], 5);
        npvdb_results_free(&r);
    }
    for (int i = 0; i < N_COLL; i++)
        npvdb_free(c[i]);
    npvdb_workers_free(w);
    npvdb_workers_free(NULL);
    free(c);
    free(x);
    free(y);
    free_keys(keys, PER_COLL);
    free_keys(bk, big);
}

static void test_workers_bad_size(void **s)
{
    (void)s;
    npvdb_error err;
    assert_null(npvdb_workers_create(100000, &err));
    assert_int_equal(err.code, NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "n_workers"));
}

/* A short row holds every vector, nearest first, then NULL keys at +inf. */
static void check_short(npvdb_collection *c, npvdb_metric m, const float *x,
                        size_t n, const float *q, uint32_t k, uint32_t nprobe)
{
    npvdb_results r;
    npvdb_error err;
    assert_int_equal(npvdb_search(c, q, 2, k, nprobe, &r, &err), NPVDB_OK);
    size_t idx[16];
    double dist[16];
    for (size_t i = 0; i < 2; i++) {
        ref_knn(m, q + i * DIM, x, n, DIM, (uint32_t)n, idx, dist);
        assert_int_equal(r.counts[i], n);
        for (uint32_t j = 0; j < k; j++) {
            if (j < n) {
                assert_int_equal(key_index(r.keys[i * k + j]), idx[j]);
                assert_true(fabs(r.distances[i * k + j] - dist[j]) < 1e-4);
            } else {
                assert_null(r.keys[i * k + j]);
                assert_true(isinf(r.distances[i * k + j]));
            }
        }
    }
    npvdb_results_free(&r);
}

static void test_fewer_than_k(void **s)
{
    (void)s;
    const size_t n = 5;
    float *x = random_rows(n, DIM, 13), *q = random_rows(2, DIM, 14);
    char **keys = make_keys(n, "k");
    for (int m = 0; m < 3; m++) {
        npvdb_config cfg = {
            .dim = DIM, .metric = (npvdb_metric)m, .n_workers = 2};
        npvdb_collection *c = npvdb_create(&cfg, NULL);
        npvdb_results r;
        assert_int_equal(npvdb_search(c, q, 2, 10, 0, &r, NULL), NPVDB_OK);
        assert_int_equal(r.counts[0], 0);
        assert_int_equal(r.counts[1], 0);
        assert_null(r.keys[9]);
        npvdb_results_free(&r);
        assert_int_equal(
            npvdb_insert(c, (const char *const *)keys, x, n, NULL, NULL),
            NPVDB_OK);
        check_short(c, (npvdb_metric)m, x, n, q, 10, 0);
        check_short(c, (npvdb_metric)m, x, n, q, NPVDB_MAX_K, 0);
        npvdb_free(c);
        /* Trained, empty, then 5 vectors probed with every shard. */
        c = npvdb_create(&cfg, NULL);
        float *cent = random_rows(4, DIM, 15);
        assert_int_equal(npvdb_restore_index(c, cent, 4, NULL), NPVDB_OK);
        assert_int_equal(npvdb_search(c, q, 2, 3, 0, &r, NULL), NPVDB_OK);
        assert_int_equal(r.counts[0], 0);
        npvdb_results_free(&r);
        assert_int_equal(
            npvdb_insert(c, (const char *const *)keys, x, n, NULL, NULL),
            NPVDB_OK);
        check_short(c, (npvdb_metric)m, x, n, q, 10, 4);
        free(cent);
        npvdb_free(c);
    }
    free(x);
    free(q);
    free_keys(keys, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_pool_many_collections),
        cmocka_unit_test(test_workers_bad_size),
        cmocka_unit_test(test_fewer_than_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
