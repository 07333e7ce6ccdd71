/*
 * load_bench.c -- npvdb-load-bench: N concurrent clients on loopback mixing
 * streaming inserts, upserts, deletes, Search, GetClosest, Get and Snapshot
 * for a bounded time (issue 10, "Load"), then a check of what the server
 * kept, and a table of calls/s and p50/p99/p99.9 latency per call kind.
 *
 * Each client is a thread with its own connection (npvdb_client handle) and
 * its own key space "c<client>-<j>", j < --keys; nobody else writes those
 * keys, so the client knows exactly what the server must hold for each of
 * them: absent, or the vector of the last acknowledged version (a vector is
 * a pure function of client, key and version). The metric is L2, so the
 * server stores vectors exactly as sent and Get must return them bit for
 * bit. Checks, all counted as errors:
 *   - during the run: every call answers OK (RESOURCE_EXHAUSTED included:
 *     32 clients stay far below --max-concurrent-calls' 256); an insert's
 *     reply counts exactly the new and the replaced keys and the messages
 *     sent; a delete's count is exactly the keys present; a Get returns the
 *     last acknowledged vector of every present key and reports every absent
 *     key missing; search hits are at most k, sorted by distance;
 *   - afterwards (a fresh connection): Get of every key of every client
 *     (present with its exact last value, or missing), and Info's vector
 *     count equals the number of keys that must be present;
 *   - memory: the server's VmRSS growth over its level after Init stays
 *     within 2 x the engine's own count of its data (Info.memory_bytes,
 *     itself checked to be between the raw data size and 3x it) plus
 *     RSS_SLACK_MIB; see check_rss. Skipped under AddressSanitizer.
 *
 * Exit status 0 when there was no error, 1 otherwise, 2 on bad flags.
 *
 *   npvdb-load-bench --server build/server/npvdb-server --seconds 60
 *   npvdb-load-bench --addr 127.0.0.1:50051 --pid PID   (a running server;
 *                                                 it must be empty)
 */
#include "npvdb_client.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* RSS the server may add over its level after Init beyond 2x its data:
 * gRPC's per-connection buffers for 33 connections, the glibc malloc arenas
 * of the polling and call threads (each keeps freed memory for reuse), the
 * write-ahead log's buffers and one snapshot's encode buffers. */
#define RSS_SLACK_MIB 64

enum kind {
    K_INSERT,
    K_UPSERT,
    K_DELETE,
    K_SEARCH,
    K_CLOSEST,
    K_GET,
    K_SNAPSHOT,
    K_N
};
static const char *const kind_name[K_N] = {
    "insert", "upsert", "delete", "search", "getclosest", "get", "snapshot"};
/* Percent of each client's calls (snapshots are timed, not drawn). */
/* Inserts add about 80 keys a call, deletes remove up to 64: the key space
 * stays about half full. */
static const int kind_weight[K_N] = {12, 18, 15, 20, 15, 20, 0};

typedef struct options {
    const char *server; /* binary to start, or NULL */
    const char *addr;   /* a running server */
    long pid;           /* its pid (RSS check), 0 = unknown */
    double seconds;
    int clients;
    uint32_t keys;
    uint32_t dim;
    uint32_t shards;
    uint32_t batch;        /* keys per insert message */
    uint32_t k;            /* search k */
    uint32_t nq;           /* queries per search call */
    double snapshot_every; /* seconds between client 0's snapshots */
    uint64_t seed;
    int keep;
    const char *server_args[16];
    int n_server_args;
} options;

typedef struct lat {
    uint32_t *us; /* latency of each call in microseconds */
    size_t n, cap;
    uint64_t rows; /* vectors moved (inserted, deleted, queried, got) */
} lat;

typedef struct client {
    int id;
    const options *o;
    const char *addr;
    uint32_t *ver; /* per key: 0 absent, UNKNOWN, else last acked version */
    lat lats[K_N];
    uint64_t errors;
    uint64_t rng;
} client;

#define UNKNOWN UINT32_MAX

static atomic_int stop_flag;
static atomic_ullong total_errors;
static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;
static int printed_errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "npvdb-load-bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "npvdb-load-bench: out of memory\n");
        exit(1);
    }
    return p;
}

