/*
 * main.c -- npvdb-server: flags, wiring (workers -> store -> catalog ->
 * transport) and signals.
 *
 * SIGINT and SIGTERM are blocked in every thread (the mask is set before any
 * thread exists, so gRPC's and the engine's threads inherit it) and taken
 * synchronously by sigwait() in the main thread: no code runs in a signal
 * handler. On one of them the server stops accepting calls, lets the calls
 * in flight finish (bounded by --grace-ms), closes the store (which syncs
 * the log) and exits 0. SIGHUP is taken the same way and re-reads the token
 * file (a bad file keeps the tokens in use and logs why).
 */
#include "storage.h"
#include "transport.h"
#include "trim.h"
#include "config.h"
#include "metrics.h"

#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the port to PATH atomically (a reader never sees half a number). */
static int write_port_file(const char *path, int port)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int bad = fprintf(f, "%d\n", port) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static const char *sync_name(npvdb_sync_mode m)
{
    return m == NPVDB_SYNC_ALWAYS ? "always"
           : m == NPVDB_SYNC_NONE ? "none"
                                  : "interval";
}

/* "host:0" with the real port: the address a client should dial. */
static void bound_address(const char *listen, int port, char *out, size_t cap)
{
    const char *colon = strrchr(listen, ':');
    int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(out, cap, "%.*s:%d", host_len, listen, port);
}

/* The metrics address with its bound port, into out. */
static const char *bound_metrics(const char *listen, int port, char *out,
                                 size_t cap)
{
    bound_address(listen, port, out, cap);
    return out;
}

/* One summary line for whatever was restored (1,000 collections must not
 * print 1,000 lines): the count, the vectors, the first few names. */
static void log_restored(npvdb_catalog *cat)
{
    catalog_info *info = NULL;
    size_t n = 0;
    npvdb_error err = {0};
    if (catalog_list(cat, &info, &n, &err) != NPVDB_OK) {
        npvdb_log("restored collections (listing failed: %s)", err.msg);
        return;
    }
    if (n == 0) {
        free(info);
        npvdb_log("no collection yet: waiting for Init");
        return;
    }
    uint64_t vectors = 0;
    for (size_t i = 0; i < n; i++)
        vectors += info[i].vectors;
    char names[400];
    size_t at = 0;
    names[0] = 0;
    for (size_t i = 0; i < n && i < 5; i++) {
        int w = snprintf(names + at, sizeof names - at,
                         "%s%s (dim %u, %s, "
                         "%llu)",
                         i ? ", " : "", info[i].name, info[i].dim,
                         npvdb_metric_name(info[i].metric),
                         (unsigned long long)info[i].vectors);
        if (w < 0 || (size_t)w >= sizeof names - at) break;
        at += (size_t)w;
    }
    npvdb_log("restored %zu collection%s, %llu vectors: %s%s", n,
              n == 1 ? "" : "s", (unsigned long long)vectors, names,
              n > 5 ? ", ..." : "");
    free(info);
}

/* The limit, and whether the restored data is past it already (recovery is
 * never refused; inserts are, until deletes make room). */
static void log_memory_limit(npvdb_catalog *cat)
{
    uint64_t lim = catalog_memory_limit(cat), used = catalog_memory_used(cat);
    if (!lim) return;
    npvdb_log("memory limit %.1f MiB, %.1f MiB in use%s", lim / 1048576.0,
              used / 1048576.0,
              used > lim ? ": the restored data is past the limit already, "
                           "inserts are refused until deletes make room"
                         : "");
}

/* Opens the store, the shared engine workers and the catalog over them;
 * 0 on success (everything opened), -1 with everything closed. */
