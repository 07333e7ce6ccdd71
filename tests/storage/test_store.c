/*
 * test_store.c -- the storage.h API with the real engine: recovery from the
 * log, snapshot round trips (same keys, vectors, centroids, answers), corrupt
 * snapshots refused in favour of the previous one, retention, Init replace
 * and Delete surviving a restart, data directories, full disks.
 */
#include "storage.h"
#include "testutil.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#define DIM 16
#define NMAX 6000

/* The expected content: key "v<i>" has row i of `rows` when present[i]. */
typedef struct model {
    float rows[NMAX * DIM];
    int present[NMAX];
} model;

static uint64_t rng_state;
static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

static void key_of(char *buf, size_t n, size_t i)
{
    snprintf(buf, n, "v%zu", i);
}

/* The creation config of the collection "default" these tests use (from
 * do_init, or as restored): what its snapshots record. */
static npvdb_config g_cfg;

/* Opens dir; *c gets the restored "default" (or NULL), and there is no
 * other collection. */
static npvdb_store *open_store(const char *dir, unsigned keep,
                               npvdb_collection **c)
{
    npvdb_store_config cfg = {.data_dir = dir,
                              .sync = NPVDB_SYNC_ALWAYS,
                              .keep_snapshots = keep,
                              .n_workers = 2};
    npvdb_error err = {0};
    *c = NULL;
    npvdb_store *s = npvdb_store_open(&cfg, NULL, &err);
    if (!s) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        return NULL;
    }
    npvdb_store_coll *v;
    size_t n;
    npvdb_store_take_restored(s, &v, &n);
    assert_true(n <= 1);
    if (n) {
        assert_string_equal(v[0].name, "default");
        *c = v[0].coll;
        g_cfg = v[0].cfg;
    }
    free(v);
    return s;
}

/* Appends an encoded record (enc: the encoder's result, r read after it). */
static npvdb_code append(npvdb_store *s, npvdb_code enc, npvdb_store_rec **r,
                         uint64_t *seq, npvdb_error *err)
{
    if (enc != NPVDB_OK) return enc;
    npvdb_code rc = npvdb_store_append(s, *r, seq, err);
    npvdb_store_rec_free(*r);
    return rc;
}

/* Init as the transport does it: log, apply, wait. */
static npvdb_collection *do_init(npvdb_store *s, npvdb_collection *old,
                                 uint32_t dim, uint32_t n_shards)
{
    npvdb_config cfg = {.dim = dim,
                        .metric = NPVDB_METRIC_L2,
                        .n_shards = n_shards,
                        .train_per_shard = 16,
                        .n_workers = 2,
                        .seed = 7};
    npvdb_error err;
    uint64_t seq;
    npvdb_store_rec *r;
    assert_int_equal(
        append(s, npvdb_store_encode_init("default", &cfg, NULL, 0, &r, &err),
               &r, &seq, &err),
        NPVDB_OK);
    g_cfg = cfg;
    npvdb_collection *c = npvdb_create(&cfg, &err);
    assert_non_null(c);
    npvdb_free(old);
    assert_int_equal(npvdb_store_wait_durable(s, seq, &err), NPVDB_OK);
    return c;
}

/* Inserts rows [from, to) of the model with fresh random values. */
static void do_insert(npvdb_store *s, npvdb_collection *c, model *m,
                      size_t from, size_t to)
{
    while (from < to) {
        size_t n = to - from < 100 ? to - from : 100;
        char names[100][24];
        const char *keys[100];
        for (size_t i = 0; i < n; i++) {
            key_of(names[i], sizeof names[i], from + i);
            keys[i] = names[i];
            for (int d = 0; d < DIM; d++)
                m->rows[(from + i) * DIM + d] = frand();
            m->present[from + i] = 1;
        }
        npvdb_error err;
        uint64_t seq;
        npvdb_store_rec *r;
        assert_int_equal(append(s,
                                npvdb_store_encode_insert(
                                    "default", keys, m->rows + from * DIM, NULL,
                                    n, DIM, &r, &err),
                                &r, &seq, &err),
                         NPVDB_OK);
        assert_int_equal(
            npvdb_insert(c, keys, m->rows + from * DIM, n, NULL, &err),
            NPVDB_OK);
        assert_int_equal(npvdb_store_wait_durable(s, seq, &err), NPVDB_OK);
        from += n;
    }
}

