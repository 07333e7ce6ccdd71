/*
 * storage.h -- durability for the server's one collection: snapshots (one HDF5
 * file each) and the write-ahead log. Depends on the engine's public header
 * only; knows nothing of gRPC.
 *
 * Protocol the transport follows for every write (Init, Insert message,
 * Delete), holding its own write lock so that log order == apply order:
 *   1. validate the request (npvdb_insert_prepare etc.), 2. npvdb_store_log_*
 *   (append, returns the record's sequence number), 3. apply to the engine,
 *   4. release the lock, 5. npvdb_store_wait_durable(seq) before replying.
 * Step 5 is the group commit: many concurrent calls share one fsync.
 *
 * Thread safety: every function except open/close may be called from any
 * thread concurrently. Ownership is stated at each function.
 */
#ifndef NPVDB_STORAGE_H
#define NPVDB_STORAGE_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

typedef enum npvdb_sync_mode {
    NPVDB_SYNC_ALWAYS = 0,   /* fsync before every acknowledgement (grouped) */
    NPVDB_SYNC_INTERVAL = 1, /* fsync at most every sync_interval_ms */
    NPVDB_SYNC_NONE = 2,     /* leave it to the OS; a crash may lose writes */
} npvdb_sync_mode;

typedef struct npvdb_store_config {
    const char *data_dir; /* created if missing */
    npvdb_sync_mode sync;
    unsigned sync_interval_ms; /* for NPVDB_SYNC_INTERVAL; 0 = 100 */
    unsigned keep_snapshots;   /* newest N kept; 0 = 2 */
    unsigned n_workers;        /* passed to restored collections; 0 = cores */
} npvdb_store_config;

typedef struct npvdb_snapshot_info {
    char path[4096];
    uint64_t vectors;
    uint64_t bytes;
    double seconds;
    uint64_t sequence; /* last log record the snapshot covers */
} npvdb_snapshot_info;

typedef struct npvdb_store npvdb_store;

/* Opens (creating) the data directory, restores the newest valid snapshot,
 * replays the log after it, and opens the log for appending. *out_coll gets
 * the restored collection (caller owns it, npvdb_free) or NULL if there was
 * never an Init. Problems found (corrupt snapshot, torn log tail) are logged
 * to stderr and recovered from; only unusable directories are errors. */
npvdb_store *npvdb_store_open(const npvdb_store_config *cfg,
                              npvdb_collection **out_coll, npvdb_error *err);

/* Syncs the log and frees the store. NULL is allowed. */
void npvdb_store_close(npvdb_store *s);

/* Appends one record; *seq gets its sequence number. The record is durable
 * only after npvdb_store_wait_durable(seq). Arguments are borrowed. */
npvdb_code npvdb_store_log_init(npvdb_store *s, const npvdb_config *cfg,
                                const float *train, size_t n_train,
                                uint64_t *seq, npvdb_error *err);
npvdb_code npvdb_store_log_insert(npvdb_store *s, const char *const *keys,
                                  const float *rows, size_t n, uint32_t dim,
                                  uint64_t *seq, npvdb_error *err);
npvdb_code npvdb_store_log_delete(npvdb_store *s, const char *const *keys,
                                  size_t n, uint64_t *seq, npvdb_error *err);

/* Blocks until record `seq` is on disk (per the sync mode). */
npvdb_code npvdb_store_wait_durable(npvdb_store *s, uint64_t seq,
                                    npvdb_error *err);

/* The sequence number of the last appended record (0 if none). */
uint64_t npvdb_store_last_seq(npvdb_store *s);

/* Log bytes appended since the last snapshot began (or since open): about
 * what a restart would have to replay. Drives automatic snapshots. */
uint64_t npvdb_store_log_bytes(npvdb_store *s);

/* Writes a snapshot of `c` covering every record up to `covered_seq` (the
 * caller reads npvdb_store_last_seq under its write lock, then calls this
 * without the lock: the engine's export is consistent per shard and replaying
 * the log after covered_seq repairs the rest). Written to a temporary name,
 * fsynced, renamed, directory fsynced; then old snapshots beyond
 * keep_snapshots and the log segments it covers are removed. */
npvdb_code npvdb_store_snapshot(npvdb_store *s, npvdb_collection *c,
                                uint64_t covered_seq, npvdb_snapshot_info *info,
                                npvdb_error *err);

#endif /* NPVDB_STORAGE_H */
