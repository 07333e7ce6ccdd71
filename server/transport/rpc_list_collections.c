/*
 * rpc_list_collections.c -- ListCollections (unary): every collection's
 * name, dim, metric and vector count, sorted by name.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>

static void reply(const catalog_info *info, size_t n, nt_result *res)
{
    Npvdb__V1__CollectionInfo *items = calloc(n ? n : 1, sizeof *items);
    Npvdb__V1__CollectionInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!items || !ptrs) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory listing %zu collections", n);
    } else {
        for (size_t i = 0; i < n; i++) {
            Npvdb__V1__CollectionInfo c = NPVDB__V1__COLLECTION_INFO__INIT;
            c.name = (char *)info[i].name;
            c.dim = info[i].dim;
            c.metric = (Npvdb__V1__Metric)nt_metric_to_proto(info[i].metric);
            c.vectors = info[i].vectors;
            items[i] = c;
            ptrs[i] = &items[i];
        }
        Npvdb__V1__ListCollectionsReply r =
            NPVDB__V1__LIST_COLLECTIONS_REPLY__INIT;
        r.n_collections = n;
        r.collections = ptrs;
        nt_result_pack(res, &r.base);
    }
    free(items);
    free(ptrs);
}

static void handle_list(npvdb_server *s, const uint8_t *buf, size_t len,
                        nt_result *res)
{
    npvdb_error err = {0};
    catalog_info *info = NULL;
    size_t n = 0;
    if (codec_decode_empty(buf, len, &err) != NPVDB_OK ||
        catalog_list(s->cat, &info, &n, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    reply(info, n, res);
    free(info);
}

const nt_method nt_rpc_list_collections = {
    .path = "/npvdb.v1.VectorDB/ListCollections",
    .runs_inline = 1,
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_list,
};
