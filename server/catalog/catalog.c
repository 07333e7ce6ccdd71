/*
 * catalog.c -- the named collections of one node (API in catalog.h).
 *
 * A chained hash table maps names to entries. An entry is refcounted: a
 * call holds it (catalog_acquire) for its duration, and a drop or replace
 * unlinks it from the table at once (new calls no longer find it) but frees
 * it only when the last holder has released it.
 *
 * Locks, in the order they are taken:
 *   ddl_mu        create / replace / drop, one at a time (rare, and it keeps
 *                 "does it exist" and "log it" together);
 *   e->write_mu   the collection's writes: log order == apply order per
 *                 collection, while writes to different collections run in
 *                 parallel;
 *   order         a rwlock every writer holds shared around its append and
 *                 apply; a snapshot takes it exclusively for the instant it
 *                 reads the log position, so that every record at or before
 *                 that position is applied and none after it is;
 *   mu            the table, refcounts and the dead flags (short sections).
 * The write sequence (write_seq) is the one place that takes write_mu and
 * order, checks the memory limit, appends and applies; create, insert,
 * delete and drop all call it.
 *
 * Memory: mem_used is an atomic running total (see catalog.h), so writers
 * to different collections update it without a common lock. Each entry
 * keeps the memory it was last counted with (e->mem, under write_mu); an
 * apply recounts its collection and adds the difference. A write that
 * grows memory reserves its estimate with a compare-and-swap before it is
 * logged, so two collections' writers cannot both pass the check with room
 * for one; the reservation is given back once the real difference is in.
 *
 * Giving memory back to the kernel: the engine shrinks what deletes empty
 * and unmaps big blocks itself, but the many small blocks (keys, payloads)
 * freed by a large delete, drop or replace stay in malloc's heaps, holes
 * that glibc only returns on malloc_trim. So after a write that freed
 * TRIM_AFTER bytes in total since the last trim (counted from mem_used's
 * decreases), and after every snapshot (its buffers come and go), the
 * writer calls malloc_trim(0) once, outside every lock. Never per call: a
 * trim walks every free block of every arena.
 */
#include "catalog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__ /* defined by the headers above */
#include <malloc.h>
#endif

typedef struct entry {
    struct entry *next; /* hash chain */
    npvdb_collection *coll;
    npvdb_config cfg; /* creation config as logged (for snapshots) */
    uint64_t gen;
    uint32_t hash;
    int refs;   /* guarded by cat->mu */
    int dead;   /* unlinked by a drop or replace; set under write_mu and mu */
    size_t mem; /* counted in mem_used (entry_memory); under write_mu */
    pthread_mutex_t write_mu;
    char name[]; /* NUL-terminated */
} entry;

/* One snapshot in flight, shared by the calls that arrive during it. */
typedef struct snap_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    uint64_t epoch; /* completed snapshots */
    npvdb_code rc;
    npvdb_snapshot_info info;
    npvdb_error err;
    double ok_at, ok_seconds; /* the last successful one (unix time), or 0 */
} snap_state;

struct npvdb_catalog {
    npvdb_store *store;
    npvdb_workers *workers;
    pthread_mutex_t ddl_mu;
    pthread_rwlock_t order;
    pthread_mutex_t mu;
    pthread_cond_t released; /* a dead entry's last holder left */
    entry **buckets;
    size_t n_buckets, count;
    uint64_t next_gen;
    snap_state snap;
    uint64_t max_memory;       /* 0: no limit */
    bool no_rebalance;         /* catalog_config.no_rebalance */
    _Atomic uint64_t mem_used; /* see the top */
    _Atomic uint64_t freed;    /* bytes freed since the last trim */
};

/* ---- names and the table ------------------------------------------------- */

npvdb_code catalog_check_name(const char *name, size_t len, npvdb_error *err)
{
    if (len == 0) return NPVDB_OK;
    if (len > CATALOG_MAX_NAME)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "collection name of %zu bytes is over %d", len,
                               CATALOG_MAX_NAME);
    if (!npvdb_store_name_valid(name, len))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "collection name '%.*s' may hold only "
                               "A-Z a-z 0-9 _ . -",
                               (int)(len > 64 ? 64 : len), name);
    return NPVDB_OK;
}

/* "" or NULL is the default collection. */
static const char *resolve(const char *name)
{
    return name && name[0] ? name : CATALOG_DEFAULT;
}