/* Counts an error and prints the first few. */
static void error_at(client *c, const char *fmt, ...)
{
    if (c) c->errors++;
    atomic_fetch_add(&total_errors, 1);
    pthread_mutex_lock(&print_mu);
    if (printed_errors++ < 20) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "ERROR client %d: ", c ? c->id : -1);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    pthread_mutex_unlock(&print_mu);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rnd(client *c, uint32_t n)
{
    return (uint32_t)(splitmix(&c->rng) % n);
}

/* The vector of key j of client cl at version v: exact floats in [-1, 1). */
static void value_of(const options *o, int cl, uint32_t j, uint32_t v,
                     float *out)
{
    uint64_t s = o->seed ^ ((uint64_t)cl << 44) ^ ((uint64_t)j << 20) ^ v;
    for (uint32_t d = 0; d < o->dim; d++)
        out[d] = (float)((int32_t)(splitmix(&s) >> 40) - (1 << 23)) /
                 (float)(1 << 23);
}

static void key_of(int cl, uint32_t j, char *buf, size_t len)
{
    snprintf(buf, len, "c%d-%" PRIu32, cl, j);
}

static void lat_add(lat *l, double seconds, uint64_t rows)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint32_t *us = realloc(l->us, cap * sizeof *us);
        if (!us) {
            fprintf(stderr, "npvdb-load-bench: out of memory\n");
            exit(1);
        }
        l->us = us;
        l->cap = cap;
    }
    double us = seconds * 1e6;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->rows += rows;
}

/* Picks up to `want` distinct keys of client c whose state is present
 * (`present` 1) or absent (0). Returns how many. */
static size_t pick(client *c, int present, size_t want, uint32_t *out)
{
    size_t n = 0;
    for (int tries = 0; n < want && tries < (int)want * 20; tries++) {
        uint32_t j = rnd(c, c->o->keys);
        uint32_t v = c->ver[j];
        if (v == UNKNOWN || (v != 0) != present) continue;
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = out[i] == j;
        if (!dup) out[n++] = j;
    }
    return n;
}

/* One Insert stream of 1..4 messages: new keys (K_INSERT) or present keys
 * with a new version (K_UPSERT). */
static void do_insert(client *c, npvdb_client *h, enum kind kind)
{
    const options *o = c->o;
    size_t msgs = 1 + rnd(c, 4), per = o->batch;
    uint32_t *js = xmalloc(msgs * per * sizeof *js);
    size_t n = pick(c, kind == K_UPSERT, msgs * per, js);
    if (n == 0) {
        free(js);
        return;
    }
    msgs = (n + per - 1) / per;
    float *rows = xmalloc(per * o->dim * sizeof *rows);
    char(*names)[32] = xmalloc(per * sizeof *names);
    const char **keys = xmalloc(per * sizeof *keys);
    npvdb_client_error err;
    double t0 = now_s();
    npvdb_client_stream *s = npvdb_client_insert_begin(h, o->dim, &err);
    npvdb_status rc = s ? NPVDB_STATUS_OK : err.code;
    for (size_t m = 0; s && m < msgs && rc == NPVDB_STATUS_OK; m++) {
        size_t lo = m * per, cnt = n - lo < per ? n - lo : per;
        for (size_t i = 0; i < cnt; i++) {
            uint32_t j = js[lo + i];
            key_of(c->id, j, names[i], sizeof names[i]);
            keys[i] = names[i];
            value_of(o, c->id, j, c->ver[j] + 1, rows + i * o->dim);
        }
        rc = npvdb_client_stream_send(s, keys, rows, cnt, &err);
    }
    npvdb_client_insert_reply rep = {0};
    if (s) {
        npvdb_status frc = npvdb_client_stream_finish(s, &rep, &err);
        if (rc == NPVDB_STATUS_OK) rc = frc;
    }
    double dt = now_s() - t0;
    if (rc != NPVDB_STATUS_OK) {
        error_at(c, "%s stream of %zu keys: %s: %s", kind_name[kind], n,
                 npvdb_status_name(rc), err.msg);
        for (size_t i = 0; i < n; i++)
            c->ver[js[i]] = UNKNOWN; /* some messages may have been applied */
    } else {
        uint64_t want_new = kind == K_INSERT ? n : 0;
        if (rep.inserted != want_new || rep.replaced != n - want_new ||
            rep.messages != msgs)
            error_at(c,
                     "%s of %zu keys in %zu messages: reply says %" PRIu64
                     " inserted, %" PRIu64 " replaced, %" PRIu64 " messages",
                     kind_name[kind], n, msgs, rep.inserted, rep.replaced,
                     rep.messages);
        for (size_t i = 0; i < n; i++)
            c->ver[js[i]]++; /* pick() never hands out UNKNOWN keys */
        lat_add(&c->lats[kind], dt, n);
    }
    free(keys);
    free(names);
    free(rows);
    free(js);
}

