/*
 * rpc_info.c -- Info (unary): one collection's shape and size. A collection
 * that does not exist (yet) answers initialized = false with the server
 * version and its name, as Info before the first Init always did.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

static void fill(npvdb_collection *coll, const char *name, nt_result *res)
{
    npvdb_stats st;
    npvdb_error err = {0};
    if (npvdb_stats_get(coll, &st, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    Npvdb__V1__InfoReply r = NPVDB__V1__INFO_REPLY__INIT;
    r.server_version = (char *)NPVDB_VERSION;
    r.collection = (char *)name;
    r.initialized = 1;
    r.dim = st.dim;
    r.metric = (Npvdb__V1__Metric)nt_metric_to_proto(st.metric);
    r.vectors = st.n_vectors;
    r.n_shards = st.n_shards;
    r.n_shard_sizes = st.shard_counts ? st.n_shards : 0;
    r.shard_sizes = st.shard_counts;
    r.trained = st.trained != 0;
    r.memory_bytes = st.memory_bytes;
    r.default_nprobe = st.default_nprobe; /* resolved, also after restart */
    r.largest_shard = st.max_shard;
    r.smallest_shard = st.min_shard;
    r.splits = st.splits;
    r.merges = st.merges;
    r.retrains = st.retrains;
    nt_result_pack(res, &r.base);
    npvdb_stats_free(&st);
}

static void handle_info(npvdb_server *s, const uint8_t *buf, size_t len,
                        nt_result *res)
{
    npvdb_error err = {0};
    codec_name name;
    catalog_ref ref;
    if (codec_decode_collection(buf, len, &name, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!nt_check_name(&name, res)) return;
    if (catalog_acquire(s->cat, nt_name(&name), &ref, &err) == NPVDB_OK) {
        fill(ref.coll, ref.name, res);
        catalog_release(s->cat, &ref);
    } else if (err.code == NPVDB_ENOTFOUND) {
        Npvdb__V1__InfoReply r = NPVDB__V1__INFO_REPLY__INIT;
        r.server_version = (char *)NPVDB_VERSION;
        r.collection = (char *)nt_name(&name);
        nt_result_pack(res, &r.base);
    } else {
        nt_result_error(res, &err);
    }
}

const nt_method nt_rpc_info = {
    .path = "/npvdb.v1.VectorDB/Info",
    .runs_inline = 1,
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_info,
};
