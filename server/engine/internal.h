/*
 * internal.h -- the engine's private structures, shared by its .c files only.
 *
 * Locking (see also npvdb.h "Thread safety"):
 *   write_mu  serialises writers (insert, delete, train, restore) for their
 *             whole run, so centroids and shard membership only change under
 *             it and a writer may read them without the rwlock.
 *   rw        guards what searches read: shards (rows, payloads), centroids,
 *             the key map, the field map (fields.c).
 *             Searches hold it shared for their whole run (their results
 *             point into entries until the keys are copied out); writers take
 *             it exclusively only for the short apply step.
 *   index_mu  keeps training out while an export walks the shards.
 * Order: write_mu -> index_mu -> rw.
 */
#ifndef NPVDB_INTERNAL_H
#define NPVDB_INTERNAL_H

#include "npvdb.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

/* ---- error.c ---- */
void npvdb_ok(npvdb_error *err);

/* ---- keymap.c: key -> entry, chained hash table ---- */

/* One stored key. Owned by the key map; a shard row points at its entry so a
 * row that moves (swap-remove) can update its entry without a lookup. */
typedef struct npvdb_entry {
    struct npvdb_entry *next; /* hash chain */
    uint32_t hash;
    uint32_t shard;
    uint32_t row;
    uint32_t len;
    char key[]; /* len bytes + NUL */
} npvdb_entry;

typedef struct npvdb_keymap {
    npvdb_entry **buckets;
    size_t mask; /* buckets - 1; the bucket count is a power of two */
    size_t count;
    size_t entry_bytes; /* ENTRY_BYTES of every entry in the map */
} npvdb_keymap;

/* What one entry costs: its block and malloc's header. */
#define ENTRY_BYTES(len) (sizeof(npvdb_entry) + (len) + 1 + 16)

int keymap_init(npvdb_keymap *m);
void keymap_destroy(npvdb_keymap *m); /* frees every entry too */
uint32_t keymap_hash(const char *key, size_t len);
npvdb_entry *keymap_find(const npvdb_keymap *m, const char *key, size_t len,
                         uint32_t hash);
/* Grows the table so `extra` more entries keep the load factor <= 1; the
 * only keymap call that allocates, so inserts can reserve before applying. */
int keymap_reserve(npvdb_keymap *m, size_t extra);
void keymap_add(npvdb_keymap *m, npvdb_entry *e); /* needs a prior reserve */
/* After deletes: a table under 1/8 full is rehashed into one at most half
 * full (never below the minimum); out of memory keeps the old one. */
void keymap_shrink(npvdb_keymap *m);
void keymap_unlink(npvdb_keymap *m, npvdb_entry *e);
npvdb_entry *entry_new(const char *key, size_t len, uint32_t hash);
size_t keymap_memory(const npvdb_keymap *m); /* O(1) */

/* ---- payload.c: the canonical blob (format in npvdb.h) ---- */
uint16_t rd_u16(const uint8_t *p);
uint32_t rd_u32(const uint8_t *p);
uint64_t rd_u64(const uint8_t *p);
/* memcmp order of names, a prefix first. */
int name_cmp(const char *a, uint32_t al, const char *b, uint32_t bl);
/* npvdb_payload_check that also records each field's start offset in
 * field_off (NPVDB_MAX_FIELDS entries; may be NULL). Messages start with
 * "payload: ". Does not clear err on success. */
npvdb_code payload_scan(const uint8_t *data, size_t len, uint32_t *field_off,
                        npvdb_error *err);
const uint8_t *payload_skip_value(const uint8_t *v, uint8_t type);
void payload_read_value(const uint8_t *v, uint8_t type, npvdb_field *f);

/* ---- fields.c: stored payloads and interned field names ---- */
typedef struct npvdb_fieldmap {
    char **names; /* id -> name (not NUL-terminated) */
    uint32_t *lens;
    uint32_t n, cap;
    uint32_t *slots; /* open addressing: id or UINT32_MAX */
    size_t mask;
} npvdb_fieldmap;

