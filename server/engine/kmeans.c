/*
 * kmeans.c -- Lloyd's k-means for the IVF index, with every assignment step
 * one sgemm per block of rows, spread over the worker pool.
 *
 * Seeding is by distinct random rows (as FAISS does): k-means++ costs nc
 * sequential passes over the data, too slow for thousands of centroids, and
 * on a 256-per-centroid sample random seeding plus empty-cluster splitting
 * converges to the same quality in the fixed iteration budget.
 */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct km {
    const float *x;
    size_t n;
    uint32_t dim, nc, n_tasks;
    const float *cent, *cnorms;
    int use_l2;
    uint32_t *assign;
    float *tmp; /* n_tasks * ASSIGN_BLOCK * nc */
} km;

static atomic_uint_fast64_t kmeans_runs;

uint64_t npvdb_kmeans_runs(void)
{
    return atomic_load(&kmeans_runs);
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: tiny, seedable, plenty for sampling */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void assign_task(void *ctx, uint32_t t)
{
    km *k = ctx;
    size_t lo = k->n * t / k->n_tasks, hi = k->n * (t + 1) / k->n_tasks;
    assign_nearest(k->x + lo * k->dim, hi - lo, k->cent, k->cnorms, k->nc,
                   k->dim, k->use_l2, k->assign + lo,
                   k->tmp + (size_t)t * ASSIGN_BLOCK * k->nc);
}

static int seed_centroids(const float *x, size_t n, uint32_t dim, uint32_t nc,
                          uint64_t *rng, float *cent)
{
    uint32_t *idx = malloc(n * sizeof *idx);
    if (!idx) return -1;
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    for (uint32_t j = 0; j < nc; j++) { /* partial Fisher-Yates */
        size_t r = j + rng_next(rng) % (n - j);
        uint32_t t = idx[j];
        idx[j] = idx[r];
        idx[r] = t;
        memcpy(cent + (size_t)j * dim, x + (size_t)idx[j] * dim,
               dim * sizeof *cent);
    }
    free(idx);
    return 0;
}

static void accumulate(const km *k, float *cent, uint32_t *count)
{
    memset(cent, 0, (size_t)k->nc * k->dim * sizeof *cent);
    memset(count, 0, k->nc * sizeof *count);
    for (size_t i = 0; i < k->n; i++) {
        float *c = cent + (size_t)k->assign[i] * k->dim;
        const float *r = k->x + i * k->dim;
        for (uint32_t d = 0; d < k->dim; d++)
            c[d] += r[d];
        count[k->assign[i]]++;
    }
    for (uint32_t j = 0; j < k->nc; j++) {
        if (!count[j]) continue;
        float inv = 1.0f / (float)count[j];
        for (uint32_t d = 0; d < k->dim; d++)
            cent[(size_t)j * k->dim + d] *= inv;
    }
}

/* An empty cluster takes half of the largest one: copy its centroid and
 * push the two copies apart by a small symmetric perturbation. */
static void split_empty(float *cent, uint32_t *count, uint32_t nc, uint32_t dim)
{
    const float eps = 1.0f / 1024;
    for (uint32_t j = 0; j < nc; j++) {
        if (count[j]) continue;
        uint32_t big = 0;
        for (uint32_t m = 1; m < nc; m++)
            if (count[m] > count[big]) big = m;
        float *cj = cent + (size_t)j * dim, *cb = cent + (size_t)big * dim;
        for (uint32_t d = 0; d < dim; d++) {
            float s = (d % 2) ? eps : -eps;
            cj[d] = cb[d] * (1 + s);
            cb[d] = cb[d] * (1 - s);
        }
        count[j] = count[big] / 2;
        count[big] -= count[j];
    }
}

static void finish_iteration(km *k, float *cent, float *cnorms, uint32_t *count,
                             int spherical)
{
    accumulate(k, cent, count);
    split_empty(cent, count, k->nc, k->dim);
    if (spherical) rows_normalise(cent, k->nc, k->dim); /* zero rows stay */
    rows_sqnorms(cent, k->nc, k->dim, cnorms);
}

npvdb_code kmeans_train(npvdb_pool *pool, const float *x, size_t n,
                        uint32_t dim, uint32_t nc, uint32_t iters,
                        int spherical, uint64_t seed, float **out,
                        npvdb_error *err)
{
    *out = NULL;
    atomic_fetch_add(&kmeans_runs, 1);
    if (n < nc)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "training needs at least %u vectors (one per "
                               "shard), got %zu",
                               nc, n);
    km k = {.x = x,
            .n = n,
            .dim = dim,
            .nc = nc,
            .n_tasks = pool_size(pool),
            .use_l2 = !spherical};
    uint64_t rng = seed;
    float *cent = malloc((size_t)nc * dim * sizeof *cent);
    float *cnorms = malloc(nc * sizeof *cnorms);
    uint32_t *count = malloc(nc * sizeof *count);
    k.assign = malloc(n * sizeof *k.assign);
    k.tmp = malloc((size_t)k.n_tasks * ASSIGN_BLOCK * nc * sizeof *k.tmp);
    npvdb_code rc = NPVDB_ENOMEM;
    if (!cent || !cnorms || !count || !k.assign || !k.tmp ||
        seed_centroids(x, n, dim, nc, &rng, cent))
        goto done;
    if (spherical) rows_normalise(cent, nc, dim);
    rows_sqnorms(cent, nc, dim, cnorms);
    k.cent = cent;
    k.cnorms = cnorms;
    for (uint32_t it = 0; it < iters; it++) {
        if (pool_run(pool, k.n_tasks, assign_task, &k)) goto done;
        finish_iteration(&k, cent, cnorms, count, spherical);
    }
    *out = cent;
    cent = NULL;
    rc = NPVDB_OK;
done:
    if (rc == NPVDB_ENOMEM)
        npvdb_set_error(
            err, rc, "out of memory training %u centroids on %zu rows", nc, n);
    free(cent);
    free(cnorms);
    free(count);
    free(k.assign);
    free(k.tmp);
    return rc;
}
