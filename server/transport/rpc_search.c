/*
 * rpc_search.c -- Search (unary): GetClosest for a batch, answered in one
 * SearchReply with packed arrays (counts, flat keys, q x k distances padded
 * with +inf), for clients that pay per message.
 *
 * The reply must fit the message limit. Its size is bounded from below
 * before searching (q * k distances alone), so an impossible request costs
 * no search and no result memory, and computed exactly before it is packed,
 * so an over-limit reply is never allocated whole nor sent: both cases are
 * RESOURCE_EXHAUSTED naming the size, the limit and a query count that fits.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <stdlib.h>

/* Fails res with RESOURCE_EXHAUSTED for a reply of `bytes` for nq queries.
 * `at_least` says the size is a lower bound (checked before the search). */
static void too_big(npvdb_server *s, size_t bytes, size_t nq, int at_least,
                    nt_result *res)
{
    /* Queries differ in key lengths and hit counts: suggest 90% of what the
     * average size would allow, so following the advice works. */
    size_t per_query = nq ? bytes / nq + 1 : bytes;
    size_t fit = s->max_message / per_query / 10 * 9;
    nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                   "the SearchReply for %zu queries would be %s%zu bytes, over "
                   "the %zu-byte message limit: send fewer queries per call "
                   "(about %zu fit), or use GetClosest",
                   nq, at_least ? "at least " : "", bytes, s->max_message,
                   fit ? fit : 1);
}

/* The smallest possible reply: every distance (q * k float32) plus one
 * byte per count; SIZE_MAX on overflow. */
static size_t min_reply_bytes(const codec_query *q)
{
    if (q->nq > (SIZE_MAX - 64) / sizeof(float) / q->k) return SIZE_MAX;
    return q->nq * q->k * sizeof(float) + q->nq + 32;
}

/* Points r at the engine's results: keys flattened into *flat (caller
 * frees), distances borrowed. 0 on success, -1 when out of memory. */
static int fill_reply(npvdb_results *hits, Npvdb__V1__SearchReply *r,
                      char ***flat)
{
    size_t total = 0;
    for (size_t i = 0; i < hits->nq; i++)
        total += hits->counts[i];
    *flat = malloc((total ? total : 1) * sizeof **flat);
    if (!*flat) return -1;
    size_t n = 0;
    for (size_t i = 0; i < hits->nq; i++) {
        size_t row = i * hits->k;
        for (uint32_t j = 0; j < hits->k; j++) {
            if (j < hits->counts[i])
                (*flat)[n++] = (char *)hits->keys[row + j];
            else
                hits->distances[row + j] = INFINITY; /* the contract's pad */
        }
    }
    r->k = hits->k;
    r->n_counts = hits->nq;
    r->counts = hits->counts;
    r->n_keys = n;
    r->keys = *flat;
    r->distances.data = (uint8_t *)hits->distances;
    r->distances.len = hits->nq * hits->k * sizeof(float);
    return 0;
}

/* Packs the reply of `hits` into res unless it would exceed the limit. */
static void reply(npvdb_server *s, npvdb_results *hits, nt_result *res)
{
    Npvdb__V1__SearchReply r = NPVDB__V1__SEARCH_REPLY__INIT;
    char **flat = NULL;
    if (fill_reply(hits, &r, &flat)) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory building the reply of %zu queries",
                       hits->nq);
        return;
    }
    size_t bytes = protobuf_c_message_get_packed_size(&r.base);
    if (bytes > s->max_message)
        too_big(s, bytes, hits->nq, 0, res);
    else
        nt_result_pack(res, &r.base);
    free(flat);
}

static void handle_search(npvdb_server *s, const uint8_t *buf, size_t len,
                          nt_result *res)
{
    codec_query q;
    npvdb_results hits = {0};
    npvdb_error err = {0};
    npvdb_collection *coll = nt_db_acquire(s, NULL, res);
    if (!coll) return;
    int ok = 0;
    if (codec_decode_search(buf, len, npvdb_dim(coll), &q, &err) != NPVDB_OK)
        nt_result_error(res, &err);
    else if (min_reply_bytes(&q) > s->max_message)
        too_big(s, min_reply_bytes(&q), q.nq, 1, res);
    else if (npvdb_search(coll, q.queries, q.nq, q.k, q.nprobe, &hits, &err) !=
             NPVDB_OK)
        nt_result_error(res, &err);
    else
        ok = 1;
    /* The results own copies of the keys: the collection can go. */
    nt_db_release(s);
    codec_query_free(&q);
    if (ok) reply(s, &hits, res);
    npvdb_results_free(&hits);
}

const nt_method nt_rpc_search = {
    .path = "/npvdb.v1.VectorDB/Search",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_search,
};
