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

typedef struct options {
    const char *listen;
    const char *data_dir;
    const char *port_file;
    unsigned threads;
    unsigned keep_snapshots;
    unsigned max_message_mb;
    unsigned receive_buffer_mb; /* 0: max_message_mb + 16 */
    unsigned snapshot_every_mb;
    unsigned grace_ms;
    unsigned call_threads;
    unsigned max_calls;
    unsigned max_calls_conn;
    unsigned stall_ms;
    npvdb_sync_mode sync;
    unsigned sync_interval_ms;
    const char *token_file; /* --token-file, else $NPVDB_TOKEN_FILE */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    int insecure;
    unsigned max_memory_mb; /* 0: no limit */
} options;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: npvdb-server [options]\n"
        "  --listen ADDR          host:port to serve on (default "
        "127.0.0.1:50051;\n"
        "                         port 0 picks a free port)\n"
        "  --data-dir DIR         snapshots and write-ahead log (default "
        "./npvdb-data)\n"
        "  --threads N            engine worker threads (default: all cores)\n"
        "  --call-threads N       threads that run calls' engine work "
        "(searches,\n"
        "                         writes, snapshots; default max(4, "
        "2*threads));\n"
        "                         two more threads move bytes and answer "
        "Health,\n"
        "                         Info and ListCollections at once\n"
        "  --max-concurrent-calls N  calls running or waiting at once "
        "(default 256);\n"
        "                         the next gets RESOURCE_EXHAUSTED\n"
        "  --max-calls-per-connection N  of those, how many one connection "
        "may hold\n"
        "                         (default 64); its next gets "
        "RESOURCE_EXHAUSTED\n"
        "  --stall-timeout-ms N   cancel a call whose reply the client has "
        "not read\n"
        "                         for N ms (default 30000)\n"
        "  --sync MODE            always (default): every write acknowledged "
        "after\n"
        "                         fsync (grouped); interval[:MS]: fsync at "
        "most every\n"
        "                         MS ms (default 100), a crash may lose the "
        "last MS;\n"
        "                         none: leave it to the OS\n"
        "  --keep-snapshots N     snapshots kept in the data dir (default 2)\n"
        "  --max-message-mb N     largest request/reply message (default 64)\n"
        "  --receive-buffer-mb N  memory gRPC may hold for requests still "
        "arriving,\n"
        "                         all connections together (default "
        "max-message-mb\n"
        "                         + 16); past it a stream is cancelled "
        "with\n"
        "                         RESOURCE_EXHAUSTED\n"
        "  --snapshot-every-mb N  snapshot on its own once the log grew by N "
        "MiB\n"
        "                         since the last one, bounding restart time "
        "(default\n"
        "                         1024; 0 = only on the Snapshot RPC)\n"
        "  --grace-ms N           on SIGINT/SIGTERM, time given to calls in "
        "flight\n"
        "                         before they are cancelled (default 10000)\n"
        "  --max-memory-mb N      refuse inserts that would take vector and\n"
        "                         payload memory past N MiB (default 0: no\n"
        "                         limit; also NPVDB_MAX_MEMORY_MB)\n"
        "  --port-file PATH       write the bound port there once serving\n"
        "security (see README, Security):\n"
        "  --token-file FILE      callers need 'authorization: Bearer TOKEN';\n"
        "                         FILE has lines 'TOKEN read' or 'TOKEN "
        "write'\n"
        "                         (default $NPVDB_TOKEN_FILE); SIGHUP re-reads "
        "it\n"
        "  --tls-cert FILE        serve TLS with this PEM certificate chain\n"
        "  --tls-key FILE         and this PEM private key\n"
        "  --tls-client-ca FILE   also require client certificates signed by "
        "these\n"
        "                         PEM CAs (mutual TLS)\n"
        "  --insecure             allow a non-loopback --listen without "
        "--token-file\n"
        "                         or --tls-client-ca (anyone who reaches it "
        "may\n"
        "                         read and change everything)\n"
        "  --help                 this text\n");
}

