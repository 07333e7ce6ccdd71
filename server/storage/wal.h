/*
 * wal.h -- the write-ahead log: numbered records in segment files
 * wal-<first seq, 20 digits>.log in the data directory.
 *
 * Segment file: 16-byte header "NPVDBWAL" u32 version(1) u32 0, then records.
 * Record: 24-byte header, payload, zero padding to a multiple of 8:
 *   u32 magic 0x4C575056 ("VPWL")  u8 type  u8[3] zero  u32 payload length
 *   u64 sequence  u32 crc = CRC32C(payload, then header bytes 0..20)
 * The CRC covers the header too, so a flipped bit in a length, type or
 * sequence is caught like one in the payload. Sequence numbers increase by
 * exactly one from record to record, across segments.
 *
 * Recovery reads segments in order and stops at the first record that is cut
 * off, fails its CRC, or breaks the sequence; the file is truncated there
 * (logged with the offset) and later segments are set aside as *.corrupt, so
 * new records always follow the last good one.
 *
 * Durability: wal_append only writes (page cache); wal_wait_durable(seq)
 * makes record seq durable per the sync mode. Under NPVDB_SYNC_ALWAYS one
 * waiter becomes the leader and fsyncs for every record appended so far while
 * the others wait on a condition variable: concurrent writers share fsyncs.
 * A failed fsync leaves the log unusable (Linux may drop the dirty pages, so a
 * retry could falsely succeed); every later call returns an error.
 *
 * Thread safety: all functions but open/close may be called concurrently.
 */
#ifndef NPVDB_STORAGE_WAL_H
#define NPVDB_STORAGE_WAL_H

#include "hist.h"
#include "npvdb.h"
#include "record.h"
#include "storage.h"

#include <stddef.h>
#include <stdint.h>

#define WAL_SEG_HDR 16u
#define WAL_REC_HDR 24u
#define WAL_MAGIC 0x4C575056u
#define WAL_DEFAULT_SEGMENT_BYTES (64ull << 20)

typedef struct wal wal;

typedef struct wal_options {
    const char *dir;        /* existing directory; borrowed during open */
    uint64_t segment_bytes; /* roll past this size; 0 = 64 MiB */
    npvdb_sync_mode sync;
    unsigned interval_ms; /* NPVDB_SYNC_INTERVAL; 0 = 100 */
} wal_options;

/* A record as read back. payload is borrowed (valid during the callback). */
typedef struct wal_record {
    uint8_t type;
    uint64_t seq;
    const uint8_t *payload;
    uint32_t len;
} wal_record;

/* Called for each record with seq > after_seq, in order. A non-OK return
 * stops the replay and fails wal_open with that error. */
typedef npvdb_code (*wal_apply_fn)(void *ctx, const wal_record *rec,
                                   npvdb_error *err);

/* Outcome of scanning a buffer of records. */
typedef struct wal_scan {
    size_t good_end;    /* bytes of whole, valid records from the start */
    uint64_t last_seq;  /* seq of the last valid record, 0 if none */
    uint64_t n_records; /* valid records seen */
    const char *stop;   /* NULL at a clean end, else why the scan stopped */
} wal_scan;

/* Parses records in buf[0..len) (no segment header), expecting the first to
 * have sequence `expect_seq` (0 = any). Calls fn (may be NULL) for each valid
 * record with seq > after_seq; stops at the first bad one. Pure: no I/O.
 * Returns fn's error if it failed, else NPVDB_OK with *out filled. */
npvdb_code wal_scan_buffer(const uint8_t *buf, size_t len, uint64_t expect_seq,
                           uint64_t after_seq, wal_apply_fn fn, void *ctx,
                           wal_scan *out, npvdb_error *err);

/* Lowest sequence number the log directory can still replay (the first seq
 * of the oldest segment), or 0 when there is no segment. */
npvdb_code wal_first_seq(const char *dir, uint64_t *first, npvdb_error *err);

/* Opens the log in dir: replays every record with seq > after_seq through fn,
 * repairs a torn tail, and positions appends after the last good record.
 * Sequence numbers continue from max(last record, after_seq). When the
 * oldest record kept is newer than after_seq + 1, records are missing and
 * open fails with NPVDB_ESTATE. Caller owns the result (wal_close). */
wal *wal_open(const wal_options *opt, uint64_t after_seq, wal_apply_fn fn,
              void *ctx, npvdb_error *err);

/* Syncs (whatever the mode) and frees. NULL is allowed. */
void wal_close(wal *w);

/* Appends the encoded record r (its headroom gets the header). On success
 * *seq is its number; on a write error the file is cut back so that the log
 * ends at the previous record, and the error (ELIMIT for a full disk) is
 * returned. r stays owned by the caller. */
npvdb_code wal_append(wal *w, uint8_t type, rec_buf *r, uint64_t *seq,
                      npvdb_error *err);

/* Blocks until record seq is durable per the sync mode. */
npvdb_code wal_wait_durable(wal *w, uint64_t seq, npvdb_error *err);

/* fsyncs everything appended so far, whatever the mode. */
npvdb_code wal_sync(wal *w, npvdb_error *err);

uint64_t wal_last_seq(wal *w);

/* fsyncs of the log done so far (group commit makes this < records). */
uint64_t wal_fsyncs(wal *w);
/* The time of each group-commit fsync (read without the lock). */
const npvdb_hist *wal_fsync_hist(const wal *w);

/* Starts a new segment if the active one holds records and all of them are
 * <= seq, so that it can be removed once a snapshot covering seq is kept. */
npvdb_code wal_roll_if_covered(wal *w, uint64_t seq, npvdb_error *err);

/* Removes segments whose records are all <= seq (never the active one). */
npvdb_code wal_remove_upto(wal *w, uint64_t seq, npvdb_error *err);

#endif /* NPVDB_STORAGE_WAL_H */
