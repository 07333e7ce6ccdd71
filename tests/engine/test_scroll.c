/*
 * test_scroll.c -- npvdb_scroll: a full scroll sees every key exactly once
 * (with and without a filter, for page sizes from 1 up), vectors and
 * payloads as stored; with other keys inserted (growing the key map) and
 * deleted meanwhile, every stable key is still seen at least once; bad
 * limits, a stopping callback and an empty collection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "npvdb.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 4

typedef struct seen {
    npvdb_collection *c;
    size_t n;        /* stable keys "k<i>" */
    unsigned *count; /* per stable key */
    size_t others;   /* items of other keys */
    size_t items;
    int bad;
    int stop_after;    /* 0: never */
    unsigned pause_us; /* between pages */
} seen;

static int on_item(void *ctx, const npvdb_scroll_item *it)
{
    seen *s = ctx;
    s->items++;
    if (it->key[0] != 'k' || it->key_len != strlen(it->key)) {
        s->others++;
        return 0;
    }
    size_t i = key_index(it->key);
    if (i >= s->n) {
        s->bad++;
        return 0;
    }
    s->count[i]++;
    /* The payload is the one stored: field "i" equal to the row. */
    npvdb_field f;
    size_t pos = 0;
    if (!it->payload.len || !npvdb_payload_next(&it->payload, &pos, &f) ||
        f.i != (int64_t)i || it->vector[0] != (float)i)
        s->bad++;
    return s->stop_after && s->items >= (size_t)s->stop_after;
}

static npvdb_collection *build(size_t n)
{
    npvdb_config cfg = {.dim = DIM, .metric = NPVDB_METRIC_L2, .n_workers = 2};
    npvdb_collection *c = npvdb_create(&cfg, NULL);
    char **keys = make_keys(n, "k");
    float *x = random_rows(n, DIM, 3);
    npvdb_payload *p = calloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        x[i * DIM] = (float)i;
        npvdb_field f = {.name = "i",
                         .name_len = 1,
                         .type = NPVDB_VALUE_INT,
                         .i = (int64_t)i};
        assert_int_equal(npvdb_payload_build(&f, 1, &p[i], NULL), NPVDB_OK);
    }
    assert_int_equal(
        npvdb_upsert(c, (const char *const *)keys, x, p, n, NULL, NULL),
        NPVDB_OK);
    for (size_t i = 0; i < n; i++)
        free((void *)p[i].data);
    free(p);
    free(x);
    free_keys(keys, n);
    return c;
}

static size_t scroll_all(npvdb_collection *c, uint32_t limit,
                         const npvdb_filter *f, seen *s)
{
    uint64_t cur = 0;
    int done = 0;
    size_t pages = 0;
    npvdb_error err;
    while (!done) {
        size_t before = s->items;
        assert_int_equal(
            npvdb_scroll(c, cur, limit, f, on_item, s, &cur, &done, &err),
            NPVDB_OK);
        assert_true(s->items - before <= limit);
        if (s->pause_us) usleep(s->pause_us); /* let the writer run */
        pages++;
        assert_true(pages < 1000000);
    }
    return pages;
}

