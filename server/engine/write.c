/*
 * write.c -- the write path: a batch is validated whole, everything that can
 * fail (allocation) is reserved, and only then are rows applied under the
 * exclusive lock, so a batch lands entirely or not at all.
 */
#include "validate.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- a validated batch ---- */

typedef struct batch {
    const char *const *keys;
    size_t n;
    size_t *lens;
    uint32_t *hashes;
    uint32_t *shard; /* target shard per row */
    float *sqn;      /* |row|^2 per row (of the rows below) */
    float *owned;    /* normalised copy (cosine), else NULL */
    const float *rows;
    /* Each row's payload copy, made and checked by the prepare (NULL: none,
     * or handed to the shards by a successful apply). The borrowed blobs
     * stay so that a batch applied twice can copy them again. */
    const npvdb_payload *payloads;
    npvdb_pstore **pst;
    bool consumed; /* pst were handed over */
} batch;

static void batch_free(batch *b)
{
    if (b->pst)
        for (size_t i = 0; i < b->n; i++)
            free(b->pst[i]);
    free(b->pst);
    free(b->lens);
    free(b->hashes);
    free(b->shard);
    free(b->sqn);
    free(b->owned);
}

static npvdb_code batch_keys(batch *b, npvdb_error *err)
{
    b->lens = malloc(b->n * sizeof *b->lens);
    b->hashes = malloc(b->n * sizeof *b->hashes);
    b->shard = calloc(b->n, sizeof *b->shard);
    if (!b->lens || !b->hashes || !b->shard)
        return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory for %zu keys",
                               b->n);
    for (size_t i = 0; i < b->n; i++) {
        npvdb_code rc = check_key(b->keys[i], i, &b->lens[i], err);
        if (rc) return rc;
        b->hashes[i] = keymap_hash(b->keys[i], b->lens[i]);
    }
    return NPVDB_OK;
}

/* Checks and copies every row's payload (outside any lock): the apply only
 * hands the copies over, so it cannot fail for them. */
static npvdb_code batch_payloads(batch *b, npvdb_error *err)
{
    b->consumed = false;
    if (!b->payloads) return NPVDB_OK;
    if (!b->pst) b->pst = calloc(b->n ? b->n : 1, sizeof *b->pst);
    if (!b->pst)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for %zu payloads", b->n);
    for (size_t i = 0; i < b->n; i++) {
        const npvdb_payload *p = &b->payloads[i];
        if (p->len == 0) continue;
        b->pst[i] = pstore_new(p->data, p->len, i, err);
        if (!b->pst[i]) return err ? err->code : NPVDB_EINVAL;
    }
    return NPVDB_OK;
}

/* Validates keys, rows and payloads; for cosine, rows are normalised into
 * a copy unless `as_stored` (restore: rows are already what the shard
 * holds). */
static npvdb_code batch_prepare(npvdb_collection *c, batch *b,
                                const char *const *keys, const float *rows,
                                const npvdb_payload *payloads, size_t n,
                                int as_stored, npvdb_error *err)
{
    memset(b, 0, sizeof *b);
    b->keys = keys;
    b->n = n;
    b->rows = rows;
    b->payloads = payloads;
    if (n && !keys) return npvdb_set_error(err, NPVDB_EINVAL, "no keys given");
    npvdb_code rc = as_stored ? check_rows(rows, n, c->cfg.dim, "vector", err)
                              : prepare_rows(c, rows, n, "vector", &b->owned,
                                             &b->rows, err);
    if (rc == NPVDB_OK) rc = batch_keys(b, err);
    if (rc == NPVDB_OK && b->payloads) {
        npvdb_error e;
        /* A payload error names the row as npvdb_payload_check would. */
        rc = batch_payloads(b, err ? err : &e);
    }
    if (rc) return rc;
    /* Norms once here, outside the locks: the router and the shards (for
     * L2 scores) both need them. */
    b->sqn = malloc((n ? n : 1) * sizeof *b->sqn);
    if (!b->sqn)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for %zu vectors", n);
    rows_sqnorms(b->rows, n, c->cfg.dim, b->sqn);
    return NPVDB_OK;
}

/* ---- assignment to shards ---- */

