/*
 * rpc_init.c -- Init (unary): creates the collection, or replaces it.
 *
 * The new collection is built and trained before any lock is taken (training
 * may take seconds); only the swap holds the collection lock for writing,
 * which waits for every in-flight call on the old collection.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

static int collection_exists(npvdb_server *s, uint32_t *dim)
{
    pthread_rwlock_rdlock(&s->coll_lock);
    int exists = s->coll != NULL;
    if (exists) *dim = npvdb_dim(s->coll);
    pthread_rwlock_unlock(&s->coll_lock);
    return exists;
}

static void already_exists(nt_result *res, uint32_t dim)
{
    nt_result_fail(res, GRPC_STATUS_ALREADY_EXISTS,
                   "a collection exists (dim %u): pass replace=true to drop "
                   "it",
                   dim);
}

/* Creates and (with a sample) trains the new collection; NULL on error. */
static npvdb_collection *build(const codec_init *req, nt_result *res)
{
    npvdb_error err = {0};
    npvdb_collection *c = npvdb_create(&req->cfg, &err);
    if (!c) {
        nt_result_error(res, &err);
        return NULL;
    }
    if (req->n_train > 0 &&
        npvdb_train(c, req->train, req->n_train, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        npvdb_free(c);
        return NULL;
    }
    return c;
}

/* Logs the Init and swaps collections under the write lock. On success
 * *old gets the replaced collection (caller frees) and *seq the record. */
static int swap_in(npvdb_server *s, const codec_init *req, npvdb_collection *c,
                   npvdb_collection **old, uint64_t *seq, nt_result *res)
{
    npvdb_error err = {0};
    int ok = 0;
    pthread_rwlock_wrlock(&s->coll_lock);
    if (s->coll && !req->replace) {
        /* Another Init won the race since the first check. */
        already_exists(res, npvdb_dim(s->coll));
        goto out;
    }
    pthread_mutex_lock(&s->write_mu);
    npvdb_code rc = NPVDB_OK;
    if (s->store)
        rc = npvdb_store_log_init(s->store, &req->cfg, req->train, req->n_train,
                                  seq, &err);
    pthread_mutex_unlock(&s->write_mu);
    if (rc != NPVDB_OK) {
        nt_result_fail(res, nt_status_from_code(rc), "write-ahead log: %s",
                       err.msg);
        goto out;
    }
    *old = s->coll;
    s->coll = c;
    s->gen++;
    ok = 1;
out:
    pthread_rwlock_unlock(&s->coll_lock);
    return ok;
}

static void handle_init(npvdb_server *s, const uint8_t *buf, size_t len,
                        nt_result *res)
{
    codec_init req;
    npvdb_error err = {0};
    uint32_t dim = 0;
    npvdb_collection *c = NULL, *old = NULL;
    uint64_t seq = 0;
    if (codec_decode_init(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    req.cfg.n_workers = s->n_workers;
    if (!req.replace && collection_exists(s, &dim)) {
        already_exists(res, dim);
        goto out;
    }
    c = build(&req, res);
    if (!c) goto out;
    if (!swap_in(s, &req, c, &old, &seq, res)) {
        npvdb_free(c);
        goto out;
    }
    int replaced = old != NULL;
    npvdb_free(old); /* no reader can hold it: the swap had the write lock */
    npvdb_log("init: dim %u, metric %s, n_shards %u, %zu training vectors%s",
              req.cfg.dim, npvdb_metric_name(req.cfg.metric), req.cfg.n_shards,
              req.n_train,
              replaced ? " (replaced the previous collection)" : "");
    nt_db_wait_durable(s, seq, res);
    if (res->status == GRPC_STATUS_OK) {
        Npvdb__V1__InitReply r = NPVDB__V1__INIT_REPLY__INIT;
        r.replaced = replaced;
        r.trained = req.n_train > 0;
        nt_result_pack(res, &r.base);
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
