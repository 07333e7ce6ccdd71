/*
 * test_engine.c -- the engine's guarantees: exact answers against brute
 * force for every metric, recall on clustered data once trained, upsert and
 * delete semantics, the automatic training transition under concurrent
 * writers and readers, persistence hooks, and every bad input refused with
 * its code and nothing applied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "npvdb.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static npvdb_collection *make(uint32_t dim, npvdb_metric m, uint32_t shards)
{
    npvdb_config cfg = {
        .dim = dim, .metric = m, .n_shards = shards, .n_workers = 3};
    npvdb_error err;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    assert_non_null(c);
    return c;
}

static void insert_all(npvdb_collection *c, char **keys, const float *x,
                       size_t n, uint32_t dim, size_t batch)
{
    npvdb_error err;
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        assert_int_equal(npvdb_insert(c, (const char *const *)keys + i,
                                      x + i * dim, m, NULL, &err),
                         NPVDB_OK);
    }
}

/* Every query's top-k equals brute force: same rows, same distances. */
static void check_exact(npvdb_collection *c, npvdb_metric m, const float *x,
                        size_t n, const float *q, size_t nq, uint32_t dim,
                        uint32_t k, uint32_t nprobe)
{
    npvdb_results r;
    npvdb_error err;
    assert_int_equal(npvdb_search(c, q, nq, k, nprobe, &r, &err), NPVDB_OK);
    size_t *idx = malloc(k * sizeof *idx);
    double *dist = malloc(k * sizeof *dist);
    for (size_t i = 0; i < nq; i++) {
        ref_knn(m, q + i * dim, x, n, dim, k, idx, dist);
        assert_int_equal(r.counts[i], k);
        for (uint32_t j = 0; j < k; j++) {
            double tol = 1e-4 * (1 + fabs(dist[j]));
            assert_true(fabs(r.distances[i * k + j] - dist[j]) < tol);
            if (j > 0)
                assert_true(r.distances[i * k + j - 1] <=
                            r.distances[i * k + j]);
            /* Equal keys unless the reference has a near-tie there. */
            if ((j == 0 || dist[j] - dist[j - 1] > tol) &&
                (j + 1 == k || dist[j + 1] - dist[j] > tol))
                assert_int_equal(key_index(r.keys[i * k + j]), idx[j]);
        }
    }
    free(idx);
    free(dist);
    npvdb_results_free(&r);
}

static void exact_for(npvdb_metric m, int trained)
{
    const uint32_t dim = 24, k = 7;
    const size_t n = 1500, nq = 40;
    float *x = random_rows(n, dim, 1), *q = random_rows(nq, dim, 2);
    char **keys = make_keys(n, "k");
    npvdb_collection *c = make(dim, m, trained ? 16 : 0);
    insert_all(c, keys, x, n, dim, 250);
    npvdb_stats st;
    assert_int_equal(npvdb_stats_get(c, &st, NULL), NPVDB_OK);
    assert_int_equal(st.trained, trained); /* 16*64 = 1024 < 1500 */
    assert_int_equal(st.n_vectors, n);
    npvdb_stats_free(&st);
    /* nprobe >= shards probes everything: exact even when trained. */
    check_exact(c, m, x, n, q, nq, dim, k, trained ? 16 : 0);
    npvdb_free(c);
    free_keys(keys, n);
    free(x);
    free(q);
}

static void test_exact_untrained_cosine(void **s)
{
    exact_for(NPVDB_METRIC_COSINE, 0);
}
static void test_exact_untrained_l2(void **s)
{
    exact_for(NPVDB_METRIC_L2, 0);
}
static void test_exact_untrained_ip(void **s)
{
    exact_for(NPVDB_METRIC_IP, 0);
}
static void test_exact_trained_cosine(void **s)
{
    exact_for(NPVDB_METRIC_COSINE, 1);
}
static void test_exact_trained_l2(void **s)
{
    exact_for(NPVDB_METRIC_L2, 1);
}
static void test_exact_trained_ip(void **s)
{
    exact_for(NPVDB_METRIC_IP, 1);
}