/* Parses a decimal in [lo, hi]; 0 on success. */
static int parse_uint(const char *flag, const char *s, unsigned lo, unsigned hi,
                      unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "npvdb-server: %s wants a number in %u..%u, got '%s'\n",
                flag, lo, hi, s);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_sync(const char *s, options *o)
{
    if (strcmp(s, "always") == 0) {
        o->sync = NPVDB_SYNC_ALWAYS;
    } else if (strcmp(s, "none") == 0) {
        o->sync = NPVDB_SYNC_NONE;
    } else if (strncmp(s, "interval", 8) == 0 && (s[8] == 0 || s[8] == ':')) {
        o->sync = NPVDB_SYNC_INTERVAL;
        o->sync_interval_ms = 100;
        if (s[8] == ':')
            return parse_uint("--sync interval:MS", s + 9, 1, 3600000,
                              &o->sync_interval_ms);
    } else {
        fprintf(stderr,
                "npvdb-server: --sync wants always, interval[:MS] or "
                "none, got '%s'\n",
                s);
        return -1;
    }
    return 0;
}

#define MAX_MEMORY_MB_MAX (1u << 30) /* 1 PiB */

static int parse_max_memory(const char *what, const char *s, options *o)
{
    return parse_uint(what, s, 0, MAX_MEMORY_MB_MAX, &o->max_memory_mb);
}

