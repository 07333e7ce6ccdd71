/*
 * transport.h -- the gRPC server of npvdb (C core API + protobuf-c).
 *
 * Serves npvdb.v1.VectorDB and grpc.health.v1.Health/Check on one address,
 * turning calls into engine and storage calls and engine errors into gRPC
 * status codes (status.c is the one place that maps them). Calls are driven
 * by a pool of threads polling one completion queue; every call is a small
 * state machine advanced by its batch completions, so a slow client only
 * holds its own call.
 *
 * Life cycle: npvdb_server_start, then (from any thread, once)
 * npvdb_server_stop. Not a library for general use: main.c is its caller.
 */
#ifndef NPVDB_TRANSPORT_H
#define NPVDB_TRANSPORT_H

#include "auth.h"
#include "catalog.h"
#include "npvdb.h"
#include "storage.h"

#include "hist.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct npvdb_server_config {
    const char *listen;            /* "host:port"; port 0 picks a free one */
    unsigned n_poll_threads;       /* completion-queue threads; 0 = 2 */
    unsigned n_exec_threads;       /* the engine pool (searches, writes,
                                      snapshots); 0 = 4 */
    unsigned max_concurrent_calls; /* calls (but Health, Info and
                                      ListCollections) alive at once; the next
                                      is RESOURCE_EXHAUSTED; 0 = 256 */
    unsigned max_calls_per_connection; /* counted calls one connection
                                          may hold; the next is
                                          RESOURCE_EXHAUSTED; 0 = 64 */
    unsigned stall_timeout_ms;         /* a call whose reply the client has not
                                          read for this long is cancelled;
                                          0 = 30 s */
    size_t receive_buffer_bytes;       /* gRPC's memory for requests still
                                          arriving, all connections together;
                                          0 = max_message_bytes + 16 MiB */
    size_t max_message_bytes;          /* receive and send limit; 0 = 64 MiB */
    uint64_t snapshot_every_bytes;     /* automatic snapshot once the log grew
                                          this much since the last; 0 = never */

    /* Who may call. Secure by default: a listen address that is not
     * loopback (npvdb_listen_is_loopback) needs auth or tls_client_ca_file,
     * or insecure set, else npvdb_server_start refuses. */
    npvdb_auth *auth; /* borrowed, outlives the server; NULL: no tokens */
    const char *tls_cert_file;      /* PEM chain; NULL: plaintext */
    const char *tls_key_file;       /* PEM key; with tls_cert_file */
    const char *tls_client_ca_file; /* PEM CAs: require and verify client
                                       certificates (needs tls_cert_file) */
    int insecure; /* 1: serve any address without authentication */
} npvdb_server_config;

typedef struct npvdb_server npvdb_server;

/* What npvdb_server_start checks before it binds, callable early (before
 * loading data): the secure-by-default rule (NPVDB_EINVAL with a message
 * naming --insecure) and that the TLS files are a set and readable PEM. */
npvdb_code npvdb_server_check_config(const npvdb_server_config *cfg,
                                     npvdb_error *err);

/* Starts serving the collections of `cat`. `cat` and `store` are borrowed
 * and must outlive the server; `store` must be the catalog's (NULL runs
 * without durability: Snapshot is FAILED_PRECONDITION, no automatic
 * snapshots). Every write goes through the catalog; the store is only read
 * for the log's size (automatic snapshots). On success *bound_port (may be
 * NULL) gets the port it listens on; on failure NULL is returned and err
 * says why. */
npvdb_server *npvdb_server_start(const npvdb_server_config *cfg,
                                 npvdb_catalog *cat, npvdb_store *store,
                                 int *bound_port, npvdb_error *err);

/* Stops accepting calls, lets the ones in flight finish for up to grace_ms,
 * cancels the rest, joins the threads and frees the server. The catalog and
 * the store are left open (the caller closes them, in that order). NULL is
 * allowed. */
void npvdb_server_stop(npvdb_server *s, unsigned grace_ms);

/* ---- counters for the metrics endpoint (ops/ reads them) ---- */

/* One per method (then one for unknown methods): calls by final gRPC
 * status, and the time from a call's arrival to its final status. */
#define NPVDB_N_GRPC_STATUS 17
typedef struct npvdb_call_stats {
    const char *method; /* "/npvdb.v1.VectorDB/Search" */
    atomic_ullong by_status[NPVDB_N_GRPC_STATUS];
    npvdb_hist latency;
} npvdb_call_stats;

/* The server's counters (valid while it lives); *n gets how many. */
const npvdb_call_stats *npvdb_server_call_stats(const npvdb_server *s,
                                                size_t *n);
/* Calls admitted and not finished; of them, waiting for a call thread. */
void npvdb_server_load(npvdb_server *s, long *active, size_t *queued);
/* The name of a gRPC status code ("OK", "NOT_FOUND", ...). */
const char *npvdb_grpc_status_name(int code);

/* One line to stderr with a UTC timestamp: "2024-01-01T12:00:00Z npvdb: ...".
 * Thread-safe (one fprintf per line). */
void npvdb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 1: each line is one JSON object {"ts","level","logger","msg"} instead,
 * as log collectors expect (--log-format json). */
void npvdb_log_set_json(int on);

#endif /* NPVDB_TRANSPORT_H */
