/*
 * test_norms.c -- vectors at the edges of float32 (issue 10, probe 5).
 *
 * Cosine: any finite non-zero vector is stored as its unit vector, also
 * when its norm overflows float (16 x 3e38 was stored as zeros) or
 * underflows it (subnormal components); a zero vector is refused.
 * L2 and inner product: a vector or query whose norm is over 2^62 is
 * refused (INVALID_ARGUMENT naming the row), one at the bound is stored and
 * searched with finite distances.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "npvdb.h"

#include <float.h>
#include <math.h>
#include <string.h>

static npvdb_collection *make(uint32_t dim, npvdb_metric m)
{
    npvdb_config cfg = {.dim = dim, .metric = m, .n_workers = 2};
    npvdb_error err;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    assert_non_null(c);
    return c;
}

static size_t count(npvdb_collection *c)
{
    npvdb_stats st;
    npvdb_error err;
    assert_int_equal(npvdb_stats_get(c, &st, &err), NPVDB_OK);
    size_t n = st.n_vectors;
    npvdb_stats_free(&st);
    return n;
}

static void fill(float *v, uint32_t dim, float x)
{
    for (uint32_t i = 0; i < dim; i++)
        v[i] = x;
}

/* The stored vector of key is dim x value, within a relative 1e-6. */
static void assert_stored(npvdb_collection *c, const char *key, uint32_t dim,
                          float value)
{
    float got[64];
    npvdb_error err;
    assert_int_equal(npvdb_get(c, key, got, &err), NPVDB_OK);
    for (uint32_t i = 0; i < dim; i++)
        assert_true(fabsf(got[i] - value) <= 1e-6f * fabsf(value));
}

