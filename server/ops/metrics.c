/*
 * metrics.c -- /metrics in Prometheus's text format, on libmicrohttpd.
 *
 * libmicrohttpd rather than a listener of our own: HTTP/1.1 parsing,
 * keep-alive, timeouts and slow clients are its problem, and it is one
 * Debian package. One internal thread serves every scrape (scrapes are rare
 * and cheap), with a connection limit and a timeout so a hostile client
 * cannot hold it.
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct npvdb_metrics {
    struct MHD_Daemon *d;
    npvdb_metrics_sources src;
};

/* ---- rendering ---- */

/* "/npvdb.v1.VectorDB/Search" -> "Search"; "/grpc.health.v1.Health/Check"
 * -> "Health.Check"; the unknown-method entry -> "unknown". */
static void method_label(const char *path, char *out, size_t cap)
{
    static const char svc[] = "/npvdb.v1.VectorDB/";
    if (strncmp(path, svc, sizeof svc - 1) == 0)
        snprintf(out, cap, "%s", path + sizeof svc - 1);
    else if (strcmp(path, "/grpc.health.v1.Health/Check") == 0)
        snprintf(out, cap, "Health.Check");
    else
        snprintf(out, cap, "unknown");
}

static void hist_out(FILE *f, const char *name, const char *labels,
                     const npvdb_hist *h)
{
    unsigned long long cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i <= NPVDB_HIST_BOUNDS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < NPVDB_HIST_BOUNDS)
            fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                    npvdb_hist_le[i], cum);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    cum);
    }
    unsigned long long ns = atomic_load(&h->sum_ns);
    fprintf(f, "%s_sum{%s} %.9f\n", name, labels, (double)ns / 1e9);
    fprintf(f, "%s_count{%s} %llu\n", name, labels,
            (unsigned long long)atomic_load(&h->count));
}

static void calls_out(FILE *f, npvdb_server *srv)
{
    size_t n;
    const npvdb_call_stats *st = npvdb_server_call_stats(srv, &n);
    char m[64], labels[96];
    fprintf(f, "# HELP npvdb_calls_total Calls finished, by method and gRPC "
               "status code.\n# TYPE npvdb_calls_total counter\n");
    for (size_t i = 0; i < n; i++) {
        method_label(st[i].method, m, sizeof m);
        for (int c = 0; c < NPVDB_N_GRPC_STATUS; c++) {
            unsigned long long v = atomic_load(&st[i].by_status[c]);
            if (v)
                fprintf(f,
                        "npvdb_calls_total{method=\"%s\",code=\"%s\"} "
                        "%llu\n",
                        m, npvdb_grpc_status_name(c), v);
        }
    }
    fprintf(f, "# HELP npvdb_call_duration_seconds Time from a call's arrival "
               "to its final status, by method.\n"
               "# TYPE npvdb_call_duration_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        if (!atomic_load(&st[i].latency.count)) continue;
        method_label(st[i].method, m, sizeof m);
        snprintf(labels, sizeof labels, "method=\"%s\"", m);
        hist_out(f, "npvdb_call_duration_seconds", labels, &st[i].latency);
    }
    long active;
    size_t queued;
    npvdb_server_load(srv, &active, &queued);
    fprintf(f,
            "# HELP npvdb_calls_active Calls admitted and not finished "
            "(Health, Info and ListCollections not counted).\n"
            "# TYPE npvdb_calls_active gauge\nnpvdb_calls_active %ld\n"
            "# HELP npvdb_calls_queued Calls waiting for a call thread.\n"
            "# TYPE npvdb_calls_queued gauge\nnpvdb_calls_queued %zu\n",
            active, queued);
}

static void gauge_head(FILE *f, const char *name, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static double ci_vectors(const catalog_info *c)
{
    return (double)c->vectors;
}
static double ci_shards(const catalog_info *c)
{
    return c->n_shards;
}
static double ci_max(const catalog_info *c)
{
    return (double)c->max_shard;
}
static double ci_min(const catalog_info *c)
{
    return (double)c->min_shard;
}
static double ci_mean(const catalog_info *c)
{
    return c->n_shards ? (double)c->vectors / c->n_shards : 0;
}
static double ci_memory(const catalog_info *c)
{
    return (double)c->memory_bytes;
}
static double ci_splits(const catalog_info *c)
{
    return (double)c->splits;
}
static double ci_merges(const catalog_info *c)
{
    return (double)c->merges;
}
static double ci_retrains(const catalog_info *c)
{
    return (double)c->retrains;
}

/* Per collection; names are [A-Za-z0-9_.-], nothing to escape. */
static void collections_out(FILE *f, npvdb_catalog *cat)
{
    catalog_info *ci = NULL;
    size_t n = 0;
    npvdb_error err = {0};
    if (catalog_list(cat, &ci, &n, &err) != NPVDB_OK) return;
    /* One list, so a new figure is one line: name, help, type, getter. */
    static const struct {
        const char *name, *help, *type;
        double (*get)(const catalog_info *);
    } g[] = {
        {"npvdb_collection_vectors", "Vectors in the collection.", "gauge",
         ci_vectors},
        {"npvdb_collection_shards", "Shards (IVF lists) of the collection.",
         "gauge", ci_shards},
        {"npvdb_collection_shard_size_max", "Vectors in its largest shard.",
         "gauge", ci_max},
        {"npvdb_collection_shard_size_mean", "Mean vectors per shard.", "gauge",
         ci_mean},
        {"npvdb_collection_shard_size_min", "Vectors in its smallest shard.",
         "gauge", ci_min},
        {"npvdb_collection_memory_bytes",
         "Memory of its vectors, keys, payloads and index.", "gauge",
         ci_memory},
        {"npvdb_collection_splits_total",
         "Shards split since the collection was loaded (replayed ones "
         "count).",
         "counter", ci_splits},
        {"npvdb_collection_merges_total",
         "Shards merged into their neighbours since the collection was "
         "loaded.",
         "counter", ci_merges},
        {"npvdb_collection_retrains_total",
         "Full trainings after the first since the collection was loaded.",
         "counter", ci_retrains},
    };
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", g[k].name, g[k].help,
                g[k].name, g[k].type);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%s{collection=\"%s\"} %.17g\n", g[k].name, ci[i].name,
                    g[k].get(&ci[i]));
    }
    gauge_head(f, "npvdb_collections", "Collections on this server.");
    fprintf(f, "npvdb_collections %zu\n", n);
    free(ci);
    gauge_head(f, "npvdb_memory_used_bytes",
               "Vector and payload memory as --max-memory-mb counts it.");
    fprintf(f, "npvdb_memory_used_bytes %llu\n",
            (unsigned long long)catalog_memory_used(cat));
    gauge_head(f, "npvdb_memory_limit_bytes", "--max-memory-mb (0: none).");
    fprintf(f, "npvdb_memory_limit_bytes %llu\n",
            (unsigned long long)catalog_memory_limit(cat));
    double at, secs;
    catalog_last_snapshot(cat, &at, &secs);
    gauge_head(f, "npvdb_last_snapshot_timestamp_seconds",
               "End of the last successful snapshot of this process (unix "
               "time; 0: none yet).");
    fprintf(f, "npvdb_last_snapshot_timestamp_seconds %.0f\n", at);
    gauge_head(f, "npvdb_last_snapshot_duration_seconds",
               "How long the last successful snapshot took.");
    fprintf(f, "npvdb_last_snapshot_duration_seconds %.6f\n", secs);
}

