/*
 * internal.h -- what the transport's files share: the server state, the call
 * object every RPC kind extends, and the helpers that drive batches.
 *
 * How a call runs: server.c keeps requests armed for every method. When a
 * call arrives, its nt_call (allocated at arming time, method->call_size
 * bytes, nt_call first) passes to method->start. From then on every batch of
 * the call is started with the call's own tag; when it completes,
 * call_on_done frees the call if the batch failed (peer gone, cancelled) or
 * was the final one, and otherwise hands it to method->step. Only one batch
 * per call is in flight at a time, so a call is touched by one thread at a
 * time and needs no lock of its own.
 */
#ifndef NPVDB_TRANSPORT_INTERNAL_H
#define NPVDB_TRANSPORT_INTERNAL_H

#include "codec.h"
#include "transport.h"

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define NT_MAX_TRAILERS 2

/* Every tag given to gRPC points at one of these. */
typedef struct nt_tag {
    void (*on_done)(struct nt_tag *t, int ok);
} nt_tag;

/* ---- exec.c: the engine pool ---- */
/* A unit of work for the pool, embedded in what it works on. */
typedef struct nt_job {
    struct nt_job *next;
    void (*run)(struct nt_job *j);
} nt_job;

/* A FIFO of jobs that takes its turn with the others (one per connection:
 * peers.c embeds one in each peer). Guarded by the pool's mutex. */
typedef struct nt_lane {
    nt_job *head, *tail;
    struct nt_lane *next; /* in the pool's ring while it holds jobs */
} nt_lane;

typedef struct nt_exec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nt_lane *ring_head, *ring_tail; /* lanes with jobs, in turn order */
    nt_lane anon;                   /* jobs of calls without a peer */
    size_t queued, busy;
    int stop;
    pthread_t *threads;
    unsigned n;
} nt_exec;

/* Starts n threads; -1 if one could not start (nt_exec_stop still frees). */
int nt_exec_start(nt_exec *e, unsigned n);
/* Queues j (borrowed until j->run returns) on `lane` (NULL: the pool's own;
 * the lane must stay alive while it holds jobs). Jobs of one lane run in
 * order of posting; lanes take turns, a job each, so one connection with
 * many queued calls delays another's by at most one job per turn. */
void nt_exec_post(nt_exec *e, nt_lane *lane, nt_job *j);
/* Runs what is queued, then joins the threads. */
void nt_exec_stop(nt_exec *e);

typedef struct nt_call nt_call;
/* peers.c: one connection's counted calls. */
typedef struct nt_peer nt_peer;

/* The outcome of a request, ready to be sent: a status, its message, and on
 * success the packed reply. */
typedef struct nt_result {
    grpc_status_code status;
    char msg[512];
    grpc_byte_buffer *reply; /* owned; NULL unless status is OK */
    /* Trailing metadata sent with the status (nt_result_trailer). */
    const char *trailer_key[NT_MAX_TRAILERS]; /* static strings */
    char trailer_val[NT_MAX_TRAILERS][24];
    unsigned n_trailers;
} nt_result;

/* A unary handler: decode `buf[0..len)`, do the work, fill *res (which comes
 * zeroed: status OK, no reply). */
typedef void (*nt_unary_fn)(npvdb_server *s, const uint8_t *buf, size_t len,
                            nt_result *res);

typedef struct nt_method {
    const char *path; /* "/npvdb.v1.VectorDB/Init" */
    int streaming_in; /* 1: client-streaming (no payload with the call) */
    /* 1: cheap (Health, Info, ListCollections): starts on the polling
     * thread, not counted against max_concurrent_calls. 0: starts on the
     * engine pool; its steps run on the polling thread and hand heavy work
     * to the pool themselves (nt_call_defer). */
    int runs_inline;
    size_t call_size;          /* sizeof the RPC's call struct; nt_call first */
    void (*start)(nt_call *c); /* the call arrived */
    void (*step)(nt_call *c);  /* a non-final batch succeeded */
    void (*cleanup)(nt_call *c); /* frees RPC state; may be NULL */
    nt_unary_fn unary; /* for unary methods (start = nt_unary_start) */
} nt_method;