/* UINT32_MAX when no stored payload ever had the name. */
uint32_t fieldmap_find(const npvdb_fieldmap *m, const char *name, size_t len);
void fieldmap_destroy(npvdb_fieldmap *m);
size_t fieldmap_memory(const npvdb_fieldmap *m);

typedef struct npvdb_pslot {
    uint32_t fid; /* field id (before pstore_resolve: the field's offset) */
    uint32_t off; /* of the value in the blob */
    uint8_t type; /* npvdb_value_type */
} npvdb_pslot;

/* A stored payload: slots in the blob's (name) order, then the blob. */
typedef struct npvdb_pstore {
    uint32_t len;
    uint16_t n;
    uint16_t resolved;
    npvdb_pslot slot[];
} npvdb_pstore;

static inline const uint8_t *pstore_blob(const npvdb_pstore *p)
{
    return (const uint8_t *)(p->slot + p->n);
}
/* Checks blob (payload `row` of a batch, named in messages) and copies it;
 * len must be > 0. Caller frees. */
npvdb_pstore *pstore_new(const uint8_t *blob, uint32_t len, size_t row,
                         npvdb_error *err);
int pstore_resolve(npvdb_pstore *p, npvdb_fieldmap *m,
                   const npvdb_pstore *prev);
size_t pstore_bytes(const npvdb_pstore *p); /* 0 for NULL */

/* ---- shard.c: the rows of one Voronoi cell ---- */
typedef struct npvdb_shard {
    float *rows;           /* cap * dim, 64-byte aligned */
    float *sqnorms;        /* cap: |x|^2, used by L2 */
    npvdb_entry **entries; /* cap */
    npvdb_pstore **pay;    /* cap: each row's payload or NULL; owned by the
                              row (moves with it; shard_free leaves them) */
    size_t n, cap;
    size_t rows_bytes; /* allocated bytes of rows */
    bool mapped;       /* rows is an mmap'ed region (see shard.c) */
    size_t split_hold; /* a split was not worth it: retry at this size */
} npvdb_shard;

int shard_reserve(npvdb_shard *s, size_t extra, uint32_t dim);
void shard_free(npvdb_shard *s);
/* Appends (needs a prior reserve). Sets e->shard/e->row. */
void shard_append(npvdb_shard *s, uint32_t id, uint32_t dim, npvdb_entry *e,
                  const float *row, float sqnorm, npvdb_pstore *pay);
/* Appends without touching the entry's location: for shards built aside
 * while searches still read the entries' current locations. */
void shard_push(npvdb_shard *s, uint32_t dim, npvdb_entry *e, const float *row,
                float sqnorm, npvdb_pstore *pay);
/* sqnorm: |row|^2, computed by the caller for a whole batch at once. */
void shard_set(npvdb_shard *s, uint32_t dim, size_t row, const float *v,
               float sqnorm);
/* Removes a row by moving the last row into its place (the row's payload
 * pointer is dropped, not freed). */
void shard_remove(npvdb_shard *s, uint32_t dim, size_t row);
/* Gives capacity back when deletes left the shard under a quarter full
 * (see shard.c); never fails (a failed step keeps the larger storage). */
void shard_shrink(npvdb_shard *s, uint32_t dim);
/* Frees the payloads of every row (the collection's end). */
void shard_free_payloads(npvdb_shard *s);
size_t shard_memory(const npvdb_shard *s, uint32_t dim);

/* ---- filter.c: filters compiled against a collection ---- */
typedef struct cfilter cfilter;
/* f is checked (npvdb_filter_check); caller holds rw (either way). NULL
 * or empty f gives *out NULL, which passes every row. */
npvdb_code filter_compile(const npvdb_collection *c, const npvdb_filter *f,
                          cfilter **out, npvdb_error *err);
void filter_free(cfilter *f);                              /* NULL is allowed */
bool filter_pass(const cfilter *f, const npvdb_pstore *p); /* p may be NULL */
/* The rows of [r0, r1) of sh that pass, into out; returns how many. */
size_t filter_rows(const cfilter *f, const npvdb_shard *sh, size_t r0,
                   size_t r1, uint32_t *out);