static void do_delete(npvdb_store *s, npvdb_collection *c, model *m,
                      size_t from, size_t to)
{
    char names[NMAX][24];
    const char *keys[NMAX];
    size_t n = 0;
    for (size_t i = from; i < to; i++) {
        key_of(names[n], sizeof names[n], i);
        keys[n] = names[n];
        n++;
        m->present[i] = 0;
    }
    npvdb_error err;
    uint64_t seq;
    npvdb_store_rec *r;
    assert_int_equal(
        append(s, npvdb_store_encode_delete("default", keys, n, &r, &err), &r,
               &seq, &err),
        NPVDB_OK);
    assert_int_equal(npvdb_delete(c, keys, n, NULL, &err), NPVDB_OK);
    assert_int_equal(npvdb_store_wait_durable(s, seq, &err), NPVDB_OK);
}

/* Every present key has exactly its row; absent ones are absent. */
static void check_model(npvdb_collection *c, const model *m, size_t upto)
{
    assert_non_null(c);
    size_t present = 0;
    for (size_t i = 0; i < upto; i++) {
        char key[24];
        float got[DIM];
        npvdb_error err;
        key_of(key, sizeof key, i);
        npvdb_code rc = npvdb_get(c, key, got, &err);
        if (m->present[i]) {
            assert_int_equal(rc, NPVDB_OK);
            assert_memory_equal(got, m->rows + i * DIM, sizeof got);
            present++;
        } else {
            assert_int_equal(rc, NPVDB_ENOTFOUND);
        }
    }
    npvdb_stats st;
    npvdb_error err;
    assert_int_equal(npvdb_stats_get(c, &st, &err), NPVDB_OK);
    assert_int_equal(st.n_vectors, present);
    npvdb_stats_free(&st);
}

static npvdb_code take_snapshot(npvdb_store *s, npvdb_collection *c,
                                npvdb_snapshot_info *info)
{
    npvdb_error err;
    npvdb_snapshot *sn;
    npvdb_code rc =
        npvdb_store_snapshot_begin(s, npvdb_store_last_seq(s), &sn, &err);
    if (rc != NPVDB_OK) return rc;
    rc = npvdb_store_snapshot_add(sn, "default", c, &g_cfg, &err);
    if (rc != NPVDB_OK) {
        npvdb_store_snapshot_abort(sn);
        return rc;
    }
    return npvdb_store_snapshot_commit(sn, info, &err);
}

static void test_missing_dir_created(void **state)
{
    (void)state;
    char *base = tu_tempdir();
    char *dir = tu_join(base, "a/b/c");
    npvdb_collection *c = (npvdb_collection *)1;
    npvdb_store *s = open_store(dir, 0, &c);
    assert_non_null(s);
    assert_null(c); /* never an Init */
    assert_int_equal(tu_count(dir, "LOCK"), 1);
    /* A second server on the same directory is refused. */
    npvdb_collection *c2;
    npvdb_store_config cfg = {.data_dir = dir};
    npvdb_error err;
    assert_null(npvdb_store_open(&cfg, &c2, &err));
    assert_int_equal(err.code, NPVDB_ESTATE);
    npvdb_store_close(s);
    tu_rmtree(base);
    free(dir);
    free(base);
}

