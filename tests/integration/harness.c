/*
 * harness.c -- see harness.h. Test-only code: failures end the test with a
 * cmocka assertion rather than returning codes.
 */
#include "harness.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef NPVDB_SERVER_BIN
#error "NPVDB_SERVER_BIN must name the npvdb-server binary"
#endif

#define START_TIMEOUT_MS 60000 /* sanitizer builds start slowly */
#define STOP_TIMEOUT_MS 30000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void it_server_init(it_server *s)
{
    memset(s, 0, sizeof *s);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->root, sizeof s->root, "%s/npvdb-it-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->data_dir, sizeof s->data_dir, "%s/data", s->root);
    snprintf(s->port_file, sizeof s->port_file, "%s/port", s->root);
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->root);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

char *it_server_log(const it_server *s)
{
    char *log = slurp(s->log_path);
    return log ? log : strdup("");
}

/* Reads the port file once it holds a complete line: "PORT" or
 * "HOST:PORT". Returns 1 when s->addr is set. */
static int read_port_file(it_server *s)
{
    char *txt = slurp(s->port_file);
    if (!txt) return 0;
    size_t len = strlen(txt);
    int ok = 0;
    /* A line without its newline may still be being written. */
    if (len > 0 && txt[len - 1] == '\n') {
        txt[len - 1] = '\0';
        char *colon = strrchr(txt, ':');
        long port = strtol(colon ? colon + 1 : txt, NULL, 10);
        if (port > 0 && port < 65536) {
            snprintf(s->addr, sizeof s->addr, "127.0.0.1:%ld", port);
            ok = 1;
        }
    }
    free(txt);
    return ok;
}

static void exec_server(it_server *s, char **extra)
{
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        dup2(fd, 1);
        close(fd);
    }
    /* The server must not outlive a crashed test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char *argv[32] = {NPVDB_SERVER_BIN, "--listen",   "127.0.0.1:0",
                      "--port-file",    s->port_file, "--data-dir",
                      s->data_dir,      "--threads",  "2"};
    int argc = 9;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    execv(NPVDB_SERVER_BIN, argv);
    fprintf(stderr, "exec %s: %s\n", NPVDB_SERVER_BIN, strerror(errno));
    _exit(127);
}

void it_server_start(it_server *s, ...)
{
    char *extra[16] = {0};
    va_list ap;
    va_start(ap, s);
    for (int i = 0; i < 15; i++) {
        char *a = va_arg(ap, char *);
        if (!a) break;
        extra[i] = a;
    }
    va_end(ap);
    unlink(s->port_file);
    s->addr[0] = '\0';
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) exec_server(s, extra);
    s->pid = pid;
    int waited = 0;
    while (!read_port_file(s)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            char *log = it_server_log(s);
            fail_msg("npvdb-server exited at start (status %d):\n%s", status,
                     log);
        }
        if (waited > START_TIMEOUT_MS)
            fail_msg("npvdb-server wrote no port file in %d ms", waited);
        sleep_ms(10);
        waited += 10;
    }
    npvdb_client_error err;
    s->client = npvdb_client_connect_opts(s->addr, s->client_opts, 20000, &err);
    if (!s->client) fail_msg("connect %s: %s", s->addr, err.msg);
}

int it_server_stop(it_server *s)
{
    npvdb_client_close(s->client);
    s->client = NULL;
    if (!s->pid) return 0;
    kill(s->pid, SIGTERM);
    int status = -1;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) break;
        if (r < 0) {
            status = -1;
            break;
        }
        if (waited > STOP_TIMEOUT_MS) {
            fprintf(stderr, "npvdb-server ignored SIGTERM: killing it\n");
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            break;
        }
        sleep_ms(10);
    }
    s->pid = 0;
    return status;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void it_server_destroy(it_server *s)
{
    if (s->pid) {
        npvdb_client_close(s->client);
        s->client = NULL;
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    /* Shown by ctest only when the test failed. */
    char *log = it_server_log(s);
    size_t len = strlen(log);
    const char *tail = len > 6000 ? log + len - 6000 : log;
    fprintf(stderr, "---- npvdb-server log (%s) ----\n%s----\n", s->root, tail);
    free(log);
    if (s->root[0]) nftw(s->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->root[0] = '\0';
}

