/*
 * harness.h -- runs a real npvdb-server for an integration test.
 *
 * Each server gets a fresh temporary directory (data dir, port file, log)
 * and a free loopback port chosen by the server itself (--listen
 * 127.0.0.1:0 --port-file), so tests can run in parallel (ctest -j). The
 * child dies with the test process (PR_SET_PDEATHSIG), and teardown always
 * stops it, so a failed test leaves no server behind.
 */
#ifndef NPVDB_IT_HARNESS_H
#define NPVDB_IT_HARNESS_H

#include "npvdb.h"
#include "npvdb_client.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct it_server {
    pid_t pid; /* 0 when not running */
    char root[256];
    char data_dir[300];
    char port_file[300];
    char log_path[300];
    char addr[64];
    npvdb_client *client; /* connected while running */
    /* Options of s->client's connect (TLS, token); NULL: plaintext, no
     * token. Borrowed: set after it_server_init, valid through start. */
    const npvdb_client_opts *client_opts;
} it_server;

/* Makes the temporary root (fails the test on error). */
void it_server_init(it_server *s);
/* Starts the server on s->data_dir (kept across restarts) and connects
 * s->client. Extra server flags may follow (NULL-terminated). */
void it_server_start(it_server *s, ...);
/* SIGTERM, waits; returns the wait status (0 = clean exit). Closes the
 * client. */
int it_server_stop(it_server *s);
/* Stops (if running), prints the log's tail, removes the root. */
void it_server_destroy(it_server *s);

/* cmocka setup/teardown for a test that needs just a fresh server: *state
 * becomes an it_server (started), and the teardown fails the test unless the
 * server exits 0 on SIGTERM (under ASan: no leaks at exit either). */
int it_setup_server(void **state);
/* A server started with --no-rebalance: its shards stay as trained, so its
 * results equal it_engine_make's collection fed in other batches. */
int it_setup_fixed_server(void **state);
int it_teardown_server(void **state);
/* The server's log so far (caller frees). */
char *it_server_log(const it_server *s);

/* Deterministic test vectors: n rows of dim floats in [-1, 1) and keys
 * "<prefix><i>". */
typedef struct it_data {
    size_t n;
    uint32_t dim;
    float *rows;
    char **keys;
} it_data;

void it_data_make(it_data *d, size_t n, uint32_t dim, uint64_t seed,
                  const char *prefix);
void it_data_free(it_data *d);

/* Engine collection holding the same vectors, for reference answers. */
npvdb_collection *it_engine_make(uint32_t dim, npvdb_metric metric,
                                 uint32_t n_shards, const it_data *train,
                                 const it_data *rows);

/* Asserts that the server's results equal the engine's (distances within
 * 1e-4 relative, keys equal except between tied distances). */
void it_assert_same(const npvdb_client_results *got, const npvdb_results *want);

/* npvdb_client_get_closest or npvdb_client_search. */
typedef npvdb_status (*it_search_fn)(npvdb_client *c, const float *queries,
                                     size_t nq, uint32_t dim, uint32_t k,
                                     uint32_t nprobe, npvdb_client_results *out,
                                     npvdb_client_error *err);

/* Searches the server with `fn` and the engine with the same nprobe and
 * compares (it_assert_same). */
void it_assert_rpc_same(it_search_fn fn, npvdb_client *c, npvdb_collection *ref,
                        const float *queries, size_t nq, uint32_t k,
                        uint32_t nprobe);

/* it_assert_rpc_same for both RPCs, GetClosest and Search. */
void it_assert_search_same(npvdb_client *c, npvdb_collection *ref,
                           const float *queries, size_t nq, uint32_t k,
                           uint32_t nprobe);

/* Asserts that two client results are the same (it_assert_same's
 * tolerance), including the empty slots past counts[i]: NULL key, 0. */
void it_assert_results_equal(const npvdb_client_results *a,
                             const npvdb_client_results *b);

/* Sends `len` raw bytes as the single request of unary `method` and
 * returns the status code; the status message goes to msg (may be NULL). */
int it_raw_unary(const char *addr, const char *method, const void *bytes,
                 size_t len, char *msg, size_t msg_len);

/* Runs a command line, returns its exit status (-1 on failure) and its
 * stdout+stderr in *out (caller frees). */
int it_run(const char *cmdline, char **out);

#endif /* NPVDB_IT_HARNESS_H */