/* Checks a NUL-terminated name from a caller (after resolve). */
static npvdb_code check_cname(const char *name, npvdb_error *err)
{
    size_t len = strnlen(name, CATALOG_MAX_NAME + 1);
    return catalog_check_name(name, len, err);
}

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The entry named name, or NULL. Under mu. */
static entry *table_find(npvdb_catalog *cat, const char *name)
{
    uint32_t h = hash_name(name);
    for (entry *e = cat->buckets[h & (cat->n_buckets - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->name, name) == 0) return e;
    return NULL;
}

/* Doubles the buckets at load factor 1; a failed allocation keeps the old
 * ones (longer chains, never an error). Under mu. */
static void table_grow(npvdb_catalog *cat)
{
    if (cat->count < cat->n_buckets) return;
    size_t n = cat->n_buckets * 2;
    entry **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < cat->n_buckets; i++) {
        entry *e = cat->buckets[i];
        while (e) {
            entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(cat->buckets);
    cat->buckets = b;
    cat->n_buckets = n;
}

static void table_insert(npvdb_catalog *cat, entry *e)
{
    table_grow(cat);
    entry **b = &cat->buckets[e->hash & (cat->n_buckets - 1)];
    e->next = *b;
    *b = e;
    cat->count++;
}

static void table_unlink(npvdb_catalog *cat, entry *e)
{
    entry **p = &cat->buckets[e->hash & (cat->n_buckets - 1)];
    while (*p && *p != e)
        p = &(*p)->next;
    if (*p) {
        *p = e->next;
        cat->count--;
    }
    e->next = NULL;
}

/* A new entry owning coll (not yet in the table); NULL for no memory.
 * The collection journals its index changes when there is a log to keep
 * them, and rebalances unless the server turned that off. */
static entry *entry_new(npvdb_catalog *cat, const char *name,
                        npvdb_collection *coll, const npvdb_config *cfg)
{
    npvdb_journal(coll, cat->store != NULL);
    npvdb_set_rebalance(coll, !cat->no_rebalance);
    size_t len = strlen(name);
    entry *e = calloc(1, sizeof *e + len + 1);
    if (!e) return NULL;
    memcpy(e->name, name, len + 1);
    e->hash = hash_name(name);
    e->coll = coll;
    e->cfg = *cfg;
    e->cfg.n_workers = 0;
    e->cfg.workers = NULL;
    pthread_mutex_init(&e->write_mu, NULL);
    return e;
}

static void entry_free(entry *e)
{
    if (!e) return;
    npvdb_free(e->coll);
    pthread_mutex_destroy(&e->write_mu);
    free(e);
}

/* Waits until no call holds the unlinked entry e, then frees it. */
static void entry_retire(npvdb_catalog *cat, entry *e)
{
    pthread_mutex_lock(&cat->mu);
    while (e->refs > 0)
        pthread_cond_wait(&cat->released, &cat->mu);
    pthread_mutex_unlock(&cat->mu);
    entry_free(e);
}

/* ---- memory accounting ------------------------------------------------- */

/* What an entry counts for: the collection's memory_bytes and the entry
 * (as catalog_list reports it). */
static size_t entry_memory(entry *e)
{
    return npvdb_memory_bytes(e->coll) + sizeof(entry) + strlen(e->name) + 1;
}

/* Adds d (may be "negative": unsigned arithmetic wraps) to the total. */
static void mem_add(npvdb_catalog *cat, uint64_t d)
{
    atomic_fetch_add_explicit(&cat->mem_used, d, memory_order_relaxed);
}

/* A collection's memory went from before to after: count the difference
 * and what was freed. */
static void mem_change(npvdb_catalog *cat, uint64_t before, uint64_t after)
{
    mem_add(cat, after - before);
    if (after < before)
        atomic_fetch_add_explicit(&cat->freed, before - after,
                                  memory_order_relaxed);
}

/* Frees in malloc's heaps since the last trim that make one worth it. */
#define TRIM_AFTER (64u << 20)

static void trim_now(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* After a write, outside every lock: trims once TRIM_AFTER was freed. */
static void maybe_trim(npvdb_catalog *cat)
{
    if (atomic_load_explicit(&cat->freed, memory_order_relaxed) < TRIM_AFTER)
        return;
    if (atomic_exchange(&cat->freed, 0) >= TRIM_AFTER) trim_now();
}

/* Recounts e after a write to it. Under e->write_mu. */
static void mem_recount(npvdb_catalog *cat, entry *e)
{
    size_t now = entry_memory(e);
    mem_change(cat, e->mem, now);
    e->mem = now;
}

/* "12.3 MiB" or "4.5 KiB" or "17 bytes" into out. */
static const char *human(uint64_t b, char *out, size_t cap)
{
    if (b >= (1u << 20))
        snprintf(out, cap, "%.1f MiB", (double)b / 1048576.0);
    else if (b >= 1024)
        snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(out, cap, "%u bytes", (unsigned)b);
    return out;
}

/* Reserves need bytes against the limit; *held gets what was reserved (to
 * give back with mem_add(-held) once the write is counted). */
static npvdb_code mem_reserve(npvdb_catalog *cat, uint64_t need, uint64_t *held,
                              npvdb_error *err)
{
    *held = 0;
    if (!cat->max_memory || !need) return NPVDB_OK;
    uint64_t cur = atomic_load(&cat->mem_used);
    do {
        char a[32], b[32], c[32];
        if (cur + need > cat->max_memory)
            return npvdb_set_error(
                err, NPVDB_ELIMIT,
                "memory limit: the server holds %s of vectors and payloads, "
                "this write needs about %s more, and the limit is %s "
                "(--max-memory-mb); delete or drop to make room",
                human(cur, a, sizeof a), human(need, b, sizeof b),
                human(cat->max_memory, c, sizeof c));
    } while (!atomic_compare_exchange_weak(&cat->mem_used, &cur, cur + need));
    *held = need;
    return NPVDB_OK;
}

uint64_t catalog_memory_used(npvdb_catalog *cat)
{
    return atomic_load(&cat->mem_used);
}

uint64_t catalog_memory_limit(npvdb_catalog *cat)
{
    return cat->max_memory;
}

/* ---- open / close ----------------------------------------------------------
 */

static npvdb_code adopt_restored(npvdb_catalog *cat, npvdb_error *err)
{
    npvdb_store_coll *v;
    size_t n;
    npvdb_store_take_restored(cat->store, &v, &n);
    npvdb_code rc = NPVDB_OK;
    for (size_t i = 0; i < n; i++) {
        entry *e = rc == NPVDB_OK
                       ? entry_new(cat, v[i].name, v[i].coll, &v[i].cfg)
                       : NULL;
        if (!e) {
            if (rc == NPVDB_OK)
                rc =
                    npvdb_set_error(err, NPVDB_ENOMEM,
                                    "no memory for collection '%s'", v[i].name);
            npvdb_free(v[i].coll);
            continue;
        }
        e->gen = ++cat->next_gen;
        e->mem = entry_memory(e);
        mem_add(cat, e->mem); /* never refused: see catalog.h */
        table_insert(cat, e);
    }
    free(v);
    return rc;
}

npvdb_catalog *catalog_open(const catalog_config *cfg, npvdb_error *err)
{
    npvdb_catalog *cat = calloc(1, sizeof *cat);
    if (!cat || !(cat->buckets = calloc(16, sizeof *cat->buckets))) {
        free(cat);
        npvdb_set_error(err, NPVDB_ENOMEM, "no memory for the catalog");
        return NULL;
    }
    cat->n_buckets = 16;
    cat->store = cfg ? cfg->store : NULL;
    cat->workers = cfg ? cfg->workers : NULL;
    cat->max_memory = cfg ? cfg->max_memory_bytes : 0;
    cat->no_rebalance = cfg ? cfg->no_rebalance != 0 : false;
    atomic_init(&cat->mem_used, 0);
    atomic_init(&cat->freed, 0);
    pthread_mutex_init(&cat->ddl_mu, NULL);
    pthread_mutex_init(&cat->mu, NULL);
    pthread_cond_init(&cat->released, NULL);
    /* Writer-preferring: a snapshot waiting for the exclusive instant is
     * not starved by a steady stream of writers. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&cat->order, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&cat->snap.mu, NULL);
    pthread_cond_init(&cat->snap.cv, NULL);
    if (cat->store && adopt_restored(cat, err) != NPVDB_OK) {
        catalog_close(cat);
        return NULL;
    }
    return cat;
}

void catalog_close(npvdb_catalog *cat)
{
    if (!cat) return;
    for (size_t i = 0; i < cat->n_buckets; i++) {
        entry *e = cat->buckets[i];
        while (e) {
            entry *next = e->next;
            entry_free(e);
            e = next;
        }
    }
    free(cat->buckets);
    pthread_mutex_destroy(&cat->ddl_mu);
    pthread_mutex_destroy(&cat->mu);
    pthread_cond_destroy(&cat->released);
    pthread_rwlock_destroy(&cat->order);
    pthread_mutex_destroy(&cat->snap.mu);
    pthread_cond_destroy(&cat->snap.cv);
    free(cat);
}

/* ---- holding a collection ------------------------------------------------ */

static npvdb_code not_found(const char *name, npvdb_error *err)
{
    return npvdb_set_error(err, NPVDB_ENOTFOUND, "collection '%s' not found",
                           name);
}

npvdb_code catalog_acquire(npvdb_catalog *cat, const char *name,
                           catalog_ref *ref, npvdb_error *err)
{
    memset(ref, 0, sizeof *ref);
    name = resolve(name);
    npvdb_code rc = check_cname(name, err);
    if (rc != NPVDB_OK) return rc;
    pthread_mutex_lock(&cat->mu);
    entry *e = table_find(cat, name);
    if (e) {
        e->refs++;
        ref->coll = e->coll;
        ref->name = e->name;
        ref->gen = e->gen;
        ref->entry_ = e;
    }
    pthread_mutex_unlock(&cat->mu);
    return e ? NPVDB_OK : not_found(name, err);
}

void catalog_release(npvdb_catalog *cat, catalog_ref *ref)
{
    entry *e = ref ? ref->entry_ : NULL;
    if (!e) return;
    pthread_mutex_lock(&cat->mu);
    if (--e->refs == 0 && e->dead) pthread_cond_broadcast(&cat->released);
    pthread_mutex_unlock(&cat->mu);
    memset(ref, 0, sizeof *ref);
}

/* ---- the write sequence -----------------------------------------------------
 */

/* Applies a logged record and recounts the memory it changed (mem_used);
 * runs under the target's write lock (if any) and the shared order lock.
 * Must not fail for a record the log now holds, except for memory (the
 * engine's prepared apply). */
typedef npvdb_code (*apply_fn)(npvdb_catalog *cat, entry *target, void *ctx,
                               npvdb_error *err);

/* One write for write_seq. */
typedef struct write_op {
    npvdb_store_rec *rec; /* encoded; NULL without a store */
    apply_fn apply;
    void *ctx;
    /* Bytes the write may add (0: never refused), checked against the limit
     * before the append; with frees_target, less the target's memory (a
     * replace frees what it replaces). */
    uint64_t grow;
    int frees_target;
    /* An insert: grows by its estimate, made under the write lock (it
     * reads the key table's size). */
    const npvdb_batch *batch;
} write_op;

/* What op must reserve: its growth, less what it frees. Under the
 * target's write lock. */
static uint64_t op_need(entry *target, const write_op *op)
{
    uint64_t grow = op->grow, freed = 0;
    if (op->batch) grow = npvdb_batch_memory(target->coll, op->batch);
    if (target && op->frees_target) freed = target->mem;
    return grow > freed ? grow - freed : 0;
}

/* The one write sequence: under target's write lock (NULL: a create of a
 * new name, serialised by ddl_mu) and the order lock shared, reserve the
 * memory it adds, append op->rec and apply it. *seq gets the record (0
 * without a store). A target dropped or replaced since the caller acquired
 * it is NPVDB_ENOTFOUND and nothing is logged: a record after its DROP
 * would land on whatever later takes the name. A write past the memory
 * limit is NPVDB_ELIMIT and nothing is logged either. */
static npvdb_code write_seq(npvdb_catalog *cat, entry *target,
                            const write_op *op, uint64_t *seq, npvdb_error *err)
{
    *seq = 0;
    if (target) pthread_mutex_lock(&target->write_mu);
    npvdb_code rc = NPVDB_OK;
    uint64_t held = 0;
    if (target && target->dead)
        rc = npvdb_set_error(err, NPVDB_ENOTFOUND,
                             "collection '%s' was dropped or replaced "
                             "meanwhile",
                             target->name);
    if (rc == NPVDB_OK && cat->max_memory)
        rc = mem_reserve(cat, op_need(target, op), &held, err);
    if (rc == NPVDB_OK) {
        pthread_rwlock_rdlock(&cat->order);
        if (cat->store && op->rec)
            rc = npvdb_store_append(cat->store, op->rec, seq, err);
        if (rc == NPVDB_OK) rc = op->apply(cat, target, op->ctx, err);
        pthread_rwlock_unlock(&cat->order);
        mem_add(cat, (uint64_t)0 - held); /* the apply counted the real */
    }
    if (target) pthread_mutex_unlock(&target->write_mu);
    return rc;
}

npvdb_code catalog_wait_durable(npvdb_catalog *cat, uint64_t seq,
                                npvdb_error *err)
{
    if (!cat->store || seq == 0) return NPVDB_OK;
    return npvdb_store_wait_durable(cat->store, seq, err);
}

/* ---- create / replace / drop ------------------------------------------------
 */

typedef struct install_ctx {
    entry *fresh; /* installed by the apply */
} install_ctx;

/* Puts ctx->fresh in the table in place of target (may be NULL). */
static npvdb_code apply_install(npvdb_catalog *cat, entry *target, void *arg,
                                npvdb_error *err)
{
    (void)err;
    install_ctx *x = arg;
    pthread_mutex_lock(&cat->mu);
    if (target) {
        table_unlink(cat, target);
        target->dead = 1;
    }
    x->fresh->gen = ++cat->next_gen;
    table_insert(cat, x->fresh);
    pthread_mutex_unlock(&cat->mu);
    /* fresh->mem was counted when it was built, before any lock. */
    mem_add(cat, x->fresh->mem);
    if (target) mem_change(cat, target->mem, 0);
    if (target) target->mem = 0;
    return NPVDB_OK;
}

static npvdb_code apply_unlink(npvdb_catalog *cat, entry *target, void *arg,
                               npvdb_error *err)
{
    (void)arg;
    (void)err;
    pthread_mutex_lock(&cat->mu);
    table_unlink(cat, target);
    target->dead = 1;
    pthread_mutex_unlock(&cat->mu);
    mem_change(cat, target->mem, 0);
    target->mem = 0;
    return NPVDB_OK;
}

/* The live entry named name, or NULL. Under ddl_mu, so it stays. */
static entry *lookup(npvdb_catalog *cat, const char *name)
{
    pthread_mutex_lock(&cat->mu);
    entry *e = table_find(cat, name);
    pthread_mutex_unlock(&cat->mu);
    return e;
}

static npvdb_code already_exists(const entry *e, npvdb_error *err)
{
    return npvdb_set_error(err, NPVDB_EEXIST,
                           "collection '%s' exists (dim %u): pass "
                           "replace=true to drop it",
                           e->name, npvdb_dim(e->coll));
}

/* Builds (and with a sample trains) the collection; no lock held. */
static npvdb_code build(npvdb_catalog *cat, const npvdb_config *cfg,
                        const float *train, size_t n_train,
                        npvdb_collection **out, npvdb_error *err)
{
    npvdb_config k = *cfg;
    k.workers = cat->workers;
    *out = npvdb_create(&k, err);
    if (!*out) return err ? err->code : NPVDB_EINTERNAL;
    npvdb_code rc = NPVDB_OK;
    if (n_train > 0) rc = npvdb_train(*out, train, n_train, err);
    if (rc != NPVDB_OK) {
        npvdb_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The INIT record of a built collection: trained on a sample, it holds the
 * index (version 3), so a replay installs it without k-means. */
static npvdb_code encode_create(const char *name, const npvdb_config *cfg,
                                npvdb_collection *coll, size_t n_train,
                                npvdb_store_rec **rec, npvdb_error *err)
{
    if (n_train == 0)
        return npvdb_store_encode_init(name, cfg, NULL, 0, rec, err);
    npvdb_index ix;
    npvdb_code rc = npvdb_index_get(coll, &ix, err);
    if (rc == NPVDB_OK)
        rc = npvdb_store_encode_init_index(name, cfg, &ix, rec, err);
    npvdb_index_free(&ix);
    return rc;
}

/* Logs and installs the built entry under ddl_mu; *old gets a replaced
 * entry to retire. */
static npvdb_code create_locked(npvdb_catalog *cat, entry *fresh, int replace,
                                npvdb_store_rec *rec, entry **old,
                                uint64_t *seq, npvdb_error *err)
{
    *old = NULL;
    entry *cur = lookup(cat, fresh->name);
    if (cur && !replace) return already_exists(cur, err);
    install_ctx x = {.fresh = fresh};
    write_op op = {.rec = rec,
                   .apply = apply_install,
                   .ctx = &x,
                   .grow = fresh->mem,
                   .frees_target = 1};
    npvdb_code rc = write_seq(cat, cur, &op, seq, err);
    if (rc == NPVDB_OK) *old = cur;
    return rc;
}

npvdb_code catalog_create(npvdb_catalog *cat, const char *name,
                          const npvdb_config *cfg, const float *train,
                          size_t n_train, int replace, int *replaced,
                          uint64_t *seq, npvdb_error *err)
{
    uint64_t local_seq;
    int local_replaced;
    if (!seq) seq = &local_seq;
    if (!replaced) replaced = &local_replaced;
    *seq = 0;
    *replaced = 0;
    name = resolve(name);
    npvdb_code rc = check_cname(name, err);
    if (rc != NPVDB_OK) return rc;
    if (!cfg) return npvdb_set_error(err, NPVDB_EINVAL, "no configuration");
    /* A cheap early refusal before training; the check that counts is
     * repeated under ddl_mu. */
    if (!replace) {
        catalog_ref r;
        if (catalog_acquire(cat, name, &r, NULL) == NPVDB_OK) {
            rc = already_exists(r.entry_, err);
            catalog_release(cat, &r);
            return rc;
        }
    }
    npvdb_collection *coll = NULL;
    npvdb_store_rec *rec = NULL;
    rc = build(cat, cfg, train, n_train, &coll, err);
    if (rc == NPVDB_OK && cat->store)
        rc = encode_create(name, cfg, coll, n_train, &rec, err);
    entry *fresh = NULL;
    if (rc == NPVDB_OK && !(fresh = entry_new(cat, name, coll, cfg)))
        rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory for collection '%s'",
                             name);
    if (rc == NPVDB_OK) fresh->mem = entry_memory(fresh); /* not shared yet */
    if (rc != NPVDB_OK) {
        npvdb_free(coll);
        npvdb_store_rec_free(rec);
        return rc;
    }
    entry *old = NULL;
    pthread_mutex_lock(&cat->ddl_mu);
    rc = create_locked(cat, fresh, replace, rec, &old, seq, err);
    pthread_mutex_unlock(&cat->ddl_mu);
    npvdb_store_rec_free(rec);
    if (rc != NPVDB_OK) {
        entry_free(fresh);
        return rc;
    }
    *replaced = old != NULL;
    if (old) entry_retire(cat, old);
    maybe_trim(cat);
    return NPVDB_OK;
}

npvdb_code catalog_drop(npvdb_catalog *cat, const char *name, uint64_t *vectors,
                        uint64_t *seq, npvdb_error *err)
{
    uint64_t local_seq;
    if (!seq) seq = &local_seq;
    *seq = 0;
    if (vectors) *vectors = 0;
    name = resolve(name);
    npvdb_code rc = check_cname(name, err);
    npvdb_store_rec *rec = NULL;
    if (rc == NPVDB_OK && cat->store)
        rc = npvdb_store_encode_drop(name, &rec, err);
    if (rc != NPVDB_OK) return rc;
    pthread_mutex_lock(&cat->ddl_mu);
    entry *e = lookup(cat, name);
    if (!e)
        rc = not_found(name, err);
    else
        rc = write_seq(cat, e, &(write_op){.rec = rec, .apply = apply_unlink},
                       seq, err);
    pthread_mutex_unlock(&cat->ddl_mu);
    npvdb_store_rec_free(rec);
    if (rc != NPVDB_OK) return rc;
    if (vectors) {
        npvdb_stats st;
        npvdb_error e2;
        /* The dead entry is still ours to read: only we retire it. */
        if (npvdb_stats_get(e->coll, &st, &e2) == NPVDB_OK) {
            *vectors = st.n_vectors;
            npvdb_stats_free(&st);
        }
    }
    entry_retire(cat, e);
    maybe_trim(cat);
    return NPVDB_OK;
}

/* ---- insert / delete -------------------------------------------------------
 */

typedef struct insert_ctx {
    npvdb_batch *batch;
    size_t *n_replaced;
    uint64_t *seq; /* write_seq's: a TRAIN record moves it on */
} insert_ctx;

/* Appends one index record (TRAIN or RESHARD) after the write that made
 * the change; *seq moves on to it. */
static npvdb_code log_index_rec(npvdb_catalog *cat, npvdb_store_rec *rec,
                                uint64_t *seq, npvdb_error *e)
{
    uint64_t s = 0;
    npvdb_code rc = npvdb_store_append(cat->store, rec, &s, e);
    if (rc == NPVDB_OK) *seq = s;
    return rc;
}

/* An apply trained the collection, or split or merged its shards: each
 * change goes in the log right after the write, still under the
 * collection's write lock, so a replay installs it at the same point of
 * the collection's writes instead of running k-means. The write is applied
 * whatever happens here: a change that cannot be logged leaves a log whose
 * replay trains (or leaves the shard unsplit) instead, as logs from before
 * these records do. */
static void log_index_changes(npvdb_catalog *cat, entry *target, uint64_t epoch,
                              uint64_t *seq)
{
    npvdb_error e = {0};
    npvdb_code rc = NPVDB_OK;
    if (npvdb_index_epoch(target->coll) != epoch) {
        npvdb_index ix;
        npvdb_store_rec *rec = NULL;
        rc = npvdb_index_get(target->coll, &ix, &e);
        if (rc == NPVDB_OK) {
            rc = npvdb_store_encode_train(target->name, &ix, &rec, &e);
            npvdb_index_free(&ix);
        }
        if (rc == NPVDB_OK) rc = log_index_rec(cat, rec, seq, &e);
        npvdb_store_rec_free(rec);
    }
    npvdb_reshard *ops;
    size_t n;
    npvdb_reshard_take(target->coll, &ops, &n);
    for (size_t i = 0; rc == NPVDB_OK && i < n; i++) {
        npvdb_store_rec *rec = NULL;
        rc = npvdb_store_encode_reshard(target->name, &ops[i], &rec, &e);
        if (rc == NPVDB_OK) rc = log_index_rec(cat, rec, seq, &e);
        npvdb_store_rec_free(rec);
    }
    npvdb_reshards_free(ops, n);
    if (rc != NPVDB_OK)
        fprintf(stderr,
                "npvdb: collection '%s' changed its index but the change was "
                "not logged (%s); a restart from the log rebuilds it "
                "differently\n",
                target->name, e.msg);
}

static npvdb_code apply_insert(npvdb_catalog *cat, entry *target, void *arg,
                               npvdb_error *err)
{
    insert_ctx *x = arg;
    uint64_t epoch = npvdb_index_epoch(target->coll);
    npvdb_code rc =
        npvdb_insert_prepared(target->coll, x->batch, x->n_replaced, err);
    if (rc == NPVDB_OK && cat->store)
        log_index_changes(cat, target, epoch, x->seq);
    mem_recount(cat, target);
    return rc;
}

static npvdb_code held_entry(catalog_ref *ref, entry **out, npvdb_error *err)
{
    *out = ref ? ref->entry_ : NULL;
    if (!*out)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "no collection held for the write");
    return NPVDB_OK;
}

npvdb_code catalog_insert(npvdb_catalog *cat, catalog_ref *ref,
                          npvdb_batch *batch, const char *const *keys,
                          const float *rows, const npvdb_payload *payloads,
                          size_t n, size_t *n_replaced, uint64_t *seq,
                          npvdb_error *err)
{
    uint64_t local_seq;
    size_t local_replaced;
    if (!seq) seq = &local_seq;
    if (!n_replaced) n_replaced = &local_replaced;
    *seq = 0;
    *n_replaced = 0;
    entry *e;
    npvdb_code rc = held_entry(ref, &e, err);
    if (rc != NPVDB_OK || n == 0) return rc;
    if (!batch) return npvdb_set_error(err, NPVDB_EINVAL, "no prepared batch");
    /* Encoded before any lock: the serialised part only appends and
     * applies. */
    npvdb_store_rec *rec = NULL;
    if (cat->store)
        rc = npvdb_store_encode_insert(e->name, keys, rows, payloads, n,
                                       npvdb_dim(e->coll), &rec, err);
    insert_ctx x = {.batch = batch, .n_replaced = n_replaced, .seq = seq};
    write_op op = {
        .rec = rec, .apply = apply_insert, .ctx = &x, .batch = batch};
    if (rc == NPVDB_OK) rc = write_seq(cat, e, &op, seq, err);
    npvdb_store_rec_free(rec);
    return rc;
}

typedef struct delete_ctx {
    const char *const *keys;
    size_t n;
    size_t *n_deleted;
    uint64_t *seq; /* write_seq's: index records move it on */
} delete_ctx;

static npvdb_code apply_delete(npvdb_catalog *cat, entry *target, void *arg,
                               npvdb_error *err)
{
    delete_ctx *x = arg;
    uint64_t epoch = npvdb_index_epoch(target->coll);
    npvdb_code rc =
        npvdb_delete(target->coll, x->keys, x->n, x->n_deleted, err);
    if (rc == NPVDB_OK && cat->store)
        log_index_changes(cat, target, epoch, x->seq);
    mem_recount(cat, target);
    return rc;
}

npvdb_code catalog_delete(npvdb_catalog *cat, catalog_ref *ref,
                          const char *const *keys, size_t n, size_t *n_deleted,
                          uint64_t *seq, npvdb_error *err)
{
    uint64_t local_seq;
    size_t local_deleted;
    if (!seq) seq = &local_seq;
    if (!n_deleted) n_deleted = &local_deleted;
    *seq = 0;
    *n_deleted = 0;
    entry *e;
    npvdb_code rc = held_entry(ref, &e, err);
    if (rc != NPVDB_OK || n == 0) return rc;
    npvdb_store_rec *rec = NULL;
    if (cat->store) rc = npvdb_store_encode_delete(e->name, keys, n, &rec, err);
    delete_ctx x = {.keys = keys, .n = n, .n_deleted = n_deleted, .seq = seq};
    write_op op = {.rec = rec, .apply = apply_delete, .ctx = &x};
    if (rc == NPVDB_OK) rc = write_seq(cat, e, &op, seq, err);
    npvdb_store_rec_free(rec);
    maybe_trim(cat);
    return rc;
}

/* ---- listing ----------------------------------------------------------------
 */

size_t catalog_count(npvdb_catalog *cat)
{
    pthread_mutex_lock(&cat->mu);
    size_t n = cat->count;
    pthread_mutex_unlock(&cat->mu);
    return n;
}

/* Every live entry, held (refs taken): *out malloc'ed, *n entries. */
static npvdb_code hold_all(npvdb_catalog *cat, entry ***out, size_t *n,
                           npvdb_error *err)
{
    pthread_mutex_lock(&cat->mu);
    entry **v = malloc((cat->count ? cat->count : 1) * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v && i < cat->n_buckets; i++)
        for (entry *e = cat->buckets[i]; e; e = e->next) {
            e->refs++;
            v[k++] = e;
        }
    pthread_mutex_unlock(&cat->mu);
    *out = v;
    *n = k;
    return v ? NPVDB_OK
             : npvdb_set_error(err, NPVDB_ENOMEM, "no memory to list");
}

static void release_all(npvdb_catalog *cat, entry **v, size_t n)
{
    pthread_mutex_lock(&cat->mu);
    for (size_t i = 0; i < n; i++)
        if (--v[i]->refs == 0 && v[i]->dead)
            pthread_cond_broadcast(&cat->released);
    pthread_mutex_unlock(&cat->mu);
    free(v);
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const catalog_info *)a)->name,
                  ((const catalog_info *)b)->name);
}

npvdb_code catalog_list(npvdb_catalog *cat, catalog_info **out, size_t *n,
                        npvdb_error *err)
{
    *out = NULL;
    *n = 0;
    entry **v;
    size_t k;
    npvdb_code rc = hold_all(cat, &v, &k, err);
    if (rc != NPVDB_OK) return rc;
    catalog_info *info = calloc(k ? k : 1, sizeof *info);
    if (!info)
        rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory for %zu entries", k);
    for (size_t i = 0; rc == NPVDB_OK && i < k; i++) {
        snprintf(info[i].name, sizeof info[i].name, "%s", v[i]->name);
        info[i].dim = npvdb_dim(v[i]->coll);
        info[i].metric = npvdb_get_metric(v[i]->coll);
        /* Cached by the engine between writes: listing (and a metrics
         * scrape) does not walk every shard of every collection. */
        npvdb_shape sh;
        npvdb_shape_get(v[i]->coll, &sh);
        info[i].vectors = sh.n_vectors;
        info[i].memory_bytes =
            sh.memory_bytes + sizeof(entry) + strlen(v[i]->name) + 1;
        info[i].n_shards = sh.n_shards;
        info[i].max_shard = sh.max_shard;
        info[i].min_shard = sh.min_shard;
        info[i].splits = sh.splits;
        info[i].merges = sh.merges;
        info[i].retrains = sh.retrains;
    }
    release_all(cat, v, k);
    if (rc != NPVDB_OK) {
        free(info);
        return rc;
    }
    qsort(info, k, sizeof *info, cmp_info);
    *out = info;
    *n = k;
    return NPVDB_OK;
}

/* ---- snapshots
 * ----------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of every collection, sorted (one malloc: pointers then the
 * strings). */
static npvdb_code names_now(npvdb_catalog *cat, char ***out, size_t *n,
                            npvdb_error *err)
{
    pthread_mutex_lock(&cat->mu);
    size_t bytes = cat->count * sizeof(char *) + 1;
    for (size_t i = 0; i < cat->n_buckets; i++)
        for (entry *e = cat->buckets[i]; e; e = e->next)
            bytes += strlen(e->name) + 1;
    char **v = malloc(bytes);
    size_t k = 0;
    if (v) {
        char *p = (char *)(v + cat->count);
        for (size_t i = 0; i < cat->n_buckets; i++)
            for (entry *e = cat->buckets[i]; e; e = e->next) {
                size_t len = strlen(e->name) + 1;
                memcpy(p, e->name, len);
                v[k++] = p;
                p += len;
            }
    }
    pthread_mutex_unlock(&cat->mu);
    if (!v) return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for names");
    qsort(v, k, sizeof *v, cmp_str);
    *out = v;
    *n = k;
    return NPVDB_OK;
}

/* Adds each named collection, holding one at a time: a drop meanwhile
 * waits for at most one collection's export, and a name gone by then is
 * left out (its DROP is in the log after the covered position). */
static npvdb_code add_each(npvdb_catalog *cat, npvdb_snapshot *sn, char **names,
                           size_t n, npvdb_error *err)
{
    npvdb_code rc = NPVDB_OK;
    for (size_t i = 0; rc == NPVDB_OK && i < n; i++) {
        catalog_ref r;
        if (catalog_acquire(cat, names[i], &r, NULL) != NPVDB_OK) continue;
        entry *e = r.entry_;
        rc = npvdb_store_snapshot_add(sn, e->name, e->coll, &e->cfg, err);
        catalog_release(cat, &r);
    }
    return rc;
}

static npvdb_code snapshot_now(npvdb_catalog *cat, npvdb_snapshot_info *info,
                               npvdb_error *err)
{
    /* The exclusive instant: no write is between its append and apply. */
    pthread_rwlock_wrlock(&cat->order);
    uint64_t covered = npvdb_store_last_seq(cat->store);
    pthread_rwlock_unlock(&cat->order);
    char **names = NULL;
    size_t n = 0;
    npvdb_snapshot *sn = NULL;
    npvdb_code rc = names_now(cat, &names, &n, err);
    if (rc == NPVDB_OK)
        rc = npvdb_store_snapshot_begin(cat->store, covered, &sn, err);
    if (rc == NPVDB_OK) rc = add_each(cat, sn, names, n, err);
    free(names);
    if (rc == NPVDB_OK) return npvdb_store_snapshot_commit(sn, info, err);
    npvdb_store_snapshot_abort(sn);
    return rc;
}

int catalog_last_snapshot(npvdb_catalog *cat, double *at, double *seconds)
{
    pthread_mutex_lock(&cat->snap.mu);
    *at = cat->snap.ok_at;
    *seconds = cat->snap.ok_seconds;
    pthread_mutex_unlock(&cat->snap.mu);
    return *at > 0;
}

npvdb_code catalog_snapshot(npvdb_catalog *cat, npvdb_snapshot_info *info,
                            npvdb_error *err)
{
    if (!cat->store)
        return npvdb_set_error(err, NPVDB_ESTATE,
                               "the server runs without a data directory");
    snap_state *st = &cat->snap;
    pthread_mutex_lock(&st->mu);
    if (st->running) {
        /* Share the one running: wait for it and take its outcome. */
        uint64_t epoch = st->epoch;
        while (st->epoch == epoch)
            pthread_cond_wait(&st->cv, &st->mu);
    } else {
        st->running = 1;
        pthread_mutex_unlock(&st->mu);
        npvdb_error e = {0};
        npvdb_snapshot_info *out = calloc(1, sizeof *out); /* 4 KiB path */
        npvdb_code rc =
            out ? snapshot_now(cat, out, &e)
                : npvdb_set_error(&e, NPVDB_ENOMEM, "no memory for a snapshot");
        trim_now(); /* its buffers are gone; see the top */
        pthread_mutex_lock(&st->mu);
        st->rc = rc;
        st->err = e;
        if (out) st->info = *out;
        if (rc == NPVDB_OK && out) {
            st->ok_at = (double)time(NULL);
            st->ok_seconds = out->seconds;
        }
        free(out);
        st->running = 0;
        st->epoch++;
        pthread_cond_broadcast(&st->cv);
    }
    npvdb_code rc = st->rc;
    if (info) *info = st->info;
    if (err && rc != NPVDB_OK) *err = st->err;
    pthread_mutex_unlock(&st->mu);
    return rc;
}