static void test_exactly_once(void **st)
{
    (void)st;
    const size_t n = 5000;
    npvdb_collection *c = build(n);
    const uint32_t limits[4] = {1, 7, 100, 16384};
    for (int l = 0; l < 4; l++) {
        seen s = {.c = c, .n = n, .count = calloc(n, sizeof(unsigned))};
        size_t pages = scroll_all(c, limits[l], NULL, &s);
        assert_int_equal(s.bad, 0);
        assert_int_equal(s.items, n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(s.count[i], 1);
        if (limits[l] == 1) assert_true(pages >= n);
        free(s.count);
    }
    /* A filter: i < 300, exactly those once; pages stay bounded in work. */
    npvdb_cond cd = {.kind = NPVDB_COND_RANGE,
                     .field = "i",
                     .field_len = 1,
                     .has_upper = 1,
                     .upper = 300};
    npvdb_filter f = {.must = &cd, .n_must = 1};
    seen s = {.c = c, .n = n, .count = calloc(n, sizeof(unsigned))};
    scroll_all(c, 50, &f, &s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(s.count[i], i < 300);
    free(s.count);
    npvdb_free(c);
}

typedef struct churn {
    npvdb_collection *c;
    volatile int stop;
    int failures;
} churn;

/* Inserts and deletes keys other than the stable ones, growing the map. */
static void *writer(void *arg)
{
    churn *w = arg;
    float x[DIM * 100] = {0};
    char names[100][24];
    const char *keys[100];
    for (int round = 0; !w->stop && round < 400; round++) {
        for (int i = 0; i < 100; i++) {
            snprintf(names[i], sizeof names[i], "n%d_%d", round, i);
            keys[i] = names[i];
            x[i * DIM] = 1;
        }
        if (npvdb_insert(w->c, keys, x, 100, NULL, NULL)) w->failures++;
        if (round % 2 && npvdb_delete(w->c, keys, 50, NULL, NULL))
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_writes(void **st)
{
    (void)st;
    const size_t n = 3000;
    npvdb_collection *c = build(n);
    churn w = {.c = c};
    pthread_t t;
    pthread_create(&t, NULL, writer, &w);
    seen s = {
        .c = c, .n = n, .count = calloc(n, sizeof(unsigned)), .pause_us = 300};
    scroll_all(c, 20, NULL, &s);
    w.stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(w.failures, 0);
    assert_int_equal(s.bad, 0);
    for (size_t i = 0; i < n; i++)
        if (s.count[i] < 1) fail_msg("key k%zu not seen", i);
    /* The writes did overlap the scroll (the map grew 3000 -> ~23000). */
    assert_true(s.others > 0);
    print_message("scroll saw %zu keys of the writer\n", s.others);
    free(s.count);
    npvdb_free(c);
}

static void test_scroll_errors(void **st)
{
    (void)st;
    npvdb_collection *c = build(50);
    seen s = {.c = c, .n = 50, .count = calloc(50, sizeof(unsigned))};
    uint64_t next = 9;
    int done = 5;
    npvdb_error err;
    assert_int_equal(
        npvdb_scroll(c, 0, 0, NULL, on_item, &s, &next, &done, &err),
        NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "limit must be 1..16384"));
    assert_int_equal(npvdb_scroll(c, 0, NPVDB_MAX_K + 1, NULL, on_item, &s,
                                  &next, &done, &err),
                     NPVDB_EINVAL);
    assert_int_equal(npvdb_scroll(c, 0, 5, NULL, NULL, &s, &next, &done, &err),
                     NPVDB_EINVAL);
    npvdb_cond bad = {.kind = NPVDB_COND_MATCH, .field = "i", .field_len = 1};
    npvdb_filter bf = {.must = &bad, .n_must = 1};
    assert_int_equal(
        npvdb_scroll(c, 0, 5, &bf, on_item, &s, &next, &done, &err),
        NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "must[0]: match has no values"));
    s.stop_after = 3;
    assert_int_equal(
        npvdb_scroll(c, 0, 50, NULL, on_item, &s, &next, &done, &err),
        NPVDB_EINTERNAL);
    assert_int_equal(next, 0);
    assert_int_equal(done, 0);
    free(s.count);
    npvdb_free(c);
    /* An empty collection: one empty page, done. */
    npvdb_config cfg = {.dim = DIM, .n_workers = 1};
    c = npvdb_create(&cfg, NULL);
    seen e = {.c = c};
    assert_int_equal(
        npvdb_scroll(c, 0, 10, NULL, on_item, &e, &next, &done, &err),
        NPVDB_OK);
    assert_int_equal(done, 1);
    assert_int_equal(e.items, 0);
    npvdb_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_concurrent_writes),
        cmocka_unit_test(test_scroll_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
