/* Fuzzes the C client's reply decoder (client-c/reply.c), payloads
 * included. The first byte picks what the rest is and the request it
 * answers:
 *   mode 0: one Payload message. A payload decoded is encoded again by the
 *           client's own encoder (payload.c), and that must decode to the
 *           same bytes once more (decode . encode is stable);
 *   mode 1: a SearchReply for nq, k from the second byte, with_payload from
 *           the third;
 *   mode 2: a GetClosestReply, reply 0 of nq 1, k from the second byte,
 *           with payloads.
 * Whatever the bytes, the decoder must return OK or INTERNAL (never crash,
 * overread or leak), and a success must be self-consistent. */
#include "payload.h"
#include "reply.h"

#include <stdlib.h>
#include <string.h>

static void payload_round_trip(const npvdb_client_payload *p)
{
    size_t n = npvdb_payload_size(p);
    uint8_t *a = malloc(n + 16), *b = malloc(n + 16);
    if (!a || !b) abort();
    size_t la = (size_t)(npvdb_payload_put(a, 1, p) - a);
    /* Skip the tag and the length: the rest is the Payload message. */
    size_t hdr = la - n;
    npvdb_client_payload *again = NULL;
    npvdb_client_error err;
    if (npvdb_reply_payload(a + hdr, n, &again, &err) != NPVDB_STATUS_OK)
        abort();
    if (npvdb_client_payload_len(again) != npvdb_client_payload_len(p)) abort();
    size_t lb = (size_t)(npvdb_payload_put(b, 1, again) - b);
    if (lb != la || memcmp(a, b, la)) abort();
    npvdb_client_payload_free(again);
    free(a);
    free(b);
}

static void check_results(const npvdb_client_results *r)
{
    for (size_t i = 0; i < r->nq; i++) {
        if (r->counts[i] > r->k) abort();
        for (uint32_t j = 0; j < r->k; j++) {
            const npvdb_client_payload *p =
                npvdb_client_results_payload(r, i, j);
            if ((j < r->counts[i]) != (r->keys[i * r->k + j] != NULL)) abort();
            if (p) payload_round_trip(p);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    int mode = data[0] % 3;
    uint8_t shape = data[1], flags = data[2];
    data += 3;
    size -= 3;
    npvdb_client_error err;
    npvdb_status rc;
    if (mode == 0) {
        npvdb_client_payload *p = NULL;
        rc = npvdb_reply_payload(data, size, &p, &err);
        if (rc != NPVDB_STATUS_OK && (rc != NPVDB_STATUS_INTERNAL || p))
            abort();
        if (p) payload_round_trip(p);
        npvdb_client_payload_free(p);
    } else if (mode == 1) {
        npvdb_client_results r;
        rc = npvdb_reply_search_ex(data, size, shape % 5, (shape >> 4) % 5,
                                   flags & 1, &r, &err);
        if (rc == NPVDB_STATUS_OK)
            check_results(&r);
        else if (rc != NPVDB_STATUS_INTERNAL || r.counts || r.payloads_)
            abort();
        npvdb_client_results_free(&r);
    } else {
        npvdb_client_results r;
        npvdb_reply_collector col;
        if (npvdb_reply_collector_init(&col, &r, 1, 1 + shape % 4) ||
            npvdb_reply_collector_want_payloads(&col))
            abort();
        rc = npvdb_reply_get_closest(&col, 0, data, size, &err);
        if (rc == NPVDB_STATUS_OK) {
            if (npvdb_reply_collector_finish(&col)) abort();
            check_results(&r);
        } else if (rc != NPVDB_STATUS_INTERNAL) {
            abort();
        }
        npvdb_reply_collector_free(&col);
        npvdb_client_results_free(&r);
    }
    return 0;
}
