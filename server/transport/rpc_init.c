/*
 * rpc_init.c -- Init (unary): creates a collection, or replaces it. The
 * catalog builds and trains it outside every lock, logs it and installs it.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

static void handle_init(npvdb_server *s, const uint8_t *buf, size_t len,
                        nt_result *res)
{
    codec_init req;
    npvdb_error err = {0};
    uint64_t seq = 0;
    int replaced = 0;
    if (codec_decode_init(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        goto out;
    }
    if (!nt_check_name(&req.collection, res)) goto out;
    const char *name = nt_name(&req.collection);
    if (catalog_create(s->cat, name, &req.cfg, req.train, req.n_train,
                       req.replace, &replaced, &seq, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        goto out;
    }
    npvdb_log("init '%s': dim %u, metric %s, n_shards %u, %zu training "
              "vectors%s",
              name, req.cfg.dim, npvdb_metric_name(req.cfg.metric),
              req.cfg.n_shards, req.n_train,
              replaced ? " (replaced the previous one)" : "");
    nt_wait_durable(s, seq, res);
    if (res->status == GRPC_STATUS_OK) {
        Npvdb__V1__InitReply r = NPVDB__V1__INIT_REPLY__INIT;
        r.replaced = replaced;
        r.trained = req.n_train > 0;
        nt_result_pack(res, &r.base);
        nt_autosnapshot_maybe(s);
    }
out:
    codec_init_free(&req);
}

const nt_method nt_rpc_init = {
    .path = "/npvdb.v1.VectorDB/Init",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_init,
};
