/*
 * npvdb.h -- the vector engine's public API.
 *
 * A collection holds float32 vectors of one dimension, each under a unique
 * string key, partitioned into shards by k-means (an IVF index). Searches probe
 * the `nprobe` shards whose centroids are nearest to each query, and scan them
 * with BLAS on a pool of worker threads. The engine is a plain C library: no
 * network, no files. See README.md ("Architecture") for how a query travels.
 *
 * Conventions
 * - Every call that can fail returns an npvdb_code and, when `err` is not NULL,
 *   fills it with the code and a message naming what was wrong.
 * - Nothing here calls exit() or abort(); bad input is an NPVDB_EINVAL.
 * - Ownership is stated at each function. Pointers passed in are borrowed for
 *   the duration of the call only, unless stated otherwise.
 *
 * Thread safety
 * - npvdb_create / npvdb_free: not concurrent with any other call on the same
 *   collection.
 * - Every other function may be called from any number of threads at once on
 *   the same collection. Searches run in parallel with each other; writes
 *   (insert, delete, train, restore) are serialised among themselves and are
 *   applied atomically per batch with respect to searches: a search sees a
 *   batch entirely or not at all, and never a half-written vector.
 */
#ifndef NPVDB_H
#define NPVDB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPVDB_MAX_DIM 4096
#define NPVDB_MAX_KEY_LEN 1024
#define NPVDB_MAX_SHARDS 65536
#define NPVDB_MAX_K 16384
#define NPVDB_ERRMSG_LEN 256

/* Every error code once: XX(code, name, gRPC status). The engine uses the
 * first two (npvdb_code_name); the transport maps codes to gRPC statuses
 * from the third (status.c), so the three tables cannot drift apart. New
 * codes go at the end: the values are stable. */
#define NPVDB_CODE_MAP(XX)                                                     \
    XX(OK, "ok", OK)                                                           \
    /* bad argument from the caller: dim, key, NaN, k, ... */                  \
    XX(EINVAL, "invalid argument", INVALID_ARGUMENT)                           \
    XX(ENOMEM, "out of memory", RESOURCE_EXHAUSTED)                            \
    /* a key or collection that is not there */                                \
    XX(ENOTFOUND, "not found", NOT_FOUND)                                      \
    /* the call does not fit the collection's state */                         \
    XX(ESTATE, "failed precondition", FAILED_PRECONDITION)                     \
    /* past a size limit (shards, k, total vectors, reply bytes) */            \
    XX(ELIMIT, "limit exceeded", RESOURCE_EXHAUSTED)                           \
    /* a bug or a system failure (threads) */                                  \
    XX(EINTERNAL, "internal error", INTERNAL)                                  \
    /* a collection that exists already (catalog) */                           \
    XX(EEXIST, "already exists", ALREADY_EXISTS)                               \
    /* the caller gave up (npvdb_search_params.cancel) */                      \
    XX(ECANCELLED, "cancelled", CANCELLED)                                     \
    /* the caller's deadline passed (npvdb_search_params.deadline_ns) */       \
    XX(ETIMEDOUT, "deadline exceeded", DEADLINE_EXCEEDED)

typedef enum npvdb_code {
#define NPVDB_CODE_ENUM(code, name, grpc) NPVDB_##code,
    NPVDB_CODE_MAP(NPVDB_CODE_ENUM)
#undef NPVDB_CODE_ENUM
} npvdb_code;

typedef struct npvdb_error {
    npvdb_code code;
    char msg[NPVDB_ERRMSG_LEN];
} npvdb_error;

/* Smaller distance is always closer. */
typedef enum npvdb_metric {
    NPVDB_METRIC_COSINE =
        0,               /* 1 - cos(q, x); vectors are normalised at insert */
    NPVDB_METRIC_L2 = 1, /* Euclidean distance (not squared) */
    NPVDB_METRIC_IP = 2, /* -dot(q, x) */
} npvdb_metric;

/* A pool of worker threads that many collections share (a server with 1,000
 * collections must not run 1,000 pools). Create it before the collections
 * that use it, free it after the last of them. */
typedef struct npvdb_workers npvdb_workers;
npvdb_workers *npvdb_workers_create(uint32_t n_workers, npvdb_error *err);
void npvdb_workers_free(npvdb_workers *w); /* NULL is allowed */

