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

typedef enum npvdb_code {
    NPVDB_OK = 0,
    NPVDB_EINVAL,    /* bad argument from the caller: dim, key, NaN, k, ... */
    NPVDB_ENOMEM,    /* an allocation failed */
    NPVDB_ENOTFOUND, /* a key that is not in the collection */
    NPVDB_ESTATE,    /* the call does not fit the collection's state */
    NPVDB_ELIMIT,    /* past a size limit (shards, k, total vectors) */
    NPVDB_EINTERNAL, /* a bug or a system failure (threads) */
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
} npvdb_config;

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
    char *arena_; /* internal: storage of the key copies */
} npvdb_results;

typedef struct npvdb_stats {
    uint32_t dim;
    npvdb_metric metric;
    int trained;
    size_t n_vectors;
    uint32_t n_shards; /* 1 while untrained */
    uint32_t n_workers;
    uint32_t default_nprobe; /* what a search with nprobe 0 uses */
    size_t memory_bytes;     /* vectors, keys, index and bookkeeping */
    uint64_t *shard_counts;  /* n_shards entries, malloc'ed; free with
                                npvdb_stats_free */
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

/* Deletes keys; *n_deleted (may be NULL) counts those that existed. Unknown
 * keys are not an error. */
npvdb_code npvdb_delete(npvdb_collection *c, const char *const *keys, size_t n,
                        size_t *n_deleted, npvdb_error *err);

/* Copies the stored vector of `key` into out[0..dim). For cosine collections
 * this is the normalised vector. NPVDB_ENOTFOUND if absent. */
npvdb_code npvdb_get(npvdb_collection *c, const char *key, float *out,
                     npvdb_error *err);

/* Finds the k nearest vectors of each of nq queries (nq*dim floats). nprobe 0
 * uses the collection's default; nprobe >= n_shards is an exact search.
 * k must be 1..min(NPVDB_MAX_K, vector count). On success *out owns its
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

void npvdb_results_free(npvdb_results *r);

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
    const float *rows;       /* n * dim */
    const char *const *keys; /* n NUL-terminated keys */
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