static int open_data(const npvdb_options *o, npvdb_store **store,
                     npvdb_workers **workers, npvdb_catalog **cat)
{
    npvdb_error err = {0};
    *store = NULL;
    *cat = NULL;
    *workers = npvdb_workers_create(o->threads, &err);
    if (!*workers) {
        npvdb_log("cannot start %u engine threads: %s", o->threads, err.msg);
        return -1;
    }
    npvdb_store_config scfg = {
        .data_dir = o->data_dir,
        .sync = o->sync,
        .sync_interval_ms = o->sync_interval_ms,
        .keep_snapshots = o->keep_snapshots,
        .n_workers = o->threads,
        .workers = *workers,
    };
    *store = npvdb_store_open(&scfg, NULL, &err);
    if (!*store) {
        npvdb_log("cannot open data dir %s: %s", o->data_dir, err.msg);
        npvdb_workers_free(*workers);
        return -1;
    }
    catalog_config ccfg = {.store = *store,
                           .workers = *workers,
                           .max_memory_bytes = (uint64_t)o->max_memory_mb << 20,
                           .no_rebalance = o->no_rebalance};
    *cat = catalog_open(&ccfg, &err);
    if (!*cat) {
        npvdb_log("cannot open the catalog: %s", err.msg);
        npvdb_store_close(*store);
        npvdb_workers_free(*workers);
        return -1;
    }
    return 0;
}

/* Shutdown, in the reverse order of open_data. */
static void close_data(npvdb_store *store, npvdb_workers *workers,
                       npvdb_catalog *cat)
{
    catalog_close(cat);       /* frees every collection */
    npvdb_store_close(store); /* syncs the log */
    npvdb_workers_free(workers);
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* "plaintext", "TLS" or "mutual TLS", and the tokens: the serving line. */
static void describe_security(const npvdb_options *o, npvdb_auth *auth,
                              char *out, size_t cap)
{
    const char *tls = o->tls_client_ca ? "mutual TLS"
                      : o->tls_cert    ? "TLS"
                                       : "plaintext";
    if (auth)
        snprintf(out, cap, "%s, %zu token%s from %s", tls,
                 npvdb_auth_count(auth), plural(npvdb_auth_count(auth)),
                 npvdb_auth_path(auth));
    else
        snprintf(out, cap, "%s, no tokens%s", tls,
                 o->insecure ? ", --insecure" : "");
}

/* Waits for SIGINT or SIGTERM (returned); SIGHUP re-reads the tokens. */
static int wait_for_stop(npvdb_auth *auth)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig != SIGHUP) return sig;
        npvdb_error err = {0};
        if (!auth)
            npvdb_log("SIGHUP: no --token-file, nothing to re-read");
        else if (npvdb_auth_reload(auth, &err) != NPVDB_OK)
            npvdb_log("SIGHUP: kept the %zu token%s in use: %s",
                      npvdb_auth_count(auth), plural(npvdb_auth_count(auth)),
                      err.msg);
        else
            npvdb_log("SIGHUP: %zu token%s from %s", npvdb_auth_count(auth),
                      plural(npvdb_auth_count(auth)), npvdb_auth_path(auth));
    }
}

/* The token file (--token-file or $NPVDB_TOKEN_FILE), NULL without one;
 * -1 in *rc when it cannot be loaded. */
static npvdb_auth *open_auth(const npvdb_options *o, int *rc)
{
    const char *path = o->token_file;
    if (!path) path = getenv("NPVDB_TOKEN_FILE");
    *rc = 0;
    if (!path || !*path) return NULL;
    npvdb_error err = {0};
    npvdb_auth *a = npvdb_auth_open(path, &err);
    if (!a) {
        npvdb_log("cannot start: %s", err.msg);
        *rc = -1;
    }
    return a;
}
/* How often the trimmer looks whether freed heap memory should go back to
 * the kernel (trim.h). */
#define TRIM_PERIOD_MS 1000