typedef struct npvdb_config {
    uint32_t dim;        /* 1..NPVDB_MAX_DIM, required */
    npvdb_metric metric; /* default (zero) is cosine */
    uint32_t n_shards;   /* 0 = automatic: about 4*sqrt(n) at training time */
    uint32_t n_workers;  /* 0 = number of online cores */
    uint32_t train_per_shard; /* auto-train at n_shards * this many vectors; 0 =
                                 64 */
    uint32_t kmeans_iters;    /* Lloyd iterations; 0 = 10 */
    uint32_t default_nprobe;  /* used when a search passes nprobe 0; 0 = 8 */
    uint64_t seed; /* k-means sampling and seeding; 0 = fixed default */
    /* Borrowed shared pool (must outlive the collection); NULL: the
     * collection starts n_workers threads of its own. When set, n_workers
     * is the pool's size. Never logged or snapshotted. */
    npvdb_workers *workers;
} npvdb_config;

/* ---- payloads ----
 *
 * A payload is a set of named fields stored beside a vector, to filter on
 * and to return with results. Every layer passes it as one canonical blob
 * (npvdb_payload: data[0..len), len 0 = no payload), encoded as:
 *
 *   u16 n_fields (1..NPVDB_MAX_FIELDS), then n_fields fields in strictly
 *   increasing order of name (memcmp of the bytes, a prefix first):
 *     u8 type (npvdb_value_type), u8 name_len (1..255), name (UTF-8, no NUL)
 *     STRING  u32 len (0..NPVDB_MAX_STRING), len bytes of UTF-8
 *     INT     i64        DOUBLE  f64 (finite)        BOOL  u8 (0 or 1)
 *     STRINGS u16 count (0..NPVDB_MAX_LIST), count x (u32 len, bytes)
 *   integers and doubles little-endian; total len <= NPVDB_MAX_PAYLOAD.
 *
 * One encoding for the whole server: the transport builds it from the wire
 * (npvdb_payload_build), the log stores it as is, snapshots write its fields
 * as columns, and the engine hands copies back in results. Because it is
 * canonical, two payloads with the same fields have the same bytes. */
#define NPVDB_MAX_FIELDS 64
#define NPVDB_MAX_FIELD_NAME 255
#define NPVDB_MAX_STRING 65535
#define NPVDB_MAX_LIST 1024
#define NPVDB_MAX_PAYLOAD (1u << 20)

typedef enum npvdb_value_type {
    NPVDB_VALUE_STRING = 1,
    NPVDB_VALUE_INT = 2,
    NPVDB_VALUE_DOUBLE = 3,
    NPVDB_VALUE_BOOL = 4,
    NPVDB_VALUE_STRINGS = 5, /* a list of strings */
} npvdb_value_type;

typedef struct npvdb_payload {
    const uint8_t *data;
    uint32_t len; /* 0: no payload */
} npvdb_payload;

/* One field of a payload as read (npvdb_payload_next) or to be built
 * (npvdb_payload_build). Strings are not NUL-terminated. STRINGS: items and
 * item_lens hold n_items strings when building; when reading, walk them with
 * npvdb_payload_item from `list_`. */
typedef struct npvdb_field {
    const char *name;
    uint32_t name_len;
    npvdb_value_type type;
    int64_t i;                 /* INT */
    double d;                  /* DOUBLE */
    int b;                     /* BOOL */
    const char *s;             /* STRING */
    uint32_t s_len;            /* STRING */
    uint32_t n_items;          /* STRINGS */
    const char *const *items;  /* STRINGS, building only */
    const uint32_t *item_lens; /* STRINGS, building only */
    const uint8_t *list_;      /* STRINGS, reading: the encoded items */
} npvdb_field;

/* Checks that data[0..len) is a canonical payload blob (len 0 is "none"):
 * the one validation of a payload, used by every decoder of one. */
npvdb_code npvdb_payload_check(const uint8_t *data, size_t len,
                               npvdb_error *err);

/* Encodes n fields (any order; names must be distinct) into a canonical blob.
 * On success *out owns a malloc'ed blob (free(out->data)); n 0 gives len 0.
 * Refuses (NPVDB_EINVAL, naming the field) what npvdb_payload_check would. */
