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
 * Payloads (npvdb.v1.Payload) are decoded by hand too, each into one
 * malloc'ed block (payload.h): protobuf-c would cut a string at a NUL
 * byte, which a payload string may hold.
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

/* npvdb_reply_search, and with `with_payload` the reply's payloads too:
 * one per key (field 5, flat as the keys), which go to out->payloads_
 * beside their keys. */
npvdb_status npvdb_reply_search_ex(const uint8_t *buf, size_t len, size_t nq,
                                   uint32_t k, int with_payload,
                                   npvdb_client_results *out,
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

/* Makes the collector expect one payload per hit in every reply (after
 * _init); 0, or -1 when out of memory. */
int npvdb_reply_collector_want_payloads(npvdb_reply_collector *col);

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

/* ---- payloads ---- */

/* Decodes one Payload message (npvdb.v1.Payload) of `len` bytes: *out gets
 * a new payload (freed with npvdb_client_payload_free, or with the results
 * it is put in), or NULL when it has no fields. INTERNAL when malformed:
 * bad wire format, an entry without a value, a name given twice. */
npvdb_status npvdb_reply_payload(const uint8_t *buf, size_t len,
                                 npvdb_client_payload **out,
                                 npvdb_client_error *err);

/* Decodes every occurrence of the repeated Payload field `field` of a
 * reply into slots[0..), at most n_slots of them (more is INTERNAL);
 * *n_found gets how many. On error the slots decoded so far stay for the
 * caller to free. `what` names the call in messages. */
npvdb_status npvdb_reply_payloads(const uint8_t *buf, size_t len,
                                  uint32_t field, const char *what,
                                  npvdb_client_payload **slots, size_t n_slots,
                                  size_t *n_found, npvdb_client_error *err);

#endif /* NPVDB_CLIENT_REPLY_H */