static double recall_at(npvdb_collection *c, npvdb_metric m, const float *x,
                        size_t n, const float *q, size_t nq, uint32_t dim,
                        uint32_t nprobe)
{
    const uint32_t k = 10;
    npvdb_results r;
    assert_int_equal(npvdb_search(c, q, nq, k, nprobe, &r, NULL), NPVDB_OK);
    size_t idx[10], hits = 0;
    double dist[10];
    for (size_t i = 0; i < nq; i++) {
        ref_knn(m, q + i * dim, x, n, dim, k, idx, dist);
        for (uint32_t a = 0; a < r.counts[i]; a++)
            for (uint32_t b = 0; b < k; b++)
                hits += key_index(r.keys[i * k + a]) == idx[b];
    }
    npvdb_results_free(&r);
    return (double)hits / (double)(nq * k);
}

static void test_recall_clustered(void **s)
{
    const uint32_t dim = 32;
    const size_t n = 20000, nq = 200;
    float *x = clustered_rows(n, dim, 50, 0.15f, 3);
    float *q = clustered_rows(nq, dim, 50, 0.15f, 4); /* same centres */
    char **keys = make_keys(n, "k");
    npvdb_collection *c = make(dim, NPVDB_METRIC_L2, 64);
    insert_all(c, keys, x, n, dim, 1000);
    double r1 = recall_at(c, NPVDB_METRIC_L2, x, n, q, nq, dim, 1);
    double r8 = recall_at(c, NPVDB_METRIC_L2, x, n, q, nq, dim, 8);
    double r64 = recall_at(c, NPVDB_METRIC_L2, x, n, q, nq, dim, 64);
    printf("recall@10 nprobe 1/8/64: %.3f %.3f %.3f\n", r1, r8, r64);
    assert_true(r8 >= 0.9);
    assert_true(r8 >= r1);    /* probing more shards never hurts */
    assert_true(r64 > 0.999); /* all shards: exact */
    npvdb_free(c);
    free_keys(keys, n);
    free(x);
    free(q);
}

static void test_upsert_replaces(void **s)
{
    const uint32_t dim = 8;
    npvdb_collection *c = make(dim, NPVDB_METRIC_L2, 4);
    float *x = random_rows(400, dim, 5), *y = random_rows(400, dim, 6);
    char **keys = make_keys(400, "k");
    insert_all(c, keys, x, 400, dim, 400);
    assert_int_equal(npvdb_train(c, NULL, 0, NULL), NPVDB_OK);
    size_t replaced = 99;
    /* Replace the first 100 with new vectors (many move shard). */
    assert_int_equal(
        npvdb_insert(c, (const char *const *)keys, y, 100, &replaced, NULL),
        NPVDB_OK);
    assert_int_equal(replaced, 100);
    npvdb_stats st;
    npvdb_stats_get(c, &st, NULL);
    assert_int_equal(st.n_vectors, 400);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < st.n_shards; i++)
        sum += st.shard_counts[i];
    assert_int_equal(sum, 400);
    npvdb_stats_free(&st);
    float got[8];
    for (size_t i = 0; i < 400; i++) {
        assert_int_equal(npvdb_get(c, keys[i], got, NULL), NPVDB_OK);
        assert_memory_equal(got, (i < 100 ? y : x) + i * dim, sizeof got);
    }
    /* The new vector is found as its own nearest neighbour; the old is not. */
    npvdb_results r;
    assert_int_equal(npvdb_search(c, y, 1, 1, 4, &r, NULL), NPVDB_OK);
    assert_string_equal(r.keys[0], "k0");
    assert_true(r.distances[0] < 1e-3);
    npvdb_results_free(&r);
    /* A key repeated in one batch: the last row wins. */
    const char *dup[2] = {"dup", "dup"};
    float two[16];
    memcpy(two, x, sizeof two);
    assert_int_equal(npvdb_insert(c, dup, two, 2, &replaced, NULL), NPVDB_OK);
    assert_int_equal(replaced, 1);
    assert_int_equal(npvdb_get(c, "dup", got, NULL), NPVDB_OK);
    assert_memory_equal(got, two + 8, sizeof got);
    npvdb_free(c);
    free_keys(keys, 400);
    free(x);
    free(y);
}