static void test_cosine_overflowing_norm(void **s)
{
    (void)s;
    npvdb_collection *c = make(16, NPVDB_METRIC_COSINE);
    float v[16];
    fill(v, 16, 3e38f); /* finite; |v| = 1.2e39 is past FLT_MAX */
    const char *key[] = {"big"};
    npvdb_error err;
    assert_int_equal(npvdb_insert(c, key, v, 1, NULL, &err), NPVDB_OK);
    assert_stored(c, "big", 16, 0.25f);
    /* Negative and mixed too: the direction is kept. */
    for (int i = 0; i < 16; i++)
        v[i] = i % 2 ? -FLT_MAX : FLT_MAX;
    const char *key2[] = {"mixed"};
    assert_int_equal(npvdb_insert(c, key2, v, 1, NULL, &err), NPVDB_OK);
    float got[16];
    assert_int_equal(npvdb_get(c, "mixed", got, &err), NPVDB_OK);
    for (int i = 0; i < 16; i++)
        assert_true(fabsf(got[i] - (i % 2 ? -0.25f : 0.25f)) < 1e-6f);
    /* The same query finds it at distance 0, in place or not. */
    fill(v, 16, 3e38f);
    npvdb_results r;
    assert_int_equal(npvdb_search(c, v, 1, 1, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.counts[0], 1);
    assert_string_equal(r.keys[0], "big");
    assert_true(fabsf(r.distances[0]) < 1e-5f);
    npvdb_results_free(&r);
    assert_int_equal(npvdb_search_inplace(c, v, 1, 1, 0, &r, &err), NPVDB_OK);
    assert_string_equal(r.keys[0], "big");
    assert_true(fabsf(r.distances[0]) < 1e-5f);
    npvdb_results_free(&r);
    npvdb_free(c);
}

static void test_cosine_subnormal(void **s)
{
    (void)s;
    npvdb_collection *c = make(16, NPVDB_METRIC_COSINE);
    float v[16];
    fill(v, 16, 1e-44f); /* subnormal: its square underflows float */
    const char *key[] = {"tiny"};
    npvdb_error err;
    assert_int_equal(npvdb_insert(c, key, v, 1, NULL, &err), NPVDB_OK);
    float got[16];
    assert_int_equal(npvdb_get(c, "tiny", got, &err), NPVDB_OK);
    for (int i = 0; i < 16; i++)
        assert_true(fabsf(got[i] - 0.25f) < 1e-6f);
    /* One smallest subnormal among zeros is a direction, not zero. */
    fill(v, 16, 0);
    v[3] = 0x1p-149f;
    const char *key2[] = {"one"};
    assert_int_equal(npvdb_insert(c, key2, v, 1, NULL, &err), NPVDB_OK);
    assert_int_equal(npvdb_get(c, "one", got, &err), NPVDB_OK);
    assert_true(got[3] == 1.0f && got[0] == 0.0f);
    npvdb_free(c);
}

static void test_cosine_zero_refused(void **s)
{
    (void)s;
    npvdb_collection *c = make(4, NPVDB_METRIC_COSINE);
    float v[12] = {1, 2, 3, 4, 0, 0, 0, 0, 3e38f, 3e38f, 3e38f, 3e38f};
    const char *keys[] = {"a", "zero", "big"};
    npvdb_error err;
    assert_int_equal(npvdb_insert(c, keys, v, 3, NULL, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "vector 1 has zero norm"));
    assert_int_equal(count(c), 0); /* nothing of the batch */
    npvdb_results r;
    assert_int_equal(npvdb_search(c, v + 4, 1, 1, 0, &r, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "query 0 has zero norm"));
    npvdb_free(c);
}

/* L2 and IP: a norm over 2^62 is refused naming the row, for vectors,
 * queries (copied and in place) and training samples; at 2^62 it is kept
 * and every distance is finite. */
static void bound_for(npvdb_metric m)
{
    const uint32_t dim = 16;
    npvdb_collection *c = make(dim, m);
    float v[3 * 16];
    fill(v, dim, 1);
    fill(v + dim, dim, 0x1p60f);            /* |v| = 4 * 2^60 = 2^62: at it */
    fill(v + 2 * dim, dim, 0x1.000002p60f); /* just over */
    const char *keys[] = {"one", "edge", "over"};
    npvdb_error err;
    assert_int_equal(npvdb_insert(c, keys, v, 3, NULL, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "vector 2 has norm"));
    assert_non_null(strstr(err.msg, "2^62"));
    assert_int_equal(count(c), 0);
    /* 16 x 3e38: finite, but its squared norm is not. */
    float big[16];
    fill(big, dim, 3e38f);
    const char *bk[] = {"big"};
    assert_int_equal(npvdb_insert(c, bk, big, 1, NULL, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "vector 0 has norm"));
    assert_int_equal(npvdb_insert(c, keys, v, 2, NULL, &err), NPVDB_OK);
    assert_stored(c, "edge", dim, 0x1p60f);

    /* Queries at the bound from both sides of the edge row: finite. */
    float q[2 * 16];
    fill(q, dim, 0x1p60f);
    fill(q + dim, dim, -0x1p60f);
    npvdb_results r;
    assert_int_equal(npvdb_search(c, q, 2, 2, 0, &r, &err), NPVDB_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r.counts[i], 2);
        for (int j = 0; j < 2; j++)
            assert_true(isfinite(r.distances[i * 2 + j]));
    }
    if (m == NPVDB_METRIC_L2) {
        assert_string_equal(r.keys[0], "edge");
        assert_true(r.distances[0] == 0.0f);
        assert_string_equal(r.keys[2], "one");
    } else {
        assert_string_equal(r.keys[0], "edge");
        assert_true(r.distances[0] == -0x1p124f * 1.0f);
    }
    npvdb_results_free(&r);

    /* Queries over it: refused, copied or in place. */
    assert_int_equal(npvdb_search(c, big, 1, 1, 0, &r, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "query 0 has norm"));
    float q2[2 * 16];
    fill(q2, dim, 1);
    fill(q2 + dim, dim, 3e38f);
    assert_int_equal(npvdb_search_inplace(c, q2, 2, 1, 0, &r, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "query 1 has norm"));
    /* And a training sample. */
    assert_int_equal(npvdb_train(c, v + dim, 2, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "training vector 1 has norm"));
    npvdb_free(c);
}

static void test_l2_norm_bound(void **s)
{
    (void)s;
    bound_for(NPVDB_METRIC_L2);
}

static void test_ip_norm_bound(void **s)
{
    (void)s;
    bound_for(NPVDB_METRIC_IP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cosine_overflowing_norm),
        cmocka_unit_test(test_cosine_subnormal),
        cmocka_unit_test(test_cosine_zero_refused),
        cmocka_unit_test(test_l2_norm_bound),
        cmocka_unit_test(test_ip_norm_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