static void do_delete(client *c, npvdb_client *h)
{
    uint32_t js[68];
    size_t n = pick(c, 1, 1 + rnd(c, 64), js);
    size_t absent = pick(c, 0, 4, js + n); /* deleting nothing is fine too */
    char names[68][32];
    const char *keys[68];
    for (size_t i = 0; i < n + absent; i++) {
        key_of(c->id, js[i], names[i], sizeof names[i]);
        keys[i] = names[i];
    }
    npvdb_client_error err;
    uint64_t deleted = 0;
    double t0 = now_s();
    npvdb_status rc = npvdb_client_delete(h, keys, n + absent, &deleted, &err);
    double dt = now_s() - t0;
    if (rc != NPVDB_STATUS_OK) {
        error_at(c, "delete: %s: %s", npvdb_status_name(rc), err.msg);
        for (size_t i = 0; i < n; i++)
            c->ver[js[i]] = UNKNOWN;
        return;
    }
    if (deleted != n)
        error_at(c,
                 "delete of %zu present + %zu absent keys: %" PRIu64 " deleted",
                 n, absent, deleted);
    for (size_t i = 0; i < n; i++)
        c->ver[js[i]] = 0;
    lat_add(&c->lats[K_DELETE], dt, n + absent);
}

static void do_search(client *c, npvdb_client *h, enum kind kind)
{
    const options *o = c->o;
    float *q = xmalloc((size_t)o->nq * o->dim * sizeof *q);
    for (size_t i = 0; i < (size_t)o->nq * o->dim; i++)
        q[i] = (float)rnd(c, 2000) / 1000.0f - 1.0f;
    npvdb_client_results r;
    npvdb_client_error err;
    double t0 = now_s();
    npvdb_status rc =
        kind == K_SEARCH
            ? npvdb_client_search(h, q, o->nq, o->dim, o->k, 0, &r, &err)
            : npvdb_client_get_closest(h, q, o->nq, o->dim, o->k, 0, &r, &err);
    double dt = now_s() - t0;
    free(q);
    if (rc != NPVDB_STATUS_OK) {
        error_at(c, "%s: %s: %s", kind_name[kind], npvdb_status_name(rc),
                 err.msg);
        return;
    }
    for (size_t i = 0; i < r.nq; i++) {
        if (r.counts[i] > o->k || r.counts[i] == 0) {
            error_at(c, "%s: query %zu has %u hits (k %u)", kind_name[kind], i,
                     r.counts[i], o->k);
            break;
        }
        for (uint32_t j = 1; j < r.counts[i]; j++)
            if (r.distances[i * r.k + j] < r.distances[i * r.k + j - 1]) {
                error_at(c, "%s: query %zu: hits not sorted", kind_name[kind],
                         i);
                break;
            }
    }
    npvdb_client_results_free(&r);
    lat_add(&c->lats[kind], dt, o->nq);
}

/* Gets n keys of client cl (indices js) and checks each against ver[]:
 * present with the exact vector of its version, or missing. Keys in state
 * UNKNOWN are not checked. Returns 0 when the call itself failed. */
