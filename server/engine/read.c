/*
 * read.c -- the read side: search, get, stats and export. All of them hold
 * the rwlock shared, so they run alongside each other and only wait for a
 * writer's short apply step.
 */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

static npvdb_code check_search(const npvdb_collection *c, const float *q,
                               size_t nq, uint32_t k, npvdb_error *err)
{
    if (nq == 0 || !q)
        return npvdb_set_error(err, NPVDB_EINVAL, "no queries given");
    if (k == 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "k must be at least 1");
    if (k > NPVDB_MAX_K)
        return npvdb_set_error(err, NPVDB_ELIMIT, "k must be <= %d, got %u",
                               NPVDB_MAX_K, k);
    return NPVDB_OK;
}

/* The search proper on prepared queries q (normalised for cosine); the
 * filter is checked. */
static npvdb_code search_prepared(npvdb_collection *c, const float *q,
                                  size_t nq, uint32_t k,
                                  const npvdb_search_params *p,
                                  npvdb_results *out, npvdb_error *err)
{
    search_opts o = {.nprobe = p->nprobe ? p->nprobe : c->cfg.default_nprobe,
                     .with_payload = p->with_payload != 0,
                     .cancel = p->cancel,
                     .deadline_ns = p->deadline_ns,
                     .max_result_bytes = p->max_result_bytes,
                     .result_bytes = p->result_bytes};
    cfilter *cf = NULL;
    pthread_rwlock_rdlock(&c->rw);
    npvdb_code rc = filter_compile(c, p->filter, &cf, err);
    o.filter = cf;
    /* k past the collection (or the passing set) gives short rows. */
    if (rc == NPVDB_OK) rc = search_locked(c, q, nq, k, &o, out, err);
    pthread_rwlock_unlock(&c->rw);
    filter_free(cf);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}

npvdb_code npvdb_search_ex(npvdb_collection *c, float *queries, size_t nq,
                           uint32_t k, const npvdb_search_params *p,
                           npvdb_results *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_search_params none = {0};
    if (!p) p = &none;
    npvdb_code rc = check_search(c, queries, nq, k, err);
    if (rc == NPVDB_OK) rc = npvdb_filter_check(p->filter, err);
    if (rc) return rc;
    if (!p->inplace) {
        float *owned;
        const float *q;
        if ((rc = prepare_rows(c, queries, nq, "query", &owned, &q, err)))
            return rc;
        rc = search_prepared(c, q, nq, k, p, out, err);
        free(owned);
        return rc;
    }
    if ((rc = check_rows(queries, nq, c->cfg.dim, "query", err)) ||
        (rc = check_magnitude(c, queries, nq, "query", err)))
        return rc;
    if (c->cfg.metric == NPVDB_METRIC_COSINE) {
        /* What prepare_rows does to its copy, done to the caller's rows. */
        long zero = rows_normalise(queries, nq, c->cfg.dim);
        if (zero >= 0)
            return npvdb_set_error(
                err, NPVDB_EINVAL,
                "query %ld has zero norm: cosine needs a direction", zero);
    }
    return search_prepared(c, queries, nq, k, p, out, err);
}

npvdb_code npvdb_search(npvdb_collection *c, const float *queries, size_t nq,
                        uint32_t k, uint32_t nprobe, npvdb_results *out,
                        npvdb_error *err)
{
    /* Not inplace: the queries are only read. */
    npvdb_search_params p = {.nprobe = nprobe};
    return npvdb_search_ex(c, (float *)queries, nq, k, &p, out, err);
}

npvdb_code npvdb_search_inplace(npvdb_collection *c, float *queries, size_t nq,
                                uint32_t k, uint32_t nprobe, npvdb_results *out,
                                npvdb_error *err)
{
    npvdb_search_params p = {.nprobe = nprobe, .inplace = 1};
    return npvdb_search_ex(c, queries, nq, k, &p, out, err);
}

npvdb_code npvdb_get_payload(npvdb_collection *c, const char *key, float *out,
                             npvdb_payload *payload, npvdb_error *err)
{
    if (payload) *payload = (npvdb_payload){0};
    size_t len;
    npvdb_code rc = check_key(key, 0, &len, err);
    if (rc) return rc;
    uint32_t h = keymap_hash(key, len);
    uint8_t *copy = NULL;
    pthread_rwlock_rdlock(&c->rw);
    const npvdb_entry *e = keymap_find(&c->map, key, len, h);
    if (e && out)
        memcpy(out, c->shards[e->shard].rows + (size_t)e->row * c->cfg.dim,
               c->cfg.dim * sizeof *out);
    const npvdb_pstore *p = e ? c->shards[e->shard].pay[e->row] : NULL;
    if (p && payload && (copy = malloc(p->len)) != NULL) {
        memcpy(copy, pstore_blob(p), p->len);
        *payload = (npvdb_payload){.data = copy, .len = p->len};
    }
    pthread_rwlock_unlock(&c->rw);
    if (!e)
        return npvdb_set_error(err, NPVDB_ENOTFOUND, "key '%.200s' not found",
                               key);
    if (p && payload && !copy)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory copying the payload of '%.200s'",
                               key);
    npvdb_ok(err);
    return NPVDB_OK;
}

npvdb_code npvdb_get(npvdb_collection *c, const char *key, float *out,
                     npvdb_error *err)
{
    return npvdb_get_payload(c, key, out, NULL, err);
}

/* What memory_bytes counts; caller holds rw (either way). O(shards): every
 * other part is a running total. */
