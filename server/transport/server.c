/*
 * server.c -- the server's life cycle: create and start the gRPC server, the
 * completion-queue threads, the accept loop (requests kept armed for every
 * method), and the clean shutdown.
 *
 * One completion queue serves both new calls and call batches. Its threads
 * only move bytes and answer the cheap calls (Health, Info,
 * ListCollections); everything else starts on the engine pool (exec.c), so
 * a Health check never waits behind a search. The door: at most
 * max_concurrent_calls counted calls live at once, the next is
 * RESOURCE_EXHAUSTED at once (no unbounded queue of received requests).
 */
#include "internal.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Requests kept outstanding per method, so bursts of new calls find one
 * without waiting for a re-arm. */
#define ARMED_PER_METHOD 2

static const nt_method *const methods[NT_N_METHODS] = {
    &nt_rpc_init,
    &nt_rpc_insert,
    &nt_rpc_get_closest,
    &nt_rpc_snapshot,
    &nt_rpc_delete,
    &nt_rpc_info,
    &nt_rpc_get,
    &nt_rpc_health,
    &nt_rpc_search,
    &nt_rpc_list_collections,
    &nt_rpc_drop_collection,
    &nt_rpc_count,
    &nt_rpc_scroll,
};

static void arm(npvdb_server *s, size_t m);
static int drain_one(npvdb_server *s);
static size_t method_index(const nt_method *m);
static void arm_unknown(npvdb_server *s);

/* ---- accepting calls ---- */

static nt_call *call_new(npvdb_server *s, const nt_method *m)
{
    nt_call *c = calloc(1, m->call_size);
    if (!c) return NULL;
    atomic_fetch_add(&s->call_objects, 1);
    c->srv = s;
    c->method = m;
    c->stats = &s->stats[method_index(m)];
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    return c;
}

static size_t method_index(const nt_method *m)
{
    for (size_t i = 0; i < NT_N_METHODS; i++)
        if (methods[i] == m) return i;
    return NT_N_METHODS; /* the unknown-method handler */
}

/* Takes one of its connection's max_calls_per_peer and one of
 * max_concurrent_calls for c, or finishes it with RESOURCE_EXHAUSTED and
 * returns 0. The per-connection bound comes first: a connection holding its
 * share is refused without touching the server-wide count. */
static int admit(npvdb_server *s, nt_call *c)
{
    long held = 0;
    if (!nt_peer_admit(c, &held)) {
        nt_result res = {0};
        nt_result_fail(&res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "this connection already has %ld calls running, its "
                       "limit (--max-calls-per-connection); retry later or "
                       "use another connection",
                       held);
        nt_call_finish(c, &res);
        return 0;
    }
    c->counted = 1; /* nt_call_free gives both back */
    if (atomic_fetch_add(&s->active, 1) < s->max_calls) return 1;
    nt_result res = {0};
    nt_result_fail(&res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                   "the server is busy: %ld calls are running, its limit "
                   "(--max-concurrent-calls); retry later",
                   s->max_calls);
    nt_call_finish(c, &res);
    return 0;
}

/* On the engine pool: the call may have waited there; if its client gave
 * up meanwhile, it costs no work. */
static void deferred_start(nt_call *c)
{
    nt_result res = {0};
    if (nt_call_gave_up(c, &res))
        nt_call_finish(c, &res);
    else
        c->method->start(c);
}

/* A request completed: a call arrived (ok) or the server is shutting down. */
static void on_accepted(nt_tag *t, int ok)
{
    nt_call *c = (nt_call *)t;
    npvdb_server *s = c->srv;
    if (!ok) {
        nt_call_free(c);
        return;
    }
    atomic_fetch_add(&s->live_calls, 1);
    if (!atomic_load(&s->stopping)) {
        size_t i = method_index(c->method);
        if (i < NT_N_METHODS)
            arm(s, i);
        else
            arm_unknown(s);
    }
    c->tag.on_done = nt_call_on_done;
    nt_call_accepted(c);
    if (!nt_auth_admit(c)) return; /* refused: its status is on the way */
    if (c->method->runs_inline)
        c->method->start(c);
    else if (admit(s, c))
        nt_call_defer(c, deferred_start);
}

static void arm(npvdb_server *s, size_t m)
{
    nt_call *c = call_new(s, methods[m]);
    if (!c) {
        npvdb_log("out of memory arming %s: calls to it will queue",
                  methods[m]->path);
        return;
    }
    c->tag.on_done = on_accepted;
    grpc_call_error e = grpc_server_request_registered_call(
        s->grpc, s->registered[m], &c->call, &c->deadline, &c->md,
        methods[m]->streaming_in ? NULL : &c->recv, s->cq, s->cq, &c->tag);
    if (e != GRPC_CALL_OK) {
        npvdb_log("cannot arm %s (%d)", methods[m]->path, (int)e);
        nt_call_free(c);
    }
}