static void test_unusable_dir(void **state)
{
    (void)state;
    char *base = tu_tempdir();
    char *file = tu_join(base, "file");
    FILE *f = fopen(file, "w");
    fclose(f);
    npvdb_collection *c;
    npvdb_store_config cfg = {.data_dir = file};
    npvdb_error err = {0};
    assert_null(npvdb_store_open(&cfg, &c, &err));
    assert_int_not_equal(err.code, NPVDB_OK);
    assert_non_null(strstr(err.msg, file));
    char *under = tu_join(file, "sub");
    cfg.data_dir = under;
    assert_null(npvdb_store_open(&cfg, &c, &err));
    cfg.data_dir = "";
    assert_null(npvdb_store_open(&cfg, &c, &err));
    assert_int_equal(err.code, NPVDB_EINVAL);
    free(under);
    free(file);
    tu_rmtree(base);
    free(base);
}

static void test_log_replay(void **state)
{
    (void)state;
    static model m;
    rng_state = 1;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 0, &c);
    c = do_init(s, c, DIM, 4);
    do_insert(s, c, &m, 0, 500);
    do_insert(s, c, &m, 100, 200); /* upserts */
    do_delete(s, c, &m, 300, 350);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 0, &c);
    assert_non_null(s);
    check_model(c, &m, 500);
    /* And new writes continue after the replayed ones. */
    do_insert(s, c, &m, 500, 600);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 0, &c);
    check_model(c, &m, 600);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

/* Captures an export: centroids and (key -> row) in export order. */
typedef struct dump {
    uint32_t n_shards;
    int trained;
    float *centroids;
    size_t n;
    char **keys;
    float *rows;
    uint32_t *shard;
} dump;

static int dump_index(void *ctx, const npvdb_stats *st, const float *cent)
{
    dump *d = ctx;
    d->n_shards = st->n_shards;
    d->trained = st->trained;
    if (cent) {
        size_t b = (size_t)st->n_shards * st->dim * sizeof(float);
        d->centroids = malloc(b);
        memcpy(d->centroids, cent, b);
    }
    d->keys = malloc(st->n_vectors * sizeof *d->keys + 1);
    d->rows = malloc(st->n_vectors * DIM * sizeof(float) + 1);
    d->shard = malloc(st->n_vectors * sizeof *d->shard + 1);
    return 0;
}

static int dump_shard(void *ctx, const npvdb_shard_view *v)
{
    dump *d = ctx;
    for (size_t i = 0; i < v->n; i++) {
        d->keys[d->n] = strdup(v->keys[i]);
        memcpy(d->rows + d->n * DIM, v->rows + i * DIM, DIM * sizeof(float));
        d->shard[d->n] = v->shard;
        d->n++;
    }
    return 0;
}

static void dump_free(dump *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->keys[i]);
    free(d->keys);
    free(d->rows);
    free(d->shard);
    free(d->centroids);
}

static void assert_same_collection(npvdb_collection *a, npvdb_collection *b)
{
    dump x = {0}, y = {0};
    npvdb_error err;
    assert_int_equal(npvdb_export(a, dump_index, dump_shard, &x, &err),
                     NPVDB_OK);
    assert_int_equal(npvdb_export(b, dump_index, dump_shard, &y, &err),
                     NPVDB_OK);
    assert_int_equal(x.n_shards, y.n_shards);
    assert_int_equal(x.trained, y.trained);
    if (x.trained)
        assert_memory_equal(x.centroids, y.centroids,
                            x.n_shards * DIM * sizeof(float));
    assert_int_equal(x.n, y.n);
    /* Same keys in the same shards with the same rows (restore skips
     * assignment; order inside a shard may differ). */
    for (size_t i = 0; i < x.n; i++) {
        float got[DIM];
        assert_int_equal(npvdb_get(b, x.keys[i], got, &err), NPVDB_OK);
        assert_memory_equal(got, x.rows + i * DIM, sizeof got);
        size_t j = 0;
        while (j < y.n && strcmp(y.keys[j], x.keys[i]) != 0)
            j++;
        assert_true(j < y.n);
        assert_int_equal(x.shard[i], y.shard[j]);
    }
    /* Same answers to the same queries. */
    float q[10 * DIM];
    for (int i = 0; i < 10 * DIM; i++)
        q[i] = frand();
    npvdb_results ra, rb;
    assert_int_equal(npvdb_search(a, q, 10, 10, 2, &ra, &err), NPVDB_OK);
    assert_int_equal(npvdb_search(b, q, 10, 10, 2, &rb, &err), NPVDB_OK);
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(ra.counts[i], rb.counts[i]);
        for (uint32_t j = 0; j < ra.counts[i]; j++) {
            assert_string_equal(ra.keys[i * 10 + j], rb.keys[i * 10 + j]);
            assert_true(ra.distances[i * 10 + j] == rb.distances[i * 10 + j]);
        }
    }
    npvdb_results_free(&ra);
    npvdb_results_free(&rb);
    dump_free(&x);
    dump_free(&y);
}