struct nt_call {
    nt_tag tag;       /* the tag of every batch of this call */
    nt_tag close_tag; /* RECV_CLOSE_ON_SERVER, posted when the call starts */
    nt_job job;       /* a step deferred to the engine pool */
    void (*deferred)(nt_call *c);
    /* Owners: the call's chain of batches and steps (1), the close batch
     * (1), and any further batch a method runs alongside (Insert). Freed at
     * zero. */
    atomic_int refs;
    atomic_int gone;         /* the client cancelled, or the call ended badly */
    int close_posted;        /* the close batch is in flight or done */
    int counted;             /* holds one of max_concurrent_calls */
    nt_peer *peer;           /* its connection's entry (peers.c), or NULL */
    int64_t deadline_ns;     /* CLOCK_MONOTONIC; 0 = none */
    int64_t start_ns;        /* CLOCK_MONOTONIC at arrival */
    npvdb_call_stats *stats; /* the method's counters */
    /* stall.c: counted calls are on the server's list while alive. */
    nt_call *stall_prev, *stall_next;
    int stall_linked, stall_cancelled;
    atomic_llong send_since; /* CLOCK_MONOTONIC ns a send began; 0 = none */
    npvdb_server *srv;
    const nt_method *method;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* filled for unregistered methods only */
    grpc_byte_buffer *recv;    /* the last received message, or NULL */
    grpc_byte_buffer *send;    /* the message of the batch in flight */
    grpc_slice status_msg;     /* status details of the final batch */
    grpc_metadata trailers[NT_MAX_TRAILERS]; /* of the final batch */
    size_t n_trailers;
    int cancelled; /* written by RECV_CLOSE_ON_SERVER */
    int sent_md;   /* initial metadata already sent */
    int final;     /* the batch in flight is the last one */
};

/* Number of registered methods (the table lives in server.c). */
#define NT_N_METHODS 13
#define NT_MAX_MESSAGE_DEFAULT (64u << 20)
#define NT_MAX_CALLS_DEFAULT 256
/* The default receive buffer (--receive-buffer-mb) is the message limit
 * plus this, for the other requests arriving meanwhile. */
#define NT_RECEIVE_SLACK (16u << 20)
#define NT_STALL_MS_DEFAULT 30000
/* HTTP/2 streams one connection may have open: the RFC's recommended
 * minimum, and what a client multiplexing calls rarely needs more of. */
#define NT_MAX_STREAMS_PER_CONNECTION 100
/* Counted calls one connection may hold at once (--max-calls-per-connection),
 * and the buckets of the table that counts them. */
#define NT_MAX_CALLS_PER_CONNECTION_DEFAULT 64
#define NT_PEER_BUCKETS 256

struct npvdb_server {
    grpc_server *grpc;
    grpc_completion_queue *cq;
    void *registered[NT_N_METHODS];
    pthread_t *threads;
    unsigned n_threads;
    atomic_int stopping;      /* no more re-arming */
    atomic_long live_calls;   /* calls accepted and not yet freed */
    atomic_long call_objects; /* nt_calls alive: armed requests + calls */
    atomic_long active;       /* counted calls (not runs_inline) alive */
    long max_calls;           /* bound on active */
    long max_calls_per_peer;  /* bound per connection; 0 = none */
    pthread_mutex_t peers_mu; /* guards peers */
    nt_peer *peers[NT_PEER_BUCKETS];
    size_t max_message;
    size_t receive_buffer;                    /* gRPC's resource quota */
    nt_exec exec;                             /* the engine pool */
    npvdb_call_stats stats[NT_N_METHODS + 1]; /* + unknown methods */

    /* stall.c: the stalled-reader watchdog */
    pthread_mutex_t stall_mu;
    pthread_cond_t stall_cv;
    nt_call *stall_head;
    pthread_t stall_thread;
    int stall_started, stall_stop;
    unsigned stall_ms;

    nt_tag shutdown_tag; /* completes when gRPC has no calls left */
    pthread_mutex_t shutdown_mu;
    pthread_cond_t shutdown_cv;
    int shutdown_done;

    npvdb_auth *auth; /* borrowed; NULL: calls need no token (auth.h) */

    npvdb_catalog *cat; /* borrowed: every collection and every write */
    npvdb_store *store; /* borrowed, the catalog's; NULL = no durability */

