/*
 * rpc_insert.c -- Insert (client-streaming): each message is decoded,
 * validated, logged and applied on its own, so memory stays bounded by one
 * message however long the stream. The reply (or an error) is sent once the
 * log holds everything applied (one wait for the last record: the log is
 * sequential, so it covers the earlier ones too).
 *
 * States: RECV (a RECV_MESSAGE batch in flight) until the client half-closes
 * or a message fails; then the final batch.
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <inttypes.h>
#include <stdio.h>

typedef struct insert_call {
    nt_call base;
    uint64_t messages; /* messages applied (empty ones included) */
    uint64_t inserted, replaced;
    uint64_t last_seq; /* newest log record of this call, 0 if none */
    uint64_t gen;      /* the collection generation of the first message */
    int have_gen;
} insert_call;

/* Logs and applies one decoded message under the write lock. */
static void apply(npvdb_server *s, insert_call *ic, npvdb_collection *coll,
                  const codec_insert *req, nt_result *res)
{
    npvdb_error err = {0};
    size_t n_replaced = 0;
    uint64_t seq = 0;
    /* The check needs no lock: it depends on the dimension only. Done
     * first so the log never holds a batch the engine would refuse. */
    if (npvdb_insert_check(coll, req->keys, req->rows, req->n, &err)) {
        nt_result_error(res, &err);
        return;
    }
    pthread_mutex_lock(&s->write_mu);
    npvdb_code rc = NPVDB_OK;
    if (s->store)
        rc = npvdb_store_log_insert(s->store, req->keys, req->rows, req->n,
                                    npvdb_dim(coll), &seq, &err);
    if (rc == NPVDB_OK) {
        if (seq) ic->last_seq = seq;
        rc =
            npvdb_insert(coll, req->keys, req->rows, req->n, &n_replaced, &err);
    }
    pthread_mutex_unlock(&s->write_mu);
    if (rc != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    ic->replaced += n_replaced;
    ic->inserted += req->n - n_replaced;
}

static void handle_message(insert_call *ic, const uint8_t *buf, size_t len,
                           nt_result *res)
{
    npvdb_server *s = ic->base.srv;
    uint64_t gen = 0;
    npvdb_collection *coll = nt_db_acquire(s, &gen, res);
    if (!coll) return;
    if (ic->have_gen && gen != ic->gen) {
        nt_result_fail(res, GRPC_STATUS_ABORTED,
                       "the collection was replaced by Init during this "
                       "Insert");
        nt_db_release(s);
        return;
    }
    ic->gen = gen;
    ic->have_gen = 1;
    codec_insert req;
    npvdb_error err = {0};
    if (codec_decode_insert(buf, len, npvdb_dim(coll), &req, &err)) {
        nt_result_error(res, &err);
    } else if (req.n > 0) {
        apply(s, ic, coll, &req, res);
    }
    codec_insert_free(&req);
    nt_db_release(s);
    if (res->status == GRPC_STATUS_OK) ic->messages++;
}

/* The stream ended (client half-close) or a message failed: reply. */
static void finish(insert_call *ic, nt_result *res)
{
    nt_result durable = {0};
    nt_db_wait_durable(ic->base.srv, ic->last_seq, &durable);
    if (res->status != GRPC_STATUS_OK) {
        char why[sizeof res->msg];
        snprintf(why, sizeof why, "%s", res->msg);
        nt_result_fail(res, res->status,
                       "Insert message %" PRIu64 " (0-based): %s; %" PRIu64
                       " vectors were applied before it%s",
                       ic->messages, why, ic->inserted + ic->replaced,
                       durable.status == GRPC_STATUS_OK
                           ? ""
                           : " but the log could not be synced");
    } else if (durable.status != GRPC_STATUS_OK) {
        nt_result_fail(res, durable.status, "%s", durable.msg);
    } else {
        Npvdb__V1__InsertReply r = NPVDB__V1__INSERT_REPLY__INIT;
        r.inserted = ic->inserted;
        r.replaced = ic->replaced;
        r.messages = ic->messages;
        nt_result_pack(res, &r.base);
    }
    nt_call_finish(&ic->base, res);
}

static void step(nt_call *c)
{
    insert_call *ic = (insert_call *)c;
    nt_result res = {0};
    if (!c->recv) { /* half-close: every message is in */
        finish(ic, &res);
        return;
    }
    grpc_slice s = nt_call_take_message(c);
    handle_message(ic, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &res);
    grpc_slice_unref(s);
    if (res.status != GRPC_STATUS_OK)
        finish(ic, &res);
    else
        nt_call_recv(c);
}

static void start(nt_call *c)
{
    nt_call_recv(c);
}

const nt_method nt_rpc_insert = {
    .path = "/npvdb.v1.VectorDB/Insert",
    .streaming_in = 1,
    .call_size = sizeof(insert_call),
    .start = start,
    .step = step,
};
