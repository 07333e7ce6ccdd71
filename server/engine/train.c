/*
 * train.c -- (re)building the IVF index: sample, k-means, re-shard every
 * stored vector, then swap the new shards in. Only the swap takes the
 * exclusive lock; searches run on the old index during k-means.
 */
#include "validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- training (caller holds write_mu) ---- */

static uint32_t auto_shards(size_t n)
{
    double s = 4.0 * __builtin_sqrt((double)n) + 0.5;
    if (s < 1) return 1;
    if (s > NPVDB_MAX_SHARDS) return NPVDB_MAX_SHARDS;
    return (uint32_t)s;
}

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Copies m rows chosen at random (without replacement when m <= n) from the
 * stored vectors or from `src`. Caller frees. */
static float *sample_rows(npvdb_collection *c, const float *src, size_t n,
                          size_t m, uint64_t seed)
{
    uint32_t dim = c->cfg.dim;
    float *out = malloc(m * dim * sizeof *out);
    size_t *idx = malloc(n * sizeof *idx);
    if (!out || !idx) {
        free(out);
        free(idx);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t j = 0; j < m; j++) {
        size_t r = j + mix(&seed) % (n - j), t = idx[j];
        idx[j] = idx[r];
        idx[r] = t;
    }
    size_t next = 0, base = 0;
    if (src) {
        for (size_t j = 0; j < m; j++)
            memcpy(out + j * dim, src + idx[j] * dim, dim * sizeof *out);
    } else {
        /* Global row g lives in the shard whose running count covers it. */
        for (uint32_t s = 0; s < c->n_shards && next < m; s++) {
            const npvdb_shard *sh = &c->shards[s];
            for (size_t j = 0; j < m; j++)
                if (idx[j] >= base && idx[j] < base + sh->n) {
                    memcpy(out + next * dim, sh->rows + (idx[j] - base) * dim,
                           dim * sizeof *out);
                    next++;
                }
            base += sh->n;
        }
    }
    free(idx);
    return out;
}

/* Builds the shard arrays for new centroids from the stored vectors. */
static npvdb_code build_shards(npvdb_collection *c, const float *cent,
                               const float *cnorms, uint32_t nc,
                               npvdb_shard **out, npvdb_error *err)
{
    uint32_t dim = c->cfg.dim;
    npvdb_shard *ns = calloc(nc, sizeof *ns);
    float *tmp = malloc((size_t)ASSIGN_BLOCK * nc * sizeof *tmp);
    uint32_t *asg = NULL;
    if (!ns || !tmp) goto oom;
    /* Pass 1 counts so every new shard is allocated once, exactly. */
    size_t *cnt = calloc(nc, sizeof *cnt);
    if (!cnt) goto oom;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t s = 0; s < c->n_shards; s++) {
            npvdb_shard *old = &c->shards[s];
            free(asg);
            asg = malloc((old->n ? old->n : 1) * sizeof *asg);
            if (!asg) goto oom_cnt;
            assign_nearest(old->rows, old->n, cent, cnorms, nc, dim,
                           metric_uses_l2(c->cfg.metric), asg, tmp);
            for (size_t r = 0; r < old->n; r++) {
                if (pass == 0) {
                    cnt[asg[r]]++;
                    continue;
                }
                shard_push(&ns[asg[r]], dim, old->entries[r],
                           old->rows + r * dim, old->sqnorms[r], old->pay[r]);
            }
        }
        if (pass == 0)
            for (uint32_t j = 0; j < nc; j++)
                if (shard_reserve(&ns[j], cnt[j], dim)) goto oom_cnt;
    }
    free(cnt);
    free(asg);
    free(tmp);
    *out = ns;
    return NPVDB_OK;
oom_cnt:
    free(cnt);
oom:
    if (ns)
        for (uint32_t j = 0; j < nc; j++)
            shard_free(&ns[j]);
    free(ns);
    free(tmp);
    free(asg);
    return npvdb_set_error(err, NPVDB_ENOMEM,
                           "out of memory re-sharding %zu vectors",
                           c->n_vectors);
}