static void storage_out(FILE *f, npvdb_store *st)
{
    gauge_head(f, "npvdb_log_bytes_since_snapshot",
               "Bytes of write-ahead log a restart would replay.");
    fprintf(f, "npvdb_log_bytes_since_snapshot %llu\n",
            (unsigned long long)npvdb_store_log_bytes(st));
    fprintf(f, "# HELP npvdb_fsync_duration_seconds Time of each group-commit "
               "fsync of the log.\n"
               "# TYPE npvdb_fsync_duration_seconds histogram\n");
    hist_out(f, "npvdb_fsync_duration_seconds", "", npvdb_store_fsync_hist(st));
}

static void process_out(FILE *f)
{
    long pages = 0, rss = 0;
    FILE *m = fopen("/proc/self/statm", "r");
    if (m) {
        if (fscanf(m, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(m);
    }
    gauge_head(f, "npvdb_resident_memory_bytes",
               "Resident memory of the server process.");
    fprintf(f, "npvdb_resident_memory_bytes %lld\n",
            (long long)rss * sysconf(_SC_PAGESIZE));
    gauge_head(f, "npvdb_build_info", "The server's version (value 1).");
    fprintf(f, "npvdb_build_info{version=\"%s\"} 1\n", NPVDB_VERSION);
}

char *npvdb_metrics_render(const npvdb_metrics_sources *src, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    process_out(f);
    if (src->srv) calls_out(f, src->srv);
    if (src->cat) collections_out(f, src->cat);
    if (src->store) storage_out(f, src->store);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len) *len = n;
    return buf;
}

/* ---- serving ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code,
                             char *body, size_t len, int owned,
                             const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    npvdb_metrics *m = cls;
    static char not_found[] = "not found: try /metrics\n";
    static char bad_method[] = "only GET\n";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, bad_method,
                     sizeof bad_method - 1, 0, "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, not_found, sizeof not_found - 1,
                     0, "text/plain");
    size_t len = 0;
    char *body = npvdb_metrics_render(&m->src, &len);
    if (!body) return MHD_NO; /* out of memory: drop the connection */
    return reply(conn, MHD_HTTP_OK, body, len, 1,
                 "text/plain; version=0.0.4; charset=utf-8");
}

/* "host:port" or "[v6]:port" into *ss; 0 on success. */
static int parse_addr(const char *listen, struct sockaddr_storage *ss, int *v6)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host) return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return -1;
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = '\0';
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *v6 = 0;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

npvdb_metrics *npvdb_metrics_start(const char *listen,
                                   const npvdb_metrics_sources *src, int *port,
                                   npvdb_error *err)
{
    struct sockaddr_storage ss;
    int v6 = 0;
    if (parse_addr(listen, &ss, &v6) != 0) {
        npvdb_set_error(err, NPVDB_EINVAL,
                        "--metrics-listen wants HOST:PORT (an IPv4 address, "
                        "localhost or [IPv6]), got '%s'",
                        listen);
        return NULL;
    }
    npvdb_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        npvdb_set_error(err, NPVDB_ENOMEM, "out of memory");
        return NULL;
    }
    m->src = *src;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, m,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_LIMIT, 32u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->d) {
        npvdb_set_error(err, NPVDB_EINVAL,
                        "cannot serve metrics on %s (address in use or "
                        "invalid?)",
                        listen);
        free(m);
        return NULL;
    }
    if (port) {
        const union MHD_DaemonInfo *di =
            MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
        *port = di ? di->port : 0;
    }
    return m;
}

void npvdb_metrics_stop(npvdb_metrics *m)
{
    if (!m) return;
    MHD_stop_daemon(m->d);
    free(m);
}