/* ---- data ---- */

static uint64_t next_rand(uint64_t *x)
{
    /* xorshift64*: fixed sequences, no global state */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 2685821657736338717ull;
}

void it_data_make(it_data *d, size_t n, uint32_t dim, uint64_t seed,
                  const char *prefix)
{
    d->n = n;
    d->dim = dim;
    d->rows = malloc((n ? n : 1) * dim * sizeof(float));
    d->keys = calloc(n ? n : 1, sizeof(char *));
    assert_non_null(d->rows);
    assert_non_null(d->keys);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n * dim; i++)
        d->rows[i] =
            (float)((double)(next_rand(&x) >> 11) / 9007199254740992.0 * 2.0 -
                    1.0);
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s%zu", prefix, i);
        d->keys[i] = strdup(buf);
        assert_non_null(d->keys[i]);
    }
}

void it_data_free(it_data *d)
{
    for (size_t i = 0; d->keys && i < d->n; i++)
        free(d->keys[i]);
    free(d->keys);
    free(d->rows);
    memset(d, 0, sizeof *d);
}

npvdb_collection *it_engine_make(uint32_t dim, npvdb_metric metric,
                                 uint32_t n_shards, const it_data *train,
                                 const it_data *rows)
{
    npvdb_config cfg = {
        .dim = dim, .metric = metric, .n_shards = n_shards, .n_workers = 2};
    npvdb_error err;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    if (!c) fail_msg("npvdb_create: %s", err.msg);
    npvdb_set_rebalance(c, 0); /* as it_setup_fixed_server's server */
    if (train && npvdb_train(c, train->rows, train->n, &err) != NPVDB_OK)
        fail_msg("npvdb_train: %s", err.msg);
    if (rows && rows->n &&
        npvdb_insert(c, (const char *const *)rows->keys, rows->rows, rows->n,
                     NULL, &err) != NPVDB_OK)
        fail_msg("npvdb_insert: %s", err.msg);
    return c;
}

/* ---- comparing results ---- */

static int close_enough(float a, float b)
{
    return fabsf(a - b) <= 1e-4f * (1.0f + fabsf(b));
}

/* Position j of a row may hold another key when its distance ties with a
 * neighbour's (the order among equals is not part of the contract). */
static int tied(const float *d, uint32_t count, uint32_t j)
{
    return (j > 0 && close_enough(d[j - 1], d[j])) ||
           (j + 1 < count && close_enough(d[j + 1], d[j]));
}

void it_assert_same(const npvdb_client_results *got, const npvdb_results *want)
{
    assert_int_equal(got->nq, want->nq);
    assert_int_equal(got->k, want->k);
    for (size_t i = 0; i < got->nq; i++) {
        assert_int_equal(got->counts[i], want->counts[i]);
        const float *wd = want->distances + i * want->k;
        for (uint32_t j = 0; j < got->counts[i]; j++) {
            float g = got->distances[i * got->k + j];
            const char *gk = got->keys[i * got->k + j];
            const char *wk = want->keys[i * want->k + j];
            if (!close_enough(g, wd[j]))
                fail_msg("query %zu rank %u: distance %g, engine %g", i, j,
                         (double)g, (double)wd[j]);
            if (strcmp(gk, wk) && !tied(wd, want->counts[i], j))
                fail_msg("query %zu rank %u: key %s, engine %s", i, j, gk, wk);
        }
    }
}

void it_assert_rpc_same(it_search_fn fn, npvdb_client *c, npvdb_collection *ref,
                        const float *queries, size_t nq, uint32_t k,
                        uint32_t nprobe)
{
    npvdb_client_results got;
    npvdb_client_error err;
    int rc = fn(c, queries, nq, npvdb_dim(ref), k, nprobe, &got, &err);
    if (rc != NPVDB_STATUS_OK)
        fail_msg("%s: %s (%s)",
                 fn == npvdb_client_search ? "search" : "get_closest", err.msg,
                 npvdb_status_name(rc));
    npvdb_results want;
    npvdb_error e;
    if (npvdb_search(ref, queries, nq, k, nprobe, &want, &e) != NPVDB_OK)
        fail_msg("npvdb_search: %s", e.msg);
    it_assert_same(&got, &want);
    npvdb_results_free(&want);
    npvdb_client_results_free(&got);
}

