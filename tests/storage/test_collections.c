/*
 * test_collections.c -- the store with many named collections: v1 data
 * directories (tests/storage/data) open as collection "default" with exactly
 * their contents; named records replay per collection (create, replace,
 * drop, writes to a dropped collection skipped); version 2 snapshots hold
 * every collection and restore them with their configs.
 */
#include "storage.h"
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------ */

static npvdb_store *open_dir(const char *dir)
{
    npvdb_store_config cfg = {
        .data_dir = dir, .sync = NPVDB_SYNC_ALWAYS, .n_workers = 1};
    npvdb_error err = {0};
    npvdb_store *s = npvdb_store_open(&cfg, NULL, &err);
    if (!s) fprintf(stderr, "store_open: %s\n", err.msg);
    assert_non_null(s);
    return s;
}

/* The restored collections of s (caller frees with free_colls). */
typedef struct colls {
    npvdb_store_coll *v;
    size_t n;
} colls;

static colls take(npvdb_store *s)
{
    colls c;
    npvdb_store_take_restored(s, &c.v, &c.n);
    return c;
}

static void free_colls(colls *c)
{
    for (size_t i = 0; i < c->n; i++)
        npvdb_free(c->v[i].coll);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static npvdb_store_coll *find(colls *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0) return &c->v[i];
    return NULL;
}

/* The fixtures' row formula (tests/storage/data/README.md). */
static void row_of(float *r, uint32_t dim, unsigned i, float salt)
{
    for (uint32_t d = 0; d < dim; d++)
        r[d] = (float)((i * 7 + d * 3) % 11) - 5.0f + salt * (float)(d + 1);
}

static void normalise(float *r, uint32_t dim)
{
    double s = 0;
    for (uint32_t d = 0; d < dim; d++)
        s += (double)r[d] * r[d];
    for (uint32_t d = 0; d < dim; d++)
        r[d] = (float)(r[d] / sqrt(s));
}

static size_t n_vectors(npvdb_collection *c, int *trained, uint32_t *shards)
{
    npvdb_stats st;
    npvdb_error err;
    assert_int_equal(npvdb_stats_get(c, &st, &err), NPVDB_OK);
    size_t n = st.n_vectors;
    if (trained) *trained = st.trained;
    if (shards) *shards = st.n_shards;
    npvdb_stats_free(&st);
    return n;
}

/* Key <p><i> holds row_of(i, salt) (normalised for cosine). */
static void expect_row(npvdb_collection *c, const char *p, unsigned i,
                       float salt)
{
    char key[32];
    snprintf(key, sizeof key, "%s%u", p, i);
    uint32_t dim = npvdb_dim(c);
    float want[8], got[8];
    row_of(want, dim, i, salt);
    if (npvdb_get_metric(c) == NPVDB_METRIC_COSINE) normalise(want, dim);
    npvdb_error err = {0};
    if (npvdb_get(c, key, got, &err) != NPVDB_OK)
        fail_msg("%s: %s", key, err.msg);
    for (uint32_t d = 0; d < dim; d++)
        assert_float_equal(got[d], want[d], 1e-6);
}

static void expect_absent(npvdb_collection *c, const char *key)
{
    float got[8];
    npvdb_error err;
    assert_int_equal(npvdb_get(c, key, got, &err), NPVDB_ENOTFOUND);
}

/* Copies fixture `name` to a temp dir; *base gets the dir to remove. */
static char *fixture(const char *name, char **base)
{
    *base = tu_tempdir();
    char *src = tu_join(NPVDB_FIXTURES, name);
    char *dst = tu_join(*base, "data");
    assert_int_equal(tu_copy_fixture(src, dst), 0);
    free(src);
    return dst;
}

static void snapshot_all(npvdb_store *s, colls *c)
{
    npvdb_snapshot *sn;
    npvdb_error err = {0};
    assert_int_equal(
        npvdb_store_snapshot_begin(s, npvdb_store_last_seq(s), &sn, &err),
        NPVDB_OK);
    for (size_t i = 0; i < c->n; i++)
        if (npvdb_store_snapshot_add(sn, c->v[i].name, c->v[i].coll,
                                     &c->v[i].cfg, &err) != NPVDB_OK)
            fail_msg("snapshot_add %s: %s", c->v[i].name, err.msg);
    npvdb_snapshot_info info;
    assert_int_equal(npvdb_store_snapshot_commit(sn, &info, &err), NPVDB_OK);
    assert_int_equal(info.collections, c->n);
}

/* ---- v1 fixtures ----------------------------------------------------------
 */