typedef struct assign_job {
    const npvdb_collection *c;
    const float *x, *xn; /* rows, their squared norms */
    size_t n;
    uint32_t *out;
    float *tmp;
    size_t tmp_per_task; /* floats */
    uint32_t n_tasks;
    int routed;         /* through the router, else exact */
    atomic_size_t fell; /* rows the router assigned exactly */
} assign_job;

static void assign_task(void *ctx, uint32_t t)
{
    assign_job *a = ctx;
    const npvdb_collection *c = a->c;
    size_t lo = a->n * t / a->n_tasks, hi = a->n * (t + 1) / a->n_tasks;
    const float *x = a->x + lo * c->cfg.dim;
    float *tmp = a->tmp + (size_t)t * a->tmp_per_task;
    int use_l2 = metric_uses_l2(c->cfg.metric);
    if (a->routed)
        atomic_fetch_add(&a->fell,
                         router_assign(&c->router, x, a->xn + lo, hi - lo,
                                       c->centroids, c->cnorms, use_l2,
                                       a->out + lo, tmp));
    else
        assign_nearest(x, hi - lo, c->centroids, c->cnorms, c->n_shards,
                       c->cfg.dim, use_l2, a->out + lo, tmp);
}

/* Grows the writer's scratch to `need` floats (kept between inserts). */
static int assign_scratch(npvdb_collection *c, size_t need)
{
    if (c->assign_tmp_n >= need) return 0;
    free(c->assign_tmp);
    c->assign_tmp_n = 0;
    c->assign_tmp = malloc(need * sizeof *c->assign_tmp);
    if (!c->assign_tmp) return -1;
    c->assign_tmp_n = need;
    return 0;
}

/* Data with no cluster structure (uniform noise, say) makes the router fall
 * back to exact assignment for most rows, and then it only adds work. When
 * over half of a batch fell back, the next ROUTER_REST batches are assigned
 * exactly, then the router is tried again. */
#define ROUTER_REST 15

/* Nearest centroid of each row (see router.c), on the workers when the
 * batch is large. Caller holds write_mu, so the centroids cannot change
 * underneath. */
static int assign_rows(npvdb_collection *c, const float *x, const float *xn,
                       size_t n, uint32_t *out)
{
    if (!c->trained) {
        memset(out, 0, n * sizeof *out);
        return 0;
    }
    router_refresh(c);
    assign_job a = {.c = c,
                    .x = x,
                    .xn = xn,
                    .n = n,
                    .out = out,
                    .n_tasks = n >= 2 * ASSIGN_BLOCK ? pool_size(c->pool) : 1};
    a.routed = c->router.n_groups && c->router_rest == 0;
    if (c->router_rest) c->router_rest--;
    atomic_init(&a.fell, 0);
    a.tmp_per_task = a.routed ? router_scratch(&c->router)
                              : (size_t)ASSIGN_BLOCK * c->n_shards;
    if (assign_scratch(c, a.n_tasks * a.tmp_per_task)) return -1;
    a.tmp = c->assign_tmp;
    int rc = 0;
    if (a.n_tasks == 1)
        assign_task(&a, 0);
    else
        rc = pool_run(c->pool, a.n_tasks, assign_task, &a);
    if (rc == 0 && a.routed && 2 * atomic_load(&a.fell) > n)
        c->router_rest = ROUTER_REST;
    return rc;
}

/* ---- applying a batch (caller holds write_mu) ---- */

/* Marks an entry created by the batch being applied and not yet placed. */
#define UNPLACED UINT32_MAX

/* Undoes reserve_batch's key map additions after a failure. */
static void drop_fresh(npvdb_collection *c, npvdb_entry **fresh, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        keymap_unlink(&c->map, fresh[i]);
        free(fresh[i]);
    }
}

/* Large batches of new keys are applied on the workers, each owning the
 * shards s with s % n_tasks == task: the shard copies (and the page faults
 * of fresh shard pages) were a quarter of a bulk load's serial time. */
#define PARALLEL_APPLY_MIN (2 * ASSIGN_BLOCK)

typedef struct shard_job {
    npvdb_collection *c;
    const batch *b;
    npvdb_entry **ents;
    const size_t *need;
    uint32_t n_tasks;
    atomic_int failed;
} shard_job;

