/*
 * rpc_snapshot.c -- Snapshot (unary): writes every collection to one file
 * in the data directory (catalog_snapshot) while inserts and searches go
 * on. A request naming a collection that does not exist is NOT_FOUND.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>

npvdb_code nt_snapshot_write(npvdb_server *s, npvdb_snapshot_info *info,
                             npvdb_error *err)
{
    npvdb_code rc = catalog_snapshot(s->cat, info, err);
    if (rc == NPVDB_OK)
        npvdb_log("snapshot: %s, %llu collections, %llu vectors, %llu bytes, "
                  "%.3f s, log sequence %llu",
                  info->path, (unsigned long long)info->collections,
                  (unsigned long long)info->vectors,
                  (unsigned long long)info->bytes, info->seconds,
                  (unsigned long long)info->sequence);
    return rc;
}

static void write_snapshot(npvdb_server *s, nt_result *res)
{
    npvdb_error err = {0};
    npvdb_snapshot_info *info = calloc(1, sizeof *info); /* 4 KiB path */
    if (!info) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    npvdb_code rc = nt_snapshot_write(s, info, &err);
    if (rc != NPVDB_OK) {
        nt_result_fail(res, nt_status_from_code(rc), "snapshot: %s", err.msg);
    } else {
        Npvdb__V1__SnapshotReply r = NPVDB__V1__SNAPSHOT_REPLY__INIT;
        r.path = info->path;
        r.vectors = info->vectors;
        r.bytes = info->bytes;
        r.seconds = info->seconds;
        r.sequence = info->sequence;
        nt_result_pack(res, &r.base);
    }
    free(info);
}

static void handle_snapshot(npvdb_server *s, const uint8_t *buf, size_t len,
                            nt_result *res)
{
    npvdb_error err = {0};
    codec_name name;
    catalog_ref ref;
    if (codec_decode_collection(buf, len, &name, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!s->store) {
        nt_result_fail(res, GRPC_STATUS_FAILED_PRECONDITION,
                       "the server runs without a data directory");
        return;
    }
    /* Only a named collection must exist: "" snapshots whatever there is,
     * also nothing. */
    if (name.len) {
        if (!nt_acquire(s, &name, &ref, res)) return;
        nt_release(s, &ref);
    }
    write_snapshot(s, res);
}

const nt_method nt_rpc_snapshot = {
    .path = "/npvdb.v1.VectorDB/Snapshot",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_snapshot,
};