/* ---- pool.c: the worker threads ---- */
typedef struct npvdb_pool npvdb_pool;
/* fn(ctx, task) runs for task in [0, n_tasks); task t runs on worker
 * t % n_workers, so a shard given to task s % n_workers is always scanned by
 * the same thread. Blocks until all are done. */
typedef void (*pool_fn)(void *ctx, uint32_t task);
npvdb_pool *pool_create(uint32_t n_workers);
void pool_destroy(npvdb_pool *p);
uint32_t pool_size(const npvdb_pool *p);
/* Safe from any number of threads at once (runs from many collections on a
 * shared pool interleave in the FIFOs); fn must not call pool_run. */
int pool_run(npvdb_pool *p, uint32_t n_tasks, pool_fn fn, void *ctx);

/* The public handle of a shared pool (npvdb_workers_create). */
struct npvdb_workers {
    npvdb_pool *pool;
};

/* ---- topk.c: bounded max-heaps, one per query ---- */
typedef struct npvdb_topk {
    float *dist; /* k per heap: heap-ordered, worst at [0] */
    npvdb_entry **ent;
    uint32_t *size;
    uint32_t k;
    size_t n; /* heaps */
} npvdb_topk;

int topk_init(npvdb_topk *t, size_t n, uint32_t k);
void topk_free(npvdb_topk *t);
void topk_reset(npvdb_topk *t);
/* Worst distance kept by heap h, or +inf while it holds fewer than k. */
static inline float topk_bound(const npvdb_topk *t, size_t h)
{
    return t->size[h] < t->k ? INFINITY : t->dist[h * t->k];
}
void topk_push(npvdb_topk *t, size_t h, float d, npvdb_entry *e);
/* Sorts heap h ascending in place; returns its size. Only k items: this is
 * the final order of a result, not a sort of the candidates. */
uint32_t topk_sort(npvdb_topk *t, size_t h);

/* ---- kernels.c: BLAS-backed distance blocks ---- */
void rows_sqnorms(const float *x, size_t n, uint32_t dim, float *out);
int rows_finite(const float *x, size_t n);
/* Normalises rows in place, without overflow or underflow for any finite
 * row (a norm past FLT_MAX is fine: it is taken in double); returns the
 * index of the first zero row (left as it is) or -1. */
long rows_normalise(float *x, size_t n, uint32_t dim);
/* The Euclidean norm of one row, accumulated in double (never overflows
 * for finite floats). */
double row_norm_exact(const float *r, uint32_t dim);
/* out (m x n) = alpha * x (m x dim) . y (n x dim)^T, row-major. */
void dots_block(const float *x, size_t m, const float *y, size_t n,
                uint32_t dim, float alpha, float *out);
/* The j minimising v[j] + add[j] (add may be NULL); ties: lowest j. */
uint32_t argmin_row(const float *v, const float *add, uint32_t n);
/* For n rows, the index of the nearest of `nc` centroids under the metric's
 * centroid score (L2: |c|^2 - 2 x.c; dot metrics: -x.c). `cnorms` may be NULL
 * for dot metrics. `tmp` holds block*nc floats (see ASSIGN_BLOCK). */
#define ASSIGN_BLOCK 256
void assign_nearest(const float *x, size_t n, const float *cent,
                    const float *cnorms, uint32_t nc, uint32_t dim, int use_l2,
                    uint32_t *out, float *tmp);

/* ---- router.c: approximate nearest centroid for inserted rows ---- */
/* The centroids grouped by a second, small k-means (see router.c). Built
 * with each index, read only by writers (under write_mu). n_groups == 0: no
 * router, rows are assigned exactly. */
