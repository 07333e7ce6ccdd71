/*
 * test_router.c -- the approximate shard assignment of inserted rows
 * (server/engine/router.c): it must agree with exact assignment on nearly
 * nearly every row, send every centroid to itself, stay off where it cannot
 * help, and leave search recall where exact assignment puts it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIM = 32, NC = 600, N = 30000, NQ = 100, K = 10 };

typedef struct fixture {
    npvdb_pool *pool;
    float *x, *cent, *cnorms;
    npvdb_router r;
} fixture;

/* Clustered rows, NC centroids trained on them, and a router for those. */
static void setup(fixture *f, npvdb_metric metric)
{
    memset(f, 0, sizeof *f);
    f->pool = pool_create(2);
    assert_non_null(f->pool);
    f->x = clustered_rows(N, DIM, 80, 0.3f, 11);
    assert_non_null(f->x);
    int spherical = metric == NPVDB_METRIC_COSINE;
    if (spherical) assert_int_equal(rows_normalise(f->x, N, DIM), -1);
    npvdb_error err;
    assert_int_equal(kmeans_train(f->pool, f->x, N, DIM, NC, 8, spherical, 7,
                                  &f->cent, &err),
                     NPVDB_OK);
    f->cnorms = malloc(NC * sizeof *f->cnorms);
    assert_non_null(f->cnorms);
    rows_sqnorms(f->cent, NC, DIM, f->cnorms);
    assert_int_equal(
        router_build(&f->r, f->pool, f->cent, f->cnorms, NC, DIM, metric, 5),
        0);
}

static void teardown(fixture *f)
{
    router_free(&f->r);
    pool_destroy(f->pool);
    free(f->x);
    free(f->cent);
    free(f->cnorms);
}

/* Router and exact assignment of rows; returns how many agree, and in
 * *exact how many rows the router had to assign exactly. */
static size_t agreement(fixture *f, const float *rows, size_t n, int use_l2,
                        uint32_t *routed, size_t *exact_rows)
{
    uint32_t *exact = malloc(n * sizeof *exact);
    float *tmp = malloc((size_t)ASSIGN_BLOCK * NC * sizeof *tmp);
    float *scratch = malloc(router_scratch(&f->r) * sizeof *scratch);
    float *xn = malloc(n * sizeof *xn);
    assert_true(exact && tmp && scratch && xn);
    rows_sqnorms(rows, n, DIM, xn);
    assign_nearest(rows, n, f->cent, f->cnorms, NC, DIM, use_l2, exact, tmp);
    *exact_rows = router_assign(&f->r, rows, xn, n, f->cent, f->cnorms, use_l2,
                                routed, scratch);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(routed[i] < NC);
        same += routed[i] == exact[i];
    }
    free(exact);
    free(tmp);
    free(scratch);
    free(xn);
    return same;
}

/* The true K nearest of each query: the last NQ rows, among the others. */
static void truth(fixture *f, npvdb_metric metric, size_t *idx)
{
    double dist[K];
    for (size_t q = 0; q < NQ; q++)
        ref_knn(metric, f->x + (N - NQ + q) * DIM, f->x, N - NQ, DIM, K,
                idx + q * K, dist);
}

/* Recall@K of an IVF search probing `nprobe` cells when row i sits in cell
 * asg[i]: a neighbour is found if its cell is among the query's nprobe
 * best. */
static double ivf_recall(fixture *f, const size_t *nn, const uint32_t *asg,
                         uint32_t nprobe)
{
    size_t hits = 0;
    float sc[NC];
    for (size_t q = 0; q < NQ; q++) {
        dots_block(f->x + (N - NQ + q) * DIM, 1, f->cent, NC, DIM, -2.0f, sc);
        for (uint32_t j = 0; j < NC; j++)
            sc[j] += f->cnorms[j];
        for (int i = 0; i < K; i++) {
            uint32_t better = 0, cell = asg[nn[q * K + i]];
            for (uint32_t j = 0; j < NC; j++)
                better += sc[j] < sc[cell];
            hits += better < nprobe;
        }
    }
    return (double)hits / (NQ * K);
}

