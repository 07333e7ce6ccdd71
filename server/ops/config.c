/*
 * config.c -- every option of npvdb-server once: its flag, its variable
 * (NPVDB_ + the flag in capitals, '-' as '_'), its help, and how it is set.
 * Variables are applied first and flags after them, through the same
 * setter, so both are checked alike and the flag wins.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind { K_STR, K_UINT, K_SWITCH, K_SYNC, K_LOGFMT };

typedef struct opt_def {
    const char *flag; /* without "--" */
    const char *arg;  /* "ADDR"; NULL for a switch */
    enum opt_kind kind;
    size_t off; /* of the field in npvdb_options */
    unsigned lo, hi;
    const char *help;
} opt_def;

#define OFF(f) offsetof(npvdb_options, f)
static const opt_def defs[] = {
    {"listen", "ADDR", K_STR, OFF(listen), 0, 0,
     "host:port to serve on (default 127.0.0.1:50051; port 0 picks one)"},
    {"data-dir", "DIR", K_STR, OFF(data_dir), 0, 0,
     "snapshots and write-ahead log (default ./npvdb-data)"},
    {"port-file", "PATH", K_STR, OFF(port_file), 0, 0,
     "write the bound port there once serving"},
    {"threads", "N", K_UINT, OFF(threads), 1, 1024,
     "engine worker threads (default: all cores)"},
    {"call-threads", "N", K_UINT, OFF(call_threads), 1, 1024,
     "threads that run calls' engine work: searches, writes, snapshots "
     "(default max(4, 2*threads)); two more move bytes and answer Health, "
     "Info and ListCollections at once"},
    {"max-concurrent-calls", "N", K_UINT, OFF(max_calls), 1, 1000000,
     "calls running or waiting at once (default 256); the next gets "
     "RESOURCE_EXHAUSTED"},
    {"max-calls-per-connection", "N", K_UINT, OFF(max_calls_conn), 1, 1000000,
     "of those, how many one connection may hold (default 64); its next gets "
     "RESOURCE_EXHAUSTED"},
    {"stall-timeout-ms", "N", K_UINT, OFF(stall_ms), 100, 86400000,
     "cancel a call whose reply the client has not read for N ms (default "
     "30000)"},
    {"sync", "MODE", K_SYNC, 0, 0, 0,
     "always (default): a write is acknowledged after fsync (grouped); "
     "interval[:MS]: fsync at most every MS ms (default 100), a power loss "
     "may lose the last MS; none: leave it to the OS"},
    {"keep-snapshots", "N", K_UINT, OFF(keep_snapshots), 1, 1000,
     "snapshots kept in the data dir (default 2)"},
    {"max-message-mb", "N", K_UINT, OFF(max_message_mb), 1, 2047,
     "largest request or reply message (default 64)"},
    {"receive-buffer-mb", "N", K_UINT, OFF(receive_buffer_mb), 2, 1048576,
     "memory gRPC may hold for requests still arriving, all connections "
     "together (default max-message-mb + 16); past it a stream is cancelled "
     "with RESOURCE_EXHAUSTED"},
    {"snapshot-every-mb", "N", K_UINT, OFF(snapshot_every_mb), 0, 1u << 24,
     "snapshot on its own once the log grew by N MiB since the last one "
     "(default 1024; 0: only on the Snapshot RPC)"},
    {"grace-ms", "N", K_UINT, OFF(grace_ms), 0, 3600000,
     "on SIGINT/SIGTERM, time given to calls in flight (default 10000)"},
    {"max-memory-mb", "N", K_UINT, OFF(max_memory_mb), 0, 1u << 30,
     "refuse inserts that would take vector and payload memory past N MiB "
     "(default 0: no limit)"},
    {"no-rebalance", NULL, K_SWITCH, OFF(no_rebalance), 0, 0,
     "keep each collection's shard count from its training: no online "
     "splits or merges (default: shards split past twice the target mean "
     "size and merge below a third of it)"},
    {"token-file", "FILE", K_STR, OFF(token_file), 0, 0,
     "callers need 'authorization: Bearer TOKEN'; FILE has lines 'TOKEN "
     "read' or 'TOKEN write'; SIGHUP re-reads it"},
    {"tls-cert", "FILE", K_STR, OFF(tls_cert), 0, 0,
     "serve TLS with this PEM certificate chain"},
    {"tls-key", "FILE", K_STR, OFF(tls_key), 0, 0, "and this PEM private key"},
    {"tls-client-ca", "FILE", K_STR, OFF(tls_client_ca), 0, 0,
     "also require client certificates signed by these PEM CAs (mutual "
     "TLS)"},
    {"insecure", NULL, K_SWITCH, OFF(insecure), 0, 0,
     "allow a non-loopback --listen without --token-file or --tls-client-ca "
     "(anyone who reaches it may read and change everything)"},
    {"metrics-listen", "ADDR", K_STR, OFF(metrics_listen), 0, 0,
     "serve Prometheus metrics at http://ADDR/metrics (default: off)"},
    {"log-format", "FORMAT", K_LOGFMT, 0, 0, 0,
     "text (default) or json: one JSON object per log line"},
};
#define N_DEFS (sizeof defs / sizeof defs[0])
enum { O_HELP = 1000, O_VERSION, O_PRINT };

