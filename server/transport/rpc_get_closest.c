/*
 * rpc_get_closest.c -- GetClosest (server-streaming): one reply per query, in
 * order, each SEND_MESSAGE awaited before the next (the client's reading
 * speed is the back-pressure).
 *
 * Queries are searched in chunks (at most CHUNK_QUERIES queries and
 * CHUNK_HITS results at a time) so a large request does not hold every
 * result in memory at once, yet the engine still gets batches big enough
 * for BLAS. The collection lock is held per chunk only; if Init replaces the
 * collection between two chunks the call ends with ABORTED.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <string.h>

#define CHUNK_QUERIES 4096
#define CHUNK_HITS (1u << 20)

typedef struct closest_call {
    nt_call base;
    codec_query q;
    uint32_t dim;
    uint64_t gen;
    size_t next;        /* index of the next query to send */
    size_t chunk_start; /* first query of `res` */
    npvdb_results res;  /* results of the current chunk */
} closest_call;

static size_t chunk_size(const closest_call *cc)
{
    size_t n = CHUNK_HITS / cc->q.k;
    if (n == 0) n = 1;
    if (n > CHUNK_QUERIES) n = CHUNK_QUERIES;
    if (n > cc->q.nq - cc->next) n = cc->q.nq - cc->next;
    return n;
}

/* Searches the chunk starting at cc->next on `coll` (read lock held). */
static void search_chunk(closest_call *cc, npvdb_collection *coll,
                         nt_result *res)
{
    npvdb_error err = {0};
    size_t n = chunk_size(cc);
    npvdb_results_free(&cc->res);
    memset(&cc->res, 0, sizeof cc->res);
    cc->chunk_start = cc->next;
    if (npvdb_search(coll, cc->q.queries + cc->next * cc->dim, n, cc->q.k,
                     cc->q.nprobe, &cc->res, &err) != NPVDB_OK)
        nt_result_error(res, &err);
}

static void next_chunk(closest_call *cc, nt_result *res)
{
    uint64_t gen = 0;
    npvdb_collection *coll = nt_db_acquire(cc->base.srv, &gen, res);
    if (!coll) return;
    if (gen != cc->gen)
        nt_result_fail(res, GRPC_STATUS_ABORTED,
                       "the collection was replaced by Init during this "
                       "GetClosest (after %zu of %zu replies)",
                       cc->next, cc->q.nq);
    else
        search_chunk(cc, coll, res);
    nt_db_release(cc->base.srv);
}

/* Sends the reply of query cc->next, or finishes the call. */
static void send_next(closest_call *cc)
{
    nt_result res = {0};
    if (cc->next == cc->q.nq) {
        nt_call_finish(&cc->base, &res);
        return;
    }
    if (cc->next >= cc->chunk_start + cc->res.nq) {
        next_chunk(cc, &res);
        if (res.status != GRPC_STATUS_OK) {
            nt_call_finish(&cc->base, &res);
            return;
        }
    }
    size_t row = cc->next - cc->chunk_start, at = row * cc->res.k;
    Npvdb__V1__GetClosestReply r = NPVDB__V1__GET_CLOSEST_REPLY__INIT;
    r.query_index = (uint32_t)cc->next;
    r.n_keys = r.n_distances = cc->res.counts[row];
    /* protobuf-c only reads the keys while packing. */
    r.keys = (char **)(cc->res.keys + at);
    r.distances = cc->res.distances + at;
    nt_result_pack(&res, &r.base);
    nt_call_send(&cc->base, res.reply);
}

static void step(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    cc->next++;
    send_next(cc);
}

static void start(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    nt_result res = {0};
    npvdb_error err = {0};
    grpc_slice s = nt_call_take_message(c);
    npvdb_collection *coll = nt_db_acquire(c->srv, &cc->gen, &res);
    if (coll) {
        cc->dim = npvdb_dim(coll);
        if (codec_decode_query(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
                               cc->dim, &cc->q, &err) != NPVDB_OK)
            nt_result_error(&res, &err);
        else
            search_chunk(cc, coll, &res);
        nt_db_release(c->srv);
    }
    grpc_slice_unref(s);
    if (res.status != GRPC_STATUS_OK)
        nt_call_finish(c, &res);
    else
        send_next(cc);
}

static void cleanup(nt_call *c)
{
    closest_call *cc = (closest_call *)c;
    codec_query_free(&cc->q);
    npvdb_results_free(&cc->res);
}

const nt_method nt_rpc_get_closest = {
    .path = "/npvdb.v1.VectorDB/GetClosest",
    .call_size = sizeof(closest_call),
    .start = start,
    .step = step,
    .cleanup = cleanup,
};
