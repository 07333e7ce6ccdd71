/*
 * collection.c -- a collection's life: create, the write path (upsert,
 * delete, restore), reads (get, stats, export), and the public entry points
 * that validate input before anything is touched.
 */
#include "validate.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TRAIN_PER_SHARD 64
#define DEFAULT_KMEANS_ITERS 10
#define DEFAULT_NPROBE 8
#define DEFAULT_SEED 0x6e707664622d3031ull
#define MAX_WORKERS 1024

/* ---- configuration ---- */

static uint32_t online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 && cores < MAX_WORKERS ? (uint32_t)cores : 1;
}

/* ---- shared workers ---- */

npvdb_workers *npvdb_workers_create(uint32_t n_workers, npvdb_error *err)
{
    if (n_workers > MAX_WORKERS) {
        npvdb_set_error(err, NPVDB_EINVAL, "n_workers must be <= %d, got %u",
                        MAX_WORKERS, n_workers);
        return NULL;
    }
    npvdb_workers *w = malloc(sizeof *w);
    if (w) w->pool = pool_create(n_workers ? n_workers : online_cores());
    if (!w || !w->pool) {
        free(w);
        npvdb_set_error(err, NPVDB_ENOMEM,
                        "out of memory starting %u worker threads", n_workers);
        return NULL;
    }
    /* Workers are our threads; BLAS inside them must not spawn its own. */
    openblas_set_num_threads(1);
    npvdb_ok(err);
    return w;
}

void npvdb_workers_free(npvdb_workers *w)
{
    if (!w) return;
    pool_destroy(w->pool);
    free(w);
}

static npvdb_code resolve_config(const npvdb_config *in, npvdb_config *out,
                                 npvdb_error *err)
{
    if (!in)
        return npvdb_set_error(err, NPVDB_EINVAL, "no configuration given");
    if (in->dim < 1 || in->dim > NPVDB_MAX_DIM)
        return npvdb_set_error(err, NPVDB_EINVAL, "dim must be 1..%d, got %u",
                               NPVDB_MAX_DIM, in->dim);
    if (in->metric != NPVDB_METRIC_COSINE && in->metric != NPVDB_METRIC_L2 &&
        in->metric != NPVDB_METRIC_IP)
        return npvdb_set_error(err, NPVDB_EINVAL, "unknown metric %d",
                               (int)in->metric);
    if (in->n_shards > NPVDB_MAX_SHARDS)
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "n_shards must be <= %d, got %u",
                               NPVDB_MAX_SHARDS, in->n_shards);
    if (!in->workers && in->n_workers > MAX_WORKERS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "n_workers must be <= %d, got %u", MAX_WORKERS,
                               in->n_workers);
    *out = *in;
    if (in->workers)
        out->n_workers = pool_size(in->workers->pool);
    else if (!out->n_workers)
        out->n_workers = online_cores();
    if (!out->train_per_shard) out->train_per_shard = DEFAULT_TRAIN_PER_SHARD;
    if (!out->kmeans_iters) out->kmeans_iters = DEFAULT_KMEANS_ITERS;
    if (!out->default_nprobe) out->default_nprobe = DEFAULT_NPROBE;
    if (!out->seed) out->seed = DEFAULT_SEED;
    return NPVDB_OK;
}

/* With automatic n_shards (4 sqrt n), n vectors fill shards to
 * train_per_shard when n = (4 * train_per_shard)^2: 65536 for the default. */
static size_t train_threshold(const npvdb_config *cfg)
{
    size_t tps = cfg->train_per_shard;
    if (cfg->n_shards) return (size_t)cfg->n_shards * tps;
    return 16 * tps * tps;
}

npvdb_collection *npvdb_create(const npvdb_config *cfg, npvdb_error *err)
{
    npvdb_config rc;
    if (resolve_config(cfg, &rc, err)) return NULL;
    npvdb_collection *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->cfg = rc;
    c->n_shards = 1;
    c->shard_cap = 1;
    c->auto_train = true;
    c->rebalance = true;
    c->train_at = train_threshold(&rc);
    c->shards = calloc(1, sizeof *c->shards);
    if (!c->shards || keymap_init(&c->map)) goto oom;
    /* A borrowed pool costs the collection nothing: no threads, no stacks.
     * What remains per collection is this struct, 64 key map buckets and
     * one empty shard (about 1.5 KiB). */
    if (rc.workers) {
        c->pool = rc.workers->pool;
    } else {
        c->pool = pool_create(rc.n_workers);
        if (!c->pool) goto oom;
        c->owns_pool = true;
    }
    /* Workers are our threads; BLAS inside them must not spawn its own. */
    openblas_set_num_threads(1);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Writer preference: a steady stream of searches must not starve inserts.
     */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->rw, &attr);
    pthread_mutex_init(&c->shape_mu, NULL);
    atomic_init(&c->wgen, 1);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&c->write_mu, NULL);
    pthread_mutex_init(&c->index_mu, NULL);
    npvdb_ok(err);
    return c;
oom:
    if (c) {
        if (c->owns_pool) pool_destroy(c->pool);
        keymap_destroy(&c->map);
        free(c->shards);
        free(c);
    }
    npvdb_set_error(err, NPVDB_ENOMEM, "out of memory creating a collection");
    return NULL;
}

void npvdb_free(npvdb_collection *c)
{
    if (!c) return;
    if (c->owns_pool) pool_destroy(c->pool);
    for (uint32_t i = 0; i < c->n_shards; i++) {
        shard_free_payloads(&c->shards[i]);
        shard_free(&c->shards[i]);
    }
    fieldmap_destroy(&c->fields);
    free(c->shards);
    free(c->centroids);
    free(c->cnorms);
    free(c->assign_tmp);
    npvdb_reshards_free(c->jr, c->jr_n);
    free(c->gid);
    router_free(&c->router);
    keymap_destroy(&c->map);
    pthread_rwlock_destroy(&c->rw);
    pthread_mutex_destroy(&c->shape_mu);
    pthread_mutex_destroy(&c->write_mu);
    pthread_mutex_destroy(&c->index_mu);
    free(c);
}

uint32_t npvdb_dim(const npvdb_collection *c)
{
    return c->cfg.dim;
}

void npvdb_get_config(const npvdb_collection *c, npvdb_config *out)
{
    *out = c->cfg;
}

npvdb_metric npvdb_get_metric(const npvdb_collection *c)
{
    return c->cfg.metric;
}
