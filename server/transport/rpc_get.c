/*
 * rpc_get.c -- Get (unary): the stored vectors of some keys, in request
 * order, and the keys that were not found. The reply must fit the message
 * size limit, which bounds how many keys one call can ask for.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>

typedef struct get_out {
    float *rows;          /* found * dim */
    const char **found;   /* keys found */
    const char **missing; /* keys absent */
    npvdb_payload *pls;   /* with_payload: one per key found, owned */
    size_t n_found, n_missing;
} get_out;

static void get_out_free(get_out *o)
{
    if (o->pls)
        for (size_t i = 0; i < o->n_found; i++)
            free((void *)o->pls[i].data);
    free(o->pls);
    free(o->rows);
    free(o->found);
    free(o->missing);
}

/* Looks every key up (read lock held); fills *o or fails res. */
static void lookup(npvdb_collection *coll, const codec_keys *req, get_out *o,
                   nt_result *res)
{
    uint32_t dim = npvdb_dim(coll);
    npvdb_error err = {0};
    o->rows = malloc(req->n * dim * sizeof(float));
    o->found = malloc(req->n * sizeof *o->found);
    o->missing = malloc(req->n * sizeof *o->missing);
    if (req->with_payload) o->pls = calloc(req->n, sizeof *o->pls);
    if (!o->rows || !o->found || !o->missing ||
        (req->with_payload && !o->pls)) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory for %zu keys", req->n);
        return;
    }
    for (size_t i = 0; i < req->n; i++) {
        float *row = o->rows + o->n_found * dim;
        npvdb_code rc = o->pls ? npvdb_get_payload(coll, req->keys[i], row,
                                                   &o->pls[o->n_found], &err)
                               : npvdb_get(coll, req->keys[i], row, &err);
        if (rc == NPVDB_OK) {
            o->found[o->n_found++] = req->keys[i];
        } else if (rc == NPVDB_ENOTFOUND) {
            o->missing[o->n_missing++] = req->keys[i];
        } else {
            nt_result_error(res, &err);
            return;
        }
    }
}

static void reply(npvdb_server *s, const get_out *o, uint32_t dim,
                  nt_result *res)
{
    Npvdb__V1__GetReply r = NPVDB__V1__GET_REPLY__INIT;
    r.n_keys = o->n_found;
    r.keys = (char **)o->found; /* only read while packing */
    r.vectors.len = o->n_found * dim * sizeof(float);
    r.vectors.data = (uint8_t *)o->rows;
    r.n_missing = o->n_missing;
    r.missing = (char **)o->missing;
    nt_result_pack_payloads(s, res, &r.base, o->pls, o->n_found, 4);
}

static void handle_get(npvdb_server *s, const uint8_t *buf, size_t len,
                       nt_result *res)
{
    codec_keys req;
    npvdb_error err = {0};
    catalog_ref ref;
    get_out o = {0};
    if (codec_decode_get(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!nt_acquire(s, &req.collection, &ref, res)) goto out;
    npvdb_collection *coll = ref.coll;
    uint32_t dim = npvdb_dim(coll);
    /* Keys are at most NPVDB_MAX_KEY_LEN and already in the request, so
     * the vectors are what can push the reply past the limit. */
    if (req.n > 0 && req.n * (size_t)dim * 4 > s->max_message - len) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "Get of %zu keys x dim %u would reply with %zu bytes "
                       "of vectors, over the %zu-byte message limit: ask "
                       "for fewer keys per call",
                       req.n, dim, req.n * (size_t)dim * 4, s->max_message);
    } else if (req.n > 0) {
        lookup(coll, &req, &o, res);
        if (res->status == GRPC_STATUS_OK) reply(s, &o, dim, res);
    } else {
        reply(s, &o, dim, res);
    }
    nt_release(s, &ref);
out:
    get_out_free(&o);
    codec_keys_free(&req);
}

const nt_method nt_rpc_get = {
    .path = "/npvdb.v1.VectorDB/Get",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_get,
};