static void test_delete(void **s)
{
    const uint32_t dim = 8;
    npvdb_collection *c = make(dim, NPVDB_METRIC_COSINE, 0);
    float *x = random_rows(300, dim, 7);
    char **keys = make_keys(300, "k");
    insert_all(c, keys, x, 300, dim, 100);
    const char *del[3] = {keys[10], "nope", keys[11]};
    size_t deleted = 0;
    assert_int_equal(npvdb_delete(c, del, 3, &deleted, NULL), NPVDB_OK);
    assert_int_equal(deleted, 2);
    float got[8];
    npvdb_error err;
    assert_int_equal(npvdb_get(c, keys[10], got, &err), NPVDB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "k10"));
    /* Searching for the deleted vector never returns it. */
    npvdb_results r;
    assert_int_equal(npvdb_search(c, x + 10 * dim, 1, 298, 0, &r, NULL),
                     NPVDB_OK);
    assert_int_equal(r.counts[0], 298);
    for (uint32_t j = 0; j < 298; j++) {
        assert_string_not_equal(r.keys[j], "k10");
        assert_string_not_equal(r.keys[j], "k11");
    }
    npvdb_results_free(&r);
    /* k now exceeds the collection: a short row of all 298, padded. */
    assert_int_equal(npvdb_search(c, x, 1, 299, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.counts[0], 298);
    assert_null(r.keys[298]);
    assert_true(isinf(r.distances[298]));
    npvdb_results_free(&r);
    /* Delete then re-insert works. */
    assert_int_equal(npvdb_insert(c, del, x, 1, NULL, NULL), NPVDB_OK);
    assert_int_equal(npvdb_get(c, keys[10], got, NULL), NPVDB_OK);
    npvdb_free(c);
    free_keys(keys, 300);
    free(x);
}

/* ---- automatic training under concurrent inserts and searches ---- */

typedef struct race {
    npvdb_collection *c;
    const float *x;
    char **keys;
    size_t n, per;
    uint32_t dim;
    int id;
    volatile int *stop;
    int failures;
} race;

static void *inserter(void *arg)
{
    race *r = arg;
    size_t lo = r->id * r->per;
    for (size_t i = lo; i < lo + r->per; i += 50) {
        size_t m = lo + r->per - i < 50 ? lo + r->per - i : 50;
        if (npvdb_insert(r->c, (const char *const *)r->keys + i,
                         r->x + i * r->dim, m, NULL, NULL))
            r->failures++;
    }
    return NULL;
}

/* Looks up vectors already inserted (the first batch of each inserter was
 * inserted before the threads started): each is its own nearest
 * neighbour at distance 0, before, during and after training. */
static void *searcher(void *arg)
{
    race *r = arg;
    while (!*r->stop) {
        for (size_t i = 0; i < 64; i++) {
            npvdb_results res;
            npvdb_error err;
            if (npvdb_search(r->c, r->x + i * r->dim, 1, 1, 4, &res, &err)) {
                r->failures++;
                continue;
            }
            if (res.counts[0] != 1 || key_index(res.keys[0]) != i ||
                res.distances[0] != 0.0f) {
                if (!r->failures)
                    print_message("query %zu: %u hits, %s at %g\n", i,
                                  res.counts[0], res.keys[0], res.distances[0]);
                r->failures++;
            }
            npvdb_results_free(&res);
        }
    }
    return NULL;
}