static void check_v1_trained(colls *c)
{
    assert_int_equal(c->n, 1);
    npvdb_store_coll *d = find(c, "default");
    assert_non_null(d);
    int trained;
    uint32_t shards;
    assert_int_equal(n_vectors(d->coll, &trained, &shards), 14);
    assert_true(trained);
    assert_int_equal(shards, 2);
    assert_int_equal(d->cfg.dim, 4);
    assert_int_equal(d->cfg.metric, NPVDB_METRIC_L2);
    assert_int_equal(d->cfg.n_shards, 2);
    assert_int_equal(d->cfg.train_per_shard, 4);
    assert_int_equal(d->cfg.kmeans_iters, 5);
    assert_int_equal(d->cfg.default_nprobe, 2);
    assert_int_equal(d->cfg.seed, 7);
    for (unsigned i = 1; i < 16; i++)
        if (i != 5 && i != 3) expect_row(d->coll, "t", i, 0.0f);
    expect_row(d->coll, "t", 3, 1.0f);
    expect_absent(d->coll, "t0");
    expect_absent(d->coll, "t5");
}

static void check_v1_untrained(colls *c)
{
    assert_int_equal(c->n, 1);
    npvdb_store_coll *d = find(c, "default");
    assert_non_null(d);
    int trained;
    assert_int_equal(n_vectors(d->coll, &trained, NULL), 6);
    assert_false(trained);
    assert_int_equal(d->cfg.metric, NPVDB_METRIC_COSINE);
    assert_int_equal(d->cfg.n_shards, 4);
    assert_int_equal(d->cfg.seed, 3);
    const unsigned present[] = {0, 3, 4, 5, 6, 7};
    for (int i = 0; i < 6; i++)
        expect_row(d->coll, "u", present[i], 0.0f);
    expect_absent(d->coll, "u1");
    expect_absent(d->coll, "u2");
}

static void check_v1_reinit(colls *c)
{
    assert_int_equal(c->n, 1);
    npvdb_store_coll *d = find(c, "default");
    assert_non_null(d);
    assert_int_equal(n_vectors(d->coll, NULL, NULL), 3);
    assert_int_equal(npvdb_dim(d->coll), 2);
    assert_int_equal(d->cfg.metric, NPVDB_METRIC_IP);
    expect_row(d->coll, "w", 0, 0.5f);
    expect_row(d->coll, "w", 1, 0.5f);
    expect_row(d->coll, "w", 3, 0.5f);
    expect_absent(d->coll, "w2");
    expect_absent(d->coll, "r0");
}

/* Opens the fixture, checks it, rewrites it as a v2 snapshot, reopens
 * (snapshot only now) and checks again. */
static void run_fixture(const char *name, void (*check)(colls *))
{
    char *base;
    char *dir = fixture(name, &base);
    npvdb_store *s = open_dir(dir);
    colls c = take(s);
    check(&c);
    snapshot_all(s, &c);
    free_colls(&c);
    npvdb_store_close(s);
    s = open_dir(dir);
    c = take(s);
    check(&c);
    free_colls(&c);
    npvdb_store_close(s);
    /* The legacy one-collection open hands out the same "default". */
    npvdb_store_config cfg = {.data_dir = dir, .n_workers = 1};
    npvdb_collection *one = NULL;
    npvdb_error err;
    s = npvdb_store_open(&cfg, &one, &err);
    assert_non_null(s);
    assert_non_null(one);
    c = take(s);
    assert_int_equal(c.n, 0);
    free(c.v);
    npvdb_free(one);
    npvdb_store_close(s);
    tu_rmtree(base);
    free(dir);
    free(base);
}

static void test_v1_trained(void **state)
{
    (void)state;
    run_fixture("v1-trained", check_v1_trained);
}

static void test_v1_untrained(void **state)
{
    (void)state;
    run_fixture("v1-untrained", check_v1_untrained);
}

static void test_v1_reinit(void **state)
{
    (void)state;
    run_fixture("v1-reinit", check_v1_reinit);
}

/* ---- named records --------------------------------------------------------
 */

/* rp: read after enc ran (argument order is unspecified in C). */
static uint64_t append(npvdb_store *s, npvdb_code enc, npvdb_store_rec **rp)
{
    assert_int_equal(enc, NPVDB_OK);
    npvdb_store_rec *r = *rp;
    uint64_t seq;
    npvdb_error err;
    assert_int_equal(npvdb_store_append(s, r, &seq, &err), NPVDB_OK);
    assert_int_equal(npvdb_store_wait_durable(s, seq, &err), NPVDB_OK);
    npvdb_store_rec_free(r);
    return seq;
}

static void log_init(npvdb_store *s, const char *name, uint32_t dim,
                     npvdb_metric m)
{
    npvdb_config cfg = {.dim = dim, .metric = m, .n_shards = 3, .seed = 11};
    npvdb_store_rec *r;
    npvdb_error err;
    append(s, npvdb_store_encode_init(name, &cfg, NULL, 0, &r, &err), &r);
}

