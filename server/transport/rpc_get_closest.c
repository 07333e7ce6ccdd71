/*
 * rpc_get_closest.c -- GetClosest (server-streaming): one reply per query, in
 * order.
 *
 * Queries are searched in chunks (at most CHUNK_QUERIES queries and
 * CHUNK_HITS results at a time, their replies at most CHUNK_BYTES) so a
 * large request does not hold every result in memory at once, yet the
 * engine still gets batches big enough for BLAS. A call thus holds at most
 * one chunk unsent, however slowly its client reads. Searches run on the
 * engine pool; sending the replies of a searched chunk happens on the
 * polling threads. The collection lock is held per chunk only; if Init replaces
 * the collection between two chunks the call ends with ABORTED.
 *
 * Speed: the request's queries are read from the received slices where they
 * lie. A chunk's replies are encoded back to back into one buffer right
 * after its search (by hand, from the results' key lengths; the engine's
 * results are freed then), and each reply is sent as a sub-slice of it, so a
 * reply costs no copy and no data allocation. Every reply but the last of a
 * chunk carries GRPC_WRITE_BUFFER_HINT: its batch completes once gRPC has
 * buffered it and gRPC coalesces the replies into few writes, instead of one
 * write and one wait per reply. gRPC still holds back a completion when its
 * buffer is full or the client's flow-control window is closed, so the client's
 * reading speed remains the back-pressure. The last reply of the call travels
 * in the final batch with the status, saving a round trip per call.
 */
#include "internal.h"

#include "codec.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_QUERIES 16384
#define CHUNK_HITS (1u << 20)
#define CHUNK_BYTES ((size_t)4 << 20)

typedef struct closest_call {
    nt_call base;
    codec_query q;
    uint32_t dim;
    uint64_t gen;
    size_t next;        /* index of the next query to send */
    size_t chunk_start; /* first query of the current chunk */
    size_t chunk_n;     /* queries in the current chunk */
    grpc_slice packed;  /* the chunk's replies, back to back */
    size_t *offsets;    /* reply i is packed[offsets[i]..offsets[i+1]) */
    size_t max_chunk;   /* queries per chunk; shrinks when keys are long */
} closest_call;

static size_t chunk_size(const closest_call *cc)
{
    /* Payload copies ride with the hits: fewer hits per chunk then. */
    size_t hits = cc->q.with_payload ? CHUNK_HITS / 16 : CHUNK_HITS;
    size_t n = hits / cc->q.k;
    if (n == 0) n = 1;
    if (n > CHUNK_QUERIES) n = CHUNK_QUERIES;
    if (cc->max_chunk && n > cc->max_chunk) n = cc->max_chunk;
    if (n > cc->q.nq - cc->next) n = cc->q.nq - cc->next;
    return n;
}

/* Encodes every reply of `hits` (the chunk starting at cc->chunk_start)
 * into cc->packed; fails res when out of memory. */
static void pack_chunk(closest_call *cc, const npvdb_results *hits,
                       nt_result *res)
{
    size_t total = 0;
    cc->offsets[0] = 0;
    for (size_t i = 0; i < hits->nq; i++) {
        total +=
            codec_closest_reply_size(hits, i, (uint32_t)(cc->chunk_start + i));
        cc->offsets[i + 1] = total;
    }
    uint8_t *buf = malloc(total ? total : 1);
    if (!buf) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory packing %zu replies (%zu bytes)",
                       hits->nq, total);
        return;
    }
    for (size_t i = 0; i < hits->nq; i++)
        codec_closest_reply_encode(hits, i, (uint32_t)(cc->chunk_start + i),
                                   buf + cc->offsets[i]);
    /* Sub-slices handed to gRPC keep it alive past this chunk. */
    grpc_slice_unref(cc->packed);
    cc->packed = grpc_slice_new(buf, total, free);
    cc->chunk_n = hits->nq;
}

/* The chunk's search: its keys and payloads must fit CHUNK_BYTES (one
 * query's may take up to the message limit). *bytes gets what they take. */
static npvdb_code search_n(closest_call *cc, npvdb_collection *coll, size_t n,
                           npvdb_results *hits, size_t *bytes, npvdb_error *err)
{
    /* The call owns its decoded queries and reads each chunk once. */
    npvdb_search_params p = nt_search_params(&cc->q);
    nt_call_stop_params(&cc->base, &p);
    p.max_result_bytes = n > 1 ? CHUNK_BYTES : cc->base.srv->max_message;
    p.result_bytes = bytes;
    return npvdb_search_ex(coll, cc->q.queries + cc->next * cc->dim, n, cc->q.k,
                           &p, hits, err);
}

/* Searches and packs the chunk starting at cc->next on `coll` (held). A
 * chunk whose keys are too long for CHUNK_BYTES is searched again with as
 * many queries as fit by the measured size, and later chunks keep that
 * size (the queries are prepared in place at most once: a cosine
 * normalisation of normalised rows changes nothing). */