/* ---- methods nobody registered: UNIMPLEMENTED ---- */

static void unknown_start(nt_call *c)
{
    nt_result res = {0};
    char *path = grpc_slice_to_c_string(c->details.method);
    nt_result_fail(&res, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s",
                   path ? path : "?");
    gpr_free(path);
    nt_call_finish(c, &res);
}

const nt_method nt_rpc_unknown = {
    .path = "(unknown method)",
    .runs_inline = 1,
    .call_size = sizeof(nt_call),
    .start = unknown_start,
};

static void arm_unknown(npvdb_server *s)
{
    nt_call *c = call_new(s, &nt_rpc_unknown);
    if (!c) return;
    c->tag.on_done = on_accepted;
    if (grpc_server_request_call(s->grpc, &c->call, &c->details, &c->md, s->cq,
                                 s->cq, &c->tag) != GRPC_CALL_OK)
        nt_call_free(c);
}

/* ---- threads ---- */

static void *poll_loop(void *arg)
{
    npvdb_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) return NULL;
        if (ev.type == GRPC_OP_COMPLETE) {
            nt_tag *t = ev.tag;
            t->on_done(t, ev.success);
        }
    }
}

static void on_shutdown(nt_tag *t, int ok)
{
    npvdb_server *s =
        (npvdb_server *)((char *)t - offsetof(npvdb_server, shutdown_tag));
    pthread_mutex_lock(&s->shutdown_mu);
    s->shutdown_done = 1;
    pthread_cond_broadcast(&s->shutdown_cv);
    pthread_mutex_unlock(&s->shutdown_mu);
}

/* ---- start ---- */

static npvdb_code fail(npvdb_error *err, npvdb_code code, const char *msg)
{
    if (err) {
        err->code = code;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return code;
}

static int init_locks(npvdb_server *s)
{
    if (nt_stall_start(s)) return -1;
    nt_peers_init(s);
    pthread_mutex_init(&s->auto_mu, NULL);
    pthread_cond_init(&s->auto_cv, NULL);
    pthread_mutex_init(&s->shutdown_mu, NULL);
    pthread_cond_init(&s->shutdown_cv, NULL);
    return 0;
}

static void free_locks(npvdb_server *s)
{
    nt_stall_stop(s);
    nt_peers_destroy(s);
    pthread_mutex_destroy(&s->auto_mu);
    pthread_cond_destroy(&s->auto_cv);
    pthread_mutex_destroy(&s->shutdown_mu);
    pthread_cond_destroy(&s->shutdown_cv);
}

/* Creates the gRPC server and its queue, registers the methods, binds. */
static npvdb_code create_grpc(npvdb_server *s, const npvdb_server_config *cfg,
                              int *port, npvdb_error *err)
{
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)s->max_message},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = (int)s->max_message},
        /* gRPC sets SO_REUSEPORT by default: a second server on our
         * address would then start and take half the connections. */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_ALLOW_REUSEPORT,
         .value.integer = 0},
        /* gRPC 1.51's ping abuse policy is itself the weak point under a
         * PING flood: past the strikes, every further ping in the read
         * buffer queues another GOAWAY and adds an error to the delayed
         * close, which waits for a write that the reads starve; four
         * flooding connections took the server +100 MiB and made other
         * clients miss 1 s deadlines. Without strikes a ping costs an
         * 8-byte ack, and a flooder that does not read its acks is held
         * back by TCP: RSS +5 MiB, others answered within 120 ms. */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES,
         .value.integer = 0},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
         .value.integer = NT_MAX_STREAMS_PER_CONNECTION},
    };
    /* What gRPC holds for requests still arriving (a message is buffered
     * whole before RECV_MESSAGE completes, and 1.51 checks the receive
     * limit only then), for all connections together. Past it gRPC reads
     * more slowly, then cancels a stream (RESOURCE_EXHAUSTED) and closes
     * idle connections, so a message announced as 1 GiB is cut off near
     * the quota instead of being buffered whole. */
    grpc_resource_quota *q = grpc_resource_quota_create("npvdb-receive");
    if (!q) return fail(err, NPVDB_ENOMEM, "cannot create the gRPC quota");
    grpc_resource_quota_resize(q, s->receive_buffer);
    grpc_arg all[sizeof args / sizeof args[0] + 1];
    memcpy(all, args, sizeof args);
    all[sizeof args / sizeof args[0]] =
        (grpc_arg){.type = GRPC_ARG_POINTER,
                   .key = GRPC_ARG_RESOURCE_QUOTA,
                   .value.pointer = {q, grpc_resource_quota_arg_vtable()}};
    grpc_channel_args ch = {.num_args = sizeof all / sizeof all[0],
                            .args = all};
    s->grpc = grpc_server_create(&ch, NULL);
    grpc_resource_quota_unref(q); /* the server holds its own ref */
    s->cq = grpc_completion_queue_create_for_next(NULL);
    if (!s->grpc || !s->cq)
        return fail(err, NPVDB_EINTERNAL, "cannot create the gRPC server");
    grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
    for (size_t i = 0; i < NT_N_METHODS; i++) {
        s->registered[i] = grpc_server_register_method(
            s->grpc, methods[i]->path, NULL,
            methods[i]->streaming_in
                ? GRPC_SRM_PAYLOAD_NONE
                : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
        if (!s->registered[i])
            return fail(err, NPVDB_EINTERNAL, "cannot register a method");
    }
    const char *listen = cfg->listen;
    grpc_server_credentials *creds = nt_server_credentials(cfg, err);
    if (!creds) return err ? err->code : NPVDB_EINVAL;
    *port = grpc_server_add_http2_port(s->grpc, listen, creds);
    grpc_server_credentials_release(creds);
    if (*port == 0) {
        if (err) {
            err->code = NPVDB_EINVAL;
            snprintf(err->msg, sizeof err->msg,
                     "cannot listen on %s (address in use or invalid?%s)",
                     listen,
                     cfg->tls_cert_file ? " or gRPC refused the TLS "
                                          "certificate and key: see above"
                                        : "");
        }
        return NPVDB_EINVAL;
    }
    return NPVDB_OK;
}