npvdb_code npvdb_payload_build(const npvdb_field *fields, size_t n,
                               npvdb_payload *out, npvdb_error *err);

/* Walks a checked blob: *pos starts at 0; returns 1 and fills *f with the
 * next field (pointers into the blob), 0 at the end. */
int npvdb_payload_next(const npvdb_payload *p, size_t *pos, npvdb_field *f);
/* Item j (< f->n_items) of a STRINGS field read by npvdb_payload_next. */
void npvdb_payload_item(const npvdb_field *f, uint32_t j, const char **s,
                        uint32_t *len);

/* ---- filters ----
 *
 * A filter as a tree of conditions (Qdrant's shape). The caller builds it
 * (the transport from the wire) and owns it; the engine only reads it for
 * the duration of a call. A vector passes when all `must` hold, at least one
 * `should` holds (when there are any) and no `must_not` holds; an empty
 * filter passes everything. A condition on a field the vector lacks, or
 * holding another type, does not hold. Bad shape (no values, a range with
 * no bound, NaN bounds, nesting past NPVDB_MAX_FILTER_DEPTH, more than
 * NPVDB_MAX_FILTER_CONDS conditions) is NPVDB_EINVAL. */
#define NPVDB_MAX_FILTER_DEPTH 16
#define NPVDB_MAX_FILTER_CONDS 4096

typedef enum npvdb_cond_kind {
    NPVDB_COND_MATCH = 1,     /* field equals one of values[] (a STRINGS
                                 field: contains one of them) */
    NPVDB_COND_RANGE = 2,     /* INT or DOUBLE field within the bounds */
    NPVDB_COND_HAS_FIELD = 3, /* the field exists, any type */
    NPVDB_COND_FILTER = 4,    /* the nested filter passes */
} npvdb_cond_kind;

/* A value to match: type STRING (s, s_len), INT (i) or BOOL (b). */
typedef struct npvdb_match_value {
    npvdb_value_type type;
    const char *s;
    uint32_t s_len;
    int64_t i;
    int b;
} npvdb_match_value;

typedef struct npvdb_filter npvdb_filter;

typedef struct npvdb_cond {
    npvdb_cond_kind kind;
    const char *field; /* MATCH, RANGE, HAS_FIELD */
    uint32_t field_len;
    const npvdb_match_value *values; /* MATCH: 1..NPVDB_MAX_LIST */
    uint32_t n_values;
    /* RANGE: lower bound gt/gte, upper bound lt/lte; at least one set. */
    int has_lower, lower_inclusive, has_upper, upper_inclusive;
    double lower, upper;
    const npvdb_filter *sub; /* FILTER */
} npvdb_cond;

struct npvdb_filter {
    const npvdb_cond *must;
    uint32_t n_must;
    const npvdb_cond *should;
    uint32_t n_should;
    const npvdb_cond *must_not;
    uint32_t n_must_not;
};

/* Checks the shape of a filter (what the search, count and scroll calls
 * refuse), without a collection. */
npvdb_code npvdb_filter_check(const npvdb_filter *f, npvdb_error *err);

typedef struct npvdb_collection npvdb_collection;

/* Search results for q queries: row i holds counts[i] <= k hits, nearest
 * first, in keys[i*k + j] / key_lens[i*k + j] / distances[i*k + j]. Keys are
 * NUL-terminated copies owned by the result. Free with npvdb_results_free. */
typedef struct npvdb_results {
    size_t nq;
    uint32_t k;
    uint32_t *counts;
    float *distances;
    const char **keys;
    uint32_t *key_lens;
    /* With npvdb_search_params.with_payload: nq*k payload copies beside the
     * keys (len 0 for a hit without one); else NULL. */
    npvdb_payload *payloads;
    char *arena_; /* internal: storage of the key (and payload) copies */
} npvdb_results;

typedef struct npvdb_stats {
    uint32_t dim;
    npvdb_metric metric;
    int trained;
    size_t n_vectors;
    uint32_t n_shards; /* 1 while untrained */
    uint32_t n_workers;
    uint32_t default_nprobe; /* what a search with nprobe 0 uses */
    size_t memory_bytes;     /* vectors, keys, payloads, index, bookkeeping */
    uint64_t *shard_counts;  /* n_shards entries, malloc'ed; free with
                                npvdb_stats_free */
    size_t min_shard, max_shard; /* vectors in the smallest, largest shard */
    /* Changes of the partition since the collection was loaded (replayed
     * ones count): splits, merges, full trainings after the first. */
    uint64_t splits, merges, retrains;
} npvdb_stats;

