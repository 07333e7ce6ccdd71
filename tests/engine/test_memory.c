/*
 * test_memory.c -- deletes give memory back (issue 10, probe 6): shards
 * that fall well below their capacity and the key table shrink, so
 * memory_bytes follows the vectors down; what stays is intact (every
 * vector and payload, exact search), and the collection grows again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "npvdb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static npvdb_collection *make(uint32_t dim, uint32_t shards)
{
    npvdb_config cfg = {.dim = dim,
                        .metric = NPVDB_METRIC_L2,
                        .n_shards = shards,
                        .n_workers = 2,
                        .train_per_shard = 64};
    npvdb_error err;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    assert_non_null(c);
    return c;
}

static size_t mem(npvdb_collection *c)
{
    npvdb_stats st;
    npvdb_error err;
    assert_int_equal(npvdb_stats_get(c, &st, &err), NPVDB_OK);
    size_t m = st.memory_bytes;
    assert_int_equal(m, npvdb_memory_bytes(c)); /* the cheap one agrees */
    /* So does the cached shape (metrics), after whatever write came last:
     * asked twice, the second from the cache. */
    for (int twice = 0; twice < 2; twice++) {
        npvdb_shape sh;
        npvdb_shape_get(c, &sh);
        size_t max = 0;
        for (uint32_t i = 0; i < st.n_shards; i++)
            if (st.shard_counts[i] > max) max = st.shard_counts[i];
        assert_int_equal(sh.memory_bytes, m);
        assert_int_equal(sh.n_vectors, st.n_vectors);
        assert_int_equal(sh.n_shards, st.n_shards);
        assert_int_equal(sh.max_shard, max);
    }
    npvdb_stats_free(&st);
    return m;
}

/* Keys [from, to) with a payload each; rows are x's. */
static void put(npvdb_collection *c, char **keys, const float *x, uint32_t dim,
                size_t from, size_t to)
{
    npvdb_field f = {.name = "i", .name_len = 1, .type = NPVDB_VALUE_INT};
    npvdb_payload *pl = calloc(to - from, sizeof *pl);
    npvdb_error err;
    for (size_t i = from; i < to; i++) {
        f.i = (int64_t)i;
        assert_int_equal(npvdb_payload_build(&f, 1, &pl[i - from], &err),
                         NPVDB_OK);
    }
    for (size_t i = from; i < to; i += 1000) {
        size_t m = to - i < 1000 ? to - i : 1000;
        assert_int_equal(npvdb_upsert(c, (const char *const *)keys + i,
                                      x + i * dim, pl + (i - from), m, NULL,
                                      &err),
                         NPVDB_OK);
    }
    for (size_t i = 0; i < to - from; i++)
        free((void *)pl[i].data);
    free(pl);
}

/* Key i holds row i and payload i. */
static void check_kept(npvdb_collection *c, char **keys, const float *x,
                       uint32_t dim, size_t from, size_t to)
{
    float *got = malloc(dim * sizeof *got);
    npvdb_error err;
    for (size_t i = from; i < to; i++) {
        npvdb_payload p;
        assert_int_equal(npvdb_get_payload(c, keys[i], got, &p, &err),
                         NPVDB_OK);
        assert_memory_equal(got, x + i * dim, dim * sizeof *got);
        size_t pos = 0;
        npvdb_field f;
        assert_true(npvdb_payload_next(&p, &pos, &f));
        assert_int_equal(f.i, (int64_t)i);
        free((void *)p.data);
    }
    free(got);
}

static void delete_range(npvdb_collection *c, char **keys, size_t from,
                         size_t to)
{
    size_t deleted;
    npvdb_error err;
    assert_int_equal(npvdb_delete(c, (const char *const *)keys + from,
                                  to - from, &deleted, &err),
                     NPVDB_OK);
    assert_int_equal(deleted, to - from);
}

/* Exact search (nprobe = shards) over the kept rows [0, kept) finds each
 * kept row itself at distance 0. */
static void check_search(npvdb_collection *c, char **keys, const float *x,
                         uint32_t dim, size_t kept)
{
    npvdb_results r;
    npvdb_error err;
    size_t nq = kept < 20 ? kept : 20;
    assert_int_equal(npvdb_search(c, x, nq, 1, 1u << 16, &r, &err), NPVDB_OK);
    for (size_t i = 0; i < nq; i++) {
        assert_int_equal(r.counts[i], 1);
        assert_string_equal(r.keys[i], keys[i]);
        assert_true(r.distances[i] == 0.0f);
    }
    npvdb_results_free(&r);
}

static void shrink_for(uint32_t shards)
{
    const uint32_t dim = 32;
    const size_t n = 40000, kept = 200;
    float *x = random_rows(n, dim, 7);
    char **keys = make_keys(n, "k");
    npvdb_collection *c = make(dim, shards);
    size_t empty = mem(c);
    put(c, keys, x, dim, 0, n);
    size_t full = mem(c);
    assert_true(full > n * dim * sizeof(float));

    delete_range(c, keys, kept, n);
    size_t after = mem(c);
    /* 200 rows of 128 bytes and their keys, plus the index: well under a
     * tenth of what 40,000 took. */
    assert_true(after < full / 10);
    check_kept(c, keys, x, dim, 0, kept);
    check_search(c, keys, x, dim, kept);

    delete_range(c, keys, 0, kept);
    /* Back to the empty collection's size, plus the trained index. */
    npvdb_stats st;
    npvdb_error err;
    assert_int_equal(npvdb_stats_get(c, &st, &err), NPVDB_OK);
    size_t index = st.n_shards * ((dim + 1) * sizeof(float) + 128);
    npvdb_stats_free(&st);
    assert_true(mem(c) < empty + index + 8192);

    /* It grows again, and keeps everything. */
    put(c, keys, x, dim, 0, n / 2);
    check_kept(c, keys, x, dim, 0, n / 2);
    check_search(c, keys, x, dim, n / 2);
    npvdb_free(c);
    free(x);
    free_keys(keys, n);
}

static void test_shrink_untrained(void **s)
{
    (void)s;
    shrink_for(0); /* one shard until auto-training at 64 x shards */
}

static void test_shrink_trained(void **s)
{
    (void)s;
    shrink_for(16);
}

/* Deleting a little leaves capacity alone (no copy per small delete). */
static void test_small_delete_keeps_capacity(void **s)
{
    (void)s;
    const uint32_t dim = 8;
    const size_t n = 4000;
    float *x = random_rows(n, dim, 3);
    char **keys = make_keys(n, "k");
    npvdb_collection *c = make(dim, 4);
    put(c, keys, x, dim, 0, n);
    size_t full = mem(c);
    delete_range(c, keys, 0, n / 2);
    size_t half = mem(c);
    assert_true(half < full);     /* the keys and payloads are gone */
    assert_true(half > full / 3); /* but capacity stays */
    check_kept(c, keys, x, dim, n / 2, n);
    npvdb_free(c);
    free(x);
    free_keys(keys, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shrink_untrained),
        cmocka_unit_test(test_shrink_trained),
        cmocka_unit_test(test_small_delete_keeps_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