static void reserve_task(void *ctx, uint32_t t)
{
    shard_job *j = ctx;
    for (uint32_t s = t; s < j->c->n_shards; s += j->n_tasks)
        if (j->need[s] &&
            shard_reserve(&j->c->shards[s], j->need[s], j->c->cfg.dim))
            atomic_store(&j->failed, 1);
}

static void append_task(void *ctx, uint32_t t)
{
    shard_job *j = ctx;
    uint32_t dim = j->c->cfg.dim;
    for (size_t i = 0; i < j->b->n; i++) {
        uint32_t s = j->b->shard[i];
        if (s % j->n_tasks == t)
            shard_append(&j->c->shards[s], s, dim, j->ents[i],
                         j->b->rows + i * dim, j->b->sqn[i],
                         j->b->pst ? j->b->pst[i] : NULL);
    }
}

/* Grows every shard by need[s], on the workers for a large batch. Growing
 * is all that can fail; a shard grown for nothing keeps its capacity. */
static int reserve_shards(npvdb_collection *c, const batch *b,
                          const size_t *need)
{
    shard_job j = {.c = c, .b = b, .need = need};
    j.n_tasks = b->n >= PARALLEL_APPLY_MIN ? pool_size(c->pool) : 1;
    atomic_init(&j.failed, 0);
    /* Inline for a small batch, or if pool_run failed (nothing ran then). */
    if (j.n_tasks == 1 || pool_run(c->pool, j.n_tasks, reserve_task, &j)) {
        j.n_tasks = 1;
        reserve_task(&j, 0);
    }
    return atomic_load(&j.failed) ? -1 : 0;
}

/* Interns the batch's field names (the one allocation payloads need under
 * the lock; names already interned stay if a later step fails). */
static int resolve_payloads(npvdb_collection *c, const batch *b)
{
    const npvdb_pstore *prev = NULL;
    for (size_t i = 0; b->pst && i < b->n; i++) {
        if (!b->pst[i]) continue;
        if (pstore_resolve(b->pst[i], &c->fields, prev)) return -1;
        prev = b->pst[i];
    }
    return 0;
}

/* Everything that can fail happens here, before the first row changes:
 * shard capacity, key map buckets, and an entry for every new key. ents[i]
 * gets row i's entry: found, or new and already in the map (UNPLACED) so a
 * key repeated later in the batch finds it; each key is looked up once.
 * *n_fresh: how many entries the batch created. */
static npvdb_code reserve_batch(npvdb_collection *c, const batch *b,
                                npvdb_entry **ents, size_t *n_fresh,
                                npvdb_error *err)
{
    size_t *need = calloc(c->n_shards, sizeof *need);
    /* The batch's new entries, each once: what a failure must undo. */
    npvdb_entry **fresh = malloc((b->n ? b->n : 1) * sizeof *fresh);
    *n_fresh = 0;
    if (!need || !fresh || keymap_reserve(&c->map, b->n)) goto oom;
    for (size_t i = 0; i < b->n; i++) {
        npvdb_entry *e =
            keymap_find(&c->map, b->keys[i], b->lens[i], b->hashes[i]);
        if (!e) {
            e = entry_new(b->keys[i], b->lens[i], b->hashes[i]);
            if (!e) goto oom;
            e->shard = UNPLACED;
            keymap_add(&c->map, e);
            fresh[(*n_fresh)++] = e;
        }
        ents[i] = e;
        if (e->shard != b->shard[i]) need[b->shard[i]]++;
    }
    if (reserve_shards(c, b, need) || resolve_payloads(c, b)) goto oom;
    free(need);
    free(fresh);
    return NPVDB_OK;
oom:
    if (fresh) drop_fresh(c, fresh, *n_fresh);
    free(need);
    free(fresh);
    return npvdb_set_error(err, NPVDB_ENOMEM,
                           "out of memory inserting %zu vectors", b->n);
}

/* Frees the payload of an entry's row (the vector is replaced or gone). */
static void drop_payload(npvdb_collection *c, const npvdb_entry *e)
{
    npvdb_pstore **slot = &c->shards[e->shard].pay[e->row];
    c->payload_bytes -= pstore_bytes(*slot);
    free(*slot);
    *slot = NULL;
}