static void test_snapshot_roundtrip(void **state)
{
    (void)state;
    static model m;
    rng_state = 2;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 0, &c);
    c = do_init(s, c, DIM, 8);
    do_insert(s, c, &m, 0, 3000); /* trains itself at 8 * 16 vectors */
    npvdb_snapshot_info info;
    assert_int_equal(take_snapshot(s, c, &info), NPVDB_OK);
    assert_int_equal(info.vectors, 3000);
    assert_true(info.bytes > 3000 * DIM * 4);
    assert_int_equal(info.sequence, npvdb_store_last_seq(s));
    assert_non_null(strstr(info.path, "snap-"));
    npvdb_store_close(s);
    /* The log it covers is gone: the restart is the snapshot alone. */
    assert_int_equal(tu_count(dir, "wal-"), 1);
    npvdb_collection *r;
    s = open_store(dir, 0, &r);
    assert_non_null(s);
    check_model(r, &m, 3000);
    assert_same_collection(c, r);
    npvdb_store_close(s);
    npvdb_free(r);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

/* Finds the byte offset of `needle` in a file, -1 if absent. */
static long long find_bytes(const char *path, const void *needle, size_t n)
{
    long long size = tu_size(path);
    char *buf = malloc((size_t)size);
    FILE *f = fopen(path, "rb");
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    void *hit = memmem(buf, got, needle, n);
    long long off = hit ? (long long)((char *)hit - buf) : -1;
    free(buf);
    return off;
}

/* Two snapshots with writes after each; the newest is damaged in `how`:
 * the restart uses the older one plus the log and loses nothing. */
static void corrupt_newest_case(int how)
{
    static model m;
    rng_state = 3;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 2, &c);
    c = do_init(s, c, DIM, 4);
    do_insert(s, c, &m, 0, 1000);
    assert_int_equal(take_snapshot(s, c, NULL), NPVDB_OK);
    do_insert(s, c, &m, 1000, 1500);
    do_delete(s, c, &m, 0, 10);
    npvdb_snapshot_info info;
    assert_int_equal(take_snapshot(s, c, &info), NPVDB_OK);
    do_insert(s, c, &m, 1500, 1600);
    npvdb_store_close(s);
    npvdb_free(c);
    assert_int_equal(tu_count(dir, "snap-"), 2);
    long long size = tu_size(info.path);
    if (how == 0) {
        assert_int_equal(tu_truncate(info.path, size / 2), 0);
    } else if (how == 1) {
        long long off = find_bytes(info.path, m.rows + 1200 * DIM, 8);
        assert_true(off > 0);
        assert_int_equal(tu_flip(info.path, off + 5, 0x04), 0);
    } else if (how == 2) {
        const char *key = "v1234";
        long long off = find_bytes(info.path, key, strlen(key) + 1);
        assert_true(off > 0);
        assert_int_equal(tu_flip(info.path, off + 2, 0x01), 0);
    } else {
        assert_int_equal(tu_truncate(info.path, size - 1), 0);
    }
    s = open_store(dir, 2, &c);
    assert_non_null(s);
    check_model(c, &m, 1600);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

static void test_snapshot_truncated(void **state)
{
    (void)state;
    corrupt_newest_case(0);
    corrupt_newest_case(3);
}

static void test_snapshot_flipped_vector_bit(void **state)
{
    (void)state;
    corrupt_newest_case(1);
}