/* Creates an empty, untrained collection. Returns NULL and fills err on bad
 * configuration or failure. The caller owns the result (npvdb_free). */
npvdb_collection *npvdb_create(const npvdb_config *cfg, npvdb_error *err);

/* Stops the workers and frees everything. NULL is allowed. */
void npvdb_free(npvdb_collection *c);

/* Trains the index (k-means) on `n` sample rows of `dim` floats, or on the
 * collection's own vectors when sample is NULL. Re-trains a trained
 * collection; every stored vector is reassigned to its nearest centroid. */
npvdb_code npvdb_train(npvdb_collection *c, const float *sample, size_t n,
                       npvdb_error *err);

/* Upserts `n` vectors: keys[i] (NUL-terminated UTF-8, 1..1024 bytes) gets
 * rows[i*dim .. i*dim+dim). The batch is validated whole first: on any error
 * nothing is applied. *n_replaced (may be NULL) counts keys that existed. A
 * key repeated inside one batch: the last row wins. */
npvdb_code npvdb_insert(npvdb_collection *c, const char *const *keys,
                        const float *rows, size_t n, size_t *n_replaced,
                        npvdb_error *err);

/* npvdb_insert in two steps, for a caller that logs the batch in between
 * (the server's write-ahead log): prepare refuses what npvdb_insert would
 * (keys, NaN/Inf, zero norms for cosine) and does the per-row work that
 * needs no lock; npvdb_insert_prepared then applies it whole or not at all
 * and can fail only for memory. The batch borrows keys and rows: they must
 * stay valid until npvdb_batch_free. On error *out is NULL. */
typedef struct npvdb_batch npvdb_batch;
npvdb_code npvdb_insert_prepare(npvdb_collection *c, const char *const *keys,
                                const float *rows, size_t n, npvdb_batch **out,
                                npvdb_error *err);
npvdb_code npvdb_insert_prepared(npvdb_collection *c, npvdb_batch *b,
                                 size_t *n_replaced, npvdb_error *err);
void npvdb_batch_free(npvdb_batch *b);
/* An estimate of the memory_bytes an apply of b (prepared for c) adds, as
 * if every key were new: row, norm, shard slots, key entry, payload copy,
 * and the key table's doubling if the batch triggers it. Not counted: a
 * shard's capacity step (1/16 of its rows, or a doubling of its index
 * arrays when its rows are mapped), so an apply may take somewhat more.
 * What a memory limit checks before the batch is logged. */
size_t npvdb_batch_memory(npvdb_collection *c, const npvdb_batch *b);

/* npvdb_insert and npvdb_insert_prepare with payloads: payloads[i] (len 0 =
 * none) goes with keys[i]; payloads NULL = none for the whole batch. An
 * upsert replaces vector and payload together. Blobs are checked here
 * (npvdb_payload_check) and copied by the apply, so they need only live
 * until npvdb_batch_free. */
npvdb_code npvdb_upsert(npvdb_collection *c, const char *const *keys,
                        const float *rows, const npvdb_payload *payloads,
                        size_t n, size_t *n_replaced, npvdb_error *err);
npvdb_code npvdb_upsert_prepare(npvdb_collection *c, const char *const *keys,
                                const float *rows,
                                const npvdb_payload *payloads, size_t n,
                                npvdb_batch **out, npvdb_error *err);

/* Deletes keys; *n_deleted (may be NULL) counts those that existed. Unknown
 * keys are not an error. */
npvdb_code npvdb_delete(npvdb_collection *c, const char *const *keys, size_t n,
                        size_t *n_deleted, npvdb_error *err);

/* Copies the stored vector of `key` into out[0..dim). For cosine collections
 * this is the normalised vector. NPVDB_ENOTFOUND if absent. */
npvdb_code npvdb_get(npvdb_collection *c, const char *key, float *out,
                     npvdb_error *err);