static void upsert_row(npvdb_collection *c, const batch *b, size_t i,
                       npvdb_entry *e, size_t *replaced)
{
    uint32_t dim = c->cfg.dim, s = b->shard[i];
    const float *row = b->rows + i * dim;
    npvdb_pstore *pay = b->pst ? b->pst[i] : NULL;
    c->payload_bytes += pstore_bytes(pay);
    if (e->shard == UNPLACED) {
        c->n_vectors++;
    } else {
        (*replaced)++;      /* existed, or repeated within the batch */
        drop_payload(c, e); /* vector and payload are replaced together */
        if (e->shard == s) {
            shard_set(&c->shards[s], dim, e->row, row, b->sqn[i]);
            c->shards[s].pay[e->row] = pay;
            return;
        }
        shard_remove(&c->shards[e->shard], dim, e->row);
    }
    shard_append(&c->shards[s], s, dim, e, row, b->sqn[i], pay);
}

/* A batch of keys all new and distinct only appends, and rows of different
 * shards touch nothing in common: the workers can share it out. */
static int append_parallel(npvdb_collection *c, const batch *b,
                           npvdb_entry **ents)
{
    shard_job j = {.c = c, .b = b, .ents = ents};
    j.n_tasks = pool_size(c->pool);
    if (pool_run(c->pool, j.n_tasks, append_task, &j)) return -1;
    c->n_vectors += b->n;
    for (size_t i = 0; b->pst && i < b->n; i++)
        c->payload_bytes += pstore_bytes(b->pst[i]);
    return 0;
}

/* The shards own the batch's payloads now. */
static void hand_over(batch *b)
{
    if (b->pst) memset(b->pst, 0, b->n * sizeof *b->pst);
    b->consumed = true;
}

static npvdb_code apply_batch(npvdb_collection *c, batch *b, size_t *replaced,
                              npvdb_error *err)
{
    npvdb_entry **ents = malloc((b->n ? b->n : 1) * sizeof *ents);
    if (!ents)
        return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory for %zu keys",
                               b->n);
    size_t n_fresh = 0;
    pthread_rwlock_wrlock(&c->rw);
    note_write(c);
    npvdb_code rc = reserve_batch(c, b, ents, &n_fresh, err);
    /* The serial loop also covers a failed pool_run: nothing ran then. */
    if (rc == NPVDB_OK && !(n_fresh == b->n && b->n >= PARALLEL_APPLY_MIN &&
                            append_parallel(c, b, ents) == 0))
        for (size_t i = 0; i < b->n; i++)
            upsert_row(c, b, i, ents[i], replaced);
    if (rc == NPVDB_OK) hand_over(b);
    pthread_rwlock_unlock(&c->rw);
    free(ents);
    return rc;
}

/* ---- public entry points ---- */

static void maybe_auto_train(npvdb_collection *c)
{
    if (!c->auto_train || c->trained || c->n_vectors < c->train_at) return;
    if (c->defer_train) { /* replay: a logged index may follow */
        c->train_pending = true;
        return;
    }
    npvdb_error ignored;
    /* A failed automatic training (memory) leaves the exact index serving;
     * the next insert tries again. */
    if (index_train(c, NULL, 0, &ignored) == NPVDB_OK) c->auto_train = false;
}

/* The public batch: the validated batch plus the collection it was
 * prepared for (a cosine batch holds that collection's normalised rows). */
struct npvdb_batch {
    batch b;
    const npvdb_collection *c;
};

npvdb_code npvdb_upsert_prepare(npvdb_collection *c, const char *const *keys,
                                const float *rows,
                                const npvdb_payload *payloads, size_t n,
                                npvdb_batch **out, npvdb_error *err)
{
    *out = NULL;
    npvdb_batch *pb = malloc(sizeof *pb);
    if (!pb)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory preparing %zu vectors", n);
    npvdb_code rc = batch_prepare(c, &pb->b, keys, rows, payloads, n, 0, err);
    if (rc) {
        batch_free(&pb->b);
        free(pb);
        return rc;
    }
    pb->c = c;
    *out = pb;
    npvdb_ok(err);
    return NPVDB_OK;
}

npvdb_code npvdb_insert_prepare(npvdb_collection *c, const char *const *keys,
                                const float *rows, size_t n, npvdb_batch **out,
                                npvdb_error *err)
{
    return npvdb_upsert_prepare(c, keys, rows, NULL, n, out, err);
}

