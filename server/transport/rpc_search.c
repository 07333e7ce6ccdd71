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

#include <grpc/byte_buffer_reader.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- received messages as spans (declared in internal.h) ---- */

int nt_message_open(nt_call *c, nt_message *m)
{
    grpc_byte_buffer *bb = c->recv;
    memset(m, 0, sizeof *m);
    m->joined = grpc_empty_slice();
    if (bb->type == GRPC_BB_RAW &&
        bb->data.raw.compression == GRPC_COMPRESS_NONE) {
        const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
        m->spans = malloc((sb->count ? sb->count : 1) * sizeof *m->spans);
        if (!m->spans) return -1;
        for (size_t i = 0; i < sb->count; i++)
            m->spans[i] = (codec_span){GRPC_SLICE_START_PTR(sb->slices[i]),
                                       GRPC_SLICE_LENGTH(sb->slices[i])};
        m->n = sb->count;
        return 0;
    }
    /* Compressed: gRPC's reader inflates it into one slice. */
    m->spans = malloc(sizeof *m->spans);
    if (!m->spans) return -1;
    grpc_byte_buffer_reader r;
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        m->joined = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    m->spans[0] = (codec_span){GRPC_SLICE_START_PTR(m->joined),
                               GRPC_SLICE_LENGTH(m->joined)};
    m->n = 1;
    return 0;
}

void nt_message_close(nt_call *c, nt_message *m)
{
    free(m->spans);
    grpc_slice_unref(m->joined);
    memset(m, 0, sizeof *m);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
}

/* ---- Search ---- */

/* Encodes the reply of `hits` into res unless it would exceed the limit. */
static void reply(npvdb_server *s, npvdb_results *hits, nt_result *res)
{
    size_t bytes = codec_search_reply_size(hits);
    if (bytes > s->max_message) {
        too_big(s, bytes, hits->nq, 0, res);
        return;
    }
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory building the reply of %zu queries",
                       hits->nq);
        return;
    }
    size_t n = codec_search_reply_encode(hits, buf);
    grpc_slice sl = grpc_slice_new(buf, n, free);
    res->reply = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
}

/* The engine's search parameters of a decoded query (the call owns the
 * queries: a cosine collection normalises them in place). */
npvdb_search_params nt_search_params(const codec_query *q)
{
    npvdb_search_params p = {0};
    p.nprobe = q->nprobe;
    p.filter = q->filter.root;
    p.with_payload = q->with_payload;
    p.inplace = 1;
    return p;
}

static void handle_search(nt_call *c, const codec_span *msg, size_t n,
                          nt_result *res)
{
    npvdb_server *s = c->srv;
    codec_query q;
    npvdb_results hits = {0};
    npvdb_error err = {0};
    catalog_ref ref;
    if (codec_query_parse_spans("SearchRequest", msg, n, &q, &err) !=
        NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    int ok = 0;
    if (!nt_acquire(s, &q.collection, &ref, res)) {
        codec_query_free(&q);
        return;
    }
    npvdb_search_params p = nt_search_params(&q);
    nt_call_stop_params(c, &p);
    /* Keys and payloads are bounded before they are copied: a 256-byte
     * request must not allocate a gigabyte of them to find out. */
    size_t key_bytes = 0;
    p.max_result_bytes = s->max_message;
    p.result_bytes = &key_bytes;
    if (codec_query_load(&q, npvdb_dim(ref.coll), &err) != NPVDB_OK)
        nt_result_error(res, &err);
    else if (min_reply_bytes(&q) > s->max_message)
        too_big(s, min_reply_bytes(&q), q.nq, 1, res);
    else if (npvdb_search_ex(ref.coll, q.queries, q.nq, q.k, &p, &hits, &err) ==
             NPVDB_ELIMIT)
        too_big(s, min_reply_bytes(&q) + key_bytes, q.nq, 1, res);
    else if (err.code != NPVDB_OK)
        nt_result_error(res, &err);
    else
        ok = 1;
    /* The results own copies of the keys: the collection can go. */
    nt_release(s, &ref);
    codec_query_free(&q);
    if (ok) reply(s, &hits, res);
    npvdb_results_free(&hits);
}

/* Like nt_unary_start, but the request is decoded from the received slices
 * where they lie: a 10,000-query request is 5 MB, and joining its slices
 * first would cost a copy (and fresh pages) for nothing. */
static void start(nt_call *c)
{
    nt_result res = {0};
    nt_message m;
    if (!c->recv)
        nt_result_fail(&res, GRPC_STATUS_INVALID_ARGUMENT,
                       "missing request message");
    else if (nt_message_open(c, &m))
        nt_result_fail(&res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory reading the request");
    else {
        handle_search(c, m.spans, m.n, &res);
        nt_message_close(c, &m);
    }
    nt_call_finish(c, &res);
}

const nt_method nt_rpc_search = {
    .path = "/npvdb.v1.VectorDB/Search",
    .call_size = sizeof(nt_call),
    .start = start,
};
