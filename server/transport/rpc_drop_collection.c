/*
 * rpc_drop_collection.c -- DropCollection (unary): the catalog logs the drop
 * and frees the collection once no call holds it; the reply (how many
 * vectors it held) goes once the record is durable. NOT_FOUND if absent.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

static void handle_drop(npvdb_server *s, const uint8_t *buf, size_t len,
                        nt_result *res)
{
    npvdb_error err = {0};
    codec_name name;
    uint64_t vectors = 0, seq = 0;
    if (codec_decode_collection(buf, len, &name, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!nt_check_name(&name, res)) return;
    if (catalog_drop(s->cat, nt_name(&name), &vectors, &seq, &err) !=
        NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    npvdb_log("drop '%s': %llu vectors", nt_name(&name),
              (unsigned long long)vectors);
    nt_wait_durable(s, seq, res);
    if (res->status == GRPC_STATUS_OK) {
        Npvdb__V1__DropCollectionReply r =
            NPVDB__V1__DROP_COLLECTION_REPLY__INIT;
        r.vectors = vectors;
        nt_result_pack(res, &r.base);
        nt_autosnapshot_maybe(s);
    }
}

const nt_method nt_rpc_drop_collection = {
    .path = "/npvdb.v1.VectorDB/DropCollection",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_drop,
};