static npvdb_code start_threads(npvdb_server *s, npvdb_error *err)
{
    s->threads = calloc(s->n_threads, sizeof *s->threads);
    if (!s->threads) return fail(err, NPVDB_ENOMEM, "out of memory");
    for (unsigned i = 0; i < s->n_threads; i++) {
        if (pthread_create(&s->threads[i], NULL, poll_loop, s) != 0) {
            s->n_threads = i; /* the ones started are joined at stop */
            return fail(err, NPVDB_EINTERNAL,
                        "cannot start the completion-queue threads");
        }
    }
    return NPVDB_OK;
}

/* Tears down a server that never started (grpc_server_start not called). */
static void destroy_unstarted(npvdb_server *s)
{
    if (s->grpc) grpc_server_destroy(s->grpc);
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(
                   s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(s->cq);
    }
    grpc_shutdown();
    nt_exec_stop(&s->exec);
    free_locks(s);
    free(s);
}

npvdb_server *npvdb_server_start(const npvdb_server_config *cfg,
                                 npvdb_catalog *cat, npvdb_store *store,
                                 int *bound_port, npvdb_error *err)
{
    if (npvdb_server_check_config(cfg, err) != NPVDB_OK) return NULL;
    npvdb_server *s = calloc(1, sizeof *s);
    int port = 0;
    if (!s || init_locks(s)) {
        if (s) nt_stall_stop(s);
        free(s);
        fail(err, NPVDB_ENOMEM, "out of memory");
        return NULL;
    }
    s->cat = cat;
    s->store = store;
    s->auth = cfg->auth;
    s->snapshot_every = cfg->snapshot_every_bytes;
    s->n_threads = cfg->n_poll_threads ? cfg->n_poll_threads : 2;
    s->max_calls = cfg->max_concurrent_calls ? (long)cfg->max_concurrent_calls
                                             : NT_MAX_CALLS_DEFAULT;
    s->max_calls_per_peer = cfg->max_calls_per_connection
                                ? (long)cfg->max_calls_per_connection
                                : NT_MAX_CALLS_PER_CONNECTION_DEFAULT;
    s->stall_ms =
        cfg->stall_timeout_ms ? cfg->stall_timeout_ms : NT_STALL_MS_DEFAULT;
    s->max_message = cfg->max_message_bytes ? cfg->max_message_bytes
                                            : NT_MAX_MESSAGE_DEFAULT;
    if (s->max_message > (size_t)INT32_MAX) s->max_message = INT32_MAX;
    s->receive_buffer = cfg->receive_buffer_bytes
                            ? cfg->receive_buffer_bytes
                            : s->max_message + NT_RECEIVE_SLACK;
    s->shutdown_tag.on_done = on_shutdown;
    for (size_t i = 0; i < NT_N_METHODS; i++)
        s->stats[i].method = methods[i]->path;
    s->stats[NT_N_METHODS].method = nt_rpc_unknown.path;
    if (nt_exec_start(&s->exec,
                      cfg->n_exec_threads ? cfg->n_exec_threads : 4)) {
        nt_exec_stop(&s->exec);
        free_locks(s);
        free(s);
        fail(err, NPVDB_EINTERNAL, "cannot start the engine pool's threads");
        return NULL;
    }
    grpc_init();
    if (create_grpc(s, cfg, &port, err) != NPVDB_OK) {
        destroy_unstarted(s);
        return NULL;
    }
    grpc_server_start(s->grpc);
    for (size_t i = 0; i < NT_N_METHODS; i++)
        for (int j = 0; j < ARMED_PER_METHOD; j++)
            arm(s, i);
    arm_unknown(s);
    if (start_threads(s, err) != NPVDB_OK) {
        npvdb_server_stop(s, 0);
        return NULL;
    }
    if (bound_port) *bound_port = port;
    return s;
}

