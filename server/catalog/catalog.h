/*
 * catalog.h -- the named collections of one node: name -> engine collection,
 * create / replace / drop / list, and the one write sequence of the server.
 *
 * The catalog sits between the transport and storage: the transport names a
 * collection, the catalog finds it and runs writes through storage (the log)
 * and the engine in the order that makes a restart reproduce them. It is the
 * one place that knows "many collections"; the engine knows one, storage
 * tags records and snapshot groups with a name.
 *
 * The write sequence, for every write kind (create, insert, delete, drop):
 *   1. the caller has validated and prepared the request (npvdb_upsert_prepare
 *      for inserts), outside every lock;
 *   2. under the collection's write lock: append the log record, apply it to
 *      the engine (so per collection, log order == apply order);
 *   3. release; the caller then waits with catalog_wait_durable(seq) before
 *      it replies (group commit: one fsync serves every waiting call).
 * Writes to different collections run in parallel. A snapshot briefly stops
 * every writer between steps 2 and 3 to read a log position that every
 * applied record is at or before.
 *
 * Memory limit (catalog_config.max_memory_bytes): the catalog keeps a
 * running total of every collection's memory_bytes (npvdb_memory_bytes plus
 * the entry), updated after each apply, drop and replace under the
 * collection's write lock. A write that adds memory (an insert batch, by
 * npvdb_batch_memory's estimate; a create or replace, by the new
 * collection's size less the one it replaces) first reserves its estimate
 * against the limit, before it is logged: past the limit it is NPVDB_ELIMIT
 * (RESOURCE_EXHAUSTED on the wire) naming the use, the estimate and the
 * limit, and neither logged nor applied. Deletes and drops are never
 * refused. Recovery (catalog_open) is never refused: restored data over the
 * limit only makes later inserts fail until deletes free room.
 *
 * Names: 1..CATALOG_MAX_NAME bytes of [A-Za-z0-9_.-]; "" (or NULL) means
 * CATALOG_DEFAULT, so clients from before collections keep working.
 *
 * Thread safety: everything but open/close may be called from any thread.
 * Ownership is stated at each function.
 */
#ifndef NPVDB_CATALOG_H
#define NPVDB_CATALOG_H

#include "npvdb.h"
#include "storage.h"

#include <stddef.h>
#include <stdint.h>

#define CATALOG_DEFAULT "default"
#define CATALOG_MAX_NAME 255

typedef struct npvdb_catalog npvdb_catalog;

typedef struct catalog_config {
    npvdb_store *store;        /* borrowed; NULL = no durability (tests) */
    npvdb_workers *workers;    /* borrowed shared pool for every collection */
    uint64_t max_memory_bytes; /* 0 = no limit (see the top) */
    int no_rebalance;          /* 1: shards never split or merge */
} catalog_config;

/* Creates the catalog; takes ownership of the collections the store
 * restored (npvdb_store_take_restored; so the store must be opened with
 * out_coll NULL). The store's config should carry the same workers. NULL
 * and err on failure. */
npvdb_catalog *catalog_open(const catalog_config *cfg, npvdb_error *err);
/* Frees every collection. No call may be running. NULL is allowed. */
void catalog_close(npvdb_catalog *cat);

/* Checks a name from outside; len counts bytes. 0 bytes is fine (default). */
npvdb_code catalog_check_name(const char *name, size_t len, npvdb_error *err);

/* A collection held for the duration of one call. While held, the
 * collection is not freed: a drop or replace waits until it is released
 * (for a stream: between messages). gen changes with every create/replace,
 * so a stream notices its collection was replaced. */
typedef struct catalog_ref {
    npvdb_collection *coll;
    const char *name; /* the resolved name, valid while held */
    uint64_t gen;
    void *entry_;
} catalog_ref;

/* NPVDB_ENOTFOUND "collection 'NAME' not found" if absent; a bad name
 * NPVDB_EINVAL. The caller releases a held ref (catalog_release); releasing
 * a zeroed ref is a no-op. */