/* Logs keys <p><from..to) with row_of(i, salt). */
static void log_insert(npvdb_store *s, const char *name, uint32_t dim,
                       const char *p, unsigned from, unsigned to, float salt)
{
    char kb[64][16];
    const char *keys[64];
    float rows[64 * 8];
    for (unsigned i = from; i < to; i++) {
        snprintf(kb[i - from], sizeof kb[0], "%s%u", p, i);
        keys[i - from] = kb[i - from];
        row_of(rows + (i - from) * dim, dim, i, salt);
    }
    npvdb_store_rec *r;
    npvdb_error err;
    append(s,
           npvdb_store_encode_insert(name, keys, rows, NULL, to - from, dim, &r,
                                     &err),
           &r);
}

static void log_drop(npvdb_store *s, const char *name)
{
    npvdb_store_rec *r;
    npvdb_error err;
    append(s, npvdb_store_encode_drop(name, &r, &err), &r);
}

/* a (L2 dim 4): a0..a9 minus a4; b dropped; "." (IP dim 2): d0..d2;
 * c replaced by dim 3 cosine with c0..c1. */
static void write_named(npvdb_store *s)
{
    log_init(s, "a", 4, NPVDB_METRIC_L2);
    log_init(s, "b", 2, NPVDB_METRIC_L2);
    log_init(s, "c", 4, NPVDB_METRIC_L2);
    log_init(s, ".", 2, NPVDB_METRIC_IP);
    log_insert(s, "a", 4, "a", 0, 10, 0.0f);
    log_insert(s, "b", 2, "b", 0, 5, 0.0f);
    log_insert(s, "c", 4, "c", 0, 5, 0.0f);
    log_insert(s, ".", 2, "d", 0, 3, 0.25f);
    const char *del[] = {"a4", "b1"};
    npvdb_store_rec *r;
    npvdb_error err;
    append(s, npvdb_store_encode_delete("a", del, 2, &r, &err), &r);
    log_drop(s, "b");
    log_insert(s, "b", 2, "b", 5, 6, 0.0f); /* no such collection: skipped */
    log_init(s, "c", 3, NPVDB_METRIC_COSINE);
    log_insert(s, "c", 3, "c", 0, 2, 0.0f);
}

static void check_named(colls *c)
{
    assert_int_equal(c->n, 3);
    /* Sorted by name. */
    assert_string_equal(c->v[0].name, ".");
    assert_string_equal(c->v[1].name, "a");
    assert_string_equal(c->v[2].name, "c");
    npvdb_store_coll *a = find(c, "a"), *cc = find(c, "c"), *d = find(c, ".");
    assert_int_equal(n_vectors(a->coll, NULL, NULL), 9);
    for (unsigned i = 0; i < 10; i++)
        if (i != 4) expect_row(a->coll, "a", i, 0.0f);
    expect_absent(a->coll, "a4");
    assert_int_equal(a->cfg.n_shards, 3);
    assert_int_equal(a->cfg.seed, 11);
    assert_int_equal(n_vectors(cc->coll, NULL, NULL), 2);
    assert_int_equal(cc->cfg.dim, 3);
    assert_int_equal(npvdb_get_metric(cc->coll), NPVDB_METRIC_COSINE);
    expect_row(cc->coll, "c", 0, 0.0f);
    expect_row(cc->coll, "c", 1, 0.0f);
    assert_int_equal(n_vectors(d->coll, NULL, NULL), 3);
    assert_int_equal(npvdb_get_metric(d->coll), NPVDB_METRIC_IP);
    for (unsigned i = 0; i < 3; i++)
        expect_row(d->coll, "d", i, 0.25f);
}

static void test_named_replay_and_snapshot(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    npvdb_store *s = open_dir(dir);
    colls c = take(s);
    assert_int_equal(c.n, 0);
    free(c.v);
    write_named(s);
    npvdb_store_close(s);
    /* From the log alone. */
    s = open_dir(dir);
    c = take(s);
    check_named(&c);
    /* Snapshot, then more writes after it: snapshot + log. */
    snapshot_all(s, &c);
    free_colls(&c);
    log_drop(s, ".");
    log_init(s, "e", 2, NPVDB_METRIC_L2);
    log_insert(s, "e", 2, "e", 0, 2, 0.0f);
    log_drop(s, "e");
    log_init(s, ".", 2, NPVDB_METRIC_IP);
    log_insert(s, ".", 2, "d", 0, 3, 0.25f);
    npvdb_store_close(s);
    s = open_dir(dir);
    c = take(s);
    check_named(&c);
    /* From the snapshot alone (the one written now covers everything). */
    snapshot_all(s, &c);
    free_colls(&c);
    npvdb_store_close(s);
    s = open_dir(dir);
    c = take(s);
    check_named(&c);
    free_colls(&c);
    npvdb_store_close(s);
    tu_rmtree(dir);
    free(dir);
}