/* npvdb_get that also copies the payload: *payload gets a malloc'ed copy
 * (free(payload->data)), len 0 if the vector has none. out may be NULL. */
npvdb_code npvdb_get_payload(npvdb_collection *c, const char *key, float *out,
                             npvdb_payload *payload, npvdb_error *err);

/* Finds the k nearest vectors of each of nq queries (nq*dim floats). nprobe 0
 * uses the collection's default; nprobe >= n_shards is an exact search.
 * k must be 1..NPVDB_MAX_K; a collection holding fewer vectors gives short
 * rows (counts[i] < k), an empty one rows of 0. On success *out owns its
 * arrays (npvdb_results_free); on error *out is zeroed. */
npvdb_code npvdb_search(npvdb_collection *c, const float *queries, size_t nq,
                        uint32_t k, uint32_t nprobe, npvdb_results *out,
                        npvdb_error *err);

/* npvdb_search for a caller that owns the queries and has no further use
 * for them (the server's decoded request): a cosine collection normalises
 * them in place instead of copying them first. Same checks, same results;
 * the queries' contents are unspecified afterwards. */
npvdb_code npvdb_search_inplace(npvdb_collection *c, float *queries, size_t nq,
                                uint32_t k, uint32_t nprobe, npvdb_results *out,
                                npvdb_error *err);

/* The general search. A filter makes only passing vectors candidates: the
 * answer is the k nearest among them, evaluated during the scan (never a
 * post-filter). The planner scans exactly the passing vectors when they are
 * few, and probes more shards when the probed ones hold fewer than k that
 * pass; with nprobe >= n_shards the result equals brute force over the
 * passing set. `inplace`: the queries are the caller's to overwrite
 * (npvdb_search_inplace); else they are only read. */
typedef struct npvdb_search_params {
    uint32_t nprobe;            /* 0 = the collection's default */
    const npvdb_filter *filter; /* NULL = none */
    int with_payload;           /* fill out->payloads */
    int inplace;
    /* Giving up, checked between shards, so a search stops within about one
     * shard's scan of the signal: *cancel non-zero -> NPVDB_ECANCELLED,
     * CLOCK_MONOTONIC past deadline_ns -> NPVDB_ETIMEDOUT. NULL / 0: never.
     * The flag is the caller's, read (never written) by the workers. */
    const atomic_int *cancel;
    int64_t deadline_ns;
    /* Bound on the key and payload bytes copied into the results (0: none):
     * past it NPVDB_ELIMIT, found before any of them is copied. */
    size_t max_result_bytes;
    /* May be NULL: gets those bytes (one NUL per key included), also when
     * they were over the bound. */
    size_t *result_bytes;
} npvdb_search_params;
npvdb_code npvdb_search_ex(npvdb_collection *c, float *queries, size_t nq,
                           uint32_t k, const npvdb_search_params *p,
                           npvdb_results *out, npvdb_error *err);

void npvdb_results_free(npvdb_results *r);

/* How many vectors pass `f` (NULL: all of them). */
npvdb_code npvdb_count(npvdb_collection *c, const npvdb_filter *f,
                       uint64_t *out, npvdb_error *err);

/* Scroll: pages through the vectors passing `f` (NULL: all) in an order of
 * the engine's choosing that survives concurrent writes: every vector stored
 * for the whole scroll is seen at least once, one inserted or deleted
 * meanwhile may or may not be. `cursor` 0 starts; *next gets the cursor of
 * the following page and *done 1 after the last page. At most `limit` items
 * (1..NPVDB_MAX_K) per page, fewer if the work bound of a page was reached
 * first (a filter that passes little); a page may be empty without the
 * scroll being done. on_item is called under the read lock with borrowed
 * pointers (vector: dim floats as stored); non-zero stops with
 * NPVDB_EINTERNAL. */
typedef struct npvdb_scroll_item {
    const char *key;
    uint32_t key_len;
    const float *vector;
    npvdb_payload payload;
} npvdb_scroll_item;
typedef int (*npvdb_scroll_cb)(void *ctx, const npvdb_scroll_item *item);
npvdb_code npvdb_scroll(npvdb_collection *c, uint64_t cursor, uint32_t limit,
                        const npvdb_filter *f, npvdb_scroll_cb on_item,
                        void *ctx, uint64_t *next, int *done, npvdb_error *err);