void npvdb_options_init(npvdb_options *o)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:50051";
    o->data_dir = "./npvdb-data";
    o->threads = cores > 0 ? (unsigned)cores : 1;
    o->keep_snapshots = 2;
    o->max_message_mb = 64;
    o->snapshot_every_mb = 1024;
    o->grace_ms = 10000;
    o->sync = NPVDB_SYNC_ALWAYS;
}

/* "data-dir" -> "NPVDB_DATA_DIR". */
static void env_name(const char *flag, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "NPVDB_");
    for (; *flag && n + 1 < cap; flag++)
        out[n++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[n] = '\0';
}

static int bad(const char *src, const char *what, const char *v)
{
    fprintf(stderr, "npvdb-server: %s wants %s, got '%s'\n", src, what, v);
    return -1;
}

static int set_uint(const opt_def *d, const char *src, const char *v,
                    unsigned *out)
{
    char *end, what[64];
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x < d->lo || x > d->hi) {
        snprintf(what, sizeof what, "a number in %u..%u", d->lo, d->hi);
        return bad(src, what, v);
    }
    *out = (unsigned)x;
    return 0;
}

static int set_sync(npvdb_options *o, const char *src, const char *v)
{
    static const opt_def ms = {.lo = 1, .hi = 3600000};
    if (strcmp(v, "always") == 0) {
        o->sync = NPVDB_SYNC_ALWAYS;
    } else if (strcmp(v, "none") == 0) {
        o->sync = NPVDB_SYNC_NONE;
    } else if (strncmp(v, "interval", 8) == 0 && (v[8] == 0 || v[8] == ':')) {
        o->sync = NPVDB_SYNC_INTERVAL;
        o->sync_interval_ms = 100;
        if (v[8] == ':') return set_uint(&ms, src, v + 9, &o->sync_interval_ms);
    } else {
        return bad(src, "always, interval[:MS] or none", v);
    }
    return 0;
}

/* Sets option d from `v` (a flag's argument or a variable's value; NULL for
 * a switch given as a flag). `src` names it in messages. */
static int set(npvdb_options *o, const opt_def *d, const char *src,
               const char *v)
{
    char *base = (char *)o;
    switch (d->kind) {
    case K_STR:
        *(const char **)(base + d->off) = v && *v ? v : NULL;
        return 0;
    case K_UINT:
        return set_uint(d, src, v, (unsigned *)(base + d->off));
    case K_SWITCH:
        if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"))
            *(int *)(base + d->off) = 1;
        else if (!*v || !strcmp(v, "0") || !strcmp(v, "false") ||
                 !strcmp(v, "no"))
            *(int *)(base + d->off) = 0;
        else
            return bad(src, "1, true, yes, 0, false or no", v);
        return 0;
    case K_SYNC:
        return set_sync(o, src, v);
    case K_LOGFMT:
        if (strcmp(v, "text") && strcmp(v, "json"))
            return bad(src, "text or json", v);
        o->log_json = strcmp(v, "json") == 0;
        return 0;
    }
    return -1;
}