static int get_check(client *c, npvdb_client *h, int cl, const uint32_t *ver,
                     const uint32_t *js, size_t n, double *dt)
{
    const options *o = c->o;
    char(*names)[32] = xmalloc(n * sizeof *names);
    const char **keys = xmalloc(n * sizeof *keys);
    float *want = xmalloc(o->dim * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        key_of(cl, js[i], names[i], sizeof names[i]);
        keys[i] = names[i];
    }
    npvdb_client_vectors v;
    npvdb_client_error err;
    double t0 = now_s();
    npvdb_status rc = npvdb_client_get(h, keys, n, o->dim, &v, &err);
    if (dt) *dt = now_s() - t0;
    int ok = rc == NPVDB_STATUS_OK;
    if (!ok) {
        error_at(c, "get of %zu keys of client %d: %s: %s", n, cl,
                 npvdb_status_name(rc), err.msg);
    } else {
        /* Found keys come in request order, then the missing ones. */
        size_t f = 0, m = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t s = ver[js[i]];
            int found = f < v.n_found && strcmp(v.keys[f], keys[i]) == 0;
            int missing =
                !found && m < v.n_missing && strcmp(v.missing[m], keys[i]) == 0;
            if (!found && !missing) {
                error_at(c, "get: key %s neither found nor missing in order",
                         keys[i]);
                break;
            }
            if (s == UNKNOWN) {
                f += found;
                m += missing;
                continue;
            }
            if (found) {
                if (s == 0)
                    error_at(c, "get: deleted key %s is present", keys[i]);
                else {
                    value_of(o, cl, js[i], s, want);
                    if (memcmp(want, v.vectors + f * o->dim,
                               o->dim * sizeof *want) != 0)
                        error_at(c,
                                 "get: key %s does not hold version %u's "
                                 "vector",
                                 keys[i], s);
                }
                f++;
            } else {
                if (s != 0)
                    error_at(c,
                             "get: acknowledged key %s (version %u) is "
                             "missing",
                             keys[i], s);
                m++;
            }
        }
        npvdb_client_vectors_free(&v);
    }
    free(want);
    free(keys);
    free(names);
    return ok;
}

static void do_get(client *c, npvdb_client *h)
{
    uint32_t js[16];
    for (int i = 0; i < 16; i++)
        js[i] = rnd(c, c->o->keys); /* present and absent alike */
    double dt;
    if (get_check(c, h, c->id, c->ver, js, 16, &dt))
        lat_add(&c->lats[K_GET], dt, 16);
}

static void do_snapshot(client *c, npvdb_client *h)
{
    npvdb_client_snapshot_info info;
    npvdb_client_error err;
    double t0 = now_s();
    npvdb_status rc = npvdb_client_snapshot(h, &info, &err);
    double dt = now_s() - t0;
    if (rc != NPVDB_STATUS_OK)
        error_at(c, "snapshot: %s: %s", npvdb_status_name(rc), err.msg);
    else
        lat_add(&c->lats[K_SNAPSHOT], dt, info.vectors);
}

/* Fills the even keys (version 1) before the timed run, so the run starts
 * from a half-full key space and the data is not only what the run wrote. */
static void fill(client *c, npvdb_client *h)
{
    const options *o = c->o;
    size_t per = 512, n = (o->keys + 1) / 2;
    float *rows = xmalloc(per * o->dim * sizeof *rows);
    char(*names)[32] = xmalloc(per * sizeof *names);
    const char **keys = xmalloc(per * sizeof *keys);
    npvdb_client_error err;
    npvdb_client_stream *s = npvdb_client_insert_begin(h, o->dim, &err);
    npvdb_status rc = s ? NPVDB_STATUS_OK : err.code;
    for (size_t lo = 0; s && lo < n && rc == NPVDB_STATUS_OK; lo += per) {
        size_t cnt = n - lo < per ? n - lo : per;
        for (size_t i = 0; i < cnt; i++) {
            uint32_t j = (uint32_t)(2 * (lo + i));
            key_of(c->id, j, names[i], sizeof names[i]);
            keys[i] = names[i];
            value_of(o, c->id, j, 1, rows + i * o->dim);
        }
        rc = npvdb_client_stream_send(s, keys, rows, cnt, &err);
    }
    if (s) {
        npvdb_status frc = npvdb_client_stream_finish(s, NULL, &err);
        if (rc == NPVDB_STATUS_OK) rc = frc;
    }
    if (rc != NPVDB_STATUS_OK)
        error_at(c, "fill: %s: %s", npvdb_status_name(rc), err.msg);
    for (uint32_t j = 0; j < o->keys; j++)
        c->ver[j] = rc != NPVDB_STATUS_OK ? UNKNOWN : (j % 2 == 0);
    free(keys);
    free(names);
    free(rows);
}

typedef struct run_ctx {
    client *c;
    pthread_barrier_t *start;
} run_ctx;

