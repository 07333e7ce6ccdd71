/*
 * rpc_delete.c -- Delete (unary): the catalog logs and applies it; the reply
 * (how many existed) goes once the log record is durable.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

static void handle_delete(npvdb_server *s, const uint8_t *buf, size_t len,
                          nt_result *res)
{
    codec_keys req;
    npvdb_error err = {0};
    catalog_ref ref;
    size_t deleted = 0;
    uint64_t seq = 0;
    if (codec_decode_delete(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!nt_acquire(s, &req.collection, &ref, res)) goto out;
    npvdb_code rc = NPVDB_OK;
    if (req.n > 0)
        rc =
            catalog_delete(s->cat, &ref, req.keys, req.n, &deleted, &seq, &err);
    nt_release(s, &ref);
    if (rc != NPVDB_OK) {
        nt_result_error(res, &err);
        goto out;
    }
    nt_wait_durable(s, seq, res);
    if (res->status == GRPC_STATUS_OK) {
        Npvdb__V1__DeleteReply r = NPVDB__V1__DELETE_REPLY__INIT;
        r.deleted = deleted;
        nt_result_pack(res, &r.base);
        nt_autosnapshot_maybe(s);
    }
out:
    codec_keys_free(&req);
}

const nt_method nt_rpc_delete = {
    .path = "/npvdb.v1.VectorDB/Delete",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_delete,
};