static int from_env(npvdb_options *o)
{
    char name[64];
    for (size_t i = 0; i < N_DEFS; i++) {
        env_name(defs[i].flag, name, sizeof name);
        const char *v = getenv(name);
        if (v && set(o, &defs[i], name, v) != 0) return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    char name[64];
    fprintf(f, "usage: npvdb-server [options]\n"
               "Every option can also be set by its environment variable; "
               "the flag wins.\n\n");
    for (size_t i = 0; i < N_DEFS; i++) {
        env_name(defs[i].flag, name, sizeof name);
        fprintf(f, "  --%s%s%s  (%s)\n      %s\n", defs[i].flag,
                defs[i].arg ? " " : "", defs[i].arg ? defs[i].arg : "", name,
                defs[i].help);
    }
    fprintf(f, "  --print-config\n      print the configuration these options "
               "give (one option=value a line) and exit\n"
               "  --version\n      print the version and exit\n"
               "  --help\n      this text\n");
}

static const char *sync_text(const npvdb_options *o, char *buf, size_t cap)
{
    if (o->sync == NPVDB_SYNC_ALWAYS) return "always";
    if (o->sync == NPVDB_SYNC_NONE) return "none";
    snprintf(buf, cap, "interval:%u", o->sync_interval_ms);
    return buf;
}

/* One line per option, as the table names it: what --print-config shows. */
static void print_config(const npvdb_options *o, FILE *f)
{
    const char *base = (const char *)o;
    char buf[32];
    for (size_t i = 0; i < N_DEFS; i++) {
        const opt_def *d = &defs[i];
        fprintf(f, "%s=", d->flag);
        switch (d->kind) {
        case K_STR: {
            const char *s = *(const char *const *)(base + d->off);
            fprintf(f, "%s\n", s ? s : "");
            break;
        }
        case K_UINT:
            fprintf(f, "%u\n", *(const unsigned *)(base + d->off));
            break;
        case K_SWITCH:
            fprintf(f, "%s\n",
                    *(const int *)(base + d->off) ? "true" : "false");
            break;
        case K_SYNC:
            fprintf(f, "%s\n", sync_text(o, buf, sizeof buf));
            break;
        case K_LOGFMT:
            fprintf(f, "%s\n", o->log_json ? "json" : "text");
            break;
        }
    }
}

/* getopt's table from ours; `val` is the index in defs. */
static void long_options(struct option *longs)
{
    size_t i = 0;
    for (; i < N_DEFS; i++)
        longs[i] = (struct option){
            defs[i].flag, defs[i].arg ? required_argument : no_argument, NULL,
            (int)i};
    longs[i++] = (struct option){"help", no_argument, NULL, O_HELP};
    longs[i++] = (struct option){"version", no_argument, NULL, O_VERSION};
    longs[i++] = (struct option){"print-config", no_argument, NULL, O_PRINT};
    longs[i] = (struct option){0, 0, 0, 0};
}

static int check(const npvdb_options *o)
{
    if (o->receive_buffer_mb && o->receive_buffer_mb <= o->max_message_mb) {
        fprintf(stderr,
                "npvdb-server: --receive-buffer-mb (%u) must exceed "
                "--max-message-mb (%u), or a largest message could never "
                "arrive\n",
                o->receive_buffer_mb, o->max_message_mb);
        return -1;
    }
    if (!o->tls_cert != !o->tls_key || (o->tls_client_ca && !o->tls_cert)) {
        fprintf(stderr, "npvdb-server: TLS needs both --tls-cert and "
                        "--tls-key (and --tls-client-ca needs them too)\n");
        return -1;
    }
    return 0;
}

int npvdb_options_parse(npvdb_options *o, int argc, char **argv, FILE *out)
{
    struct option longs[N_DEFS + 4];
    char src[80];
    int opt, print = 0;
    long_options(longs);
    if (from_env(o) != 0) return -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (opt == 'h' || opt == O_HELP) {
            usage(out);
            return 1;
        }
        if (opt == O_VERSION) {
            fprintf(out, "npvdb-server %s\n", NPVDB_VERSION);
            return 1;
        }
        if (opt == O_PRINT) {
            print = 1;
            continue;
        }
        if (opt < 0 || (size_t)opt >= N_DEFS) {
            usage(stderr);
            return -1;
        }
        snprintf(src, sizeof src, "--%s", defs[opt].flag);
        if (set(o, &defs[opt], src, optarg) != 0) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "npvdb-server: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (check(o) != 0) return -1;
    if (print) {
        print_config(o, out);
        return 1;
    }
    return 0;
}