static void *client_main(void *arg)
{
    run_ctx *rc = arg;
    client *c = rc->c;
    npvdb_client_error err;
    npvdb_client *h = npvdb_client_connect(c->addr, 20000, &err);
    if (!h) error_at(c, "connect: %s", err.msg);
    if (h) {
        npvdb_client_set_timeout(h, 60000);
        fill(c, h);
    }
    pthread_barrier_wait(rc->start);
    if (!h) return NULL;
    int total = 0;
    for (int k = 0; k < K_N; k++)
        total += kind_weight[k];
    double t_start = now_s(), next_snap = t_start + c->o->snapshot_every / 2;
    while (!atomic_load(&stop_flag)) {
        if (c->id == 0 && c->o->snapshot_every > 0 && now_s() >= next_snap) {
            do_snapshot(c, h);
            next_snap += c->o->snapshot_every;
            continue;
        }
        int r = (int)rnd(c, (uint32_t)total), kind = 0;
        while (r >= kind_weight[kind])
            r -= kind_weight[kind++];
        switch (kind) {
        case K_INSERT:
        case K_UPSERT:
            do_insert(c, h, (enum kind)kind);
            break;
        case K_DELETE:
            do_delete(c, h);
            break;
        case K_SEARCH:
        case K_CLOSEST:
            do_search(c, h, (enum kind)kind);
            break;
        case K_GET:
            do_get(c, h);
            break;
        default:
            break;
        }
    }
    npvdb_client_close(h);
    return NULL;
}

/* ---- the server (started here, or given) ---- */

static char root[256];
static pid_t server_pid;

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int start_server(const options *o, char *addr, size_t addr_len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/npvdb-load-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return -1;
    }
    char port_file[300], data_dir[300], log[300];
    snprintf(port_file, sizeof port_file, "%s/port", root);
    snprintf(data_dir, sizeof data_dir, "%s/data", root);
    snprintf(log, sizeof log, "%s/server.log", root);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *argv[40] = {o->server,     "--listen", "127.0.0.1:0",
                                "--port-file", port_file,  "--data-dir",
                                data_dir};
        int argc = 7;
        for (int i = 0; i < o->n_server_args; i++)
            argv[argc++] = o->server_args[i];
        argv[argc] = NULL;
        execv(o->server, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", o->server, strerror(errno));
        _exit(127);
    }
    server_pid = pid;
    for (int waited = 0; waited < 60000; waited += 10) {
        FILE *f = fopen(port_file, "r");
        char line[64] = "";
        if (f) {
            if (!fgets(line, sizeof line, f)) line[0] = '\0';
            fclose(f);
        }
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\n') {
            char *colon = strrchr(line, ':');
            long port = strtol(colon ? colon + 1 : line, NULL, 10);
            snprintf(addr, addr_len, "127.0.0.1:%ld", port);
            return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "npvdb-server exited at start (see %s)\n", log);
            server_pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "npvdb-server wrote no port file in 60 s\n");
    return -1;
}

/* SIGTERM; 0 when the server exited 0. */
static int stop_server(void)
{
    if (!server_pid) return 0;
    kill(server_pid, SIGTERM);
    int st = -1;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(server_pid, &st, WNOHANG);
        if (r == server_pid) break;
        if (r < 0 || waited > 60000) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, &st, 0);
            st = -1;
            break;
        }
        sleep_ms(10);
    }
    server_pid = 0;
    if (st != 0) fprintf(stderr, "npvdb-server exit status %d\n", st);
    return st == 0 ? 0 : -1;
}

