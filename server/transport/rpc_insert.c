/*
 * rpc_insert.c -- Insert (client-streaming): each message is decoded,
 * validated, logged and applied on its own, so memory stays bounded by about
 * two messages however long the stream. The reply (or an error) is sent once
 * the log holds everything applied (one wait for the last record: the log is
 * sequential, so it covers the earlier ones too).
 *
 * Overlap: as soon as message i+1 has arrived, the thread that got it
 * decodes and prepares it (npvdb_insert_prepare: validation, normalising,
 * key hashing) while message i is still being logged and applied on another
 * thread; the RECV_MESSAGE of message i+2 starts as message i+1 is applied.
 * Logging and applying stay one message at a time and in order: the next
 * apply runs only once both the apply of i and the preparation of i+1 are
 * done (a join of two parties, whichever finishes last continues). Preparing
 * ahead leaves only the log append and the engine's apply serial. A RECV
 * batch and the final batch may both be in flight after an error, so the
 * call is reference-counted: one reference per batch in flight, freed at
 * zero.
 *
 * Memory per call: the message being applied and the next one, each decoded
 * (protobuf-c's copy of the vectors, plus a normalised copy for cosine).
 */
#include "internal.h"

#include "codec.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A received message, decoded and prepared ahead of its apply. */
typedef struct pending {
    int present; /* 0: the stream ended (half-close) */
    codec_insert req;
    npvdb_batch *batch; /* NULL for an empty message or on error */
    catalog_ref ref;    /* the collection, held from prepare to apply */
    nt_result res;      /* an error found while preparing */
} pending;

typedef struct insert_call {
    nt_call base;               /* base.tag: the final batch */
    pending next;               /* message i+1, prepared during apply of i */
    nt_tag recv_tag;            /* RECV_MESSAGE batches */
    grpc_byte_buffer *incoming; /* RECV_MESSAGE's target */
    int recv_ok;                /* success of the last RECV_MESSAGE */
    atomic_int parties;         /* join: apply of i + receive of i+1 */
    int failed;                 /* the final batch went out with an error */
    uint64_t messages;          /* messages applied (empty ones included) */
    uint64_t inserted, replaced;
    uint64_t last_seq; /* newest log record of this call, 0 if none */
    uint64_t gen;      /* the collection generation of the first message */
    int have_gen;
    /* The stream's collection, named by its first message (written by the
     * first prepare, read by later ones: prepares run one after another). */
    codec_name coll;
    int have_coll;
} insert_call;

static insert_call *from_recv_tag(nt_tag *t)
{
    return (insert_call *)((char *)t - offsetof(insert_call, recv_tag));
}

static void unref(insert_call *ic)
{
    nt_call_unref(&ic->base);
}

static void pending_free(insert_call *ic, pending *p)
{
    nt_release(ic->base.srv, &p->ref);
    npvdb_batch_free(p->batch);
    codec_insert_free(&p->req);
    memset(p, 0, sizeof *p);
}

/* Which collection message `p` writes to: the first message names the
 * stream's; a later one may repeat it or leave it empty, and naming another
 * is INVALID_ARGUMENT (the message is then not applied). */
static int stream_collection(insert_call *ic, const uint8_t *buf, size_t len,
                             pending *p)
{
    npvdb_error err = {0};
    codec_name name;
    if (codec_insert_collection(buf, len, &name, &err) != NPVDB_OK) {
        nt_result_error(&p->res, &err);
        return 0;
    }
    if (!nt_check_name(&name, &p->res)) return 0;
    if (!ic->have_coll) {
        ic->coll = name;
        ic->have_coll = 1;
        return 1;
    }
    if (name.len && strcmp(nt_name(&name), nt_name(&ic->coll)) != 0) {
        nt_result_fail(&p->res, GRPC_STATUS_INVALID_ARGUMENT,
                       "the message names collection '%s' but the stream "
                       "writes to '%s' (named by its first message)",
                       name.s, nt_name(&ic->coll));
        return 0;
    }
    return 1;
}

/* Runs on the thread that received a message: decodes and prepares it into
 * ic->next, holding its collection until the apply. Preparing before
 * logging means the log never holds a batch the engine would refuse. */
static void prepare_next(insert_call *ic)
{
    pending *p = &ic->next;
    memset(p, 0, sizeof *p);
    grpc_byte_buffer *in = ic->incoming;
    ic->incoming = NULL;
    if (!in) return; /* half-close, or the call is gone */
    p->present = 1;
    ic->base.recv = in; /* nt_call_take_message reads and destroys it */
    grpc_slice msg = nt_call_take_message(&ic->base);
    const uint8_t *buf = GRPC_SLICE_START_PTR(msg);
    size_t len = GRPC_SLICE_LENGTH(msg);
    npvdb_server *s = ic->base.srv;
    if (stream_collection(ic, buf, len, p) &&
        nt_acquire(s, &ic->coll, &p->ref, &p->res)) {
        npvdb_error err = {0};
        if (codec_decode_insert(buf, len, npvdb_dim(p->ref.coll), &p->req,
                                &err) ||
            (p->req.n > 0 &&
             npvdb_upsert_prepare(p->ref.coll, p->req.keys, p->req.rows,
                                  p->req.payloads, p->req.n, &p->batch, &err)))
            nt_result_error(&p->res, &err);
    }
    grpc_slice_unref(msg);
}

