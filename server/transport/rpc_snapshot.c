/*
 * rpc_snapshot.c -- Snapshot (unary): writes the collection to the data
 * directory while inserts and searches go on.
 *
 * The covered sequence number is read under the write mutex (so every record
 * up to it is applied), then the export runs without it. The collection read
 * lock is held throughout to keep the collection alive; an Init(replace)
 * meanwhile waits for the snapshot to end.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>

npvdb_code nt_snapshot_write(npvdb_server *s, npvdb_collection *coll,
                             npvdb_snapshot_info *info, npvdb_error *err)
{
    pthread_mutex_lock(&s->snapshot_mu);
    pthread_mutex_lock(&s->write_mu);
    uint64_t seq = npvdb_store_last_seq(s->store);
    pthread_mutex_unlock(&s->write_mu);
    npvdb_code rc = npvdb_store_snapshot(s->store, coll, seq, info, err);
    pthread_mutex_unlock(&s->snapshot_mu);
    if (rc == NPVDB_OK)
        npvdb_log("snapshot: %s, %llu vectors, %llu bytes, %.3f s, log "
                  "sequence %llu",
                  info->path, (unsigned long long)info->vectors,
                  (unsigned long long)info->bytes, info->seconds,
                  (unsigned long long)info->sequence);
    return rc;
}

static void write_snapshot(npvdb_server *s, npvdb_collection *coll,
                           nt_result *res)
{
    npvdb_error err = {0};
    npvdb_snapshot_info *info = calloc(1, sizeof *info); /* 4 KiB path */
    if (!info) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    npvdb_code rc = nt_snapshot_write(s, coll, info, &err);
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
    if (codec_decode_empty(buf, len, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!s->store) {
        nt_result_fail(res, GRPC_STATUS_FAILED_PRECONDITION,
                       "the server runs without a data directory");
        return;
    }
    npvdb_collection *coll = nt_db_acquire(s, NULL, res);
    if (!coll) return;
    write_snapshot(s, coll, res);
    nt_db_release(s);
}

const nt_method nt_rpc_snapshot = {
    .path = "/npvdb.v1.VectorDB/Snapshot",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_snapshot,
};