npvdb_code catalog_acquire(npvdb_catalog *cat, const char *name,
                           catalog_ref *ref, npvdb_error *err);
void catalog_release(npvdb_catalog *cat, catalog_ref *ref);

/* Init: creates collection `name` from cfg (training on the sample when
 * n_train > 0, outside every lock), logs it and installs it. With replace,
 * an existing one is dropped in the same step (*replaced = 1); without, it
 * is NPVDB_EEXIST "collection 'NAME' exists (dim D): pass replace=true to
 * drop it". cfg->workers is filled in by the catalog (cfg is borrowed).
 * *seq gets the log record to wait for. The caller must not hold `name`
 * itself (the replace waits for every holder). */
npvdb_code catalog_create(npvdb_catalog *cat, const char *name,
                          const npvdb_config *cfg, const float *train,
                          size_t n_train, int replace, int *replaced,
                          uint64_t *seq, npvdb_error *err);

/* Drops `name`: logs it, unlinks it at once (new calls get ENOTFOUND), and
 * returns once no call holds it and it is freed; its disk goes once the
 * snapshots that hold it are retired. *vectors (may be NULL) gets how many
 * it held. NPVDB_ENOTFOUND if absent. The caller must not hold it. */
npvdb_code catalog_drop(npvdb_catalog *cat, const char *name, uint64_t *vectors,
                        uint64_t *seq, npvdb_error *err);

/* The write sequence for one prepared insert batch into a held collection
 * (keys/rows/payloads as given to npvdb_upsert_prepare, still alive; the
 * batch stays the caller's). The log record is encoded before any lock.
 * A collection dropped or replaced since it was acquired is
 * NPVDB_ENOTFOUND and nothing is logged or applied. n 0: nothing to do. */
npvdb_code catalog_insert(npvdb_catalog *cat, catalog_ref *ref,
                          npvdb_batch *batch, const char *const *keys,
                          const float *rows, const npvdb_payload *payloads,
                          size_t n, size_t *n_replaced, uint64_t *seq,
                          npvdb_error *err);
npvdb_code catalog_delete(npvdb_catalog *cat, catalog_ref *ref,
                          const char *const *keys, size_t n, size_t *n_deleted,
                          uint64_t *seq, npvdb_error *err);

/* Blocks until log record seq is durable; seq 0 or no store: returns OK. */
npvdb_code catalog_wait_durable(npvdb_catalog *cat, uint64_t seq,
                                npvdb_error *err);

/* One collection as listed. */
typedef struct catalog_info {
    char name[CATALOG_MAX_NAME + 1];
    uint32_t dim;
    npvdb_metric metric;
    uint64_t vectors;
    uint64_t memory_bytes; /* the engine's (npvdb_stats) plus the entry's */
    uint32_t n_shards;
    uint64_t max_shard;                /* vectors in the largest shard */
    uint64_t min_shard;                /* in the smallest */
    uint64_t splits, merges, retrains; /* npvdb_stats' */
} catalog_info;

/* Every collection, sorted by name: *out is malloc'ed (free), *n entries. */
npvdb_code catalog_list(npvdb_catalog *cat, catalog_info **out, size_t *n,
                        npvdb_error *err);
size_t catalog_count(npvdb_catalog *cat);

/* The running total the memory limit checks: every collection's memory
 * plus the estimates of writes in flight. Bytes. */
uint64_t catalog_memory_used(npvdb_catalog *cat);
/* The limit as configured (0 = none). */
uint64_t catalog_memory_limit(npvdb_catalog *cat);

/* Snapshots every collection (one file; see storage.h). One at a time:
 * concurrent calls share the one that is running or wait for it. */
/* The last successful snapshot of this process: *at its end (unix time)
 * and how long it took; 0 (both 0) if none yet. */
int catalog_last_snapshot(npvdb_catalog *cat, double *at, double *seconds);

npvdb_code catalog_snapshot(npvdb_catalog *cat, npvdb_snapshot_info *info,
                            npvdb_error *err);

#endif /* NPVDB_CATALOG_H */
