/*
 * storage.h -- durability for the server's named collections: snapshots (one
 * HDF5 file each, covering every collection) and the write-ahead log, whose
 * records name their collection. Depends on the engine's public header only;
 * knows nothing of gRPC, and nothing of how collections are looked up (the
 * catalog's job, server/catalog).
 *
 * Protocol for every write (create, insert message, delete, drop, and the
 * index an insert's automatic training made), which the
 * catalog runs: 1. validate and prepare, and encode the log record
 * (npvdb_store_encode_*), outside every lock; 2. under the collection's write
 * lock: npvdb_store_append (returns the record's sequence number), then apply
 * to the engine, so per collection log order == apply order; 3. release;
 * 4. npvdb_store_wait_durable(seq) before replying (group commit: many calls
 * share one fsync).
 *
 * Thread safety: every function except open/close may be called from any
 * thread concurrently. Ownership is stated at each function.
 */
#ifndef NPVDB_STORAGE_H
#define NPVDB_STORAGE_H

#include "hist.h"
#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

typedef enum npvdb_sync_mode {
    NPVDB_SYNC_ALWAYS = 0,   /* fsync before every acknowledgement (grouped) */
    NPVDB_SYNC_INTERVAL = 1, /* fsync at most every sync_interval_ms */
    NPVDB_SYNC_NONE = 2,     /* leave it to the OS; a crash may lose writes */
} npvdb_sync_mode;

#define NPVDB_STORE_MAX_NAME 255
#define NPVDB_STORE_DEFAULT "default"

typedef struct npvdb_store_config {
    const char *data_dir; /* created if missing */
    npvdb_sync_mode sync;
    unsigned sync_interval_ms; /* for NPVDB_SYNC_INTERVAL; 0 = 100 */
    unsigned keep_snapshots;   /* newest N kept; 0 = 2 */
    unsigned n_workers;        /* restored collections without workers */
    npvdb_workers *workers;    /* borrowed; NULL: each restored collection
                                  starts n_workers threads of its own */
} npvdb_store_config;

typedef struct npvdb_snapshot_info {
    char path[4096];
    uint64_t vectors; /* over every collection */
    uint64_t bytes;
    double seconds;
    uint64_t sequence;    /* last log record the snapshot covers */
    uint64_t collections; /* how many it holds */
} npvdb_snapshot_info;

typedef struct npvdb_store npvdb_store;

/* A collection restored by npvdb_store_open. */
typedef struct npvdb_store_coll {
    char name[NPVDB_STORE_MAX_NAME + 1];
    npvdb_collection *coll;
    npvdb_config cfg; /* creation config as logged (n_workers 0, workers
                         NULL): what a snapshot records for it */
} npvdb_store_coll;

/* 1 if name[0..len) is a valid collection name: 1..255 bytes of
 * [A-Za-z0-9_.-]. */
int npvdb_store_name_valid(const char *name, size_t len);

/* Opens (creating) the data directory, restores the newest valid snapshot
 * (every collection in it), replays the log after it per collection, and
 * opens the log for appending. The restored collections stay in the store
 * until npvdb_store_take_restored (the catalog takes them); pass out_coll
 * NULL. (A caller of one collection may pass out_coll: it gets collection
 * "default", owned by the caller, NULL if none, and every other restored
 * collection is freed.) Problems found (corrupt snapshot, torn
 * log tail) are logged to stderr and recovered from; only unusable
 * directories are errors. */
npvdb_store *npvdb_store_open(const npvdb_store_config *cfg,
                              npvdb_collection **out_coll, npvdb_error *err);

/* Hands over the restored collections, sorted by name: *out is malloc'ed
 * (free) with *n entries whose collections the caller now owns. A second
 * call gives none. */
void npvdb_store_take_restored(npvdb_store *s, npvdb_store_coll **out,
                               size_t *n);

/* Syncs the log and frees the store (and restored collections nobody
 * took). NULL is allowed. */
void npvdb_store_close(npvdb_store *s);

/* An encoded log record, made outside any lock. Owned by the caller
 * (npvdb_store_rec_free); appending does not consume it. */
typedef struct npvdb_store_rec npvdb_store_rec;

/* Encoders. Arguments are borrowed for the call; a bad name or argument is
 * NPVDB_EINVAL, a record past the log's 1 GiB record limit NPVDB_ELIMIT.
 * payloads NULL = none (else n canonical blobs, len 0 = none, stored as
 * is). On error *out is NULL. */