void it_assert_search_same(npvdb_client *c, npvdb_collection *ref,
                           const float *queries, size_t nq, uint32_t k,
                           uint32_t nprobe)
{
    it_assert_rpc_same(npvdb_client_get_closest, c, ref, queries, nq, k,
                       nprobe);
    it_assert_rpc_same(npvdb_client_search, c, ref, queries, nq, k, nprobe);
}

void it_assert_results_equal(const npvdb_client_results *a,
                             const npvdb_client_results *b)
{
    assert_int_equal(a->nq, b->nq);
    assert_int_equal(a->k, b->k);
    for (size_t i = 0; i < a->nq; i++) {
        assert_int_equal(a->counts[i], b->counts[i]);
        const float *ad = a->distances + i * a->k;
        const float *bd = b->distances + i * b->k;
        for (uint32_t j = 0; j < a->k; j++) {
            const char *ak = a->keys[i * a->k + j];
            const char *bk = b->keys[i * b->k + j];
            if (j >= a->counts[i]) {
                if (ak || bk || ad[j] != 0 || bd[j] != 0)
                    fail_msg("query %zu slot %u past count %u: keys %s/%s, "
                             "distances %g/%g (want NULL, 0)",
                             i, j, a->counts[i], ak ? ak : "NULL",
                             bk ? bk : "NULL", (double)ad[j], (double)bd[j]);
                continue;
            }
            if (!ak || !bk) fail_msg("query %zu rank %u: NULL key", i, j);
            if (!close_enough(ad[j], bd[j]))
                fail_msg("query %zu rank %u: distance %g vs %g", i, j,
                         (double)ad[j], (double)bd[j]);
            if (strcmp(ak, bk) && !tied(bd, b->counts[i], j))
                fail_msg("query %zu rank %u: key %s vs %s", i, j, ak, bk);
        }
    }
}

/* ---- raw calls ---- */

int it_raw_unary(const char *addr, const char *method, const void *bytes,
                 size_t len, char *msg, size_t msg_len)
{
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis(30000, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(
        ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
        grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_slice s = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *out = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_byte_buffer *in = NULL;
    grpc_metadata_array md0, md1;
    grpc_metadata_array_init(&md0);
    grpc_metadata_array_init(&md1);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = out;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md0;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &in;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md1;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(call, ops, 6, ops, NULL),
                     GRPC_CALL_OK);
    grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);
    if (msg)
        snprintf(msg, msg_len, "%.*s", (int)GRPC_SLICE_LENGTH(details),
                 (const char *)GRPC_SLICE_START_PTR(details));
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md0);
    grpc_metadata_array_destroy(&md1);
    grpc_byte_buffer_destroy(out);
    if (in) grpc_byte_buffer_destroy(in);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    grpc_channel_destroy(ch);
    grpc_shutdown();
    return (int)status;
}

int it_run(const char *cmdline, char **out)
{
    char *full = NULL;
    if (asprintf(&full, "%s 2>&1", cmdline) < 0) return -1;
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *b = realloc(buf, cap * 2);
            if (!b) break;
            buf = b;
            cap *= 2;
        }
    }
    if (buf) buf[len] = '\0';
    int status = pclose(p);
    *out = buf ? buf : strdup("");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int it_setup_server(void **state)
{
    it_server *s = calloc(1, sizeof *s);
    if (!s) return -1;
    it_server_init(s);
    it_server_start(s, NULL);
    *state = s;
    return 0;
}

int it_setup_fixed_server(void **state)
{
    it_server *s = calloc(1, sizeof *s);
    if (!s) return -1;
    it_server_init(s);
    it_server_start(s, "--no-rebalance", NULL);
    *state = s;
    return 0;
}

int it_teardown_server(void **state)
{
    it_server *s = *state;
    int status = it_server_stop(s);
    it_server_destroy(s);
    free(s);
    return status == 0 ? 0 : -1;
}
