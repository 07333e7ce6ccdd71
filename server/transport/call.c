/*
 * call.c -- what every RPC kind shares: results (status + message + packed
 * reply), the batches that move a call forward, and freeing a call.
 */
#include "internal.h"

#include "clock.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nt_result_fail(nt_result *res, grpc_status_code st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    res->status = st;
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
    if (res->reply) grpc_byte_buffer_destroy(res->reply);
    res->reply = NULL;
}

void nt_result_error(nt_result *res, const npvdb_error *err)
{
    nt_result_fail(res, nt_status_from_code(err->code), "%s", err->msg);
}

void nt_result_pack(nt_result *res, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n); /* gRPC aborts on OOM itself */
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    if (res->reply) grpc_byte_buffer_destroy(res->reply);
    res->reply = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
}

void nt_result_clear(nt_result *res)
{
    if (res->reply) grpc_byte_buffer_destroy(res->reply);
    memset(res, 0, sizeof *res);
}

void nt_result_trailer(nt_result *res, const char *key, uint64_t value)
{
    if (res->n_trailers >= NT_MAX_TRAILERS) return;
    res->trailer_key[res->n_trailers] = key;
    snprintf(res->trailer_val[res->n_trailers],
             sizeof res->trailer_val[res->n_trailers], "%llu",
             (unsigned long long)value);
    res->n_trailers++;
}

/* Moves res's trailers into the call, which keeps them until it is freed
 * (gRPC reads them until the final batch completes). */
static void take_trailers(nt_call *c, const nt_result *res)
{
    for (unsigned i = 0; i < res->n_trailers; i++) {
        grpc_metadata *m = &c->trailers[c->n_trailers++];
        memset(m, 0, sizeof *m);
        m->key = grpc_slice_from_static_string(res->trailer_key[i]);
        m->value = grpc_slice_from_copied_string(res->trailer_val[i]);
    }
}

grpc_slice nt_call_take_message(nt_call *c)
{
    grpc_byte_buffer_reader r;
    grpc_slice s = grpc_empty_slice();
    if (c->recv && grpc_byte_buffer_reader_init(&r, c->recv)) {
        s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
    return s;
}

/* Adds SEND_INITIAL_METADATA to ops once per call; returns ops used. */
static size_t add_initial_md(nt_call *c, grpc_op *op)
{
    if (c->sent_md) return 0;
    c->sent_md = 1;
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = 0;
    return 1;
}

static void start_batch(nt_call *c, grpc_op *ops, size_t n)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* A bug (two batches of one kind in flight); the tag will never
         * come back, so it completes here as a failure (which frees the
         * call, or drops the batch's reference for Insert). */
        npvdb_log("%s: grpc_call_start_batch failed (%d)", c->method->path,
                  (int)e);
        c->tag.on_done(&c->tag, 0);
    }
}

void nt_call_recv(nt_call *c)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = add_initial_md(c, ops);
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->recv;
    start_batch(c, ops, n + 1);
}

void nt_call_send(nt_call *c, grpc_byte_buffer *bb, uint32_t flags)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = add_initial_md(c, ops);
    if (c->send) grpc_byte_buffer_destroy(c->send);
    c->send = bb;
    /* A buffered write holds the initial metadata back too, and that op
     * completes only once the headers are written: the batch carrying them
     * must flush or it can wait for an unrelated write. */
    if (n > 0) flags &= ~(uint32_t)GRPC_WRITE_BUFFER_HINT;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].flags = flags;
    ops[n].data.send_message.send_message = bb;
    nt_stall_sending(c, 1);
    start_batch(c, ops, n + 1);
}

/* Server-side failures are worth a log line; client mistakes are not. */
static int worth_logging(grpc_status_code st)
{
    return st == GRPC_STATUS_INTERNAL || st == GRPC_STATUS_UNKNOWN ||
           st == GRPC_STATUS_DATA_LOSS;
}

/* The call's outcome into its method's counters (once: the final batch). */
static void count_call(nt_call *c, grpc_status_code st)
{
    int64_t ns = npvdb_mono_ns() - c->start_ns;
    unsigned i =
        (unsigned)st < NPVDB_N_GRPC_STATUS ? (unsigned)st : GRPC_STATUS_UNKNOWN;
    atomic_fetch_add_explicit(&c->stats->by_status[i], 1, memory_order_relaxed);
    npvdb_hist_add(&c->stats->latency, ns > 0 ? (uint64_t)ns : 0);
}