/* A /proc/PID/status size line in KiB, or -1. */
static long proc_kib(long pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int sanitized(long pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%ld/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int yes = 0;
    while (!yes && fgets(line, sizeof line, f))
        yes = strstr(line, "libasan") != NULL;
    fclose(f);
    return yes;
}

/* ---- report ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct(const uint32_t *v, size_t n, double p)
{
    if (!n) return NAN;
    size_t i = (size_t)ceil(p * (double)n);
    i = i ? i - 1 : 0;
    if (i >= n) i = n - 1;
    return v[i] / 1000.0;
}

static void report(client *cs, int n, double seconds)
{
    printf("\n%-11s %9s %9s %11s %9s %9s %9s %9s\n", "call", "calls", "calls/s",
           "vectors/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms");
    size_t all = 0;
    for (int k = 0; k < K_N; k++) {
        size_t tot = 0;
        uint64_t rows = 0;
        for (int i = 0; i < n; i++) {
            tot += cs[i].lats[k].n;
            rows += cs[i].lats[k].rows;
        }
        uint32_t *v = xmalloc(tot * sizeof *v);
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            if (!cs[i].lats[k].n) continue; /* no samples: us may be NULL */
            memcpy(v + at, cs[i].lats[k].us, cs[i].lats[k].n * sizeof *v);
            at += cs[i].lats[k].n;
        }
        qsort(v, tot, sizeof *v, cmp_u32);
        printf("%-11s %9zu %9.1f %11.0f %9.2f %9.2f %9.2f %9.2f\n",
               kind_name[k], tot, (double)tot / seconds, (double)rows / seconds,
               pct(v, tot, 0.5), pct(v, tot, 0.99), pct(v, tot, 0.999),
               tot ? v[tot - 1] / 1000.0 : NAN);
        all += tot;
        free(v);
    }
    printf("%-11s %9zu %9.1f\n", "all", all, (double)all / seconds);
}

/* ---- after the run ---- */

/* Every key of every client, fresh connection: returns how many must be
 * present. */
static uint64_t verify_all(const options *o, const char *addr, client *cs)
{
    npvdb_client_error err;
    npvdb_client *h = npvdb_client_connect(addr, 20000, &err);
    if (!h) {
        error_at(NULL, "verify: connect: %s", err.msg);
        return 0;
    }
    uint64_t present = 0, unknown = 0;
    uint32_t *js = xmalloc(o->keys * sizeof *js);
    for (uint32_t j = 0; j < o->keys; j++)
        js[j] = j;
    client v = {.id = -1, .o = o};
    for (int i = 0; i < o->clients; i++) {
        for (uint32_t j = 0; j < o->keys; j++) {
            present += cs[i].ver[j] != 0 && cs[i].ver[j] != UNKNOWN;
            unknown += cs[i].ver[j] == UNKNOWN;
        }
        for (uint32_t lo = 0; lo < o->keys; lo += 1000) {
            uint32_t n = o->keys - lo < 1000 ? o->keys - lo : 1000;
            get_check(&v, h, i, cs[i].ver, js + lo, n, NULL);
        }
    }
    free(js);
    npvdb_client_info info;
    if (npvdb_client_info_get(h, &info, &err) != NPVDB_STATUS_OK) {
        error_at(NULL, "verify: info: %s", err.msg);
    } else {
        if (!unknown && info.vectors != present)
            error_at(NULL,
                     "verify: Info counts %" PRIu64 " vectors, %" PRIu64
                     " acknowledged keys must be present",
                     info.vectors, present);
        printf("verified: %" PRIu64 " keys present with their last "
               "acknowledged vector, %" PRIu64 " absent, Info.vectors %" PRIu64
               ", memory_bytes %" PRIu64 "\n",
               present, (uint64_t)o->clients * o->keys - present - unknown,
               info.vectors, info.memory_bytes);
        npvdb_client_info_free(&info);
    }
    npvdb_client_close(h);
    return present;
}