typedef struct npvdb_router {
    uint32_t n_groups, nc, dim;
    float *gcent, *gnorms; /* n_groups * dim group centres, |g|^2 */
    uint32_t *goff;        /* n_groups + 1: group g is [goff[g], goff[g+1]) */
    uint32_t *member;      /* nc centroid indices, grouped */
    float *mcent, *mnorms; /* the centroids in member order, |c|^2 */
    uint32_t max_group;
} npvdb_router;

/* Builds a router for nc centroids when it pays (metrics with an L2-form
 * score and enough centroids), else leaves r->n_groups 0. Returns -1 only
 * on out of memory (r left empty: exact assignment still works). */
int router_build(npvdb_router *r, npvdb_pool *pool, const float *cent,
                 const float *cnorms, uint32_t nc, uint32_t dim,
                 npvdb_metric metric, uint64_t seed);
/* router_assign probes ROUTER_PROBE (3) groups: a router needs at least as
 * many. */
#define ROUTER_MIN_GROUPS 3
/* A router from a logged grouping (no k-means): G group centres (G x dim)
 * and each centroid's group gid[nc], both borrowed; G 0 leaves r empty.
 * Returns -1 only on out of memory (r left empty). */
int router_from(npvdb_router *r, const float *cent, const float *cnorms,
                uint32_t nc, uint32_t dim, const float *gcent,
                const uint32_t *gid, uint32_t G);
/* Each centroid's group into gid[r->nc] (the inverse of router_from). */
void router_groups(const npvdb_router *r, uint32_t *gid);
void router_free(npvdb_router *r);
/* Floats of scratch one router_assign call needs. */
size_t router_scratch(const npvdb_router *r);
/* Nearest centroid (exactly, or one as near within the tolerance described
 * in router.c) for n rows with squared norms xn; cent/cnorms are the centroids
 * the router was built from; use_l2 as for assign_nearest, for the exact
 * fallback. Returns how many rows took the exact fallback. */
size_t router_assign(const npvdb_router *r, const float *x, const float *xn,
                     size_t n, const float *cent, const float *cnorms,
                     int use_l2, uint32_t *out, float *scratch);

/* ---- kmeans.c ---- */
/* Trains nc centroids on n >= nc rows (n*dim) with Lloyd's algorithm, seeded
 * by distinct random rows, empty clusters re-seeded by splitting the
 * largest. spherical: centroids normalised (cosine). Caller frees *out. */
npvdb_code kmeans_train(npvdb_pool *pool, const float *x, size_t n,
                        uint32_t dim, uint32_t nc, uint32_t iters,
                        int spherical, uint64_t seed, float **out,
                        npvdb_error *err);

/* ---- the collection ---- */
struct npvdb_collection {
    npvdb_config cfg; /* resolved: no zero defaults left but n_shards */
    pthread_rwlock_t rw;
    pthread_mutex_t write_mu;
    pthread_mutex_t index_mu;
    npvdb_keymap map;
    npvdb_shard *shards;
    uint32_t n_shards;  /* 1 while untrained */
    uint32_t shard_cap; /* of shards, centroids, cnorms (rebalance.c) */
    float *centroids;   /* n_shards*dim, NULL while untrained */
    float *cnorms;      /* |c|^2 per centroid */
    bool trained;
    bool auto_train; /* train when n_vectors reaches train_at */
    size_t n_vectors;
    size_t train_at;
    npvdb_pool *pool; /* own (owns_pool) or borrowed from cfg.workers */
    bool owns_pool;
    /* Scratch for assigning inserted rows, kept between inserts (guarded by
     * write_mu): a fresh multi-megabyte buffer per insert was a new mapping
     * each time, and faulting its pages in cost a fifth of a bulk load. */
    float *assign_tmp;
    size_t assign_tmp_n;   /* floats */
    npvdb_fieldmap fields; /* payload field names (see fields.c) */
    size_t payload_bytes;  /* pstore_bytes of every stored payload */
    npvdb_router router;   /* for the current centroids (writers only) */
    /* Splits and merges since the router was built: its grouping, kept
     * here until router_refresh rebuilds it (rebalance.c). */
    bool router_stale;
    uint32_t *gid;
    uint32_t gid_cap;
    uint32_t router_rest; /* batches to assign exactly (see write.c) */
    uint64_t index_epoch; /* install_index calls so far (under write_mu) */
    /* Replay (npvdb_defer_training): an automatic training is left pending
     * until the next write, so that a logged index can take its place. */
    bool defer_train;
    bool train_pending;
    /* Rebalancing (rebalance.c): on unless npvdb_set_rebalance turned it
     * off; the journal keeps each change for the log (npvdb_journal). */
    bool rebalance;
    bool check_all; /* an index was installed: look at every shard */
    bool journal_on;
    npvdb_reshard *jr;
    size_t jr_n, jr_cap;
    uint64_t n_splits, n_merges, n_retrains;
    /* npvdb_shape's cache: recomputed only after a write changed the
     * shards (wgen is bumped under the exclusive lock by every writer). */
    atomic_ullong wgen;
    pthread_mutex_t shape_mu;
    uint64_t shape_gen; /* wgen the cache was taken at; 0: none */
    npvdb_shape shape;
};

