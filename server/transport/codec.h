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

/* A collection name as sent: len bytes, NUL-terminated in s (len 0 means
 * "default"). The codec only bounds its length; the server checks it with
 * catalog_check_name (the one implementation of the naming rules) before
 * looking it up, with len, so an embedded NUL is caught there. */
#define CODEC_MAX_NAME 255
typedef struct codec_name {
    char s[CODEC_MAX_NAME + 1];
    size_t len;
} codec_name;

/* A piece of a message: gRPC hands a large message over as several slices,
 * and the query decoders read them where they are (no joining copy). */
typedef struct codec_span {
    const uint8_t *data;
    size_t len;
} codec_span;

/* A filter from the wire as an owned npvdb_filter tree. root is NULL when
 * the request had no filter (an empty Filter message gives a root with no
 * conditions, which passes everything). Free with codec_filter_free. */
typedef struct codec_filter {
    const npvdb_filter *root;
    void *arena_; /* the tree's nodes */
    void *msg_;   /* the unpacked Filter, which owns the strings */
} codec_filter;

/* Decodes a serialized npvdb.v1.Filter. Depth (NPVDB_MAX_FILTER_DEPTH),
 * conditions (NPVDB_MAX_FILTER_CONDS) and match values are bounded on the
 * wire before anything is allocated; a malformed condition is EINVAL naming
 * its place: "filter.must[1].should[0]: condition has nothing set". Strings
 * in a filter may not hold NUL bytes. */
npvdb_code codec_decode_filter(const uint8_t *buf, size_t len,
                               codec_filter *out, npvdb_error *err);
void codec_filter_free(codec_filter *f);

/* Init: the engine configuration plus the optional training sample. */
typedef struct codec_init {
    npvdb_config cfg; /* dim, metric, n_shards, default_nprobe set */
    int replace;
    size_t n_train;
    float *train; /* n_train * dim floats, malloc'ed, NULL if none */
    codec_name collection;
} codec_init;

/* Insert (one stream message): n keys and their rows. */
typedef struct codec_insert {
    size_t n;
    const char *const *keys; /* n NUL-terminated keys, owned by msg_ */
    const float *rows; /* n * dim floats, owned by msg_ (NULL if n == 0) */
    /* n canonical blobs (len 0 = none), malloc'ed; NULL: no payloads. */
    npvdb_payload *payloads;
    codec_name collection; /* as sent; len 0 = the stream's collection */
    void *msg_;            /* internal: the unpacked protobuf message, which
                              holds the only copy of the vectors */
} codec_insert;

/* GetClosest and Search: nq queries, k and nprobe. */
typedef struct codec_query {
    size_t nq;
    uint32_t k;
    uint32_t nprobe;
    float *queries; /* nq * dim floats, malloc'ed */
    codec_name collection;
    codec_filter filter; /* root NULL: no filter */
    int with_payload;
    /* internal, between parse and load: where the queries lie */
    struct {
        const void *spans;
        size_t n, i, off;
    } at_;
    size_t qlen_;
    uint32_t dim_;
    int parsed_;
} codec_query;

/* Delete and Get: a list of keys. */
typedef struct codec_keys {
    size_t n;
    const char *const *keys; /* owned by msg_ */
    codec_name collection;
    int with_payload; /* Get only */
    void *msg_;
} codec_keys;

/* Count: a collection and an optional filter. */
typedef struct codec_count {
    codec_name collection;
    codec_filter filter;
} codec_count;

/* Scroll: limit resolved (0 -> CODEC_SCROLL_DEFAULT), the engine cursor
 * unwrapped (0 = from the start). */
#define CODEC_SCROLL_DEFAULT 256
#define CODEC_CURSOR_LEN 16
typedef struct codec_scroll {
    codec_name collection;
    codec_filter filter;
    uint32_t limit;
    uint64_t cursor;
    int with_vectors, with_payload;
} codec_scroll;

npvdb_code codec_decode_init(const uint8_t *buf, size_t len, codec_init *out,
                             npvdb_error *err);
void codec_init_free(codec_init *r);

/* `dim` is the collection's dimension (1..NPVDB_MAX_DIM). */
npvdb_code codec_decode_insert(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_insert *out, npvdb_error *err);
void codec_insert_free(codec_insert *r);

/* The collection field of an InsertRequest (read before the dimension is
 * known: the stream's first message names its collection). */
npvdb_code codec_insert_collection(const uint8_t *buf, size_t len,
                                   codec_name *out, npvdb_error *err);

/* InsertRequest.payloads (field 4) of a message of n_keys keys: none, or
 * exactly n_keys, each built into a canonical blob (npvdb_payload_build).
 * *out is NULL for none, else n_keys blobs (codec_payloads_free). A Value
 * with nothing set, a non-finite double, oversized names or values are
 * EINVAL naming payloads[i] and the field. */