/* Applies message `p` (prepared by prepare_next) through the catalog, if
 * its collection is still the one the stream started on. */
static void handle_message(insert_call *ic, pending *p, nt_result *res)
{
    if (p->res.status != GRPC_STATUS_OK) {
        *res = p->res;
        return;
    }
    npvdb_server *s = ic->base.srv;
    if (ic->have_gen && p->ref.gen != ic->gen) {
        nt_result_fail(res, GRPC_STATUS_ABORTED,
                       "the collection was replaced by Init during this "
                       "Insert");
        return;
    }
    ic->gen = p->ref.gen;
    ic->have_gen = 1;
    if (p->req.n > 0) {
        npvdb_error err = {0};
        size_t n_replaced = 0;
        uint64_t seq = 0;
        if (catalog_insert(s->cat, &p->ref, p->batch, p->req.keys, p->req.rows,
                           p->req.payloads, p->req.n, &n_replaced, &seq,
                           &err) != NPVDB_OK) {
            nt_result_error(res, &err);
            return;
        }
        if (seq) ic->last_seq = seq;
        ic->replaced += n_replaced;
        ic->inserted += p->req.n - n_replaced;
    }
    ic->messages++;
}

/* The stream ended (client half-close) or a message failed: reply. */
static void finish(insert_call *ic, nt_result *res)
{
    nt_result durable = {0};
    nt_wait_durable(ic->base.srv, ic->last_seq, &durable);
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
        /* Messages before the failing one were applied (and are durable
         * unless the message says otherwise): a client resumes from here. */
        nt_result_trailer(res, "npvdb-applied-messages", ic->messages);
        nt_result_trailer(res, "npvdb-applied-vectors",
                          ic->inserted + ic->replaced);
        ic->failed = 1;
    } else if (durable.status != GRPC_STATUS_OK) {
        nt_result_fail(res, durable.status, "%s", durable.msg);
    } else {
        Npvdb__V1__InsertReply r = NPVDB__V1__INSERT_REPLY__INIT;
        r.inserted = ic->inserted;
        r.replaced = ic->replaced;
        r.messages = ic->messages;
        nt_result_pack(res, &r.base);
        nt_autosnapshot_maybe(ic->base.srv);
    }
    nt_call_ref(&ic->base);
    nt_call_finish(&ic->base, res);
}

static void on_recv(nt_tag *t, int ok);

/* Starts receiving the next message (one reference for the batch). */
static void post_recv(insert_call *ic)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!ic->base.sent_md) {
        ic->base.sent_md = 1;
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &ic->incoming;
    nt_call_ref(&ic->base);
    grpc_call_error e =
        grpc_call_start_batch(ic->base.call, ops, n, &ic->recv_tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* A bug; the tag will not come back: complete it as a failure. */
        npvdb_log("Insert: grpc_call_start_batch failed (%d)", (int)e);
        on_recv(&ic->recv_tag, 0);
    }
}

/* One step, run by exactly one thread once message i is applied and
 * message i+1 is received and prepared. Returns 1 if the caller should run
 * the next step (message i+2 was prepared during this apply). */
static int advance(insert_call *ic)
{
    pending cur = ic->next;
    memset(&ic->next, 0, sizeof ic->next);
    if (ic->failed || !ic->recv_ok) {
        /* An error reply is underway, or the peer is gone: stop reading. */
        pending_free(ic, &cur);
        return 0;
    }
    nt_result res = {0};
    if (!cur.present) { /* half-close: every message is in */
        finish(ic, &res);
        return 0;
    }
    atomic_store(&ic->parties, 2);
    post_recv(ic);
    handle_message(ic, &cur, &res);
    pending_free(ic, &cur);
    if (res.status != GRPC_STATUS_OK) finish(ic, &res);
    return atomic_fetch_sub(&ic->parties, 1) == 1;
}

/* On the engine pool: decoding, preparing and applying are engine work. */
static void received(nt_call *c)
{
    insert_call *ic = (insert_call *)c;
    prepare_next(ic); /* concurrently with the apply of the previous one */
    if (atomic_fetch_sub(&ic->parties, 1) == 1) {
        while (advance(ic)) {
        }
    }
    unref(ic); /* the RECV batch's reference, held while advancing */
}

static void on_recv(nt_tag *t, int ok)
{
    insert_call *ic = from_recv_tag(t);
    ic->recv_ok = ok;
    nt_call_defer(&ic->base, received);
}

/* The final batch completed (sent or not): its reference goes. */
static void on_final(nt_tag *t, int ok)
{
    (void)ok;
    unref((insert_call *)t);
}

static void start(nt_call *c)
{
    insert_call *ic = (insert_call *)c;
    c->tag.on_done = on_final;
    ic->recv_tag.on_done = on_recv;
    /* Until the first message arrives the apply "party" is done. */
    atomic_store(&ic->parties, 1);
    post_recv(ic);
    unref(ic); /* the chain's reference: from here on the batches hold it */
}

static void cleanup(nt_call *c)
{
    insert_call *ic = (insert_call *)c;
    if (ic->incoming) grpc_byte_buffer_destroy(ic->incoming);
    ic->incoming = NULL;
    pending_free(ic, &ic->next);
}

const nt_method nt_rpc_insert = {
    .path = "/npvdb.v1.VectorDB/Insert",
    .streaming_in = 1,
    .call_size = sizeof(insert_call),
    .start = start,
    .cleanup = cleanup,
};
