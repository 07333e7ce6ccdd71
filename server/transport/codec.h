/*
 * codec.h -- request bytes -> validated request structs, and the search
 * replies from engine results -> bytes.
 *
 * Pure functions: no gRPC, no locks, no engine calls. Each decoder takes the
 * serialized protobuf message as it came off the wire, unpacks it with
 * protobuf-c, and checks everything that can be checked without the
 * collection's contents: sizes (len == rows * dim * 4), counts, k, keys
 * (1..NPVDB_MAX_KEY_LEN bytes of UTF-8 without NUL, checked on the wire so a
 * NUL cannot silently truncate a key) and NaN/Inf. Vectors are copied once
 * out of the unaligned protobuf `bytes` into an aligned float array.
 *
 * Every decoder returns NPVDB_OK and fills *out (the caller frees it with the
 * matching *_free, also after an error: a failed decode leaves *out empty),
 * or an npvdb_code with err->msg saying what was wrong: NPVDB_EINVAL for bad
 * input, NPVDB_ENOMEM when a copy could not be allocated. These are the
 * functions the fuzz targets in tests/fuzz/transport exercise.
 */
#ifndef NPVDB_TRANSPORT_CODEC_H
#define NPVDB_TRANSPORT_CODEC_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

/* Init: the engine configuration plus the optional training sample. */
typedef struct codec_init {
    npvdb_config cfg; /* dim, metric, n_shards, default_nprobe set */
    int replace;
    size_t n_train;
    float *train; /* n_train * dim floats, malloc'ed, NULL if none */
} codec_init;

/* Insert (one stream message): n keys and their rows. */
typedef struct codec_insert {
    size_t n;
    const char *const *keys; /* n NUL-terminated keys, owned by msg_ */
    const float *rows; /* n * dim floats, owned by msg_ (NULL if n == 0) */
    void *msg_;        /* internal: the unpacked protobuf message, which
                          holds the only copy of the vectors */
} codec_insert;

/* GetClosest and Search: nq queries, k and nprobe. */
typedef struct codec_query {
    size_t nq;
    uint32_t k;
    uint32_t nprobe;
    float *queries; /* nq * dim floats, malloc'ed */
} codec_query;

/* Delete and Get: a list of keys. */
typedef struct codec_keys {
    size_t n;
    const char *const *keys; /* owned by msg_ */
    void *msg_;
} codec_keys;

npvdb_code codec_decode_init(const uint8_t *buf, size_t len, codec_init *out,
                             npvdb_error *err);
void codec_init_free(codec_init *r);

/* `dim` is the collection's dimension (1..NPVDB_MAX_DIM). */
npvdb_code codec_decode_insert(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_insert *out, npvdb_error *err);
void codec_insert_free(codec_insert *r);

/* GetClosestRequest and SearchRequest share one validation: `dim` is the
 * collection's; a non-zero dim field in the request that differs from it is
 * EINVAL ("query dim X does not match the collection's dim Y"). The queries
 * are copied once, from the message bytes into out->queries. */
npvdb_code codec_decode_query(const uint8_t *buf, size_t len, uint32_t dim,
                              codec_query *out, npvdb_error *err);
npvdb_code codec_decode_search(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_query *out, npvdb_error *err);
void codec_query_free(codec_query *r);

/* A piece of a message: gRPC hands a large message over as several slices,
 * and the query decoders read them where they are (no joining copy). */
typedef struct codec_span {
    const uint8_t *data;
    size_t len;
} codec_span;

/* The same decoders over the message spans[0] + spans[1] + ... + spans[n-1]
 * (pieces may be empty; a field may straddle pieces). */
npvdb_code codec_decode_query_spans(const codec_span *spans, size_t n,
                                    uint32_t dim, codec_query *out,
                                    npvdb_error *err);
npvdb_code codec_decode_search_spans(const codec_span *spans, size_t n,
                                     uint32_t dim, codec_query *out,
                                     npvdb_error *err);

/* ---- replies: engine results -> wire bytes ---- */

/* The SearchReply of all of r: codec_search_reply_size bytes, written by
 * codec_search_reply_encode into buf (which must hold that many; returns
 * the bytes written). Encoding sets r's distances past counts[i] to +inf,
 * the contract's padding. Byte for byte what protobuf-c packs. */
size_t codec_search_reply_size(const npvdb_results *r);
size_t codec_search_reply_encode(npvdb_results *r, uint8_t *buf);

/* The GetClosestReply of row `row` of r, as query `query_index`. */
size_t codec_closest_reply_size(const npvdb_results *r, size_t row,
                                uint32_t query_index);
size_t codec_closest_reply_encode(const npvdb_results *r, size_t row,
                                  uint32_t query_index, uint8_t *buf);

npvdb_code codec_decode_delete(const uint8_t *buf, size_t len, codec_keys *out,
                               npvdb_error *err);
npvdb_code codec_decode_get(const uint8_t *buf, size_t len, codec_keys *out,
                            npvdb_error *err);
void codec_keys_free(codec_keys *r);

/* Snapshot and Info requests carry no fields; this only checks that the
 * bytes are a well-formed message (unknown fields are allowed). */
npvdb_code codec_decode_empty(const uint8_t *buf, size_t len, npvdb_error *err);

/* grpc.health.v1.HealthCheckRequest: copies the service name into
 * service[0..cap) (NUL-terminated); a name that does not fit is EINVAL. */
npvdb_code codec_decode_health(const uint8_t *buf, size_t len, char *service,
                               size_t cap, npvdb_error *err);

/* Checks one key of `len` bytes: 1..NPVDB_MAX_KEY_LEN, no NUL, valid UTF-8.
 * `index` only names the key in the message. Exposed for tests. */
npvdb_code codec_check_key(const uint8_t *key, size_t len, size_t index,
                           npvdb_error *err);

#endif /* NPVDB_TRANSPORT_CODEC_H */