/* ---- stop ---- */

/* Waits for the shutdown tag until `deadline` (NULL: forever); 1 if done. */
static int wait_shutdown(npvdb_server *s, const struct timespec *deadline)
{
    pthread_mutex_lock(&s->shutdown_mu);
    while (!s->shutdown_done) {
        if (!deadline) {
            pthread_cond_wait(&s->shutdown_cv, &s->shutdown_mu);
        } else if (pthread_cond_timedwait(&s->shutdown_cv, &s->shutdown_mu,
                                          deadline) == ETIMEDOUT) {
            break;
        }
    }
    int done = s->shutdown_done;
    pthread_mutex_unlock(&s->shutdown_mu);
    return done;
}

static void wait_calls_freed(npvdb_server *s)
{
    if (s->n_threads == 0) {
        while (atomic_load(&s->call_objects) > 0)
            drain_one(s);
        return;
    }
    pthread_mutex_lock(&s->shutdown_mu);
    while (atomic_load(&s->call_objects) > 0)
        pthread_cond_wait(&s->shutdown_cv, &s->shutdown_mu);
    pthread_mutex_unlock(&s->shutdown_mu);
}

/* Runs one event of the queue on this thread; 0 once the queue is shut. */
static int drain_one(npvdb_server *s)
{
    grpc_event ev = grpc_completion_queue_next(
        s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
        nt_tag *t = ev.tag;
        t->on_done(t, ev.success);
    }
    return ev.type != GRPC_QUEUE_SHUTDOWN;
}

void npvdb_server_stop(npvdb_server *s, unsigned grace_ms)
{
    if (!s) return;
    atomic_store(&s->stopping, 1);
    grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->shutdown_tag);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += grace_ms / 1000;
    deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    if (s->n_threads == 0) {
        /* No thread polls the queue (start failed): cancel and poll here. */
        grpc_server_cancel_all_calls(s->grpc);
        while (!s->shutdown_done)
            drain_one(s);
    } else if (!wait_shutdown(s, &deadline)) {
        npvdb_log("shutdown: %ld calls still running after %u ms: cancelling",
                  atomic_load(&s->live_calls), grace_ms);
        grpc_server_cancel_all_calls(s->grpc);
        wait_shutdown(s, NULL);
    }
    /* gRPC's shutdown tag can come while a polling thread still runs a
     * call's handler, which may start another batch, or before an accepted
     * call's event was handled: the queue must stay open until every call
     * object (armed requests included: shutdown fails them) is freed. */
    wait_calls_freed(s);
    nt_exec_stop(&s->exec); /* nothing left to post jobs */
    grpc_server_destroy(s->grpc);
    grpc_completion_queue_shutdown(s->cq);
    for (unsigned i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    if (s->n_threads == 0)
        while (drain_one(s)) {
        }
    grpc_completion_queue_destroy(s->cq);
    grpc_shutdown();
    nt_autosnapshot_wait(s); /* it uses the catalog */
    free(s->threads);
    free_locks(s);
    free(s);
}

/* ---- counters ---- */

const npvdb_call_stats *npvdb_server_call_stats(const npvdb_server *s,
                                                size_t *n)
{
    *n = NT_N_METHODS + 1;
    return s->stats;
}

void npvdb_server_load(npvdb_server *s, long *active, size_t *queued)
{
    *active = atomic_load(&s->active);
    pthread_mutex_lock(&s->exec.mu);
    *queued = s->exec.queued;
    pthread_mutex_unlock(&s->exec.mu);
}

const char *npvdb_grpc_status_name(int code)
{
    return nt_status_name((grpc_status_code)code);
}