    /* Automatic snapshots (autosnapshot.c): at most one thread at a time. */
    uint64_t snapshot_every; /* log bytes; 0 = never */
    pthread_mutex_t auto_mu;
    pthread_cond_t auto_cv;
    int auto_running;
};

/* ---- rpc_snapshot.c ---- */
/* Snapshots every collection (catalog_snapshot) and logs a line. Inserts
 * and searches go on meanwhile. */
npvdb_code nt_snapshot_write(npvdb_server *s, npvdb_snapshot_info *info,
                             npvdb_error *err);

/* ---- autosnapshot.c ---- */
/* Starts a background snapshot if the log grew by snapshot_every since the
 * last one and none is running. Cheap: call after every write call. */
void nt_autosnapshot_maybe(npvdb_server *s);
/* Waits for a running automatic snapshot (shutdown, before freeing). */
void nt_autosnapshot_wait(npvdb_server *s);

/* ---- stall.c ---- */
int nt_stall_start(npvdb_server *s);
void nt_stall_stop(npvdb_server *s);
void nt_stall_link(nt_call *c);   /* a counted call was accepted */
void nt_stall_unlink(nt_call *c); /* it is being freed */
/* A send of c began (1) or completed (0). */
void nt_stall_sending(nt_call *c, int sending);

/* ---- peers.c: counted calls per connection ---- */
void nt_peers_init(npvdb_server *s);
void nt_peers_destroy(npvdb_server *s); /* frees what is left */
/* Counts c against its connection (c->call's peer). 1: admitted (c->peer
 * set, or untracked: unix socket, out of memory, no bound). 0: the
 * connection already holds max_calls_per_peer calls (*held says how many);
 * c is not counted. */
int nt_peer_admit(nt_call *c, long *held);
/* The lane of the call's connection in the pool (NULL: none). */
nt_lane *nt_peer_lane(nt_call *c);
/* Gives c's count back (nt_call_free). */
void nt_peer_release(nt_call *c);

/* ---- auth_check.c: tokens and roles at the door ---- */
/* Checks the call's `authorization: Bearer` token against the role its
 * method needs (s->auth; NULL admits everything). 1: go on with
 * method->start. 0: refused, the call's final batch (UNAUTHENTICATED or
 * PERMISSION_DENIED) is started and frees it. */
int nt_auth_admit(nt_call *c);

/* ---- tls.c ---- */
/* The credentials of the listening port: plaintext, TLS or mutual TLS as
 * cfg's tls_* files say (caller releases). NULL with err when a file is
 * missing, unreadable or not PEM, or the cert/key pair is incomplete. */
grpc_server_credentials *nt_server_credentials(const npvdb_server_config *cfg,
                                               npvdb_error *err);
/* Checks that the TLS files cfg names form a set and are readable PEM. */
npvdb_code nt_tls_check(const npvdb_server_config *cfg, npvdb_error *err);

/* ---- status.c ---- */
grpc_status_code nt_status_from_code(npvdb_code code);
const char *nt_status_name(grpc_status_code st);