static void test_snapshot_flipped_key_bit(void **state)
{
    (void)state;
    corrupt_newest_case(2);
}

static void test_retention(void **state)
{
    (void)state;
    static model m;
    rng_state = 4;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 2, &c);
    c = do_init(s, c, DIM, 4);
    for (int round = 0; round < 5; round++) {
        do_insert(s, c, &m, (size_t)round * 200, (size_t)round * 200 + 200);
        assert_int_equal(take_snapshot(s, c, NULL), NPVDB_OK);
        assert_int_equal(tu_count(dir, "snap-"), round < 2 ? round + 1 : 2);
        /* Only the segments after the oldest kept snapshot remain. */
        assert_true(tu_count(dir, "wal-") <= 2);
    }
    do_insert(s, c, &m, 1000, 1100);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 2, &c);
    check_model(c, &m, 1100);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

static void test_init_replace_survives(void **state)
{
    (void)state;
    static model m;
    rng_state = 5;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 0, &c);
    c = do_init(s, c, 8, 2); /* another dim, then replaced */
    assert_int_equal(take_snapshot(s, c, NULL), NPVDB_OK);
    c = do_init(s, c, DIM, 4);
    do_insert(s, c, &m, 0, 300);
    do_delete(s, c, &m, 0, 100);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 0, &c);
    assert_int_equal(npvdb_dim(c), DIM);
    check_model(c, &m, 300);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

static void test_full_disk(void **state)
{
    (void)state;
    static model m;
    rng_state = 6;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 0, &c);
    c = do_init(s, c, DIM, 4);
    do_insert(s, c, &m, 0, 200);
    /* The disk is full: the next insert is refused with an error. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char k[] = "extra";
    const char *keys[] = {k};
    float row[DIM] = {1};
    npvdb_error err;
    uint64_t seq;
    npvdb_store_rec *r;
    npvdb_code rc = append(
        s,
        npvdb_store_encode_insert("default", keys, row, NULL, 1, DIM, &r, &err),
        &r, &seq, &err);
    /* A snapshot cannot be written either, and leaves nothing behind. */
    npvdb_code rc2 = take_snapshot(s, c, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, NPVDB_ELIMIT);
    assert_int_not_equal(rc2, NPVDB_OK);
    assert_int_equal(tu_count(dir, "snap-"), 0);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 0, &c);
    check_model(c, &m, 200);
    assert_int_equal(npvdb_get(c, "extra", row, &err), NPVDB_ENOTFOUND);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

typedef struct bg {
    npvdb_store *s;
    npvdb_collection *c;
    model *m;
} bg;

static void *bg_inserts(void *p)
{
    bg *b = p;
    do_insert(b->s, b->c, b->m, 2000, 4000);
    return NULL;
}

/* A snapshot taken while inserts go on, then the log after it, restores
 * exactly the final state. */
static void test_snapshot_during_inserts(void **state)
{
    (void)state;
    static model m;
    rng_state = 7;
    char *dir = tu_tempdir();
    npvdb_collection *c;
    npvdb_store *s = open_store(dir, 0, &c);
    c = do_init(s, c, DIM, 8);
    do_insert(s, c, &m, 0, 2000);
    bg b = {s, c, &m};
    pthread_t t;
    pthread_create(&t, NULL, bg_inserts, &b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(take_snapshot(s, c, NULL), NPVDB_OK);
    pthread_join(t, NULL);
    npvdb_store_close(s);
    npvdb_free(c);
    s = open_store(dir, 0, &c);
    check_model(c, &m, 4000);
    npvdb_store_close(s);
    npvdb_free(c);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_dir_created),
        cmocka_unit_test(test_unusable_dir),
        cmocka_unit_test(test_log_replay),
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test(test_snapshot_truncated),
        cmocka_unit_test(test_snapshot_flipped_vector_bit),
        cmocka_unit_test(test_snapshot_flipped_key_bit),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_init_replace_survives),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_snapshot_during_inserts),
    };
    /* TEST_FILTER=test_name (globs allowed) runs a subset. */
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