/* A writer took the exclusive lock: cached shapes are stale. */
static inline void note_write(npvdb_collection *c)
{
    atomic_fetch_add_explicit(&c->wgen, 1, memory_order_relaxed);
}

/* Which centroid score a metric uses: L2 keeps the |c|^2 term. */
static inline int metric_uses_l2(npvdb_metric m)
{
    return m == NPVDB_METRIC_L2;
}

/* train.c: k-means + re-shard; caller holds write_mu (takes index_mu). */
npvdb_code index_train(npvdb_collection *c, const float *src, size_t n,
                       npvdb_error *err);

/* Swaps in the new index (takes rw exclusively) with router r (taken), or
 * when r is NULL one built for the centroids; takes ownership of cent,
 * cnorms and ns. */
void install_index(npvdb_collection *c, float *cent, float *cnorms, uint32_t nc,
                   npvdb_shard *ns, npvdb_router *r);

/* Runs an automatic training left pending by npvdb_defer_training; caller
 * holds write_mu. */
void run_pending_training(npvdb_collection *c);

/* rebalance.c: after a write applied (caller holds write_mu, not rw).
 * touched: the shards the write added rows to (splits) or removed rows from
 * (merges), n of them; NULL with n = n_shards: every shard. */
void rebalance_splits(npvdb_collection *c, const uint32_t *touched, size_t n);
void rebalance_merges(npvdb_collection *c, const uint32_t *touched, size_t n);
/* Rebuilds the router after splits and merges; caller holds write_mu.
 * Every reader of c->router calls it first. */
void router_refresh(npvdb_collection *c);

/* plan.c: how a filtered search runs (see plan.c). */
typedef enum plan_kind {
    PLAN_PROBE = 0, /* probe shards (the filter, if any, inside the scan) */
    PLAN_EXACT = 1, /* gather exactly the passing rows and scan them all */
} plan_kind;
typedef struct plan {
    plan_kind kind;
    uint32_t nprobe; /* shards to probe first (PLAN_PROBE, trained) */
    double est_pass; /* estimated passing vectors */
} plan;
/* f NULL: unfiltered, PLAN_PROBE at nprobe. Caller holds rw. */
plan plan_choose(const npvdb_collection *c, const cfilter *f, size_t nq,
                 uint32_t nprobe, uint32_t k);

/* search.c */
typedef struct search_opts {
    uint32_t nprobe; /* resolved (not 0) */
    const cfilter *filter;
    bool with_payload;
    plan *plan_out;           /* may be NULL: gets the plan used (tests) */
    const atomic_int *cancel; /* npvdb_search_params: giving up */
    int64_t deadline_ns;
    size_t max_result_bytes;
    size_t *result_bytes;
} search_opts;
npvdb_code search_locked(npvdb_collection *c, const float *q, size_t nq,
                         uint32_t k, const search_opts *o, npvdb_results *out,
                         npvdb_error *err);

#endif /* NPVDB_INTERNAL_H */