static void test_auto_train_concurrent(void **s)
{
    const uint32_t dim = 16;
    const size_t n = 8000;
    npvdb_config cfg = {.dim = dim,
                        .metric = NPVDB_METRIC_L2,
                        .n_shards = 32,
                        .n_workers = 2,
                        .train_per_shard = 64};
    npvdb_collection *c = npvdb_create(&cfg, NULL);
    float *x = clustered_rows(n, dim, 40, 0.2f, 8);
    char **keys = make_keys(n, "k");
    insert_all(c, keys, x, 64, dim, 64);
    volatile int stop = 0;
    race ins[4], se[2];
    pthread_t ti[4], ts[2];
    for (int i = 0; i < 2; i++) {
        se[i] = (race){.c = c, .x = x, .keys = keys, .dim = dim, .stop = &stop};
        pthread_create(&ts[i], NULL, searcher, &se[i]);
    }
    for (int i = 0; i < 4; i++) {
        ins[i] = (race){.c = c,
                        .x = x + 64 * dim,
                        .keys = keys + 64,
                        .per = (n - 64) / 4,
                        .dim = dim,
                        .id = i};
        pthread_create(&ti[i], NULL, inserter, &ins[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(ti[i], NULL);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(ts[i], NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ins[i].failures, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(se[i].failures, 0);
    npvdb_stats st;
    npvdb_stats_get(c, &st, NULL);
    assert_true(st.trained); /* 32 * 64 = 2048 < 8000 */
    /* Trained with 32; splits while the racers insert add more. */
    assert_true(st.n_shards >= 32);
    assert_int_equal(st.n_shards, 32 + st.splits - st.merges);
    assert_int_equal(st.n_vectors, n);
    npvdb_stats_free(&st);
    /* After training, every vector is still its own nearest neighbour
     * (an exact search finds each), and nearly all sit in the shard of
     * their nearest centroid (one probe finds them): splits reassign only
     * a neighbourhood (rebalance.c). */
    npvdb_results r;
    assert_int_equal(npvdb_search(c, x, n, 1, 1u << 16, &r, NULL), NPVDB_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r.counts[i], 1);
        assert_true(r.distances[i] == 0.0f);
    }
    npvdb_results_free(&r);
    assert_int_equal(npvdb_search(c, x, n, 1, 1, &r, NULL), NPVDB_OK);
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        found += r.counts[i] == 1 && r.distances[i] == 0.0f;
    assert_true(found >= n - n / 100);
    npvdb_results_free(&r);
    npvdb_free(c);
    free_keys(keys, n);
    free(x);
}

/* ---- persistence hooks ---- */

typedef struct copy {
    npvdb_collection *dst;
    int index_seen;
    size_t rows;
} copy;

static int on_index(void *ctx, const npvdb_stats *st, const float *cent)
{
    copy *cp = ctx;
    cp->index_seen = 1;
    return st->trained ? npvdb_restore_index(cp->dst, cent, st->n_shards, NULL)
                       : 0;
}

static int on_shard(void *ctx, const npvdb_shard_view *v)
{
    copy *cp = ctx;
    cp->rows += v->n;
    return npvdb_restore_shard(cp->dst, v->shard, v->keys, v->rows, v->n, NULL);
}

static void test_export_restore(void **s)
{
    const uint32_t dim = 12;
    const size_t n = 3000;
    npvdb_collection *a = make(dim, NPVDB_METRIC_COSINE, 20);
    npvdb_collection *b = make(dim, NPVDB_METRIC_COSINE, 20);
    float *x = clustered_rows(n, dim, 30, 0.2f, 9);
    char **keys = make_keys(n, "k");
    insert_all(a, keys, x, n, dim, 500);
    copy cp = {.dst = b};
    assert_int_equal(npvdb_export(a, on_index, on_shard, &cp, NULL), NPVDB_OK);
    assert_true(cp.index_seen);
    assert_int_equal(cp.rows, n);
    npvdb_results ra, rb;
    assert_int_equal(npvdb_search(a, x, 100, 10, 3, &ra, NULL), NPVDB_OK);
    assert_int_equal(npvdb_search(b, x, 100, 10, 3, &rb, NULL), NPVDB_OK);
    for (size_t i = 0; i < 100 * 10; i++) {
        assert_string_equal(ra.keys[i], rb.keys[i]);
        assert_true(ra.distances[i] == rb.distances[i]);
    }
    npvdb_results_free(&ra);
    npvdb_results_free(&rb);
    npvdb_stats st;
    npvdb_stats_get(b, &st, NULL);
    assert_true(st.trained);
    npvdb_stats_free(&st);
    /* Stored vectors are restored bit for bit (normalised, not twice). */
    float ga[12], gb[12];
    npvdb_get(a, keys[7], ga, NULL);
    npvdb_get(b, keys[7], gb, NULL);
    assert_memory_equal(ga, gb, sizeof ga);
    npvdb_free(a);
    npvdb_free(b);
    free_keys(keys, n);
    free(x);
}

/* ---- bad input ---- */

static void expect(npvdb_code got, npvdb_code want, const npvdb_error *err,
                   const char *fragment)
{
    assert_int_equal(got, want);
    assert_int_equal(err->code, want);
    if (!strstr(err->msg, fragment))
        fail_msg("'%s' lacks '%s'", err->msg, fragment);
}

static void test_bad_config(void **s)
{
    npvdb_error err;
    npvdb_config cfg = {.dim = 0};
    assert_null(npvdb_create(&cfg, &err));
    expect(err.code, NPVDB_EINVAL, &err, "dim");
    cfg.dim = NPVDB_MAX_DIM + 1;
    assert_null(npvdb_create(&cfg, &err));
    expect(err.code, NPVDB_EINVAL, &err, "dim");
    cfg = (npvdb_config){.dim = 4, .metric = (npvdb_metric)7};
    assert_null(npvdb_create(&cfg, &err));
    expect(err.code, NPVDB_EINVAL, &err, "metric");
    cfg = (npvdb_config){.dim = 4, .n_shards = NPVDB_MAX_SHARDS + 1};
    assert_null(npvdb_create(&cfg, &err));
    expect(err.code, NPVDB_ELIMIT, &err, "n_shards");
    assert_null(npvdb_create(NULL, &err));
}

static void test_bad_inserts(void **s)
{
    const uint32_t dim = 4;
    npvdb_collection *c = make(dim, NPVDB_METRIC_COSINE, 0);
    npvdb_error err;
    float good[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bad[8];
    const char *keys[2] = {"a", "b"};
    memcpy(bad, good, sizeof bad);
    bad[6] = NAN;
    expect(npvdb_insert(c, keys, bad, 2, NULL, &err), NPVDB_EINVAL, &err,
           "vector 1 has a NaN or Inf at component 2");
    bad[6] = INFINITY;
    expect(npvdb_insert(c, keys, bad, 2, NULL, &err), NPVDB_EINVAL, &err,
           "vector 1 has a NaN or Inf at component");
    const char *empty[2] = {"a", ""};
    expect(npvdb_insert(c, empty, good, 2, NULL, &err), NPVDB_EINVAL, &err,
           "key 1 is empty");
    char *longk = malloc(NPVDB_MAX_KEY_LEN + 2);
    memset(longk, 'x', NPVDB_MAX_KEY_LEN + 1);
    longk[NPVDB_MAX_KEY_LEN + 1] = '\0';
    const char *lk[2] = {"a", longk};
    expect(npvdb_insert(c, lk, good, 2, NULL, &err), NPVDB_EINVAL, &err,
           "longer than 1024");
    longk[NPVDB_MAX_KEY_LEN] = '\0'; /* exactly 1024 is fine */
    assert_int_equal(npvdb_insert(c, lk, good, 2, NULL, &err), NPVDB_OK);
    const char *utf[2] = {"a", "\xc3\x28"};
    expect(npvdb_insert(c, utf, good, 2, NULL, &err), NPVDB_EINVAL, &err,
           "UTF-8");
    const char *nul[2] = {"a", NULL};
    expect(npvdb_insert(c, nul, good, 2, NULL, &err), NPVDB_EINVAL, &err,
           "key 1 is missing");
    float zero[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    expect(npvdb_insert(c, keys, zero, 2, NULL, &err), NPVDB_EINVAL, &err,
           "zero norm");
    npvdb_batch *pb = (npvdb_batch *)&err; /* must come back NULL */
    expect(npvdb_insert_prepare(c, keys, zero, 2, &pb, &err), NPVDB_EINVAL,
           &err, "zero norm");
    assert_null(pb);
    /* Nothing of a refused batch was applied: still only "a" and the long key.
     */
    npvdb_stats st;
    npvdb_stats_get(c, &st, NULL);
    assert_int_equal(st.n_vectors, 2);
    npvdb_stats_free(&st);
    float got[4];
    assert_int_equal(npvdb_get(c, "b", got, &err), NPVDB_ENOTFOUND);
    free(longk);
    npvdb_free(c);
}

/* npvdb_insert in two steps (the server logs in between) lands the same
 * rows, and a batch cannot be applied to another collection. */
static void test_insert_two_steps(void **s)
{
    (void)s;
    const uint32_t dim = 8;
    npvdb_collection *c = make(dim, NPVDB_METRIC_COSINE, 0);
    npvdb_collection *other = make(dim, NPVDB_METRIC_COSINE, 0);
    float *x = random_rows(3, dim, 21);
    char **keys = make_keys(3, "k");
    npvdb_error err;
    npvdb_batch *b = NULL;
    assert_int_equal(
        npvdb_insert_prepare(c, (const char *const *)keys, x, 3, &b, &err),
        NPVDB_OK);
    size_t replaced = 1;
    expect(npvdb_insert_prepared(other, b, &replaced, &err), NPVDB_EINVAL, &err,
           "another collection");
    assert_int_equal(npvdb_insert_prepared(c, b, &replaced, &err), NPVDB_OK);
    assert_int_equal(replaced, 0);
    npvdb_batch_free(b);
    float got[8];
    assert_int_equal(npvdb_get(c, "k2", got, &err), NPVDB_OK);
    double dot = 0, nrm = 0;
    for (uint32_t d = 0; d < dim; d++) {
        dot += got[d] * x[2 * dim + d];
        nrm += (double)x[2 * dim + d] * x[2 * dim + d];
    }
    assert_true(fabs(dot - sqrt(nrm)) < 1e-4); /* stored normalised */
    npvdb_free(c);
    npvdb_free(other);
    free_keys(keys, 3);
    free(x);
}

static void test_bad_searches(void **s)
{
    const uint32_t dim = 4;
    npvdb_collection *c = make(dim, NPVDB_METRIC_L2, 0);
    npvdb_error err;
    npvdb_results r;
    float q[4] = {1, 2, 3, 4};
    /* An empty collection answers rows of 0, not an error. */
    assert_int_equal(npvdb_search(c, q, 1, 1, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.counts[0], 0);
    npvdb_results_free(&r);
    const char *keys[1] = {"a"};
    assert_int_equal(npvdb_insert(c, keys, q, 1, NULL, NULL), NPVDB_OK);
    expect(npvdb_search(c, q, 1, 0, 0, &r, &err), NPVDB_EINVAL, &err,
           "k must be at least 1");
    expect(npvdb_search(c, q, 1, NPVDB_MAX_K + 1, 0, &r, &err), NPVDB_ELIMIT,
           &err, "k must be <=");
    expect(npvdb_search(c, q, 0, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "no queries");
    q[2] = NAN;
    expect(npvdb_search(c, q, 1, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "query 0 has a NaN or Inf at component");
    assert_null(r.keys); /* zeroed on error */
    float sample[4] = {1, 1, 1, 1};
    expect(npvdb_train(c, sample, 1, &err), NPVDB_EINVAL, &err, "training");
    expect(npvdb_get(c, "", q, &err), NPVDB_EINVAL, &err, "empty");
    expect(npvdb_restore_shard(c, 5, keys, sample, 1, &err), NPVDB_EINVAL, &err,
           "shard 5 out of range");
    expect(npvdb_restore_index(c, sample, 1, &err), NPVDB_ESTATE, &err,
           "empty collection");
    npvdb_free(c);
}

/* npvdb_search_inplace answers exactly as npvdb_search (same keys, same
 * distances, bit for bit) for every metric, trained or not, and refuses
 * what npvdb_search refuses. */
static void inplace_for(npvdb_metric m, uint32_t shards)
{
    const uint32_t dim = 16, k = 5;
    const size_t n = 1200, nq = 30;
    float *x = random_rows(n, dim, 3), *q = random_rows(nq, dim, 4);
    float *scratch = malloc(nq * dim * sizeof *scratch);
    assert_non_null(scratch);
    memcpy(scratch, q, nq * dim * sizeof *q);
    char **keys = make_keys(n, "k");
    npvdb_collection *c = make(dim, m, shards);
    insert_all(c, keys, x, n, dim, 300);
    npvdb_results a, b;
    npvdb_error err;
    assert_int_equal(npvdb_search(c, q, nq, k, 2, &a, &err), NPVDB_OK);
    assert_int_equal(npvdb_search_inplace(c, scratch, nq, k, 2, &b, &err),
                     NPVDB_OK);
    assert_memory_equal(a.counts, b.counts, nq * sizeof *a.counts);
    assert_memory_equal(a.distances, b.distances, nq * k * sizeof(float));
    for (size_t i = 0; i < nq * k; i++)
        if (a.keys[i] || b.keys[i]) assert_string_equal(a.keys[i], b.keys[i]);
    npvdb_results_free(&a);
    npvdb_results_free(&b);
    npvdb_free(c);
    free_keys(keys, n);
    free(scratch);
    free(x);
    free(q);
}

static void test_search_inplace(void **s)
{
    inplace_for(NPVDB_METRIC_COSINE, 8);
    inplace_for(NPVDB_METRIC_COSINE, 0);
    inplace_for(NPVDB_METRIC_L2, 8);
    inplace_for(NPVDB_METRIC_IP, 8);
    npvdb_collection *c = make(4, NPVDB_METRIC_COSINE, 0);
    npvdb_error err;
    npvdb_results r;
    float q[8] = {1, 2, 3, 4, 0, 0, 0, 0};
    const char *keys[1] = {"a"};
    assert_int_equal(npvdb_insert(c, keys, q, 1, NULL, NULL), NPVDB_OK);
    expect(npvdb_search_inplace(c, q, 2, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "query 1 has zero norm");
    q[5] = INFINITY;
    expect(npvdb_search_inplace(c, q, 2, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "query 1 has a NaN or Inf at component");
    assert_null(r.keys); /* zeroed on error */
    q[5] = 0;
    assert_int_equal(npvdb_search_inplace(c, q, 1, 2, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.counts[0], 1); /* one vector: a short row */
    assert_string_equal(r.keys[0], "a");
    assert_null(r.keys[1]);
    npvdb_results_free(&r);
    npvdb_free(c);
}

static void test_train_explicit_sample(void **s)
{
    const uint32_t dim = 16;
    npvdb_collection *c = make(dim, NPVDB_METRIC_IP, 8);
    float *sample = clustered_rows(500, dim, 8, 0.1f, 10);
    npvdb_error err;
    expect(npvdb_train(c, sample, 7, &err), NPVDB_EINVAL, &err,
           "needs at least 8");
    assert_int_equal(npvdb_train(c, sample, 500, &err), NPVDB_OK);
    npvdb_stats st;
    npvdb_stats_get(c, &st, NULL);
    assert_true(st.trained);
    assert_int_equal(st.n_shards, 8);
    assert_int_equal(st.n_vectors, 0);
    assert_true(st.memory_bytes > 8 * dim * sizeof(float));
    npvdb_stats_free(&st);
    /* Vectors inserted after training spread over the shards. */
    char **keys = make_keys(500, "k");
    insert_all(c, keys, sample, 500, dim, 100);
    npvdb_stats_get(c, &st, NULL);
    uint32_t used = 0;
    for (uint32_t i = 0; i < st.n_shards; i++)
        used += st.shard_counts[i] > 0;
    assert_true(used >= 4);
    npvdb_stats_free(&st);
    free_keys(keys, 500);
    free(sample);
    npvdb_free(c);
}

/* A non-finite value past the whole-block check is named by row and
 * component (the server passes values through to this check). */
static void test_nonfinite_late_named(void **state)
{
    enum { DIM = 8, ROWS = 400 };
    npvdb_collection *c = make(DIM, NPVDB_METRIC_L2, 0);
    npvdb_error err;
    npvdb_results r;
    float *q = calloc(DIM * ROWS, sizeof *q);
    assert_non_null(q);
    q[333 * DIM + 5] = NAN;
    q[390 * DIM + 1] = INFINITY;
    expect(npvdb_search(c, q, ROWS, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "query 333 has a NaN or Inf at component 5");
    q[333 * DIM + 5] = -INFINITY;
    expect(npvdb_search_inplace(c, q, ROWS, 1, 0, &r, &err), NPVDB_EINVAL, &err,
           "query 333 has a NaN or Inf at component 5");
    free(q);
    npvdb_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_untrained_cosine),
        cmocka_unit_test(test_exact_untrained_l2),
        cmocka_unit_test(test_exact_untrained_ip),
        cmocka_unit_test(test_exact_trained_cosine),
        cmocka_unit_test(test_exact_trained_l2),
        cmocka_unit_test(test_exact_trained_ip),
        cmocka_unit_test(test_recall_clustered),
        cmocka_unit_test(test_upsert_replaces),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_auto_train_concurrent),
        cmocka_unit_test(test_export_restore),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_bad_inserts),
        cmocka_unit_test(test_bad_searches),
        cmocka_unit_test(test_insert_two_steps),
        cmocka_unit_test(test_train_explicit_sample),
        cmocka_unit_test(test_search_inplace),
        cmocka_unit_test(test_nonfinite_late_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