npvdb_code npvdb_store_encode_init(const char *name, const npvdb_config *cfg,
                                   const float *train, size_t n_train,
                                   npvdb_store_rec **out, npvdb_error *err);
/* A create of a collection already trained (on Init's sample): the record
 * holds its index (npvdb_index_get) instead of the sample, so a replay
 * installs it without k-means. */
npvdb_code npvdb_store_encode_init_index(const char *name,
                                         const npvdb_config *cfg,
                                         const npvdb_index *ix,
                                         npvdb_store_rec **out,
                                         npvdb_error *err);
/* The index a collection trained (automatically): appended right after the
 * write whose apply trained, under the same write lock, so that a replay
 * installs it at the same point of that collection's writes. */
npvdb_code npvdb_store_encode_train(const char *name, const npvdb_index *ix,
                                    npvdb_store_rec **out, npvdb_error *err);
/* A split or merge the collection made (npvdb_reshard_take): appended
 * right after the write whose apply made it, as a TRAIN is. */
npvdb_code npvdb_store_encode_reshard(const char *name, const npvdb_reshard *op,
                                      npvdb_store_rec **out, npvdb_error *err);
npvdb_code npvdb_store_encode_insert(const char *name, const char *const *keys,
                                     const float *rows,
                                     const npvdb_payload *payloads, size_t n,
                                     uint32_t dim, npvdb_store_rec **out,
                                     npvdb_error *err);
npvdb_code npvdb_store_encode_delete(const char *name, const char *const *keys,
                                     size_t n, npvdb_store_rec **out,
                                     npvdb_error *err);
npvdb_code npvdb_store_encode_drop(const char *name, npvdb_store_rec **out,
                                   npvdb_error *err);
void npvdb_store_rec_free(npvdb_store_rec *r); /* NULL is allowed */

/* Appends one encoded record; *seq gets its sequence number. The record is
 * durable only after npvdb_store_wait_durable(seq). */
npvdb_code npvdb_store_append(npvdb_store *s, npvdb_store_rec *r, uint64_t *seq,
                              npvdb_error *err);

/* Blocks until record `seq` is on disk (per the sync mode). */
npvdb_code npvdb_store_wait_durable(npvdb_store *s, uint64_t seq,
                                    npvdb_error *err);

/* The sequence number of the last appended record (0 if none). */
uint64_t npvdb_store_last_seq(npvdb_store *s);

/* Log bytes appended since the last snapshot began (or since open): about
 * what a restart would have to replay. Drives automatic snapshots. */
uint64_t npvdb_store_log_bytes(npvdb_store *s);

/* The time of every group-commit fsync of the log (read with atomics;
 * valid while the store is open). */
const npvdb_hist *npvdb_store_fsync_hist(npvdb_store *s);

/* A snapshot being written: begin, add each collection, commit.
 *
 * covered_seq: a log position that every applied record is at or before,
 * and every record after it is not yet applied to the state the snapshot
 * started from (the caller reads npvdb_store_last_seq while no write is
 * between its append and its apply). Collections are then added without
 * any lock: each engine export is consistent per shard, and replaying the
 * log after covered_seq repairs the rest (records are idempotent per
 * collection: INIT recreates, INSERT upserts, DELETE and DROP of absent
 * things are no-ops). So a collection created after covered_seq may be
 * left out, and one replaced after it may be added in either version.
 *
 * One snapshot at a time: begin waits for a running one to commit; begin
 * and its commit or abort run on the same thread (it holds a mutex). The
 * file is written to a temporary name; commit fsyncs it, renames it into
 * place, fsyncs the directory, then removes snapshots beyond keep_snapshots
 * and the log segments the oldest kept one covers. Commit and abort free w.
 */
typedef struct npvdb_snapshot npvdb_snapshot;
npvdb_code npvdb_store_snapshot_begin(npvdb_store *s, uint64_t covered_seq,
                                      npvdb_snapshot **out, npvdb_error *err);
/* Writes one collection (name valid and not added before; cfg its creation
 * config). Borrowed for the call; the collection must stay alive until it
 * returns. */
npvdb_code npvdb_store_snapshot_add(npvdb_snapshot *w, const char *name,
                                    npvdb_collection *c,
                                    const npvdb_config *cfg, npvdb_error *err);
npvdb_code npvdb_store_snapshot_commit(npvdb_snapshot *w,
                                       npvdb_snapshot_info *info,
                                       npvdb_error *err);
void npvdb_store_snapshot_abort(npvdb_snapshot *w); /* NULL is allowed */

#endif /* NPVDB_STORAGE_H */