/* npvdb_stats_get's memory_bytes alone: no allocation, O(shards) (the
 * rest is kept as running totals), so a writer can afford it after each
 * batch (the catalog's memory limit). */
size_t npvdb_memory_bytes(npvdb_collection *c);

/* What a metrics scrape wants, cheaply: the counts are kept as writes
 * happen, the shard sizes and memory are recounted (one pass over the
 * shards) only when a write changed them since the last call. */
typedef struct npvdb_shape {
    size_t n_vectors;
    uint32_t n_shards;
    size_t max_shard; /* vectors in the largest shard */
    size_t min_shard; /* in the smallest */
    size_t memory_bytes;
    uint64_t splits, merges, retrains; /* as npvdb_stats */
} npvdb_shape;
void npvdb_shape_get(npvdb_collection *c, npvdb_shape *out);

/* Fills *out; out->shard_counts is malloc'ed (npvdb_stats_free). */
npvdb_code npvdb_stats_get(npvdb_collection *c, npvdb_stats *out,
                           npvdb_error *err);
void npvdb_stats_free(npvdb_stats *s);

/* ---- Persistence hooks (used by storage/, not needed by most callers) ---- */

/* One shard as seen by npvdb_export. All pointers are borrowed and valid only
 * during the callback; rows are stored vectors (normalised for cosine). */
typedef struct npvdb_shard_view {
    uint32_t shard;
    size_t n;
    const float *rows;             /* n * dim */
    const char *const *keys;       /* n NUL-terminated keys */
    const npvdb_payload *payloads; /* n (len 0 = none) */
} npvdb_shard_view;

/* Walks the collection: first `on_index` with the centroids (n_shards*dim
 * floats, NULL while untrained), then `on_shard` once per shard in order.
 * Each shard is seen consistently under the read lock, which is released
 * between shards so writers are not stalled by a long export; a key moved by
 * a concurrent upsert may appear in two shards (restore upserts, so the log
 * replayed after the export's start repairs it). Training cannot run during
 * an export. A non-zero return from a callback stops the walk and gives
 * NPVDB_EINTERNAL. */
typedef int (*npvdb_index_cb)(void *ctx, const npvdb_stats *st,
                              const float *centroids);
typedef int (*npvdb_shard_cb)(void *ctx, const npvdb_shard_view *view);
npvdb_code npvdb_export(npvdb_collection *c, npvdb_index_cb on_index,
                        npvdb_shard_cb on_shard, void *ctx, npvdb_error *err);

/* Installs trained centroids (n_shards*dim floats) on an empty collection,
 * so that a snapshot restores without re-training. */
npvdb_code npvdb_restore_index(npvdb_collection *c, const float *centroids,
                               uint32_t n_shards, npvdb_error *err);

/* Appends rows straight into one shard, skipping assignment (restore path).
 * Same validation as npvdb_insert; keys already present are upserted. */
npvdb_code npvdb_restore_shard(npvdb_collection *c, uint32_t shard,
                               const char *const *keys, const float *rows,
                               size_t n, npvdb_error *err);

/* npvdb_restore_shard with payloads (NULL = none). */
npvdb_code npvdb_restore_shard_payloads(npvdb_collection *c, uint32_t shard,
                                        const char *const *keys,
                                        const float *rows,
                                        const npvdb_payload *payloads, size_t n,
                                        npvdb_error *err);

/* A trained index as it stands: what a log needs to install the same
 * partition again without k-means (the centroids, and the router's grouping
 * of them, itself trained by a small k-means; see router.c). Arrays are
 * malloc'ed and owned by the struct (npvdb_index_free). */
typedef struct npvdb_index {
    uint32_t dim;
    uint32_t n_shards;    /* centroids, 1..NPVDB_MAX_SHARDS */
    uint32_t n_groups;    /* router groups; 0: none (exact assignment) */
    float *centroids;     /* n_shards * dim */
    float *group_centres; /* n_groups * dim */
    uint32_t *group_of;   /* n_shards: each centroid's group (n_groups > 0) */
} npvdb_index;

/* Copies the trained index into *out (NPVDB_ESTATE while untrained). */
npvdb_code npvdb_index_get(npvdb_collection *c, npvdb_index *out,
                           npvdb_error *err);
