/*
 * rpc_count.c -- Count (unary): how many vectors of a collection pass a
 * filter (all of them without one).
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

static void handle_count(npvdb_server *s, const uint8_t *buf, size_t len,
                         nt_result *res)
{
    npvdb_error err = {0};
    codec_count req;
    catalog_ref ref;
    uint64_t n = 0;
    if (codec_decode_count(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (nt_acquire(s, &req.collection, &ref, res)) {
        if (npvdb_count(ref.coll, req.filter.root, &n, &err) != NPVDB_OK) {
            nt_result_error(res, &err);
        } else {
            Npvdb__V1__CountReply r = NPVDB__V1__COUNT_REPLY__INIT;
            r.count = n;
            nt_result_pack(res, &r.base);
        }
        nt_release(s, &ref);
    }
    codec_count_free(&req);
}

const nt_method nt_rpc_count = {
    .path = "/npvdb.v1.VectorDB/Count",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_count,
};
