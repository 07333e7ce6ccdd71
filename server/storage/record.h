/*
 * record.h -- the payloads of write-ahead log records: how a create (Init),
 * an Insert message, a Delete and a drop are turned into bytes and back, each
 * tagged with its collection. Framing (header, CRC, sequence numbers) is
 * wal.h's job; this file only knows payloads.
 *
 * Layouts, all integers little-endian, floats IEEE-754 little-endian; `name`
 * is a collection name (1..255 bytes of [A-Za-z0-9_.-]) followed by zero
 * bytes up to a multiple of 8 (the padding must be zero):
 *   INIT    (type 1) u32 version u32 dim u32 metric u32 n_shards
 *           u32 train_per_shard u32 kmeans_iters u32 default_nprobe
 *           u32 name_len u64 seed u64 n_train, then
 *           version 1: (name_len 0: collection "default") f32 train[]
 *           version 2: name, f32 train[n_train*dim]
 *           version 3: name, index (n_train 0: the sample's centroids
 *           replace the sample, so a replay runs no k-means)
 *   INSERT  (type 2, v1, collection "default")
 *           u32 dim u32 n f32 rows[n*dim] then n keys      (rows at 8)
 *   DELETE  (type 3, v1, collection "default") u32 n u32 0 then n keys
 *   INSERT2 (type 4) u32 dim u32 n u32 flags u32 name_len, name,
 *           f32 rows[n*dim], n keys, then if flags bit 0 (payloads):
 *           u32 plen[n], the n payload blobs back to back (blob i is plen[i]
 *           bytes, 0 = none; each is a canonical npvdb_payload, npvdb.h)
 *   DELETE2 (type 5) u32 n u32 name_len, name, n keys
 *   DROP    (type 6) u32 0 u32 name_len, name
 *   TRAIN   (type 7) u32 version (1) u32 dim u32 name_len u32 0, name, index:
 *           the collection trained (automatically) at this point of its
 *           writes; a replay installs the index instead of training
 *   RESHARD (type 8) u32 version (2) u32 dim u32 name_len u32 kind, name,
 *           u32 shard u32 n_shards (before the change; version 1: 0, not
 *           known), then for kind 1 (split) f32 centroids[2*dim]:
 *           one split or merge the collection made at this point of its
 *           writes (npvdb_reshard); a replay applies it without k-means
 *   index   u32 n_shards u32 n_groups f32 centroids[n_shards*dim]
 *           f32 group_centres[n_groups*dim], then if n_groups > 0
 *           u32 group_of[n_shards] (npvdb_index: the router's grouping)
 *   key     u32 len, len bytes (no NUL inside), one NUL byte
 * The rows sit at 8-aligned offsets (the fixed part and the padded name are
 * multiples of 8) so that a payload read at an 8-aligned address is used in
 * place; the decoders copy them when it is not. Payload blobs are used in
 * place (byte strings, no alignment needed).
 *
 * Decoders distrust every byte: each count and length is checked against the
 * bytes that remain before anything is allocated or read, names and payload
 * blobs are validated, so any input gives either a decoded record or
 * NPVDB_EINVAL (the fuzz target proves it).
 */
#ifndef NPVDB_STORAGE_RECORD_H
#define NPVDB_STORAGE_RECORD_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

enum rec_type {
    REC_INIT = 1,
    REC_INSERT = 2, /* v1: collection "default", no payloads */
    REC_DELETE = 3, /* v1: collection "default" */
    REC_INSERT2 = 4,
    REC_DELETE2 = 5,
    REC_DROP = 6,
    REC_TRAIN = 7,
    REC_RESHARD = 8,
};

#define REC_MAX_NAME 255
#define REC_DEFAULT_NAME "default"

/* Bytes reserved before the payload in an encoded buffer: room for the log
 * record header, so the WAL writes header and payload with one write. */
#define REC_HEADROOM 24u
/* Largest payload accepted (1 GiB): bounds what a corrupt length can ask. */
#define REC_MAX_PAYLOAD (1u << 30)

/* An encoded record: buf[0..REC_HEADROOM) is free for the header, the payload
 * is buf[REC_HEADROOM .. REC_HEADROOM+len), then zero padding up to a multiple
 * of 8. type is its rec_type. The caller owns buf (free). */
