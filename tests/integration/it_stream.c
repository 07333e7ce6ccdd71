/*
 * it_stream.c -- the Insert stream of a real npvdb-server: many messages,
 * an invalid message in the middle (reported with its index and the count
 * applied before it, earlier messages kept), and a cancelled stream.
 */
#include "harness.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define DIM 32

static int setup(void **state)
{
    it_server *s = calloc(1, sizeof *s);
    if (!s) return -1;
    it_server_init(s);
    it_server_start(s, NULL);
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    npvdb_client_error err;
    if (npvdb_client_init(s->client, &p, NULL, NULL, &err) != 0) {
        fprintf(stderr, "init: %s\n", err.msg);
        it_server_destroy(s);
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    it_server *s = *state;
    int status = it_server_stop(s);
    it_server_destroy(s);
    free(s);
    return status == 0 ? 0 : -1;
}

static uint64_t count(it_server *s)
{
    npvdb_client_info info;
    npvdb_client_error err;
    assert_int_equal(npvdb_client_info_get(s->client, &info, &err),
                     NPVDB_STATUS_OK);
    npvdb_client_info_free(&info);
    return info.vectors;
}

/* 20 messages of 1000 vectors; exact search equals the engine's. */
static void test_many_messages(void **state)
{
    it_server *s = *state;
    it_data d, q;
    it_data_make(&d, 20000, DIM, 31, "");
    it_data_make(&q, 20, DIM, 32, "q");
    npvdb_client_insert_reply r;
    npvdb_client_error err;
    int rc = npvdb_client_insert(s->client, DIM, (const char *const *)d.keys,
                                 d.rows, d.n, 1000, NULL, NULL, &r, &err);
    if (rc != NPVDB_STATUS_OK) fail_msg("insert: %s", err.msg);
    assert_int_equal(r.inserted, 20000);
    assert_int_equal(r.messages, 20);
    assert_int_equal(count(s), 20000);
    npvdb_collection *ref = it_engine_make(DIM, NPVDB_METRIC_L2, 0, NULL, &d);
    it_assert_search_same(s->client, ref, q.rows, q.n, 10, 65536);
    npvdb_free(ref);
    it_data_free(&d);
    it_data_free(&q);
}

/* Five good messages of 7 vectors, then one with a NaN: the error names
 * message 5 (0-based) and the 35 vectors applied; those stay, the bad
 * message's good rows do not. */
static void test_invalid_message_mid_stream(void **state)
{
    it_server *s = *state;
    it_data d;
    it_data_make(&d, 42, DIM, 33, "m");
    d.rows[37 * DIM + 2] = NAN; /* row 2 of message 5 */
    npvdb_client_error err;
    npvdb_client_stream *st = npvdb_client_insert_begin(s->client, DIM, &err);
    assert_non_null(st);
    int rc = NPVDB_STATUS_OK;
    for (size_t m = 0; m < 6 && rc == NPVDB_STATUS_OK; m++)
        rc = npvdb_client_stream_send(st, (const char *const *)d.keys + m * 7,
                                      d.rows + m * 7 * DIM, 7, &err);
    /* The error may surface at a send or at finish. */
    npvdb_client_error ferr;
    int frc = npvdb_client_stream_finish(st, NULL, &ferr);
    if (rc == NPVDB_STATUS_OK) {
        rc = frc;
        err = ferr;
    }
    assert_int_equal(rc, NPVDB_STATUS_INVALID_ARGUMENT);
    if (!strstr(err.msg, "message 5") || !strstr(err.msg, "35 vectors"))
        fail_msg("error does not name message 5 and 35 applied vectors: %s",
                 err.msg);
    assert_int_equal(count(s), 35);
    npvdb_client_vectors v;
    assert_int_equal(npvdb_client_get(s->client,
                                      (const char *const *)d.keys + 34, 2, DIM,
                                      &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 1);
    assert_string_equal(v.keys[0], "m34");
    assert_string_equal(v.missing[0], "m35");
    npvdb_client_vectors_free(&v);
    it_data_free(&d);
}

/* A message sent after the bad one is not applied either, and the error
 * is reported (at a later send or at finish), not lost. */
static void test_invalid_first_message(void **state)
{
    it_server *s = *state;
    it_data d;
    it_data_make(&d, 30, DIM, 34, "f");
    const char *bad_keys[] = {"f0", ""};
    npvdb_client_error err;
    npvdb_client_stream *st = npvdb_client_insert_begin(s->client, DIM, &err);
    assert_non_null(st);
    int rc = npvdb_client_stream_send(st, bad_keys, d.rows, 2, &err);
    for (int m = 0; m < 3 && rc == NPVDB_STATUS_OK; m++)
        rc = npvdb_client_stream_send(st, (const char *const *)d.keys + 2 + m,
                                      d.rows, 1, &err);
    npvdb_client_error ferr;
    int frc = npvdb_client_stream_finish(st, NULL, &ferr);
    if (rc == NPVDB_STATUS_OK) {
        rc = frc;
        err = ferr;
    }
    assert_int_equal(rc, NPVDB_STATUS_INVALID_ARGUMENT);
    if (!strstr(err.msg, "message 0") || !strstr(err.msg, " 0 vectors"))
        fail_msg("error does not name message 0 and 0 vectors: %s", err.msg);
    assert_int_equal(count(s), 0);
    it_data_free(&d);
}

/* A cancelled stream leaves whole messages only: every message is applied
 * entirely or not at all. */
static void test_cancelled_stream(void **state)
{
    it_server *s = *state;
    it_data d;
    it_data_make(&d, 5000, DIM, 35, "c");
    npvdb_client_error err;
    npvdb_client_stream *st = npvdb_client_insert_begin(s->client, DIM, &err);
    assert_non_null(st);
    for (size_t m = 0; m < 10; m++)
        assert_int_equal(
            npvdb_client_stream_send(st, (const char *const *)d.keys + m * 500,
                                     d.rows + m * 500 * DIM, 500, &err),
            NPVDB_STATUS_OK);
    npvdb_client_stream_cancel(st);
    /* Cancelling is no barrier: messages the server had already received
     * may still be applied for a moment. Wait until the count settles. */
    uint64_t n = count(s), prev;
    int settled = 0;
    for (int i = 0; i < 50 && settled < 3; i++) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        prev = n;
        n = count(s);
        settled = n == prev ? settled + 1 : 0;
    }
    fprintf(stderr, "cancelled stream: %llu of 5000 vectors applied\n",
            (unsigned long long)n);
    assert_true(n <= 5000);
    assert_int_equal(n % 500, 0);
    /* The server still takes a new stream. */
    npvdb_client_insert_reply r;
    assert_int_equal(npvdb_client_insert(s->client, DIM,
                                         (const char *const *)d.keys, d.rows,
                                         d.n, 700, NULL, NULL, &r, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(r.inserted + r.replaced, 5000);
    assert_int_equal(r.replaced, n);
    assert_int_equal(count(s), 5000);
    it_data_free(&d);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_message_mid_stream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_first_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_stream, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