npvdb_code codec_decode_payloads(const uint8_t *buf, size_t len, size_t n_keys,
                                 npvdb_payload **out, npvdb_error *err);
void codec_payloads_free(npvdb_payload *p, size_t n);

/* GetClosestRequest and SearchRequest share one validation: `dim` is the
 * collection's; a non-zero dim field in the request that differs from it is
 * EINVAL ("query dim X does not match the collection's dim Y"). The queries
 * are copied once, from the message bytes into out->queries. */
npvdb_code codec_decode_query(const uint8_t *buf, size_t len, uint32_t dim,
                              codec_query *out, npvdb_error *err);
npvdb_code codec_decode_search(const uint8_t *buf, size_t len, uint32_t dim,
                               codec_query *out, npvdb_error *err);
void codec_query_free(codec_query *r);

/* The two halves of the query decoders, for a caller that learns the
 * dimension from the request (its collection): parse reads every field but
 * the queries (collection, filter, with_payload, k, nprobe; malformed
 * framing is EINVAL), load checks dim, k and the queries against the
 * collection's dim and copies them. The spans must stay valid from parse
 * to load. `what` names the message in errors. */
npvdb_code codec_query_parse_spans(const char *what, const codec_span *spans,
                                   size_t n, codec_query *out,
                                   npvdb_error *err);
npvdb_code codec_query_load(codec_query *q, uint32_t dim, npvdb_error *err);

/* The same decoders over the message spans[0] + spans[1] + ... + spans[n-1]
 * (pieces may be empty; a field may straddle pieces). */
npvdb_code codec_decode_query_spans(const codec_span *spans, size_t n,
                                    uint32_t dim, codec_query *out,
                                    npvdb_error *err);
npvdb_code codec_decode_search_spans(const codec_span *spans, size_t n,
                                     uint32_t dim, codec_query *out,
                                     npvdb_error *err);

/* ---- replies: engine results -> wire bytes ---- */

/* Payload blob -> the bytes of an npvdb.v1.Payload message (its body, no
 * tag or length): the one encoder of payloads in replies. */
size_t codec_payload_size(const npvdb_payload *p);
uint8_t *codec_payload_put(const npvdb_payload *p, uint8_t *out);
/* n payloads as a repeated Payload field number `field` (< 16), appended to
 * a reply packed by protobuf-c (field order does not matter on the wire). */
size_t codec_payloads_field_size(const npvdb_payload *p, size_t n);
uint8_t *codec_payloads_field_put(const npvdb_payload *p, size_t n,
                                  unsigned field, uint8_t *out);

/* With r->payloads set (with_payload), the replies carry one Payload per
 * hit (SearchReply.payloads, GetClosestReply.payloads).
 * The SearchReply of all of r: codec_search_reply_size bytes, written by
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

/* ListCollections carries no fields; this only checks that the bytes are a
 * well-formed message (unknown fields are allowed). */
npvdb_code codec_decode_empty(const uint8_t *buf, size_t len, npvdb_error *err);

/* Info, Snapshot and DropCollection: `string collection = 1` only. */
npvdb_code codec_decode_collection(const uint8_t *buf, size_t len,
                                   codec_name *out, npvdb_error *err);

npvdb_code codec_decode_count(const uint8_t *buf, size_t len, codec_count *out,
                              npvdb_error *err);
void codec_count_free(codec_count *r);

/* limit 0 = CODEC_SCROLL_DEFAULT, over NPVDB_MAX_K is EINVAL; a cursor that
 * is not one codec_scroll_cursor made is EINVAL. */
npvdb_code codec_decode_scroll(const uint8_t *buf, size_t len,
                               codec_scroll *out, npvdb_error *err);
void codec_scroll_free(codec_scroll *r);
/* Wraps the engine's cursor into the opaque next_cursor bytes. */
void codec_scroll_cursor(uint64_t cursor, uint8_t out[CODEC_CURSOR_LEN]);

/* grpc.health.v1.HealthCheckRequest: copies the service name into
 * service[0..cap) (NUL-terminated); a name that does not fit is EINVAL. */
npvdb_code codec_decode_health(const uint8_t *buf, size_t len, char *service,
                               size_t cap, npvdb_error *err);

/* Checks one key of `len` bytes: 1..NPVDB_MAX_KEY_LEN, no NUL, valid UTF-8.
 * `index` only names the key in the message. Exposed for tests. */
npvdb_code codec_check_key(const uint8_t *key, size_t len, size_t index,
                           npvdb_error *err);

#endif /* NPVDB_TRANSPORT_CODEC_H */