void npvdb_index_free(npvdb_index *ix); /* NULL is allowed */

/* Installs a logged index (ix borrowed): every stored vector goes to its
 * nearest centroid, exactly as after a training's k-means, and the router
 * is rebuilt from the logged grouping; no k-means runs. Automatic training
 * is off afterwards. The result equals the collection the index was taken
 * from when the stored vectors are the same. */
npvdb_code npvdb_index_install(npvdb_collection *c, const npvdb_index *ix,
                               npvdb_error *err);

/* How many indexes the collection has installed (trainings, restores): a
 * writer that reads it before and after an apply knows the apply trained. */
uint64_t npvdb_index_epoch(npvdb_collection *c);

/* ---- Rebalancing: the partition follows the data (see rebalance.c) ----
 *
 * A trained collection splits a shard that grows past twice the target mean
 * (about 4 sqrt(n) shards for n vectors) and merges one that deletes leave
 * under a third of it, as writes happen. On by default. */
void npvdb_set_rebalance(npvdb_collection *c, int on);

/* One change of the partition, as a log records it. */
typedef enum npvdb_reshard_kind {
    NPVDB_RESHARD_SPLIT = 1, /* shard takes centroids[0..dim), a new shard
                                n_shards takes centroids[dim..2 dim) */
    NPVDB_RESHARD_MERGE = 2, /* shard's rows go to its neighbours, the last
                                shard moves into its slot */
} npvdb_reshard_kind;
typedef struct npvdb_reshard {
    npvdb_reshard_kind kind;
    uint32_t shard;
    uint32_t dim;
    float *centroids; /* SPLIT: 2 * dim floats; MERGE: NULL */
    /* Shards before the change; 0 = unknown. A replay refuses a change
     * made at another count (NPVDB_ESTATE): a snapshot taken while the
     * collection split already holds the splits logged after its position,
     * and applying one again would split the same shard twice. */
    uint32_t n_shards;
} npvdb_reshard;

/* While on, every split and merge the collection makes is kept until
 * npvdb_reshard_take hands it over, oldest first (*ops malloc'ed, owned by
 * the caller: npvdb_reshards_free; NULL and 0 when none). Off by default:
 * only a caller that logs them turns it on. */
void npvdb_journal(npvdb_collection *c, int on);
void npvdb_reshard_take(npvdb_collection *c, npvdb_reshard **ops, size_t *n);
void npvdb_reshards_free(npvdb_reshard *ops, size_t n); /* NULL is allowed */

/* Replays a logged change (op borrowed): no k-means, and the same rows end
 * in the same shards, in the same order, as when it was made, given the same
 * stored vectors. */
npvdb_code npvdb_reshard_apply(npvdb_collection *c, const npvdb_reshard *op,
                               npvdb_error *err);

/* For log replay: while on, an automatic training is not run but left
 * pending, so that a logged index (npvdb_index_install) can take its place;
 * the next insert or delete, or turning it off, runs a pending training
 * first, which reproduces an old log's training at the same point. */
void npvdb_defer_training(npvdb_collection *c, int on);

/* k-means runs in this process so far, of every collection (the index's
 * and the router's): tests check that a replay trained nothing. */
uint64_t npvdb_kmeans_runs(void);

uint32_t npvdb_dim(const npvdb_collection *c);
/* The configuration with every default resolved (n_shards stays 0 for
 * automatic). */
void npvdb_get_config(const npvdb_collection *c, npvdb_config *out);
npvdb_metric npvdb_get_metric(const npvdb_collection *c);

/* Fills err (when not NULL) with code and a printf-style message and returns
 * code: the one way errors are made, for the engine and the layers above. */
npvdb_code npvdb_set_error(npvdb_error *err, npvdb_code code, const char *fmt,
                           ...) __attribute__((format(printf, 3, 4)));

/* 1 if s[0..n) is strict UTF-8 (no overlongs, surrogates or code points
 * past U+10FFFF), else 0. */
int npvdb_utf8_valid(const char *s, size_t n);

const char *npvdb_metric_name(npvdb_metric m);
const char *npvdb_code_name(npvdb_code code);

#ifdef __cplusplus
}
#endif
#endif /* NPVDB_H */