static void search_chunk(closest_call *cc, npvdb_collection *coll,
                         nt_result *res)
{
    npvdb_error err = {0};
    npvdb_results hits = {0};
    size_t n = chunk_size(cc), bytes = 0;
    npvdb_code rc;
    cc->chunk_start = cc->next;
    cc->chunk_n = 0;
    while ((rc = search_n(cc, coll, n, &hits, &bytes, &err)) == NPVDB_ELIMIT &&
           n > 1) {
        size_t fit = (size_t)((double)n * CHUNK_BYTES / (double)bytes * 0.9);
        cc->max_chunk = n = fit < 1 ? 1 : fit < n ? fit : n / 2;
    }
    if (rc != NPVDB_OK)
        nt_result_error(res, &err);
    else
        pack_chunk(cc, &hits, res);
    npvdb_results_free(&hits);
}

static void next_chunk(closest_call *cc, nt_result *res)
{
    catalog_ref ref;
    if (!nt_acquire(cc->base.srv, &cc->q.collection, &ref, res)) return;
    if (ref.gen != cc->gen)
        nt_result_fail(res, GRPC_STATUS_ABORTED,
                       "the collection was replaced by Init during this "
                       "GetClosest (after %zu of %zu replies)",
                       cc->next, cc->q.nq);
    else
        search_chunk(cc, ref.coll, res);
    nt_release(cc->base.srv, &ref);
}

/* The packed reply of query cc->next, as a byte buffer (owned). */
static grpc_byte_buffer *reply_buffer(closest_call *cc)
{
    size_t row = cc->next - cc->chunk_start;
    grpc_slice s =
        grpc_slice_sub(cc->packed, cc->offsets[row], cc->offsets[row + 1]);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Sends the reply of query cc->next (with the status if it is the last). */
static void send_next(closest_call *cc)
{
    nt_result res = {0};
    if (cc->next >= cc->chunk_start + cc->chunk_n) {
        next_chunk(cc, &res);
        if (res.status != GRPC_STATUS_OK) {
            nt_call_finish(&cc->base, &res);
            return;
        }
    }
    grpc_byte_buffer *bb = reply_buffer(cc);
    if (cc->next + 1 == cc->q.nq) {
        res.reply = bb;
        nt_call_finish(&cc->base, &res);
        return;
    }
    /* The last reply of a chunk flushes: the next search may take a while. */
    int last_of_chunk = cc->next + 1 == cc->chunk_start + cc->chunk_n;
    nt_call_send(&cc->base, bb, last_of_chunk ? 0 : GRPC_WRITE_BUFFER_HINT);
}

static void send_next_deferred(nt_call *c)
{
    send_next((closest_call *)c);
}

/* On the polling thread: the next reply is packed already, or its chunk is
 * engine work for the pool. */
static void step(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    cc->next++;
    if (cc->next >= cc->chunk_start + cc->chunk_n)
        nt_call_defer(c, send_next_deferred);
    else
        send_next(cc);
}

/* Loads the parsed request's queries for `coll` (held) and searches the
 * first chunk. */
static void first_chunk(closest_call *cc, npvdb_collection *coll,
                        nt_result *res)
{
    npvdb_error err = {0};
    cc->dim = npvdb_dim(coll);
    if (codec_query_load(&cc->q, cc->dim, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    size_t n = chunk_size(cc);
    cc->offsets = malloc((n + 1) * sizeof *cc->offsets);
    if (!cc->offsets) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    search_chunk(cc, coll, res);
}

static void start(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    nt_result res = {0};
    nt_message m;
    cc->packed = grpc_empty_slice();
    if (!c->recv) {
        nt_result_fail(&res, GRPC_STATUS_INVALID_ARGUMENT,
                       "missing request message");
    } else if (nt_message_open(c, &m)) {
        nt_result_fail(&res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory reading the request");
    } else {
        npvdb_error err = {0};
        catalog_ref ref;
        if (codec_query_parse_spans("GetClosestRequest", m.spans, m.n, &cc->q,
                                    &err) != NPVDB_OK) {
            nt_result_error(&res, &err);
        } else if (nt_acquire(c->srv, &cc->q.collection, &ref, &res)) {
            cc->gen = ref.gen;
            first_chunk(cc, ref.coll, &res);
            nt_release(c->srv, &ref);
        }
        nt_message_close(c, &m);
    }
    if (res.status != GRPC_STATUS_OK)
        nt_call_finish(c, &res);
    else
        send_next(cc);
}

static void cleanup(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    codec_query_free(&cc->q);
    grpc_slice_unref(cc->packed);
    free(cc->offsets);
}

const nt_method nt_rpc_get_closest = {
    .path = "/npvdb.v1.VectorDB/GetClosest",
    .call_size = sizeof(closest_call),
    .start = start,
    .step = step,
    .cleanup = cleanup,
};