/* Swaps in new centroids and shards; the only step searches wait for. */
void install_index(npvdb_collection *c, float *cent, float *cnorms, uint32_t nc,
                   npvdb_shard *ns)
{
    /* Writers hold write_mu, so the router can change outside rw. Without
     * one (no memory), inserts fall back to exact assignment. */
    router_free(&c->router);
    router_build(&c->router, c->pool, cent, cnorms, nc, c->cfg.dim,
                 c->cfg.metric, c->cfg.seed);
    c->router_rest = 0;
    pthread_rwlock_wrlock(&c->rw);
    npvdb_shard *old = c->shards;
    uint32_t old_n = c->n_shards;
    float *oc = c->centroids, *on = c->cnorms;
    c->shards = ns;
    c->n_shards = nc;
    c->centroids = cent;
    c->cnorms = cnorms;
    c->trained = true;
    /* Entries learn their new place only now: searches read it (L2 refine). */
    for (uint32_t s = 0; s < nc; s++)
        for (size_t r = 0; r < ns[s].n; r++) {
            ns[s].entries[r]->shard = s;
            ns[s].entries[r]->row = (uint32_t)r;
        }
    pthread_rwlock_unlock(&c->rw);
    for (uint32_t i = 0; i < old_n; i++)
        shard_free(&old[i]);
    free(old);
    free(oc);
    free(on);
}

static npvdb_code reindex(npvdb_collection *c, float *cent, uint32_t nc,
                          npvdb_error *err)
{
    float *cnorms = malloc(nc * sizeof *cnorms);
    npvdb_shard *ns = NULL;
    if (!cnorms) {
        free(cent);
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for centroids");
    }
    rows_sqnorms(cent, nc, c->cfg.dim, cnorms);
    npvdb_code rc = build_shards(c, cent, cnorms, nc, &ns, err);
    if (rc) {
        free(cent);
        free(cnorms);
        return rc;
    }
    install_index(c, cent, cnorms, nc, ns);
    return NPVDB_OK;
}

/* Trains on `src` (n rows, prepared) or, when NULL, on the stored vectors. */
static npvdb_code train_locked(npvdb_collection *c, const float *src, size_t n,
                               npvdb_error *err)
{
    size_t pool_n = src ? n : c->n_vectors;
    uint32_t nc = c->cfg.n_shards
                      ? c->cfg.n_shards
                      : auto_shards(c->n_vectors > n ? c->n_vectors : n);
    if (pool_n < nc)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "training %u shards needs at least %u vectors, "
                               "have %zu",
                               nc, nc, pool_n);
    /* As FAISS: 256 rows per centroid are plenty, more only cost time. */
    size_t m = (size_t)nc * 256 < pool_n ? (size_t)nc * 256 : pool_n;
    float *sample = sample_rows(c, src, pool_n, m, c->cfg.seed);
    if (!sample)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory sampling %zu rows", m);
    float *cent = NULL;
    npvdb_code rc = kmeans_train(
        c->pool, sample, m, c->cfg.dim, nc, c->cfg.kmeans_iters,
        c->cfg.metric == NPVDB_METRIC_COSINE, c->cfg.seed, &cent, err);
    free(sample);
    if (rc) return rc;
    return reindex(c, cent, nc, err);
}

npvdb_code index_train(npvdb_collection *c, const float *src, size_t n,
                       npvdb_error *err)
{
    pthread_mutex_lock(&c->index_mu); /* no export may be walking shards */
    npvdb_code rc = train_locked(c, src, n, err);
    pthread_mutex_unlock(&c->index_mu);
    return rc;
}

npvdb_code npvdb_train(npvdb_collection *c, const float *sample, size_t n,
                       npvdb_error *err)
{
    float *owned = NULL;
    const float *rows = NULL;
    if (sample) {
        if (!n)
            return npvdb_set_error(err, NPVDB_EINVAL, "empty training sample");
        npvdb_code rc =
            prepare_rows(c, sample, n, "training vector", &owned, &rows, err);
        if (rc) return rc;
    }
    pthread_mutex_lock(&c->write_mu);
    npvdb_code rc = index_train(c, rows, sample ? n : 0, err);
    if (rc == NPVDB_OK) c->auto_train = false;
    pthread_mutex_unlock(&c->write_mu);
    free(owned);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