npvdb_code npvdb_insert_prepared(npvdb_collection *c, npvdb_batch *pb,
                                 size_t *n_replaced, npvdb_error *err)
{
    size_t replaced = 0;
    if (n_replaced) *n_replaced = 0;
    if (pb->c != c)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "batch was prepared for another collection");
    batch *b = &pb->b;
    /* Applied before: its payload copies belong to the collection now. */
    npvdb_code rc = b->consumed ? batch_payloads(b, err) : NPVDB_OK;
    if (rc) return rc;
    pthread_mutex_lock(&c->write_mu);
    run_pending_training(c);
    if (assign_rows(c, b->rows, b->sqn, b->n, b->shard))
        rc = npvdb_set_error(err, NPVDB_ENOMEM,
                             "out of memory assigning %zu vectors", b->n);
    else
        rc = apply_batch(c, b, &replaced, err);
    if (rc == NPVDB_OK) {
        /* A write that trained leaves its new shards to the next write
         * (which looks at all of them): the log records the index as
         * trained, then their splits. */
        uint64_t epoch = c->index_epoch;
        maybe_auto_train(c);
        if (c->index_epoch == epoch) rebalance_splits(c, b->shard, b->n);
    }
    pthread_mutex_unlock(&c->write_mu);
    if (rc) return rc;
    if (n_replaced) *n_replaced = replaced;
    npvdb_ok(err);
    return NPVDB_OK;
}

/* The bytes the key table's growth for `extra` more keys adds (see
 * keymap_reserve). */
static size_t keymap_growth(npvdb_collection *c, size_t extra)
{
    pthread_rwlock_rdlock(&c->rw);
    size_t want = c->map.count + extra, have = c->map.mask + 1, b = have;
    pthread_rwlock_unlock(&c->rw);
    while (b < want)
        b *= 2;
    return (b - have) * sizeof(npvdb_entry *);
}

size_t npvdb_batch_memory(npvdb_collection *c, const npvdb_batch *pb)
{
    const batch *b = &pb->b;
    size_t per_row = (size_t)c->cfg.dim * sizeof(float) + sizeof(float) +
                     sizeof(npvdb_entry *) + sizeof(npvdb_pstore *);
    size_t bytes = b->n * per_row + keymap_growth(c, b->n);
    for (size_t i = 0; i < b->n; i++) {
        bytes += ENTRY_BYTES(b->lens[i]);
        /* From the blob, not b->pst: an applied batch has handed those
         * over. The blob was checked by the prepare. */
        const npvdb_payload *p = b->payloads ? &b->payloads[i] : NULL;
        if (p && p->len)
            bytes += sizeof(npvdb_pstore) +
                     rd_u16(p->data) * sizeof(npvdb_pslot) + p->len + 16;
    }
    return bytes;
}

void npvdb_batch_free(npvdb_batch *pb)
{
    if (!pb) return;
    batch_free(&pb->b);
    free(pb);
}

npvdb_code npvdb_upsert(npvdb_collection *c, const char *const *keys,
                        const float *rows, const npvdb_payload *payloads,
                        size_t n, size_t *n_replaced, npvdb_error *err)
{
    if (n_replaced) *n_replaced = 0;
    npvdb_batch *b;
    npvdb_code rc = npvdb_upsert_prepare(c, keys, rows, payloads, n, &b, err);
    if (rc) return rc;
    rc = npvdb_insert_prepared(c, b, n_replaced, err);
    npvdb_batch_free(b);
    return rc;
}

npvdb_code npvdb_insert(npvdb_collection *c, const char *const *keys,
                        const float *rows, size_t n, size_t *n_replaced,
                        npvdb_error *err)
{
    return npvdb_upsert(c, keys, rows, NULL, n, n_replaced, err);
}

/* After deletes: shards and the key table that fell well below their
 * capacity give it back (O(shards), once per delete batch). Under rw
 * exclusively. */
static void give_back(npvdb_collection *c)
{
    for (uint32_t s = 0; s < c->n_shards; s++)
        shard_shrink(&c->shards[s], c->cfg.dim);
    keymap_shrink(&c->map);
}