typedef struct rec_buf {
    uint8_t *buf;
    size_t len;
    uint8_t type;
} rec_buf;

/* 1 if name[0..len) is a valid collection name (1..255 bytes of
 * [A-Za-z0-9_.-]), else 0. The one copy of the rule. */
int rec_name_valid(const char *name, size_t len);

/* Arguments are borrowed; on success *out owns a new buffer. A bad name is
 * NPVDB_EINVAL; counts and sizes past the format's limits NPVDB_ELIMIT. */
npvdb_code rec_encode_init(const char *name, const npvdb_config *cfg,
                           const float *train, size_t n_train, rec_buf *out,
                           npvdb_error *err);
/* payloads NULL (or every len 0): no payload section. */
npvdb_code rec_encode_insert(const char *name, const char *const *keys,
                             const float *rows, const npvdb_payload *payloads,
                             size_t n, uint32_t dim, rec_buf *out,
                             npvdb_error *err);
npvdb_code rec_encode_delete(const char *name, const char *const *keys,
                             size_t n, rec_buf *out, npvdb_error *err);
npvdb_code rec_encode_drop(const char *name, rec_buf *out, npvdb_error *err);
/* INIT version 3: a collection created already trained (ix borrowed). */
npvdb_code rec_encode_init_index(const char *name, const npvdb_config *cfg,
                                 const npvdb_index *ix, rec_buf *out,
                                 npvdb_error *err);
npvdb_code rec_encode_train(const char *name, const npvdb_index *ix,
                            rec_buf *out, npvdb_error *err);

/* A decoded INIT. train points into the payload or into owned_; a version 3
 * record has has_index and its index (owned, copied out of the record). */
typedef struct rec_init {
    char name[REC_MAX_NAME + 1];
    npvdb_config cfg; /* n_workers 0, workers NULL: the opener chooses */
    size_t n_train;
    const float *train;
    float *owned_;
    int has_index;
    npvdb_index index;
} rec_init;

/* RESHARD (op borrowed). */
npvdb_code rec_encode_reshard(const char *name, const npvdb_reshard *op,
                              rec_buf *out, npvdb_error *err);

/* A decoded RESHARD; op.centroids is owned (copied out of the record). */
typedef struct rec_reshard {
    char name[REC_MAX_NAME + 1];
    npvdb_reshard op;
} rec_reshard;
npvdb_code rec_decode_reshard(const uint8_t *p, size_t len, rec_reshard *out,
                              npvdb_error *err);
void rec_reshard_free(rec_reshard *r);

/* A decoded TRAIN; the index is owned (copied out of the record). */
typedef struct rec_train {
    char name[REC_MAX_NAME + 1];
    npvdb_index index;
} rec_train;

/* A decoded INSERT, INSERT2, DELETE or DELETE2 (rows NULL and dim 0 for a
 * delete). keys[i] and payloads[i].data point into the record, which must
 * outlive this struct; the keys and payloads arrays are malloc'ed (payloads
 * NULL when the record has none). */
typedef struct rec_keys {
    char name[REC_MAX_NAME + 1];
    uint32_t dim;
    size_t n;
    const float *rows;
    const char **keys;
    npvdb_payload *payloads;
    float *owned_;
} rec_keys;

npvdb_code rec_decode_init(const uint8_t *p, size_t len, rec_init *out,
                           npvdb_error *err);
/* type: REC_INSERT, REC_INSERT2, REC_DELETE or REC_DELETE2. */
npvdb_code rec_decode_keys(uint8_t type, const uint8_t *p, size_t len,
                           rec_keys *out, npvdb_error *err);
/* DROP: name gets the collection's name (NUL-terminated). */
npvdb_code rec_decode_drop(const uint8_t *p, size_t len,
                           char name[REC_MAX_NAME + 1], npvdb_error *err);
npvdb_code rec_decode_train(const uint8_t *p, size_t len, rec_train *out,
                            npvdb_error *err);
void rec_init_free(rec_init *r);
void rec_train_free(rec_train *r);
void rec_keys_free(rec_keys *r);

#endif /* NPVDB_STORAGE_RECORD_H */