/* 0: run, 1: exit 0 (--help), -1: exit 2 (bad flags). */
static int parse_args(int argc, char **argv, options *o)
{
    enum {
        O_LISTEN = 256,
        O_DATA,
        O_THREADS,
        O_SYNC,
        O_KEEP,
        O_PORTFILE,
        O_MAXMSG,
        O_RECVBUF,
        O_GRACE,
        O_SNAPEVERY,
        O_CALLTHREADS,
        O_MAXCALLS,
        O_MAXCALLSCONN,
        O_STALL,
        O_TOKENS,
        O_TLS_CERT,
        O_TLS_KEY,
        O_TLS_CA,
        O_INSECURE,
        O_MAXMEM,
        O_HELP
    };
    static const struct option longs[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"data-dir", required_argument, NULL, O_DATA},
        {"threads", required_argument, NULL, O_THREADS},
        {"sync", required_argument, NULL, O_SYNC},
        {"keep-snapshots", required_argument, NULL, O_KEEP},
        {"port-file", required_argument, NULL, O_PORTFILE},
        {"max-message-mb", required_argument, NULL, O_MAXMSG},
        {"receive-buffer-mb", required_argument, NULL, O_RECVBUF},
        {"grace-ms", required_argument, NULL, O_GRACE},
        {"snapshot-every-mb", required_argument, NULL, O_SNAPEVERY},
        {"call-threads", required_argument, NULL, O_CALLTHREADS},
        {"max-concurrent-calls", required_argument, NULL, O_MAXCALLS},
        {"max-calls-per-connection", required_argument, NULL, O_MAXCALLSCONN},
        {"stall-timeout-ms", required_argument, NULL, O_STALL},
        {"token-file", required_argument, NULL, O_TOKENS},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"tls-client-ca", required_argument, NULL, O_TLS_CA},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"max-memory-mb", required_argument, NULL, O_MAXMEM},
        {"help", no_argument, NULL, O_HELP},
        {0, 0, 0, 0},
    };
    int opt, rc = 0;
    const char *env_mem = getenv("NPVDB_MAX_MEMORY_MB"); /* the flag wins */
    if (env_mem && env_mem[0])
        rc = parse_max_memory("NPVDB_MAX_MEMORY_MB", env_mem, o);
    while (rc == 0 && (opt = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (opt) {
        case O_LISTEN:
            o->listen = optarg;
            break;
        case O_DATA:
            o->data_dir = optarg;
            break;
        case O_PORTFILE:
            o->port_file = optarg;
            break;
        case O_THREADS:
            rc = parse_uint("--threads", optarg, 1, 1024, &o->threads);
            break;
        case O_SYNC:
            rc = parse_sync(optarg, o);
            break;
        case O_KEEP:
            rc = parse_uint("--keep-snapshots", optarg, 1, 1000,
                            &o->keep_snapshots);
            break;
        case O_MAXMSG:
            rc = parse_uint("--max-message-mb", optarg, 1, 2047,
                            &o->max_message_mb);
            break;
        case O_RECVBUF:
            rc = parse_uint("--receive-buffer-mb", optarg, 2, 1048576,
                            &o->receive_buffer_mb);
            break;
        case O_GRACE:
            rc = parse_uint("--grace-ms", optarg, 0, 3600000, &o->grace_ms);
            break;
        case O_SNAPEVERY:
            rc = parse_uint("--snapshot-every-mb", optarg, 0, 1u << 24,
                            &o->snapshot_every_mb);
            break;
        case O_CALLTHREADS:
            rc =
                parse_uint("--call-threads", optarg, 1, 1024, &o->call_threads);
            break;
        case O_MAXCALLS:
            rc = parse_uint("--max-concurrent-calls", optarg, 1, 1000000,
                            &o->max_calls);
            break;
        case O_MAXCALLSCONN:
            rc = parse_uint("--max-calls-per-connection", optarg, 1, 1000000,
                            &o->max_calls_conn);
            break;
        case O_STALL:
            rc = parse_uint("--stall-timeout-ms", optarg, 100, 86400000,
                            &o->stall_ms);
            break;
        case O_TOKENS:
            o->token_file = optarg;
            break;
        case O_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case O_TLS_KEY:
            o->tls_key = optarg;
            break;
        case O_TLS_CA:
            o->tls_client_ca = optarg;
            break;
        case O_INSECURE:
            o->insecure = 1;
            break;
        case O_MAXMEM:
            rc = parse_max_memory("--max-memory-mb", optarg, o);
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "npvdb-server: unexpected argument '%s'\n",
                argv[optind]);
        rc = -1;
    }
    if (rc == 0 &&
        (!o->tls_cert != !o->tls_key || (o->tls_client_ca && !o->tls_cert))) {
        fprintf(stderr, "npvdb-server: TLS needs both --tls-cert and "
                        "--tls-key (and --tls-client-ca needs them too)\n");
        rc = -1;
    }
    if (rc == 0 && o->receive_buffer_mb &&
        o->receive_buffer_mb <= o->max_message_mb) {
        fprintf(stderr,
                "npvdb-server: --receive-buffer-mb (%u) must exceed "
                "--max-message-mb (%u), or a largest message could never "
                "arrive\n",
                o->receive_buffer_mb, o->max_message_mb);
        rc = -1;
    }
    return rc;
}

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
static int open_data(const options *o, npvdb_store **store,
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
                           .max_memory_bytes = (uint64_t)o->max_memory_mb
                                               << 20};
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
static void describe_security(const options *o, npvdb_auth *auth, char *out,
                              size_t cap)
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
static npvdb_auth *open_auth(const options *o, int *rc)
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
static int serve(const options *o)
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

    int sig = wait_for_stop(auth);
    npvdb_log("%s: shutting down (grace %u ms)",
              sig == SIGINT ? "SIGINT" : "SIGTERM", o->grace_ms);
    npvdb_trimmer_stop(trimmer);
    npvdb_server_stop(srv, o->grace_ms);
    close_data(store, workers, cat);
    npvdb_auth_free(auth); /* after the server: calls check against it */
    npvdb_log("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    options o = {
        .listen = "127.0.0.1:50051",
        .data_dir = "./npvdb-data",
        .threads = cores > 0 ? (unsigned)cores : 1,
        .keep_snapshots = 2,
        .max_message_mb = 64,
        .snapshot_every_mb = 1024,
        .grace_ms = 10000,
        .sync = NPVDB_SYNC_ALWAYS,
    };
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 2;
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