static size_t memory_locked(const npvdb_collection *c)
{
    size_t mem = sizeof *c + c->n_shards * sizeof *c->shards +
                 keymap_memory(&c->map) + c->payload_bytes +
                 fieldmap_memory(&c->fields);
    for (uint32_t i = 0; i < c->n_shards; i++)
        mem += shard_memory(&c->shards[i], c->cfg.dim);
    if (c->trained)
        mem += (size_t)c->n_shards * (c->cfg.dim + 1) * sizeof(float);
    return mem;
}

size_t npvdb_memory_bytes(npvdb_collection *c)
{
    pthread_rwlock_rdlock(&c->rw);
    size_t mem = memory_locked(c);
    pthread_rwlock_unlock(&c->rw);
    return mem;
}

/* Rows in the smallest and largest shard; caller holds rw. */
static void shard_extremes(const npvdb_collection *c, size_t *lo, size_t *hi)
{
    *lo = *hi = c->n_shards ? c->shards[0].n : 0;
    for (uint32_t i = 1; i < c->n_shards; i++) {
        size_t n = c->shards[i].n;
        if (n < *lo) *lo = n;
        if (n > *hi) *hi = n;
    }
}

void npvdb_shape_get(npvdb_collection *c, npvdb_shape *out)
{
    pthread_rwlock_rdlock(&c->rw);
    uint64_t gen = atomic_load_explicit(&c->wgen, memory_order_relaxed);
    pthread_mutex_lock(&c->shape_mu);
    if (c->shape_gen != gen) {
        npvdb_shape s = {.n_vectors = c->n_vectors,
                         .n_shards = c->n_shards,
                         .splits = c->n_splits,
                         .merges = c->n_merges,
                         .retrains = c->n_retrains};
        shard_extremes(c, &s.min_shard, &s.max_shard);
        s.memory_bytes = memory_locked(c);
        c->shape = s;
        c->shape_gen = gen;
    }
    *out = c->shape;
    pthread_mutex_unlock(&c->shape_mu);
    pthread_rwlock_unlock(&c->rw);
}

/* Caller holds rw (either way). */
static npvdb_code stats_locked(const npvdb_collection *c, npvdb_stats *out,
                               npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    out->shard_counts = malloc(c->n_shards * sizeof *out->shard_counts);
    if (!out->shard_counts)
        return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory for stats");
    out->dim = c->cfg.dim;
    out->metric = c->cfg.metric;
    out->trained = c->trained;
    out->n_vectors = c->n_vectors;
    out->n_shards = c->n_shards;
    out->n_workers = c->cfg.n_workers;
    out->default_nprobe = c->cfg.default_nprobe;
    for (uint32_t i = 0; i < c->n_shards; i++)
        out->shard_counts[i] = c->shards[i].n;
    shard_extremes(c, &out->min_shard, &out->max_shard);
    out->splits = c->n_splits;
    out->merges = c->n_merges;
    out->retrains = c->n_retrains;
    out->memory_bytes = memory_locked(c);
    return NPVDB_OK;
}

npvdb_code npvdb_stats_get(npvdb_collection *c, npvdb_stats *out,
                           npvdb_error *err)
{
    pthread_rwlock_rdlock(&c->rw);
    npvdb_code rc = stats_locked(c, out, err);
    pthread_rwlock_unlock(&c->rw);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}

void npvdb_stats_free(npvdb_stats *s)
{
    if (!s) return;
    free(s->shard_counts);
    s->shard_counts = NULL;
}

static int export_shard(npvdb_collection *c, uint32_t s, npvdb_shard_cb cb,
                        void *ctx, npvdb_error *err)
{
    pthread_rwlock_rdlock(&c->rw);
    const npvdb_shard *sh = &c->shards[s];
    const char **keys = malloc((sh->n ? sh->n : 1) * sizeof *keys);
    npvdb_payload *pays = malloc((sh->n ? sh->n : 1) * sizeof *pays);
    int rc = -1;
    if (!keys || !pays) {
        npvdb_set_error(err, NPVDB_ENOMEM, "out of memory exporting shard %u",
                        s);
    } else {
        for (size_t i = 0; i < sh->n; i++) {
            keys[i] = sh->entries[i]->key;
            const npvdb_pstore *p = sh->pay[i];
            pays[i] = p ? (npvdb_payload){pstore_blob(p), p->len}
                        : (npvdb_payload){0};
        }
        npvdb_shard_view v = {.shard = s,
                              .n = sh->n,
                              .rows = sh->rows,
                              .keys = keys,
                              .payloads = pays};
        rc = cb(ctx, &v);
        if (rc)
            npvdb_set_error(err, NPVDB_EINTERNAL,
                            "export stopped at shard %u (%d)", s, rc);
    }
    pthread_rwlock_unlock(&c->rw);
    free(keys);
    free(pays);
    return rc;
}

npvdb_code npvdb_export(npvdb_collection *c, npvdb_index_cb on_index,
                        npvdb_shard_cb on_shard, void *ctx, npvdb_error *err)
{
    pthread_mutex_lock(&c->index_mu); /* n_shards fixed from here on */
    pthread_rwlock_rdlock(&c->rw);
    npvdb_stats st;
    npvdb_code rc = stats_locked(c, &st, err);
    if (rc == NPVDB_OK && on_index && on_index(ctx, &st, c->centroids))
        rc = npvdb_set_error(err, NPVDB_EINTERNAL,
                             "export stopped at the index");
    pthread_rwlock_unlock(&c->rw);
    npvdb_stats_free(&st);
    for (uint32_t s = 0; rc == NPVDB_OK && on_shard && s < c->n_shards; s++)
        if (export_shard(c, s, on_shard, ctx, err)) rc = NPVDB_EINTERNAL;
    pthread_mutex_unlock(&c->index_mu);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
