/*
 * record.h -- the payloads of write-ahead log records: how an Init, an Insert
 * message and a Delete are turned into bytes and back. Framing (header, CRC,
 * sequence numbers) is wal.h's job; this file only knows payloads.
 *
 * Payload layouts, all integers little-endian, floats IEEE-754 little-endian:
 *   INIT   u32 version(1) u32 dim u32 metric u32 n_shards u32 train_per_shard
 *          u32 kmeans_iters u32 default_nprobe u32 0 u64 seed u64 n_train
 *          f32 train[n_train*dim]                       (rows at offset 48)
 *   INSERT u32 dim u32 n f32 rows[n*dim] then n keys    (rows at offset 8)
 *   DELETE u32 n u32 0 then n keys
 *   key    u32 len, len bytes (no NUL inside), one NUL byte
 * The rows sit at 8-aligned offsets so that a payload read at an 8-aligned
 * address is used in place; the decoders copy them when it is not.
 *
 * Decoders distrust every byte: each count and length is checked against the
 * bytes that remain before anything is allocated or read, so any input gives
 * either a decoded record or NPVDB_EINVAL (the fuzz target proves it).
 */
#ifndef NPVDB_STORAGE_RECORD_H
#define NPVDB_STORAGE_RECORD_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

enum rec_type {
    REC_INIT = 1,
    REC_INSERT = 2,
    REC_DELETE = 3,
};

/* Bytes reserved before the payload in an encoded buffer: room for the log
 * record header, so the WAL writes header and payload with one write. */
#define REC_HEADROOM 24u
/* Largest payload accepted (1 GiB): bounds what a corrupt length can ask. */
#define REC_MAX_PAYLOAD (1u << 30)

/* An encoded record: buf[0..REC_HEADROOM) is free for the header, the payload
 * is buf[REC_HEADROOM .. REC_HEADROOM+len), then zero padding up to a multiple
 * of 8. The caller owns buf (free). */
typedef struct rec_buf {
    uint8_t *buf;
    size_t len;
} rec_buf;

/* Arguments are borrowed; on success *out owns a new buffer. Counts and sizes
 * past the format's limits give NPVDB_ELIMIT. */
npvdb_code rec_encode_init(const npvdb_config *cfg, const float *train,
                           size_t n_train, rec_buf *out, npvdb_error *err);
npvdb_code rec_encode_insert(const char *const *keys, const float *rows,
                             size_t n, uint32_t dim, rec_buf *out,
                             npvdb_error *err);
npvdb_code rec_encode_delete(const char *const *keys, size_t n, rec_buf *out,
                             npvdb_error *err);

/* A decoded INIT. train points into the payload or into owned_. */
typedef struct rec_init {
    npvdb_config cfg; /* n_workers is 0: the opener chooses */
    size_t n_train;
    const float *train;
    float *owned_;
} rec_init;

/* A decoded INSERT or DELETE (rows NULL, dim 0). keys[i] point into the
 * payload, which must outlive this struct; the keys array is malloc'ed. */
typedef struct rec_keys {
    uint32_t dim;
    size_t n;
    const float *rows;
    const char **keys;
    float *owned_;
} rec_keys;

npvdb_code rec_decode_init(const uint8_t *p, size_t len, rec_init *out,
                           npvdb_error *err);
npvdb_code rec_decode_insert(const uint8_t *p, size_t len, rec_keys *out,
                             npvdb_error *err);
npvdb_code rec_decode_delete(const uint8_t *p, size_t len, rec_keys *out,
                             npvdb_error *err);
void rec_init_free(rec_init *r);
void rec_keys_free(rec_keys *r);

#endif /* NPVDB_STORAGE_RECORD_H */
