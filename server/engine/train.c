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
                   npvdb_shard *ns, npvdb_router *logged)
{
    /* Writers hold write_mu, so the router can change outside rw. Without
     * one (no memory), inserts fall back to exact assignment. */
    router_free(&c->router);
    c->router_stale = false; /* the grouping in c->gid is the old one's */
    if (logged)
        c->router = *logged;
    else
        router_build(&c->router, c->pool, cent, cnorms, nc, c->cfg.dim,
                     c->cfg.metric, c->cfg.seed);
    c->router_rest = 0;
    c->index_epoch++;
    c->check_all = true; /* the next write's rebalance looks at every shard */
    c->train_pending = false;
    pthread_rwlock_wrlock(&c->rw);
    note_write(c);
    npvdb_shard *old = c->shards;
    uint32_t old_n = c->n_shards;
    float *oc = c->centroids, *on = c->cnorms;
    c->shards = ns;
    c->n_shards = nc;
    c->shard_cap = nc;
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
    install_index(c, cent, cnorms, nc, ns, NULL);
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
    bool again = c->trained;
    npvdb_code rc = index_train(c, rows, sample ? n : 0, err);
    if (rc == NPVDB_OK) c->auto_train = false;
    if (rc == NPVDB_OK && again) c->n_retrains++;
    pthread_mutex_unlock(&c->write_mu);
    free(owned);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}

/* ---- the index as logged (npvdb_index_get / npvdb_index_install) ---- */

void run_pending_training(npvdb_collection *c)
{
    if (!c->train_pending) return;
    c->train_pending = false;
    npvdb_error ignored;
    /* As maybe_auto_train: a failure leaves the next insert to try. */
    if (index_train(c, NULL, 0, &ignored) == NPVDB_OK) c->auto_train = false;
}

void npvdb_defer_training(npvdb_collection *c, int on)
{
    pthread_mutex_lock(&c->write_mu);
    c->defer_train = on != 0;
    if (!on) run_pending_training(c);
    pthread_mutex_unlock(&c->write_mu);
}

uint64_t npvdb_index_epoch(npvdb_collection *c)
{
    pthread_mutex_lock(&c->write_mu);
    uint64_t e = c->index_epoch;
    pthread_mutex_unlock(&c->write_mu);
    return e;
}

/* Copies the index; caller holds write_mu (centroids and router stay). */
static npvdb_code index_copy(npvdb_collection *c, npvdb_index *out,
                             npvdb_error *err)
{
    router_refresh(c);
    uint32_t dim = c->cfg.dim, nc = c->n_shards, G = c->router.n_groups;
    out->dim = dim;
    out->n_shards = nc;
    out->n_groups = G;
    out->centroids = malloc((size_t)nc * dim * sizeof(float));
    out->group_centres = malloc(((size_t)G * dim + 1) * sizeof(float));
    out->group_of = malloc((G ? nc : 1) * sizeof(uint32_t));
    if (!out->centroids || !out->group_centres || !out->group_of) {
        npvdb_index_free(out);
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory copying %u centroids", nc);
    }
    memcpy(out->centroids, c->centroids, (size_t)nc * dim * sizeof(float));
    if (G) {
        memcpy(out->group_centres, c->router.gcent,
               (size_t)G * dim * sizeof(float));
        router_groups(&c->router, out->group_of);
    }
    return NPVDB_OK;
}

npvdb_code npvdb_index_get(npvdb_collection *c, npvdb_index *out,
                           npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->write_mu);
    npvdb_code rc = c->trained
                        ? index_copy(c, out, err)
                        : npvdb_set_error(err, NPVDB_ESTATE,
                                          "the collection is not trained");
    pthread_mutex_unlock(&c->write_mu);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}

static npvdb_code check_index(const npvdb_collection *c, const npvdb_index *ix,
                              npvdb_error *err)
{
    if (ix->dim != c->cfg.dim)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "index of dim %u for a collection of dim %u",
                               ix->dim, c->cfg.dim);
    if (ix->n_shards < 1 || ix->n_shards > NPVDB_MAX_SHARDS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "n_shards must be 1..%d, got %u",
                               NPVDB_MAX_SHARDS, ix->n_shards);
    if (ix->n_groups &&
        (ix->n_groups < ROUTER_MIN_GROUPS || ix->n_groups > ix->n_shards ||
         c->cfg.metric == NPVDB_METRIC_IP))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%u router groups for %u centroids",
                               ix->n_groups, ix->n_shards);
    for (uint32_t j = 0; ix->n_groups && j < ix->n_shards; j++)
        if (ix->group_of[j] >= ix->n_groups)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "centroid %u in router group %u of %u", j,
                                   ix->group_of[j], ix->n_groups);
    npvdb_code rc =
        check_rows(ix->centroids, ix->n_shards, ix->dim, "centroid", err);
    if (rc == NPVDB_OK && ix->n_groups)
        rc = check_rows(ix->group_centres, ix->n_groups, ix->dim,
                        "router group centre", err);
    return rc;
}

/* Re-shards the stored vectors on ix (as a training does after its
 * k-means); caller holds write_mu and index_mu. */
static npvdb_code install_logged(npvdb_collection *c, const npvdb_index *ix,
                                 npvdb_error *err)
{
    uint32_t nc = ix->n_shards, dim = c->cfg.dim;
    float *cent = malloc((size_t)nc * dim * sizeof *cent);
    float *cnorms = malloc(nc * sizeof *cnorms);
    npvdb_router r;
    memset(&r, 0, sizeof r);
    npvdb_shard *ns = NULL;
    npvdb_code rc = NPVDB_ENOMEM;
    if (cent && cnorms) {
        memcpy(cent, ix->centroids, (size_t)nc * dim * sizeof *cent);
        rows_sqnorms(cent, nc, dim, cnorms);
        if (router_from(&r, cent, cnorms, nc, dim, ix->group_centres,
                        ix->group_of, ix->n_groups) == 0)
            rc = build_shards(c, cent, cnorms, nc, &ns, err);
    }
    if (rc == NPVDB_OK) {
        install_index(c, cent, cnorms, nc, ns, &r);
        c->auto_train = false;
        return NPVDB_OK;
    }
    router_free(&r);
    free(cent);
    free(cnorms);
    if (rc == NPVDB_ENOMEM)
        npvdb_set_error(err, rc, "out of memory installing %u centroids", nc);
    return rc;
}

npvdb_code npvdb_index_install(npvdb_collection *c, const npvdb_index *ix,
                               npvdb_error *err)
{
    npvdb_code rc = check_index(c, ix, err);
    if (rc) return rc;
    pthread_mutex_lock(&c->write_mu);
    pthread_mutex_lock(&c->index_mu);
    rc = install_logged(c, ix, err);
    pthread_mutex_unlock(&c->index_mu);
    pthread_mutex_unlock(&c->write_mu);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