/* ---- call.c: results and batches ---- */
void nt_result_fail(nt_result *res, grpc_status_code st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps an engine/storage error: status from err->code, message err->msg. */
void nt_result_error(nt_result *res, const npvdb_error *err);
/* Packs `m` as the reply (status stays OK), or fails res on ENOMEM. */
void nt_result_pack(nt_result *res, const ProtobufCMessage *m);
void nt_result_clear(nt_result *res);
/* Adds trailing metadata `key` (a static string) = value, sent with the
 * status whatever it is; ignored past NT_MAX_TRAILERS. */
void nt_result_trailer(nt_result *res, const char *key, uint64_t value);

/* Copies the received message out of c->recv into one slice (caller unrefs)
 * and destroys c->recv. */
grpc_slice nt_call_take_message(nt_call *c);
/* Starts a batch receiving the next message into c->recv. */
void nt_call_recv(nt_call *c);
/* Starts a batch sending one stream message (consumes `bb`). `flags`:
 * GRPC_WRITE_BUFFER_HINT lets gRPC hold the bytes to coalesce them with the
 * next message (the batch completes once buffered); 0 flushes. */
void nt_call_send(nt_call *c, grpc_byte_buffer *bb, uint32_t flags);
/* Starts the final batch: res->reply (if any, consumed) + status + close. */
void nt_call_finish(nt_call *c, nt_result *res);
/* The tag callback of every call batch. */
void nt_call_on_done(nt_tag *t, int ok);
/* Sets up a call that just arrived: its deadline, and for counted methods
 * the close batch that tells when the client gives up. */
void nt_call_accepted(nt_call *c);
/* Runs fn(c) on the engine pool (the call's chain waits for it: no batch of
 * the main tag may be in flight). */
void nt_call_defer(nt_call *c, void (*fn)(nt_call *c));
/* 1 and res failed (CANCELLED / DEADLINE_EXCEEDED) if the client gave up. */
int nt_call_gave_up(nt_call *c, nt_result *res);
/* The search parameters that stop a search when the client gives up. */
void nt_call_stop_params(nt_call *c, npvdb_search_params *p);
void nt_call_ref(nt_call *c);
/* Drops an owner; the last frees the call. */
void nt_call_unref(nt_call *c);
/* Frees a call no batch was ever started on (an armed request). */
void nt_call_free(nt_call *c);

/* ---- rpc_search.c: a received message read in place ---- */
/* c->recv as the spans of its slices (no joining copy; a compressed message
 * is inflated into one). nt_message_open returns -1 when out of memory;
 * after a 0, nt_message_close frees the spans and destroys c->recv. */
typedef struct nt_message {
    struct codec_span *spans;
    size_t n;
    grpc_slice joined; /* the inflated message, or empty */
} nt_message;
int nt_message_open(nt_call *c, nt_message *m);
void nt_message_close(nt_call *c, nt_message *m);

/* The engine parameters of a decoded Search/GetClosest request. */
npvdb_search_params nt_search_params(const codec_query *q);

/* ---- call_unary.c ---- */
void nt_unary_start(nt_call *c);

/* ---- db.c: access to the catalog's collections ---- */
/* Checks `name` (catalog_check_name, with its wire length) and holds the
 * collection in *ref; or fails res (INVALID_ARGUMENT for a bad name,
 * NOT_FOUND "collection 'x' not found") and returns 0 with *ref zeroed. */
int nt_acquire(npvdb_server *s, const codec_name *name, catalog_ref *ref,
               nt_result *res);
void nt_release(npvdb_server *s, catalog_ref *ref);
/* 1 (for now): a missing "default" is FAILED_PRECONDITION "... call Init
 * first", as before collections; see db.c. */
/* Checks a name without looking it up; 0 and res failed if bad. */
int nt_check_name(const codec_name *name, nt_result *res);
/* The name as the catalog resolves it ("" -> "default"). */
const char *nt_name(const codec_name *name);
/* Waits for log record `seq` (0 = nothing to wait for); fails res if the
 * log could not be synced. */
void nt_wait_durable(npvdb_server *s, uint64_t seq, nt_result *res);
int nt_metric_to_proto(npvdb_metric m);
/* Packs `m` followed by n payloads as repeated field `field` (a reply that
 * protobuf-c packs but whose payloads codec.c encodes); RESOURCE_EXHAUSTED
 * past the message limit. */
void nt_result_pack_payloads(npvdb_server *s, nt_result *res,
                             const ProtobufCMessage *m,
                             const npvdb_payload *payloads, size_t n,
                             unsigned field);

/* ---- the RPCs, one file each ---- */
extern const nt_method nt_rpc_init;
extern const nt_method nt_rpc_insert;
extern const nt_method nt_rpc_get_closest;
extern const nt_method nt_rpc_snapshot;
extern const nt_method nt_rpc_delete;
extern const nt_method nt_rpc_info;
extern const nt_method nt_rpc_get;
extern const nt_method nt_rpc_search;
extern const nt_method nt_rpc_list_collections;
extern const nt_method nt_rpc_drop_collection;
extern const nt_method nt_rpc_count;
extern const nt_method nt_rpc_scroll;
extern const nt_method nt_rpc_health;
extern const nt_method nt_rpc_unknown;

#endif /* NPVDB_TRANSPORT_INTERNAL_H */