/* The RSS bound, see the top of the file. `base` is VmRSS after Init. */
static void check_rss(const options *o, const char *addr, long pid,
                      long base_kib, uint64_t present)
{
    if (pid <= 0) {
        printf("rss: server pid unknown, not checked\n");
        return;
    }
    long rss = proc_kib(pid, "VmRSS"), hwm = proc_kib(pid, "VmHWM");
    npvdb_client_error err;
    npvdb_client *h = npvdb_client_connect(addr, 20000, &err);
    npvdb_client_info info = {0};
    if (!h || npvdb_client_info_get(h, &info, &err) != NPVDB_STATUS_OK) {
        error_at(NULL, "rss: info: %s", err.msg);
        npvdb_client_close(h);
        return;
    }
    npvdb_client_close(h);
    /* Raw data: the floats and the key bytes (average key length). */
    double keylen = 0;
    for (int i = 0; i < o->clients; i++)
        keylen += (double)snprintf(NULL, 0, "c%d-", i);
    keylen = keylen / o->clients + log10((double)o->keys) + 1;
    double raw = (double)present * (o->dim * 4.0 + keylen);
    double mem = (double)info.memory_bytes;
    double grown = (double)(rss - base_kib) * 1024.0;
    double bound = 2.0 * mem + RSS_SLACK_MIB * 1048576.0;
    printf("rss: VmRSS %.1f MiB (after Init %.1f MiB, peak %.1f MiB); data "
           "%.1f MiB raw, %.1f MiB by the engine's count; growth %.1f MiB, "
           "bound 2 x engine + %d MiB = %.1f MiB\n",
           rss / 1024.0, base_kib / 1024.0, hwm / 1024.0, raw / 1048576.0,
           mem / 1048576.0, grown / 1048576.0, RSS_SLACK_MIB,
           bound / 1048576.0);
    npvdb_client_info_free(&info);
    if (sanitized(pid)) {
        printf("rss: the server runs under AddressSanitizer: not checked\n");
        return;
    }
    if (mem < raw || mem > 3.0 * raw + 1048576.0)
        error_at(NULL,
                 "rss: the engine counts %.0f bytes for %.0f bytes of raw data",
                 mem, raw);
    if (grown > bound)
        error_at(NULL, "rss: grew by %.1f MiB, more than the bound %.1f MiB",
                 grown / 1048576.0, bound / 1048576.0);
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: npvdb-load-bench (--server BIN | --addr HOST:PORT [--pid "
            "PID]) [options]\n"
            "  --server BIN       start BIN on a free loopback port with a "
            "fresh data dir\n"
            "  --server-arg ARG   pass ARG to it (repeatable)\n"
            "  --addr HOST:PORT   use a running, empty server instead\n"
            "  --pid PID          its pid, for the memory check\n"
            "  --seconds S        length of the mixed run (default 10)\n"
            "  --clients N        concurrent clients, one connection each "
            "(default 32)\n"
            "  --keys N           keys each client owns (default 4000; half "
            "inserted first)\n"
            "  --dim D            vector dimension (default 64)\n"
            "  --shards N         Init's n_shards (default 16)\n"
            "  --batch N          keys per insert message (default 32)\n"
            "  --k K --nq N       search k (default 10), queries per call "
            "(default 4)\n"
            "  --snapshot-every S client 0 takes a Snapshot every S seconds "
            "(default 4)\n"
            "  --seed N           (default 1)\n"
            "  --keep             keep the started server's directory\n");
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.seconds = 10,
                   .clients = 32,
                   .keys = 4000,
                   .dim = 64,
                   .shards = 16,
                   .batch = 32,
                   .k = 10,
                   .nq = 4,
                   .snapshot_every = 4,
                   .seed = 1};
    static const struct option longs[] = {
        {"server", required_argument, 0, 's'},
        {"server-arg", required_argument, 0, 'A'},
        {"addr", required_argument, 0, 'a'},
        {"pid", required_argument, 0, 'p'},
        {"seconds", required_argument, 0, 't'},
        {"clients", required_argument, 0, 'c'},
        {"keys", required_argument, 0, 'K'},
        {"dim", required_argument, 0, 'd'},
        {"shards", required_argument, 0, 'S'},
        {"batch", required_argument, 0, 'b'},
        {"k", required_argument, 0, 'k'},
        {"nq", required_argument, 0, 'q'},
        {"snapshot-every", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 'r'},
        {"keep", no_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->server = optarg;
            break;
        case 'A':
            if (o->n_server_args == 16) return -1;
            o->server_args[o->n_server_args++] = optarg;
            break;
        case 'a':
            o->addr = optarg;
            break;
        case 'p':
            o->pid = atol(optarg);
            break;
        case 't':
            o->seconds = atof(optarg);
            break;
        case 'c':
            o->clients = atoi(optarg);
            break;
        case 'K':
            o->keys = (uint32_t)atol(optarg);
            break;
        case 'd':
            o->dim = (uint32_t)atol(optarg);
            break;
        case 'S':
            o->shards = (uint32_t)atol(optarg);
            break;
        case 'b':
            o->batch = (uint32_t)atol(optarg);
            break;
        case 'k':
            o->k = (uint32_t)atol(optarg);
            break;
        case 'q':
            o->nq = (uint32_t)atol(optarg);
            break;
        case 'n':
            o->snapshot_every = atof(optarg);
            break;
        case 'r':
            o->seed = strtoull(optarg, NULL, 10);
            break;
        case 'x':
            o->keep = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || !o->server == !o->addr || o->seconds <= 0 ||
        o->clients < 1 || o->clients > 1024 || o->keys < 16 || o->dim < 1 ||
        o->dim > 4096 || o->batch < 1 || o->batch > 1024 || o->k < 1 ||
        o->nq < 1 || o->shards < 1)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char addr[128];
    long pid = o.pid;
    if (o.server) {
        if (start_server(&o, addr, sizeof addr) != 0) return 1;
        pid = server_pid;
    } else {
        snprintf(addr, sizeof addr, "%s", o.addr);
    }

    /* Init: L2 (vectors kept as sent), trained on a sample so the shards
     * are fixed for the whole run. */
    npvdb_client_error err;
    npvdb_client *h = npvdb_client_connect(addr, 20000, &err);
    if (!h) {
        fprintf(stderr, "connect %s: %s\n", addr, err.msg);
        stop_server();
        return 1;
    }
    size_t n_train = (size_t)o.shards * 64;
    float *train = xmalloc(n_train * o.dim * sizeof *train);
    for (size_t i = 0; i < n_train; i++)
        value_of(&o, 1 << 19, (uint32_t)i, 1, train + i * o.dim);
    npvdb_client_init_params ip = {.dim = o.dim,
                                   .metric = NPVDB_CLIENT_L2,
                                   .n_shards = o.shards,
                                   .train = train,
                                   .n_train = n_train,
                                   .replace = 1};
    npvdb_status rc = npvdb_client_init(h, &ip, NULL, NULL, &err);
    free(train);
    npvdb_client_close(h);
    if (rc != NPVDB_STATUS_OK) {
        fprintf(stderr, "init: %s: %s\n", npvdb_status_name(rc), err.msg);
        stop_server();
        return 1;
    }
    long base_kib = pid > 0 ? proc_kib(pid, "VmRSS") : -1;

    client *cs = xcalloc((size_t)o.clients, sizeof *cs);
    run_ctx *ctx = xcalloc((size_t)o.clients, sizeof *ctx);
    pthread_t *th = xcalloc((size_t)o.clients, sizeof *th);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)o.clients + 1);
    for (int i = 0; i < o.clients; i++) {
        cs[i].id = i;
        cs[i].o = &o;
        cs[i].addr = addr;
        cs[i].rng = o.seed * 1000003 + (uint64_t)i;
        cs[i].ver = xcalloc(o.keys, sizeof *cs[i].ver);
        ctx[i].c = &cs[i];
        ctx[i].start = &start;
    }
    double t_fill = now_s();
    for (int i = 0; i < o.clients; i++)
        if (pthread_create(&th[i], NULL, client_main, &ctx[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    pthread_barrier_wait(&start); /* every client has filled its keys */
    double t0 = now_s();
    printf("npvdb-load-bench: %s, %d clients x %u keys (half filled in %.1f "
           "s), dim %u, %.0f s\n",
           addr, o.clients, o.keys, t0 - t_fill, o.dim, o.seconds);
    fflush(stdout);
    while (now_s() - t0 < o.seconds)
        sleep_ms(20);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < o.clients; i++)
        pthread_join(th[i], NULL);
    double elapsed = now_s() - t0;
    pthread_barrier_destroy(&start);

    report(cs, o.clients, elapsed);
    uint64_t present = verify_all(&o, addr, cs);
    check_rss(&o, addr, pid, base_kib, present);
    if (o.server && stop_server() != 0)
        error_at(NULL, "npvdb-server did not exit 0 on SIGTERM");
    if (o.server && !o.keep)
        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else if (o.server)
        printf("kept %s\n", root);

    unsigned long long errors = atomic_load(&total_errors);
    printf("%s: %llu unexpected errors\n", errors ? "FAIL" : "PASS", errors);
    for (int i = 0; i < o.clients; i++) {
        for (int k = 0; k < K_N; k++)
            free(cs[i].lats[k].us);
        free(cs[i].ver);
    }
    free(cs);
    free(ctx);
    free(th);
    return errors ? 1 : 0;
}