void nt_call_finish(nt_call *c, nt_result *res)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = add_initial_md(c, ops);
    if (res->status == GRPC_STATUS_OK && res->reply) {
        if (c->send) grpc_byte_buffer_destroy(c->send);
        c->send = res->reply;
        res->reply = NULL;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send;
        nt_stall_sending(c, 1);
    }
    count_call(c, res->status);
    if (worth_logging(res->status))
        npvdb_log("%s failed: %s: %s", c->method->path,
                  nt_status_name(res->status), res->msg);
    c->status_msg = grpc_slice_from_copied_string(res->msg);
    take_trailers(c, res);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->n_trailers;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailers;
    ops[n].data.send_status_from_server.status = res->status;
    ops[n++].data.send_status_from_server.status_details =
        res->status == GRPC_STATUS_OK ? NULL : &c->status_msg;
    if (!c->close_posted) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    c->final = 1;
    nt_result_clear(res);
    start_batch(c, ops, n);
}

void nt_call_on_done(nt_tag *t, int ok)
{
    nt_call *c = (nt_call *)t;
    nt_stall_sending(c, 0);
    if (!ok) atomic_store(&c->gone, 1);
    if (!ok || c->final) {
        nt_call_unref(c);
        return;
    }
    c->method->step(c);
}

/* ---- the life of an accepted call ---- */

/* The client's deadline on CLOCK_MONOTONIC (which the engine reads), or 0
 * for none. gpr's monotonic clock has another origin: go via the time
 * left from `now` (npvdb_mono_ns). */
static int64_t deadline_ns(gpr_timespec d, int64_t now)
{
    gpr_timespec mono = gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(mono, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0) return 0;
    gpr_timespec left = gpr_time_sub(mono, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ns = now + (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
    return ns > 0 ? ns : 1;
}

/* RECV_CLOSE_ON_SERVER completed: the call is over, cancelled if the
 * client gave up (cancel, deadline, connection lost) before our status. */
static void on_close(nt_tag *t, int ok)
{
    nt_call *c = (nt_call *)((char *)t - offsetof(nt_call, close_tag));
    if (!ok || c->cancelled) atomic_store(&c->gone, 1);
    nt_call_unref(c);
}

void nt_call_accepted(nt_call *c)
{
    c->start_ns = npvdb_mono_ns();
    c->deadline_ns = deadline_ns(c->deadline, c->start_ns);
    atomic_store(&c->refs, 1);
    if (c->method->runs_inline) return;
    nt_stall_link(c);
    /* Counted calls may run long: learn at once when the client goes, so
     * their work can stop (nt_call_stop_params). */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_tag.on_done = on_close;
    atomic_fetch_add(&c->refs, 1);
    c->close_posted = 1;
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) !=
        GRPC_CALL_OK) {
        c->close_posted = 0;
        atomic_fetch_sub(&c->refs, 1);
    }
}

static void run_deferred(nt_job *j)
{
    nt_call *c = (nt_call *)((char *)j - offsetof(nt_call, job));
    c->deferred(c);
}

void nt_call_defer(nt_call *c, void (*fn)(nt_call *c))
{
    c->deferred = fn;
    c->job.run = run_deferred;
    nt_exec_post(&c->srv->exec, nt_peer_lane(c), &c->job);
}

int nt_call_gave_up(nt_call *c, nt_result *res)
{
    if (atomic_load(&c->gone)) {
        nt_result_fail(res, GRPC_STATUS_CANCELLED,
                       "the client cancelled the call");
        return 1;
    }
    if (c->deadline_ns && npvdb_mono_ns() >= c->deadline_ns) {
        nt_result_fail(res, GRPC_STATUS_DEADLINE_EXCEEDED,
                       "the call's deadline passed before it ran");
        return 1;
    }
    return 0;
}

void nt_call_stop_params(nt_call *c, npvdb_search_params *p)
{
    p->cancel = &c->gone;
    p->deadline_ns = c->deadline_ns;
}

void nt_call_ref(nt_call *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void nt_call_unref(nt_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) nt_call_free(c);
}

void nt_call_free(nt_call *c)
{
    if (!c) return;
    nt_stall_unlink(c);
    if (c->method && c->method->cleanup) c->method->cleanup(c);
    if (c->recv) grpc_byte_buffer_destroy(c->recv);
    if (c->send) grpc_byte_buffer_destroy(c->send);
    grpc_slice_unref(c->status_msg);
    for (size_t i = 0; i < c->n_trailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    npvdb_server *s = c->srv;
    if (c->call) {
        grpc_call_unref(c->call);
        atomic_fetch_sub(&s->live_calls, 1);
    }
    if (c->counted) atomic_fetch_sub(&s->active, 1);
    nt_peer_release(c);
    free(c);
    /* The last call object of a stopping server wakes npvdb_server_stop. */
    if (atomic_fetch_sub(&s->call_objects, 1) == 1 &&
        atomic_load(&s->stopping)) {
        pthread_mutex_lock(&s->shutdown_mu);
        pthread_cond_broadcast(&s->shutdown_cv);
        pthread_mutex_unlock(&s->shutdown_mu);
    }
}
