/*
 * reply.h -- the client's decoders of the search replies, straight from the
 * wire bytes into npvdb_client_results (internal to the client library).
 *
 * Why not protobuf-c's unpack: a 10,000-query SearchReply holds 100,000
 * keys, and unpack mallocs each one, which the caller then copies and frees
 * again. These decoders walk the protobuf wire format once and copy each key
 * straight into the results' arena: one allocation per reply, not one per
 * key. They accept what any conforming encoder may send (fields in any
 * order, unknown fields, packed or unpacked repeated numbers, a repeated
 * scalar field split in several runs) and check the reply against the
 * request (nq, k) before trusting a single count, so a broken or hostile
 * server gets NPVDB_STATUS_INTERNAL, never an overread.
 *
 * Pure functions: no gRPC. Exposed for the unit tests (tests/client).
 */
#ifndef NPVDB_CLIENT_REPLY_H
#define NPVDB_CLIENT_REPLY_H

#include "npvdb_client.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes a SearchReply of `len` bytes answering nq queries with k into
 * *out (zeroed first; on success it owns its arrays, on error it is freed
 * and zeroed). Slots past counts[i] are NULL / 0, as get_closest leaves
 * them. `err` may be NULL. */
npvdb_status npvdb_reply_search(const uint8_t *buf, size_t len, size_t nq,
                                uint32_t k, npvdb_client_results *out,
                                npvdb_client_error *err);

/* Results of a GetClosest being received: one reply at a time goes into
 * the caller's results `r` (nq, k, counts, distances allocated by
 * npvdb_reply_collector_init); keys are arena offsets until
 * npvdb_reply_collector_finish, because the arena moves as it grows. */
typedef struct npvdb_reply_collector {
    npvdb_client_results *r;
    size_t *key_off; /* nq*k, SIZE_MAX for an empty slot */
    size_t arena_len, arena_cap;
} npvdb_reply_collector;

/* 0 on success; -1 when out of memory (then free with _collector_free and
 * npvdb_client_results_free). */
int npvdb_reply_collector_init(npvdb_reply_collector *col,
                               npvdb_client_results *r, size_t nq, uint32_t k);

/* Decodes GetClosestReply number `i` (the i-th message of the stream) of
 * `len` bytes into the collector: it must have query_index i, at most k
 * keys and as many distances. */
npvdb_status npvdb_reply_get_closest(npvdb_reply_collector *col, size_t i,
                                     const uint8_t *buf, size_t len,
                                     npvdb_client_error *err);

/* Turns the arena offsets into key pointers; 0 on success, -1 when out of
 * memory. */
int npvdb_reply_collector_finish(npvdb_reply_collector *col);

/* Frees the collector's own state (not the results). */
void npvdb_reply_collector_free(npvdb_reply_collector *col);

#endif /* NPVDB_CLIENT_REPLY_H */