/* Serves until SIGINT/SIGTERM. Returns the exit status. */
static int serve(const npvdb_options *o)
{
    npvdb_error err = {0};
    npvdb_store *store;
    npvdb_workers *workers;
    npvdb_catalog *cat;
    int rc;
    /* Calls mostly wait on the engine's workers (a batch) or run small
     * searches inline: twice as many as workers keeps the cores busy. */
    unsigned calls = o->call_threads      ? o->call_threads
                     : 2 * o->threads < 4 ? 4
                                          : 2 * o->threads;
    unsigned poll = 2;
    npvdb_auth *auth = open_auth(o, &rc);
    if (rc != 0) return 1;
    npvdb_server_config cfg = {
        .listen = o->listen,
        .n_poll_threads = poll,
        .n_exec_threads = calls,
        .max_concurrent_calls = o->max_calls,
        .max_calls_per_connection = o->max_calls_conn,
        .stall_timeout_ms = o->stall_ms,
        .max_message_bytes = (size_t)o->max_message_mb << 20,
        .receive_buffer_bytes = (size_t)o->receive_buffer_mb << 20,
        .snapshot_every_bytes = (uint64_t)o->snapshot_every_mb << 20,
        .auth = auth,
        .tls_cert_file = o->tls_cert,
        .tls_key_file = o->tls_key,
        .tls_client_ca_file = o->tls_client_ca,
        .insecure = o->insecure,
    };
    /* Before the data, whose loading can take minutes. */
    if (npvdb_server_check_config(&cfg, &err) != NPVDB_OK) {
        npvdb_log("cannot start: %s", err.msg);
        npvdb_auth_free(auth);
        return 1;
    }
    if (open_data(o, &store, &workers, &cat) != 0) {
        npvdb_auth_free(auth);
        return 1;
    }
    log_restored(cat);
    log_memory_limit(cat);
    int port = 0;
    npvdb_server *srv = npvdb_server_start(&cfg, cat, store, &port, &err);
    if (!srv) {
        npvdb_log("cannot start: %s", err.msg);
        close_data(store, workers, cat);
        npvdb_auth_free(auth);
        return 1;
    }
    char addr[512], security[512];
    bound_address(o->listen, port, addr, sizeof addr);
    describe_security(o, auth, security, sizeof security);
    npvdb_log("serving on %s (%s; data dir %s, %u engine threads, %u call "
              "threads, %u polling threads, sync %s, max message %u MiB)",
              addr, security, o->data_dir, o->threads, calls, poll,
              sync_name(o->sync), o->max_message_mb);
    if (o->port_file && write_port_file(o->port_file, port) != 0)
        npvdb_log("cannot write port file %s: %s", o->port_file,
                  strerror(errno));
    npvdb_trimmer *trimmer = npvdb_trimmer_start(TRIM_PERIOD_MS);
    npvdb_metrics_sources msrc = {.srv = srv, .cat = cat, .store = store};
    npvdb_metrics *metrics = NULL;
    if (o->metrics_listen) {
        int mport = 0;
        metrics = npvdb_metrics_start(o->metrics_listen, &msrc, &mport, &err);
        if (!metrics)
            npvdb_log("metrics off: %s", err.msg);
        else
            npvdb_log(
                "metrics on http://%s/metrics",
                bound_metrics(o->metrics_listen, mport, addr, sizeof addr));
    }

    int sig = wait_for_stop(auth);
    npvdb_log("%s: shutting down (grace %u ms)",
              sig == SIGINT ? "SIGINT" : "SIGTERM", o->grace_ms);
    npvdb_trimmer_stop(trimmer);
    npvdb_metrics_stop(metrics); /* it reads the server's counters */
    npvdb_server_stop(srv, o->grace_ms);
    close_data(store, workers, cat);
    npvdb_auth_free(auth); /* after the server: calls check against it */
    npvdb_log("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    npvdb_options o;
    npvdb_options_init(&o);
    int rc = npvdb_options_parse(&o, argc, argv, stdout);
    if (rc != 0) return rc > 0 ? 0 : 2;
    npvdb_log_set_json(o.log_json);
    /* Big temporaries (k-means samples, message and search buffers) come
     * and go. A fixed threshold stops glibc from raising it after the first
     * big free, so they keep going back to the kernel instead of staying
     * resident in the heap (the engine itself is ~1.2x the raw vectors). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /* The workers grow shards in parallel during inserts; one malloc arena
     * per thread spread those small arrays over as many heaps (RSS +8% of
     * the data on a bulk load). Two arenas cost nothing measurable. */
    mallopt(M_ARENA_MAX, 2);

    /* Before any thread exists: they all inherit this mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed socket is an error, not a death */
    return serve(&o);
}