npvdb_code npvdb_delete(npvdb_collection *c, const char *const *keys, size_t n,
                        size_t *n_deleted, npvdb_error *err)
{
    if (n_deleted) *n_deleted = 0;
    batch b;
    memset(&b, 0, sizeof b);
    b.keys = keys;
    b.n = n;
    if (n && !keys) return npvdb_set_error(err, NPVDB_EINVAL, "no keys given");
    npvdb_code rc = batch_keys(&b, err);
    if (rc) {
        batch_free(&b);
        return rc;
    }
    size_t deleted = 0;
    pthread_mutex_lock(&c->write_mu);
    run_pending_training(c);
    pthread_rwlock_wrlock(&c->rw);
    note_write(c);
    for (size_t i = 0; i < n; i++) {
        npvdb_entry *e = keymap_find(&c->map, keys[i], b.lens[i], b.hashes[i]);
        if (!e) continue;
        b.shard[deleted] = e->shard; /* where merges may be due */
        drop_payload(c, e);
        shard_remove(&c->shards[e->shard], c->cfg.dim, e->row);
        keymap_unlink(&c->map, e);
        free(e);
        c->n_vectors--;
        deleted++;
    }
    if (deleted) give_back(c);
    pthread_rwlock_unlock(&c->rw);
    rebalance_merges(c, b.shard, deleted);
    pthread_mutex_unlock(&c->write_mu);
    batch_free(&b);
    if (n_deleted) *n_deleted = deleted;
    npvdb_ok(err);
    return NPVDB_OK;
}

npvdb_code npvdb_restore_index(npvdb_collection *c, const float *centroids,
                               uint32_t n_shards, npvdb_error *err)
{
    if (n_shards < 1 || n_shards > NPVDB_MAX_SHARDS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "n_shards must be 1..%d, got %u",
                               NPVDB_MAX_SHARDS, n_shards);
    npvdb_code rc =
        check_rows(centroids, n_shards, c->cfg.dim, "centroid", err);
    if (rc) return rc;
    size_t bytes = (size_t)n_shards * c->cfg.dim * sizeof(float);
    float *cent = malloc(bytes), *cnorms = malloc(n_shards * sizeof *cnorms);
    npvdb_shard *ns = calloc(n_shards, sizeof *ns);
    if (!cent || !cnorms || !ns) {
        free(cent);
        free(cnorms);
        free(ns);
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for %u centroids", n_shards);
    }
    memcpy(cent, centroids, bytes);
    rows_sqnorms(cent, n_shards, c->cfg.dim, cnorms);
    pthread_mutex_lock(&c->write_mu);
    if (c->n_vectors) {
        pthread_mutex_unlock(&c->write_mu);
        free(cent);
        free(cnorms);
        free(ns);
        return npvdb_set_error(err, NPVDB_ESTATE,
                               "restore_index needs an empty collection");
    }
    pthread_mutex_lock(&c->index_mu);
    install_index(c, cent, cnorms, n_shards, ns, NULL);
    pthread_mutex_unlock(&c->index_mu);
    c->auto_train = false;
    pthread_mutex_unlock(&c->write_mu);
    npvdb_ok(err);
    return NPVDB_OK;
}

npvdb_code npvdb_restore_shard(npvdb_collection *c, uint32_t shard,
                               const char *const *keys, const float *rows,
                               size_t n, npvdb_error *err)
{
    return npvdb_restore_shard_payloads(c, shard, keys, rows, NULL, n, err);
}

npvdb_code npvdb_restore_shard_payloads(npvdb_collection *c, uint32_t shard,
                                        const char *const *keys,
                                        const float *rows,
                                        const npvdb_payload *payloads, size_t n,
                                        npvdb_error *err)
{
    batch b;
    npvdb_code rc = batch_prepare(c, &b, keys, rows, payloads, n, 1, err);
    if (rc == NPVDB_OK) {
        size_t replaced = 0;
        pthread_mutex_lock(&c->write_mu);
        if (shard >= c->n_shards) {
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "shard %u out of range (collection has %u)",
                                 shard, c->n_shards);
        } else {
            for (size_t i = 0; i < n; i++)
                b.shard[i] = shard;
            rc = apply_batch(c, &b, &replaced, err);
        }
        pthread_mutex_unlock(&c->write_mu);
    }
    batch_free(&b);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