static void check_metric(npvdb_metric metric)
{
    fixture f;
    setup(&f, metric);
    assert_int_equal(f.r.n_groups, 24); /* round(sqrt(600)) */
    assert_int_equal(f.r.goff[f.r.n_groups], NC);
    uint32_t *routed = malloc(N * sizeof *routed);
    assert_non_null(routed);
    size_t fell = 0;
    size_t same = agreement(&f, f.x, N, metric_uses_l2(metric), routed, &fell);
    printf("router agrees with exact on %zu of %d rows (%zu assigned "
           "exactly)\n",
           same, N, fell);
    assert_true(same >= N * 97 / 100);
    assert_true(fell <= N / 10); /* the router did the work, not the fallback */
    uint32_t *exact = malloc(N * sizeof *exact);
    float *tmp = malloc((size_t)ASSIGN_BLOCK * NC * sizeof *tmp);
    assert_true(exact && tmp);
    assign_nearest(f.x, N, f.cent, f.cnorms, NC, DIM, metric_uses_l2(metric),
                   exact, tmp);
    size_t *nn = malloc(NQ * K * sizeof *nn);
    assert_non_null(nn);
    truth(&f, metric, nn);
    for (uint32_t nprobe = 1; nprobe <= 32; nprobe *= 4) {
        double re = ivf_recall(&f, nn, exact, nprobe);
        double rr = ivf_recall(&f, nn, routed, nprobe);
        printf("nprobe %2u: recall %.3f exact, %.3f routed\n", nprobe, re, rr);
        assert_true(rr >= re - 0.01);
    }
    free(nn);
    free(exact);
    free(tmp);
    /* A centroid's own group ranks first, so it finds itself. */
    assert_int_equal(
        agreement(&f, f.cent, NC, metric_uses_l2(metric), routed, &fell), NC);
    for (uint32_t j = 0; j < NC; j++)
        assert_int_equal(routed[j], j);
    free(routed);
    teardown(&f);
}

static void test_router_l2(void **s)
{
    (void)s;
    check_metric(NPVDB_METRIC_L2);
}

/* A row far from every centroid is about as far from its group centre as
 * from any centroid: the router cannot vouch for it and assigns exactly. */
static void test_router_far_rows_exact(void **s)
{
    (void)s;
    fixture f;
    setup(&f, NPVDB_METRIC_L2);
    enum { FAR = 100 };
    float *far = random_rows(FAR, DIM, 99);
    uint32_t routed[FAR];
    assert_non_null(far);
    for (size_t i = 0; i < FAR * DIM; i++)
        far[i] *= 1000.0f;
    size_t fell = 0;
    assert_int_equal(agreement(&f, far, FAR, 1, routed, &fell), FAR);
    assert_int_equal(fell, FAR);
    free(far);
    teardown(&f);
}

static void test_router_cosine(void **s)
{
    (void)s;
    check_metric(NPVDB_METRIC_COSINE);
}

/* Inserting through the engine: clustered rows keep the router on; noise
 * (nearly every row falls back to exact) rests it for the next batches. */
static void test_router_rests_on_noise(void **s)
{
    (void)s;
    npvdb_config cfg = {
        .dim = DIM, .metric = NPVDB_METRIC_L2, .n_shards = NC, .n_workers = 2};
    npvdb_error err;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    float *x = clustered_rows(N, DIM, 80, 0.3f, 11);
    float *noise = random_rows(2000, DIM, 12);
    char **keys = make_keys(N, "k"), **nkeys = make_keys(2000, "n");
    assert_true(c && x && noise && keys && nkeys);
    assert_int_equal(npvdb_train(c, x, N, &err), NPVDB_OK);
    assert_true(c->router.n_groups > 0);
    assert_int_equal(
        npvdb_insert(c, (const char *const *)keys, x, 4096, NULL, &err),
        NPVDB_OK);
    assert_int_equal(c->router_rest, 0);
    assert_int_equal(
        npvdb_insert(c, (const char *const *)nkeys, noise, 2000, NULL, &err),
        NPVDB_OK);
    assert_true(c->router_rest > 0);
    /* Resting or not, every row is stored. */
    float got[DIM];
    assert_int_equal(npvdb_get(c, "n1999", got, &err), NPVDB_OK);
    assert_memory_equal(got, noise + 1999 * DIM, sizeof got);
    npvdb_free(c);
    free(x);
    free(noise);
    free_keys(keys, N);
    free_keys(nkeys, 2000);
}

/* Inner product, and too few centroids: no router, exact assignment. */
static void test_router_off(void **s)
{
    (void)s;
    npvdb_pool *pool = pool_create(1);
    float *cent = random_rows(NC, DIM, 3), cn[NC];
    assert_true(pool && cent);
    rows_sqnorms(cent, NC, DIM, cn);
    npvdb_router r;
    assert_int_equal(
        router_build(&r, pool, cent, cn, NC, DIM, NPVDB_METRIC_IP, 1), 0);
    assert_int_equal(r.n_groups, 0);
    assert_int_equal(
        router_build(&r, pool, cent, cn, 500, DIM, NPVDB_METRIC_L2, 1), 0);
    assert_int_equal(r.n_groups, 0);
    router_free(&r);
    free(cent);
    pool_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_l2),
        cmocka_unit_test(test_router_cosine),
        cmocka_unit_test(test_router_far_rows_exact),
        cmocka_unit_test(test_router_off),
        cmocka_unit_test(test_router_rests_on_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