/* A snapshot with a corrupt collection is refused whole: the previous one
 * and the log give the same contents. */
static void test_corrupt_group_falls_back(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    npvdb_store *s = open_dir(dir);
    write_named(s);
    colls c = take(s);
    assert_int_equal(c.n, 0);
    free(c.v);
    npvdb_store_close(s);
    s = open_dir(dir);
    c = take(s);
    snapshot_all(s, &c); /* the good one */
    log_insert(s, "a", 4, "a", 20, 21, 0.0f);
    snapshot_all(s, &c); /* a's copy lacks a20; replay adds it */
    free_colls(&c);
    npvdb_store_close(s);
    char *path = tu_find(dir, "snap-", ".h5", 1);
    /* A wrong checksum in collection "a" only: the file goes whole. */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, "collections/a", H5P_DEFAULT);
    assert_true(g >= 0);
    assert_true(H5Adelete(g, "crc32c_vectors") >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, "crc32c_vectors", H5T_STD_U64LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT);
    uint64_t bad = 12345;
    assert_true(H5Awrite(a, H5T_NATIVE_UINT64, &bad) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
    s = open_dir(dir);
    c = take(s);
    assert_int_equal(c.n, 3);
    assert_int_equal(n_vectors(find(&c, "a")->coll, NULL, NULL), 10);
    expect_row(find(&c, "a")->coll, "a", 20, 0.0f);
    assert_int_equal(n_vectors(find(&c, "c")->coll, NULL, NULL), 2);
    assert_int_equal(n_vectors(find(&c, ".")->coll, NULL, NULL), 3);
    free_colls(&c);
    npvdb_store_close(s);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* Replaces attribute `attr` (u64) of the HDF5 object at `obj` in path. */
static void poke_u64(const char *path, const char *obj, const char *attr,
                     uint64_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    assert_true(o >= 0);
    assert_true(H5Adelete(o, attr) >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_UINT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Oclose(o);
    H5Fclose(f);
}

/* Payloads go through the log and a snapshot's columns byte for byte; a
 * column with a wrong checksum makes the whole file refused. */
static void test_payload_columns(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    npvdb_store *s = open_dir(dir);
    log_init(s, "p", 2, NPVDB_METRIC_L2);
    const char *keys[] = {"x", "y", "z"};
    float rows[6] = {1, 2, 3, 4, 5, 6};
    npvdb_field f[2] = {
        {.name = "s",
         .name_len = 1,
         .type = NPVDB_VALUE_STRING,
         .s = "hi",
         .s_len = 2},
        {.name = "t", .name_len = 1, .type = NPVDB_VALUE_INT, .i = -3}};
    npvdb_payload pl[3] = {{0}, {0}, {0}};
    npvdb_error err;
    assert_int_equal(npvdb_payload_build(f, 2, &pl[0], &err), NPVDB_OK);
    assert_int_equal(npvdb_payload_build(f + 1, 1, &pl[2], &err), NPVDB_OK);
    npvdb_store_rec *r;
    append(s, npvdb_store_encode_insert("p", keys, rows, pl, 3, 2, &r, &err),
           &r);
    npvdb_store_close(s);
    for (int round = 0; round < 3; round++) {
        s = open_dir(dir);
        colls c = take(s);
        npvdb_store_coll *p = find(&c, "p");
        assert_non_null(p);
        for (int i = 0; i < 3; i++) {
            npvdb_payload got = {0};
            assert_int_equal(
                npvdb_get_payload(p->coll, keys[i], NULL, &got, &err),
                NPVDB_OK);
            assert_int_equal(got.len, pl[i].len);
            if (got.len) assert_memory_equal(got.data, pl[i].data, got.len);
            free((void *)got.data);
        }
        if (round == 0) snapshot_all(s, &c); /* the good one */
        if (round == 1) {
            /* A newer snapshot, then its column checksum broken: the
             * store falls back to the good one (and the log after it)
             * and gets the same. */
            log_insert(s, "p", 2, "w", 0, 1, 0.0f);
            snapshot_all(s, &c);
            char *path = tu_find(dir, "snap-", ".h5", 1);
            poke_u64(path, "collections/p/payload/0", "crc32c", 77);
            free(path);
        }
        free_colls(&c);
        npvdb_store_close(s);
    }
    for (int i = 0; i < 3; i++)
        free((void *)pl[i].data);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_trained),
        cmocka_unit_test(test_v1_untrained),
        cmocka_unit_test(test_v1_reinit),
        cmocka_unit_test(test_named_replay_and_snapshot),
        cmocka_unit_test(test_corrupt_group_falls_back),
        cmocka_unit_test(test_payload_columns),
    };
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
