/*
 * test_catalog.c -- the catalog over a real store in a temporary directory:
 * create / list / drop / replace and their errors, bad names, contents that
 * survive a restart from the log, from a snapshot and from both, a dropped
 * collection's data leaving the disk, 1,000 small collections, concurrent
 * writers with snapshots, holders that a drop waits for, and the v1 fixture
 * opening as "default".
 */
#include "catalog.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- fixtures -------------------------------------------------------------
 */

typedef struct db {
    npvdb_workers *workers; /* shared by every collection, or NULL */
    char *dir;
    npvdb_store *store;
    npvdb_catalog *cat;
    unsigned keep;
    npvdb_sync_mode sync;
    uint64_t max_memory; /* catalog_config.max_memory_bytes */
} db;

static void db_open(db *d)
{
    npvdb_store_config sc = {.data_dir = d->dir,
                             .sync = d->sync,
                             .keep_snapshots = d->keep,
                             .n_workers = 1,
                             .workers = d->workers};
    npvdb_error err = {0};
    d->store = npvdb_store_open(&sc, NULL, &err);
    if (!d->store) fail_msg("store_open: %s", err.msg);
    catalog_config cc = {.store = d->store,
                         .workers = d->workers,
                         .max_memory_bytes = d->max_memory};
    d->cat = catalog_open(&cc, &err);
    if (!d->cat) fail_msg("catalog_open: %s", err.msg);
}

static void db_close(db *d)
{
    catalog_close(d->cat);
    npvdb_store_close(d->store);
    d->cat = NULL;
    d->store = NULL;
}

static db *db_new_pool(unsigned keep, npvdb_sync_mode sync, uint32_t pool)
{
    db *d = calloc(1, sizeof *d);
    npvdb_error err;
    if (pool) assert_non_null(d->workers = npvdb_workers_create(pool, &err));
    d->dir = tu_tempdir();
    d->keep = keep;
    d->sync = sync;
    db_open(d);
    return d;
}

static db *db_new(unsigned keep, npvdb_sync_mode sync)
{
    return db_new_pool(keep, sync, 0);
}

static void db_free(db *d)
{
    if (d->cat) db_close(d);
    npvdb_workers_free(d->workers); /* after the last collection */
    tu_rmtree(d->dir);
    free(d->dir);
    free(d);
}

static void db_reopen(db *d)
{
    db_close(d);
    db_open(d);
}

static void create(db *d, const char *name, uint32_t dim, npvdb_metric m)
{
    npvdb_config cfg = {.dim = dim, .metric = m, .n_shards = 2, .seed = 5};
    npvdb_error err = {0};
    uint64_t seq;
    int replaced;
    if (catalog_create(d->cat, name, &cfg, NULL, 0, 0, &replaced, &seq, &err) !=
        NPVDB_OK)
        fail_msg("create %s: %s", name, err.msg);
    assert_false(replaced);
    assert_int_equal(catalog_wait_durable(d->cat, seq, &err), NPVDB_OK);
}

/* Row of key i in a collection with salt s. */
static void row_of(float *r, uint32_t dim, unsigned i, float s)
{
    for (uint32_t j = 0; j < dim; j++)
        r[j] = (float)((i * 13 + j * 7) % 17) - 8.0f + s * (float)(j + 1);
}

/* Inserts keys <p><from..to) with row_of(i, s) through the catalog. */
static npvdb_code insert(db *d, const char *name, const char *p, unsigned from,
                         unsigned to, float s, npvdb_error *err)
{
    catalog_ref ref;
    npvdb_code rc = catalog_acquire(d->cat, name, &ref, err);
    if (rc != NPVDB_OK) return rc;
    uint32_t dim = npvdb_dim(ref.coll);
    size_t n = to - from;
    char(*kb)[24] = malloc(n * sizeof *kb);
    const char **keys = malloc(n * sizeof *keys);
    float *rows = malloc(n * dim * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        snprintf(kb[i], sizeof kb[i], "%s%zu", p, from + i);
        keys[i] = kb[i];
        row_of(rows + i * dim, dim, (unsigned)(from + i), s);
    }
    npvdb_batch *b = NULL;
    uint64_t seq = 0;
    rc = npvdb_insert_prepare(ref.coll, keys, rows, n, &b, err);
    if (rc == NPVDB_OK)
        rc = catalog_insert(d->cat, &ref, b, keys, rows, NULL, n, NULL, &seq,
                            err);
    npvdb_batch_free(b);
    catalog_release(d->cat, &ref);
    if (rc == NPVDB_OK) rc = catalog_wait_durable(d->cat, seq, err);
    free(kb);
    free(keys);
    free(rows);
    return rc;
}

/* The payload of key i: fields vary by i so that columns are sparse, a
 * field ("mixed") has several types, strings hold a NUL byte, lists of
 * strings vary in length, and every 5th row has none. */
static void payload_of(unsigned i, npvdb_payload *out)
{
    npvdb_field f[6];
    size_t n = 0;
    static const char nul_str[] = {'a', 0, 'b'};
    const char *items[3] = {"x", "", "z\xc3\xa9"};
    uint32_t item_lens[3] = {1, 0, 3};
    memset(f, 0, sizeof f);
    memset(out, 0, sizeof *out);
    if (i % 5 == 4) return;
    f[n].name = "tenant";
    f[n].name_len = 6;
    f[n].type = NPVDB_VALUE_INT;
    f[n++].i = (int64_t)i * 1000003 - 5;
    f[n].name = "mixed";
    f[n].name_len = 5;
    if (i % 3 == 0) {
        f[n].type = NPVDB_VALUE_STRING;
        f[n].s = i % 2 ? nul_str : "plain";
        f[n++].s_len = i % 2 ? 3 : 5;
    } else if (i % 3 == 1) {
        f[n].type = NPVDB_VALUE_DOUBLE;
        f[n++].d = (double)i / 7.0;
    } else {
        f[n].type = NPVDB_VALUE_BOOL;
        f[n++].b = (int)(i % 2);
    }
    if (i % 2) {
        f[n].name = "tags";
        f[n].name_len = 4;
        f[n].type = NPVDB_VALUE_STRINGS;
        f[n].n_items = i % 4; /* 1 or 3 */
        f[n].items = items;
        f[n++].item_lens = item_lens;
    }
    npvdb_error err;
    assert_int_equal(npvdb_payload_build(f, n, out, &err), NPVDB_OK);
}

/* insert() with payload_of(i) for each key, through upsert_prepare. */
static void insert_payloads(db *d, const char *name, const char *p,
                            unsigned from, unsigned to)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    uint32_t dim = npvdb_dim(ref.coll);
    size_t n = to - from;
    char(*kb)[24] = malloc(n * sizeof *kb);
    const char **keys = malloc(n * sizeof *keys);
    float *rows = malloc(n * dim * sizeof *rows);
    npvdb_payload *pl = calloc(n, sizeof *pl);
    for (size_t i = 0; i < n; i++) {
        snprintf(kb[i], sizeof kb[i], "%s%zu", p, from + i);
        keys[i] = kb[i];
        row_of(rows + i * dim, dim, (unsigned)(from + i), 0.0f);
        payload_of((unsigned)(from + i), &pl[i]);
    }
    npvdb_batch *b = NULL;
    uint64_t seq = 0;
    if (npvdb_upsert_prepare(ref.coll, keys, rows, pl, n, &b, &err) !=
            NPVDB_OK ||
        catalog_insert(d->cat, &ref, b, keys, rows, pl, n, NULL, &seq, &err) !=
            NPVDB_OK)
        fail_msg("insert_payloads %s: %s", name, err.msg);
    npvdb_batch_free(b);
    catalog_release(d->cat, &ref);
    assert_int_equal(catalog_wait_durable(d->cat, seq, &err), NPVDB_OK);
    for (size_t i = 0; i < n; i++)
        free((void *)pl[i].data);
    free(pl);
    free(kb);
    free(keys);
    free(rows);
}

static void insert_ok(db *d, const char *name, const char *p, unsigned from,
                      unsigned to, float s)
{
    npvdb_error err = {0};
    if (insert(d, name, p, from, to, s, &err) != NPVDB_OK)
        fail_msg("insert %s: %s", name, err.msg);
}

static void delete_ok(db *d, const char *name, const char *const *keys,
                      size_t n, size_t expect_deleted)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    size_t deleted;
    uint64_t seq;
    assert_int_equal(
        catalog_delete(d->cat, &ref, keys, n, &deleted, &seq, &err), NPVDB_OK);
    assert_int_equal(deleted, expect_deleted);
    catalog_release(d->cat, &ref);
    assert_int_equal(catalog_wait_durable(d->cat, seq, &err), NPVDB_OK);
}

/* ---- dumps: every key, vector and payload of every collection -------------
 */

/* One line per vector: key, NUL, row bytes, payload bytes; sorted by key
 * within each collection, which starts with a "@name" and a "#dim ..."
 * line. Comparing two dumps compares every key, vector and payload. */
typedef struct line {
    char *p;
    size_t len;
} line;

typedef struct dump {
    line *v;
    size_t n, cap;
    uint32_t dim;
} dump;

static void dump_push(dump *d, const void *a, size_t la, const void *b,
                      size_t lb, const void *c, size_t lc)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->v = realloc(d->v, d->cap * sizeof *d->v);
        assert_non_null(d->v);
    }
    char *l = malloc(la + lb + lc + 1);
    assert_non_null(l);
    memcpy(l, a, la);
    if (lb) memcpy(l + la, b, lb);
    if (lc) memcpy(l + la + lb, c, lc);
    l[la + lb + lc] = 0;
    d->v[d->n].p = l;
    d->v[d->n++].len = la + lb + lc;
}

static int dump_index(void *ctx, const npvdb_stats *st, const float *cent)
{
    (void)cent;
    dump *d = ctx;
    d->dim = st->dim;
    char h[64];
    int n = snprintf(h, sizeof h, "#dim %u metric %d trained %d", st->dim,
                     (int)st->metric, st->trained);
    dump_push(d, h, (size_t)n + 1, NULL, 0, NULL, 0);
    return 0;
}

static int dump_shard(void *ctx, const npvdb_shard_view *v)
{
    dump *d = ctx;
    for (size_t i = 0; i < v->n; i++) {
        const npvdb_payload *p = v->payloads ? &v->payloads[i] : NULL;
        dump_push(d, v->keys[i], strlen(v->keys[i]) + 1, v->rows + i * d->dim,
                  d->dim * sizeof(float), p && p->len ? p->data : NULL,
                  p ? p->len : 0);
    }
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(((const line *)a)->p, ((const line *)b)->p);
}

static void dump_coll(dump *d, const char *name, npvdb_collection *c)
{
    char h[300];
    int n = snprintf(h, sizeof h, "@%s", name);
    dump_push(d, h, (size_t)n + 1, NULL, 0, NULL, 0);
    size_t first = d->n + 1; /* after the "#dim" line */
    npvdb_error err;
    assert_int_equal(npvdb_export(c, dump_index, dump_shard, d, &err),
                     NPVDB_OK);
    /* Keys are unique in a collection: sorting by key is total. */
    qsort(d->v + first, d->n - first, sizeof *d->v, cmp_line);
}

/* Dumps every collection in name order. */
static dump dump_all(db *d)
{
    dump out = {0};
    catalog_info *info;
    size_t n;
    npvdb_error err;
    assert_int_equal(catalog_list(d->cat, &info, &n, &err), NPVDB_OK);
    for (size_t i = 0; i < n; i++) {
        catalog_ref ref;
        assert_int_equal(catalog_acquire(d->cat, info[i].name, &ref, &err),
                         NPVDB_OK);
        dump_coll(&out, info[i].name, ref.coll);
        catalog_release(d->cat, &ref);
    }
    free(info);
    return out;
}

static void dump_free(dump *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].p);
    free(d->v);
    memset(d, 0, sizeof *d);
}

static void dump_equal(const dump *a, const dump *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].len != b->v[i].len ||
            memcmp(a->v[i].p, b->v[i].p, a->v[i].len) != 0)
            fail_msg("line %zu differs: '%s' vs '%s'", i, a->v[i].p, b->v[i].p);
    }
}

/* ---- tests ------------------------------------------------------------------
 */

static void test_create_list_drop(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    npvdb_error err = {0};
    catalog_ref ref;
    /* "" and NULL are "default"; absent at first. */
    assert_int_equal(catalog_acquire(d->cat, "", &ref, &err), NPVDB_ENOTFOUND);
    assert_string_equal(err.msg, "collection 'default' not found");
    create(d, "", 3, NPVDB_METRIC_L2);
    assert_int_equal(catalog_acquire(d->cat, NULL, &ref, &err), NPVDB_OK);
    assert_string_equal(ref.name, "default");
    assert_int_equal(npvdb_dim(ref.coll), 3);
    uint64_t gen1 = ref.gen;
    catalog_release(d->cat, &ref);
    create(d, "b-2.x_y", 4, NPVDB_METRIC_IP);
    create(d, "a", 2, NPVDB_METRIC_COSINE);
    assert_int_equal(catalog_count(d->cat), 3);

    /* EEXIST names the collection and says how to replace. */
    npvdb_config cfg = {.dim = 5};
    int replaced = 7;
    uint64_t seq = 9;
    assert_int_equal(
        catalog_create(d->cat, "a", &cfg, NULL, 0, 0, &replaced, &seq, &err),
        NPVDB_EEXIST);
    assert_non_null(strstr(err.msg, "collection 'a' exists (dim 2)"));
    assert_non_null(strstr(err.msg, "replace"));
    assert_int_equal(seq, 0);

    insert_ok(d, "a", "k", 0, 5, 0.0f);
    catalog_info *info;
    size_t n;
    assert_int_equal(catalog_list(d->cat, &info, &n, &err), NPVDB_OK);
    assert_int_equal(n, 3);
    assert_string_equal(info[0].name, "a");
    assert_string_equal(info[1].name, "b-2.x_y");
    assert_string_equal(info[2].name, "default");
    assert_int_equal(info[0].vectors, 5);
    assert_int_equal(info[0].metric, NPVDB_METRIC_COSINE);
    assert_int_equal(info[1].dim, 4);
    assert_int_equal(info[2].vectors, 0);
    free(info);

    /* Replace: a new generation, empty, another dim. */
    assert_int_equal(catalog_create(d->cat, "default", &cfg, NULL, 0, 1,
                                    &replaced, &seq, &err),
                     NPVDB_OK);
    assert_true(replaced);
    assert_true(seq > 0);
    assert_int_equal(catalog_acquire(d->cat, "default", &ref, &err), NPVDB_OK);
    assert_int_equal(npvdb_dim(ref.coll), 5);
    assert_true(ref.gen != gen1);
    catalog_release(d->cat, &ref);

    /* Drop: counts what it held; then it is gone, and a second drop is
     * ENOTFOUND naming it. */
    uint64_t vectors = 0;
    assert_int_equal(catalog_drop(d->cat, "a", &vectors, &seq, &err), NPVDB_OK);
    assert_int_equal(vectors, 5);
    assert_int_equal(catalog_count(d->cat), 2);
    assert_int_equal(catalog_drop(d->cat, "a", &vectors, &seq, &err),
                     NPVDB_ENOTFOUND);
    assert_string_equal(err.msg, "collection 'a' not found");
    assert_int_equal(insert(d, "a", "k", 0, 1, 0, &err), NPVDB_ENOTFOUND);
    assert_string_equal(err.msg, "collection 'a' not found");
    db_free(d);
}

static void test_bad_names(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    npvdb_error err = {0};
    char long_name[CATALOG_MAX_NAME + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    const char *bad[] = {"a b", "a/b", "ü", "x\ty", "semi;colon", long_name};
    npvdb_config cfg = {.dim = 2};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(catalog_check_name(bad[i], strlen(bad[i]), &err),
                         NPVDB_EINVAL);
        catalog_ref ref;
        assert_int_equal(catalog_acquire(d->cat, bad[i], &ref, &err),
                         NPVDB_EINVAL);
        assert_int_equal(
            catalog_create(d->cat, bad[i], &cfg, NULL, 0, 0, NULL, NULL, &err),
            NPVDB_EINVAL);
        assert_int_equal(catalog_drop(d->cat, bad[i], NULL, NULL, &err),
                         NPVDB_EINVAL);
    }
    assert_non_null(strstr(err.msg, "over 255"));
    assert_int_equal(catalog_check_name("a b", 3, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "'a b'"));
    /* A name with a NUL inside (len counts bytes) is refused too. */
    assert_int_equal(catalog_check_name("ab\0c", 4, &err), NPVDB_EINVAL);
    /* Exactly 255 bytes, "." and "-" alone are fine names. */
    long_name[CATALOG_MAX_NAME] = 0;
    assert_int_equal(catalog_check_name(long_name, CATALOG_MAX_NAME, &err),
                     NPVDB_OK);
    assert_int_equal(catalog_check_name("", 0, &err), NPVDB_OK);
    create(d, long_name, 2, NPVDB_METRIC_L2);
    create(d, ".", 2, NPVDB_METRIC_L2);
    create(d, "-", 2, NPVDB_METRIC_L2);
    insert_ok(d, ".", "dot", 0, 3, 0.0f);
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    assert_int_equal(info.collections, 3);
    dump before = dump_all(d);
    db_reopen(d);
    dump after = dump_all(d);
    dump_equal(&before, &after);
    dump_free(&before);
    dump_free(&after);
    assert_int_equal(catalog_count(d->cat), 3);
    db_free(d);
}

/* Three collections, every kind of write, then compare a full dump across
 * restarts from the log only, snapshot + log, and snapshot only. */
static void write_mix(db *d)
{
    create(d, "alpha", 4, NPVDB_METRIC_L2);
    create(d, "beta", 3, NPVDB_METRIC_COSINE);
    create(d, "gamma", 2, NPVDB_METRIC_IP);
    insert_ok(d, "alpha", "a", 0, 300, 0.0f); /* trains (2 shards) */
    insert_ok(d, "beta", "b", 0, 40, 0.5f);
    insert_ok(d, "gamma", "g", 0, 10, 0.25f);
    insert_ok(d, "alpha", "a", 100, 120, 2.0f); /* upserts */
    const char *del[] = {"a1", "a2", "a999"};
    delete_ok(d, "alpha", del, 3, 2);
    const char *delb[] = {"b0"};
    delete_ok(d, "beta", delb, 1, 1);
    /* Payloads: new keys, and upserts that give, change or drop one. */
    insert_payloads(d, "gamma", "p", 0, 60);
    insert_payloads(d, "alpha", "a", 150, 170);
    insert_ok(d, "gamma", "p", 50, 52, 0.0f); /* no payload any more */
}

/* Row p7 of gamma has the payload it was given. */
static void check_payload(db *d)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, "gamma", &ref, &err), NPVDB_OK);
    for (unsigned i = 0; i < 60; i++) {
        char key[16];
        snprintf(key, sizeof key, "p%u", i);
        npvdb_payload got = {0}, want;
        assert_int_equal(npvdb_get_payload(ref.coll, key, NULL, &got, &err),
                         NPVDB_OK);
        payload_of(i, &want);
        if (i == 50 || i == 51) want.len = 0;
        assert_int_equal(got.len, want.len);
        if (want.len) assert_memory_equal(got.data, want.data, want.len);
        free((void *)got.data);
        free((void *)want.data);
    }
    catalog_release(d->cat, &ref);
}

static void test_restart_identical(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    write_mix(d);
    dump want = dump_all(d);
    check_payload(d);
    /* Log only. */
    db_reopen(d);
    dump got = dump_all(d);
    dump_equal(&want, &got);
    check_payload(d);
    dump_free(&got);
    /* Snapshot, then more writes: snapshot + log. */
    npvdb_error err = {0};
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    assert_int_equal(info.collections, 3);
    assert_int_equal(info.vectors, 298 + 39 + 10 + 60);
    insert_ok(d, "gamma", "g", 10, 20, 0.25f);
    uint64_t seq;
    assert_int_equal(catalog_drop(d->cat, "beta", NULL, &seq, &err), NPVDB_OK);
    create(d, "beta", 3, NPVDB_METRIC_L2);
    insert_ok(d, "beta", "nb", 0, 3, 1.0f);
    dump_free(&want);
    want = dump_all(d);
    db_reopen(d);
    got = dump_all(d);
    dump_equal(&want, &got);
    dump_free(&got);
    check_payload(d);
    /* Snapshot only. */
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    assert_int_equal(npvdb_store_log_bytes(d->store), 0);
    db_reopen(d);
    got = dump_all(d);
    dump_equal(&want, &got);
    check_payload(d);
    dump_free(&got);
    dump_free(&want);
    db_free(d);
}

/* 1 if any file in dir contains the bytes of s. */
static int disk_holds(const char *dir, const char *s)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "grep -rqa -- '%s' '%s'", s, dir);
    return system(cmd) == 0;
}

static void test_drop_leaves_disk(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    create(d, "keep", 2, NPVDB_METRIC_L2);
    create(d, "doomed", 2, NPVDB_METRIC_L2);
    insert_ok(d, "keep", "k", 0, 5, 0.0f);
    insert_ok(d, "doomed", "zz-marker-", 0, 5, 0.0f);
    npvdb_error err = {0};
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    assert_true(disk_holds(d->dir, "zz-marker-3"));
    uint64_t seq;
    assert_int_equal(catalog_drop(d->cat, "doomed", NULL, &seq, &err),
                     NPVDB_OK);
    assert_int_equal(catalog_wait_durable(d->cat, seq, &err), NPVDB_OK);
    /* Gone on reopen, from the log. */
    db_reopen(d);
    catalog_ref ref;
    assert_int_equal(catalog_acquire(d->cat, "doomed", &ref, &err),
                     NPVDB_ENOTFOUND);
    /* Two snapshots retire the ones that held it (keep 2) and the log
     * segments with its records. */
    insert_ok(d, "keep", "k", 5, 6, 0.0f);
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    insert_ok(d, "keep", "k", 6, 7, 0.0f);
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    assert_int_equal(info.collections, 1);
    assert_false(disk_holds(d->dir, "zz-marker-"));
    assert_false(disk_holds(d->dir, "doomed"));
    db_reopen(d);
    assert_int_equal(catalog_acquire(d->cat, "doomed", &ref, &err),
                     NPVDB_ENOTFOUND);
    assert_int_equal(catalog_acquire(d->cat, "keep", &ref, &err), NPVDB_OK);
    npvdb_stats st;
    assert_int_equal(npvdb_stats_get(ref.coll, &st, &err), NPVDB_OK);
    assert_int_equal(st.n_vectors, 7);
    npvdb_stats_free(&st);
    catalog_release(d->cat, &ref);
    db_free(d);
}

#define MANY 1000

static void test_thousand_collections(void **state)
{
    (void)state;
    /* One shared pool of 2 workers for the 1,000 collections. */
    db *d = db_new_pool(2, NPVDB_SYNC_NONE, 2);
    char name[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "c%04d", i);
        create(d, name, 4, NPVDB_METRIC_L2);
    }
    /* Fixed memory per empty collection: engine plus catalog entry. */
    catalog_info *info;
    size_t n;
    npvdb_error err = {0};
    assert_int_equal(catalog_list(d->cat, &info, &n, &err), NPVDB_OK);
    assert_int_equal(n, MANY);
    uint64_t max_mem = 0;
    for (size_t i = 0; i < n; i++)
        if (info[i].memory_bytes > max_mem) max_mem = info[i].memory_bytes;
    free(info);
    print_message("fixed memory per empty collection: %llu bytes\n",
                  (unsigned long long)max_mem);
    assert_true(max_mem <= 8 * 1024);
    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "c%04d", i);
        insert_ok(d, name, name, 0, 3, (float)i);
    }
    /* Half in a snapshot, the rest from the log. */
    npvdb_snapshot_info si;
    assert_int_equal(catalog_snapshot(d->cat, &si, &err), NPVDB_OK);
    assert_int_equal(si.collections, MANY);
    assert_int_equal(si.vectors, 3 * MANY);
    print_message("snapshot of %d collections: %llu bytes\n", MANY,
                  (unsigned long long)si.bytes);
    assert_true(si.bytes < 64u << 20);
    for (int i = 0; i < MANY; i += 2) {
        snprintf(name, sizeof name, "c%04d", i);
        insert_ok(d, name, "late", 0, 1, (float)i);
    }
    db_reopen(d);
    assert_int_equal(catalog_count(d->cat), MANY);
    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "c%04d", i);
        catalog_ref ref;
        assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
        float q[4];
        row_of(q, 4, 1, (float)i);
        npvdb_results res;
        assert_int_equal(npvdb_search(ref.coll, q, 1, 2, 0, &res, &err),
                         NPVDB_OK);
        char want[40];
        snprintf(want, sizeof want, "%s1", name);
        assert_string_equal(res.keys[0], want);
        assert_float_equal(res.distances[0], 0.0f, 1e-5);
        npvdb_results_free(&res);
        npvdb_stats st;
        assert_int_equal(npvdb_stats_get(ref.coll, &st, &err), NPVDB_OK);
        assert_int_equal(st.n_vectors, i % 2 == 0 ? 4 : 3);
        npvdb_stats_free(&st);
        catalog_release(d->cat, &ref);
    }
    db_free(d);
}

/* ---- concurrency
 * ------------------------------------------------------------- */

typedef struct writer_arg {
    db *d;
    const char *name;
    int rounds;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    npvdb_error err = {0};
    for (int r = 0; r < w->rounds; r++)
        if (insert(w->d, w->name, "w", (unsigned)r * 20, (unsigned)r * 20 + 20,
                   0.0f, &err) != NPVDB_OK) {
            fprintf(stderr, "writer %s: %s\n", w->name, err.msg);
            return (void *)1;
        }
    return NULL;
}

typedef struct snapper_arg {
    db *d;
    volatile int stop;
    int taken;
} snapper_arg;

static void *snapper_main(void *p)
{
    snapper_arg *s = p;
    npvdb_error err = {0};
    npvdb_snapshot_info info;
    while (!s->stop) {
        if (catalog_snapshot(s->d->cat, &info, &err) != NPVDB_OK) {
            fprintf(stderr, "snapshot: %s\n", err.msg);
            return (void *)1;
        }
        s->taken++;
    }
    return NULL;
}

static void test_concurrent_writers_and_snapshots(void **state)
{
    (void)state;
    db *d = db_new_pool(2, NPVDB_SYNC_ALWAYS, 2);
    create(d, "one", 4, NPVDB_METRIC_L2);
    create(d, "two", 4, NPVDB_METRIC_L2);
    writer_arg w1 = {d, "one", 40}, w2 = {d, "two", 40};
    snapper_arg sa = {.d = d};
    pthread_t t1, t2, t3, t4;
    snapper_arg sb = {.d = d};
    assert_int_equal(pthread_create(&t1, NULL, writer_main, &w1), 0);
    assert_int_equal(pthread_create(&t2, NULL, writer_main, &w2), 0);
    assert_int_equal(pthread_create(&t3, NULL, snapper_main, &sa), 0);
    assert_int_equal(pthread_create(&t4, NULL, snapper_main, &sb), 0);
    void *r1, *r2, *r3, *r4;
    pthread_join(t1, &r1);
    pthread_join(t2, &r2);
    sa.stop = sb.stop = 1;
    pthread_join(t3, &r3);
    pthread_join(t4, &r4);
    assert_null(r1);
    assert_null(r2);
    assert_null(r3);
    assert_null(r4);
    assert_true(sa.taken + sb.taken > 0);
    dump want = dump_all(d);
    assert_int_equal(want.n, 2 * 2 + 2 * 800);
    db_reopen(d);
    dump got = dump_all(d);
    dump_equal(&want, &got);
    dump_free(&got);
    dump_free(&want);
    db_free(d);
}

typedef struct dropper_arg {
    db *d;
    volatile int done;
    npvdb_code rc;
} dropper_arg;

static void *dropper_main(void *p)
{
    dropper_arg *a = p;
    npvdb_error err;
    uint64_t seq;
    a->rc = catalog_drop(a->d->cat, "held", NULL, &seq, &err);
    a->done = 1;
    return NULL;
}

/* A drop waits for the call holding the collection; the holder's write
 * after the drop is refused and not logged. */
static void test_drop_waits_for_holder(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    create(d, "held", 2, NPVDB_METRIC_L2);
    npvdb_error err = {0};
    catalog_ref ref;
    assert_int_equal(catalog_acquire(d->cat, "held", &ref, &err), NPVDB_OK);
    const char *keys[] = {"x"};
    float row[2] = {1, 2};
    npvdb_batch *b;
    assert_int_equal(npvdb_insert_prepare(ref.coll, keys, row, 1, &b, &err),
                     NPVDB_OK);
    dropper_arg a = {.d = d};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dropper_main, &a), 0);
    /* The drop unlinks at once... */
    for (int i = 0; i < 200 && catalog_count(d->cat) != 0; i++)
        usleep(5000);
    assert_int_equal(catalog_count(d->cat), 0);
    usleep(50000);
    assert_false(a.done); /* ...but waits for us to release */
    uint64_t last = npvdb_store_last_seq(d->store), seq = 0;
    assert_int_equal(
        catalog_insert(d->cat, &ref, b, keys, row, NULL, 1, NULL, &seq, &err),
        NPVDB_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'held'"));
    assert_int_equal(npvdb_store_last_seq(d->store), last);
    npvdb_batch_free(b);
    catalog_release(d->cat, &ref);
    pthread_join(t, NULL);
    assert_true(a.done);
    assert_int_equal(a.rc, NPVDB_OK);
    db_free(d);
}

static void test_v1_fixture_as_default(void **state)
{
    (void)state;
    db *d = calloc(1, sizeof *d);
    d->dir = tu_tempdir();
    d->keep = 2;
    char *src = tu_join(NPVDB_FIXTURES, "v1-trained");
    assert_int_equal(tu_copy_fixture(src, d->dir), 0);
    free(src);
    db_open(d);
    assert_int_equal(catalog_count(d->cat), 1);
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, "", &ref, &err), NPVDB_OK);
    assert_string_equal(ref.name, "default");
    npvdb_stats st;
    assert_int_equal(npvdb_stats_get(ref.coll, &st, &err), NPVDB_OK);
    assert_int_equal(st.n_vectors, 14);
    assert_true(st.trained);
    npvdb_stats_free(&st);
    float got[4];
    assert_int_equal(npvdb_get(ref.coll, "t0", got, &err), NPVDB_ENOTFOUND);
    assert_int_equal(npvdb_get(ref.coll, "t15", got, &err), NPVDB_OK);
    catalog_release(d->cat, &ref);
    /* Writes continue through the catalog; a restart keeps them. */
    insert_ok(d, "", "new", 0, 2, 0.0f);
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    dump want = dump_all(d);
    db_reopen(d);
    dump got2 = dump_all(d);
    dump_equal(&want, &got2);
    dump_free(&want);
    dump_free(&got2);
    db_free(d);
}

/* ---- kill -9
 * ------------------------------------------------------------------ */

#define CRASH_COLLS 3
#define CRASH_BATCH 7

static const char *crash_name(int c)
{
    static const char *const names[CRASH_COLLS] = {"c.0", "c-1", "c_2"};
    return names[c];
}

/* The child: batch b goes to collection b % 3 as keys "b<b>-<j>" with
 * payload_of(b * 7 + j); after each durable batch its number goes down the
 * pipe. Every 10th batch a snapshot, every 25th a drop and re-create of
 * "c_2". Never returns. */
static void crash_child(const char *dir, int fd)
{
    db d = {.dir = (char *)dir, .keep = 2, .sync = NPVDB_SYNC_ALWAYS};
    db_open(&d);
    for (int c = 0; c < CRASH_COLLS; c++)
        create(&d, crash_name(c), 3, NPVDB_METRIC_L2);
    for (uint32_t b = 0;; b++) {
        if (b % 25 == 24) {
            npvdb_error err;
            uint64_t seq;
            if (catalog_drop(d.cat, "c_2", NULL, &seq, &err) != NPVDB_OK)
                _exit(3);
            create(&d, "c_2", 3, NPVDB_METRIC_L2);
        }
        char p[16];
        snprintf(p, sizeof p, "b%u-", b);
        /* insert_payloads numbers keys from `from`: keys p<from..to). */
        insert_payloads(&d, crash_name((int)(b % CRASH_COLLS)), p, b * 7,
                        b * 7 + CRASH_BATCH);
        if (b % 10 == 9) {
            npvdb_snapshot_info info;
            npvdb_error err;
            if (catalog_snapshot(d.cat, &info, &err) != NPVDB_OK) _exit(4);
        }
        if (write(fd, &b, sizeof b) != sizeof b) _exit(5);
    }
}

/* Every acknowledged batch is there whole, with its payloads; a batch past
 * the last acknowledgement is there whole or not at all. "c_2" lost its
 * batches before its last re-create (batch r_last); when the batch after
 * the last acknowledged one starts with a re-create, the drop may or may
 * not have happened: c_2 may be absent, or hold none of its batches. */
static void crash_check(db *d, uint32_t acked)
{
    npvdb_error err = {0};
    int have_r = acked >= 24;
    uint32_t r_last = have_r ? (acked - 24) / 25 * 25 + 24 : 0;
    int ambiguous = (acked + 1) % 25 == 24;
    size_t n = catalog_count(d->cat);
    assert_true(n == CRASH_COLLS || (ambiguous && n == CRASH_COLLS - 1));
    for (uint32_t b = 0; b <= acked + 1; b++) {
        int c2 = b % CRASH_COLLS == 2;
        catalog_ref ref;
        npvdb_code rc = catalog_acquire(
            d->cat, crash_name((int)(b % CRASH_COLLS)), &ref, &err);
        if (rc == NPVDB_ENOTFOUND && c2 && ambiguous) continue;
        assert_int_equal(rc, NPVDB_OK);
        int present = 0;
        for (uint32_t j = 0; j < CRASH_BATCH; j++) {
            char key[32];
            snprintf(key, sizeof key, "b%u-%u", b, b * 7 + j);
            npvdb_payload got = {0}, want;
            if (npvdb_get_payload(ref.coll, key, NULL, &got, &err) != NPVDB_OK)
                continue;
            present++;
            payload_of(b * 7 + j, &want);
            assert_int_equal(got.len, want.len);
            if (want.len) assert_memory_equal(got.data, want.data, want.len);
            free((void *)got.data);
            free((void *)want.data);
        }
        catalog_release(d->cat, &ref);
        if (c2 && have_r && b < r_last)
            assert_int_equal(present, 0);
        else if (b <= acked && !(c2 && ambiguous)) {
            if (present != CRASH_BATCH)
                fail_msg("acknowledged batch %u has %d of %d keys", b, present,
                         CRASH_BATCH);
        } else
            assert_true(present == 0 || present == CRASH_BATCH);
    }
}

static void test_kill9(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        char *dir = tu_tempdir();
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, fds[1]);
        }
        close(fds[1]);
        /* Kill at a point that varies with the round. */
        uint32_t b = 0, acked = 0;
        int target = 30 + round * 17, seen = 0;
        while (seen < target && read(fds[0], &b, sizeof b) == sizeof b) {
            acked = b;
            seen++;
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        /* Acknowledgements written before the kill but not yet read. */
        while (read(fds[0], &b, sizeof b) == sizeof b)
            acked = b;
        close(fds[0]);
        assert_int_equal(seen, target);
        print_message("killed after batch %u was acknowledged\n", acked);
        db d = {.dir = dir, .keep = 2, .sync = NPVDB_SYNC_ALWAYS};
        db_open(&d);
        assert_int_equal(catalog_count(d.cat), CRASH_COLLS);
        crash_check(&d, acked);
        db_close(&d);
        tu_rmtree(dir);
        free(dir);
    }
}

static void test_no_store(void **state)
{
    (void)state;
    catalog_config cc = {0};
    npvdb_error err = {0};
    npvdb_catalog *cat = catalog_open(&cc, &err);
    assert_non_null(cat);
    npvdb_config cfg = {.dim = 2};
    uint64_t seq = 1;
    assert_int_equal(
        catalog_create(cat, "x", &cfg, NULL, 0, 0, NULL, &seq, &err), NPVDB_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(catalog_wait_durable(cat, seq, &err), NPVDB_OK);
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(cat, &info, &err), NPVDB_ESTATE);
    assert_int_equal(catalog_drop(cat, "x", NULL, &seq, &err), NPVDB_OK);
    catalog_close(cat);
}

/* ---- the memory limit ------------------------------------------------------
 */

/* The sum of catalog_list's memory_bytes: what the running total must be
 * when no write is in flight. */
static uint64_t listed_memory(db *d)
{
    catalog_info *info;
    size_t n;
    npvdb_error err;
    assert_int_equal(catalog_list(d->cat, &info, &n, &err), NPVDB_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += info[i].memory_bytes;
    free(info);
    return sum;
}

static uint64_t vectors_in(db *d, const char *name)
{
    catalog_ref ref;
    npvdb_error err;
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    uint64_t n = 0;
    assert_int_equal(npvdb_count(ref.coll, NULL, &n, &err), NPVDB_OK);
    catalog_release(d->cat, &ref);
    return n;
}

static int has_key(db *d, const char *name, const char *key)
{
    catalog_ref ref;
    npvdb_error err;
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    int found = npvdb_get(ref.coll, key, NULL, &err) == NPVDB_OK;
    catalog_release(d->cat, &ref);
    return found;
}

/* Inserts batches of `per` keys <p><i> until one is refused; returns the
 * keys stored (the refused batch's first key is <p><returned>). */
static unsigned fill_until_refused(db *d, const char *name, const char *p,
                                   unsigned from, unsigned per)
{
    for (unsigned i = from;; i += per) {
        npvdb_error err = {0};
        npvdb_code rc = insert(d, name, p, i, i + per, 0.5f, &err);
        if (rc == NPVDB_OK) {
            assert_true(i < 1000000); /* the limit must bite */
            continue;
        }
        assert_int_equal(rc, NPVDB_ELIMIT);
        assert_non_null(strstr(err.msg, "memory limit"));
        assert_non_null(strstr(err.msg, "the limit is 1.0 MiB"));
        assert_non_null(strstr(err.msg, "needs about "));
        assert_non_null(strstr(err.msg, "the server holds "));
        return i;
    }
}

/* Without a limit the running total is the sum of what catalog_list
 * reports, through inserts, upserts, deletes, a replace, a drop and a
 * restart. */
static void test_memory_accounting(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_NONE);
    assert_int_equal(catalog_memory_used(d->cat), 0);
    create(d, "a", 8, NPVDB_METRIC_L2);
    create(d, "b", 4, NPVDB_METRIC_COSINE);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    insert_ok(d, "a", "k", 0, 3000, 0.0f);
    insert_ok(d, "b", "k", 0, 500, 0.0f);
    insert_payloads(d, "b", "p", 0, 200);
    insert_ok(d, "a", "k", 1000, 2000, 1.0f); /* upserts */
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    const char *del[] = {"k1", "k2", "k3", "nope"};
    delete_ok(d, "a", del, 4, 3);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    uint64_t before = catalog_memory_used(d->cat);
    npvdb_config cfg = {.dim = 8, .n_shards = 2};
    npvdb_error err = {0};
    int replaced = 0;
    assert_int_equal(
        catalog_create(d->cat, "a", &cfg, NULL, 0, 1, &replaced, NULL, &err),
        NPVDB_OK);
    assert_true(replaced);
    assert_true(catalog_memory_used(d->cat) < before / 2);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    assert_int_equal(catalog_drop(d->cat, "b", NULL, NULL, &err), NPVDB_OK);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    insert_ok(d, "a", "k", 0, 100, 0.0f);
    uint64_t now = catalog_memory_used(d->cat);
    db_reopen(d);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    assert_int_equal(catalog_memory_used(d->cat), now);
    db_free(d);
}

/* Filled up to a 1 MiB limit: the next insert is ELIMIT naming the use,
 * the estimate and the limit; nothing of it is applied or logged (a
 * restart does not bring it back); searches and deletes work, and a
 * delete makes room again. */
static void test_memory_limit(void **state)
{
    (void)state;
    db *d = calloc(1, sizeof *d);
    d->dir = tu_tempdir();
    d->keep = 2;
    d->sync = NPVDB_SYNC_NONE;
    d->max_memory = 1u << 20;
    db_open(d);
    create(d, "a", 16, NPVDB_METRIC_L2);
    create(d, "b", 16, NPVDB_METRIC_COSINE);
    unsigned stored = fill_until_refused(d, "a", "k", 0, 200);
    assert_true(stored > 1000);
    assert_int_equal(vectors_in(d, "a"), stored);
    char key[32];
    snprintf(key, sizeof key, "k%u", stored);
    assert_false(has_key(d, "a", key)); /* nothing of the refused batch */
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    /* Then one at a time, to the last vector that fits. */
    stored = fill_until_refused(d, "a", "k", stored, 1);
    uint64_t used = catalog_memory_used(d->cat);
    assert_int_equal(used, listed_memory(d));
    /* A row of dim 16 is about 130 bytes with its key; a capacity step
     * may take the total a little past the limit. */
    assert_true(used + 400 > d->max_memory);
    assert_true(used <= d->max_memory + d->max_memory / 8);
    snprintf(key, sizeof key, "k%u", stored);
    assert_false(has_key(d, "a", key));
    npvdb_error err = {0};
    assert_int_equal(insert(d, "b", "x", 0, 50, 0.0f, &err), NPVDB_ELIMIT);

    /* Searches work. */
    catalog_ref ref;
    assert_int_equal(catalog_acquire(d->cat, "a", &ref, &err), NPVDB_OK);
    float q[16] = {0};
    npvdb_results r;
    assert_int_equal(npvdb_search(ref.coll, q, 1, 5, 0, &r, &err), NPVDB_OK);
    assert_int_equal(r.counts[0], 5);
    npvdb_results_free(&r);
    catalog_release(d->cat, &ref);

    /* A restart replays nothing refused, and still refuses. */
    db_reopen(d);
    assert_int_equal(vectors_in(d, "a"), stored);
    assert_int_equal(vectors_in(d, "b"), 0);
    assert_false(has_key(d, "a", key));
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    assert_int_equal(insert(d, "a", "k", stored, stored + 200, 0.5f, &err),
                     NPVDB_ELIMIT);

    /* Deleting half makes room for more. */
    unsigned half = stored / 2;
    char(*kb)[24] = malloc(half * sizeof *kb);
    const char **keys = malloc(half * sizeof *keys);
    for (unsigned i = 0; i < half; i++) {
        snprintf(kb[i], sizeof kb[i], "k%u", i);
        keys[i] = kb[i];
    }
    delete_ok(d, "a", keys, half, half);
    assert_true(catalog_memory_used(d->cat) < used);
    insert_ok(d, "a", "k", stored, stored + 200, 0.5f);
    assert_true(has_key(d, "a", key));
    /* Dropping frees all of it. */
    assert_int_equal(catalog_drop(d->cat, "a", NULL, NULL, &err), NPVDB_OK);
    assert_true(catalog_memory_used(d->cat) < 4096);
    insert_ok(d, "b", "x", 0, 50, 0.0f);
    free(kb);
    free(keys);
    db_free(d);
}

/* Two writers on two collections race for the last room: the reservation
 * lets the total pass the limit by at most what estimates miss. */
typedef struct racer {
    db *d;
    const char *name;
    unsigned stored;
} racer;

static void *race_fill(void *arg)
{
    racer *r = arg;
    r->stored = fill_until_refused(r->d, r->name, "k", 0, 100);
    return NULL;
}

static void test_memory_limit_two_writers(void **state)
{
    (void)state;
    db *d = calloc(1, sizeof *d);
    d->dir = tu_tempdir();
    d->keep = 2;
    d->sync = NPVDB_SYNC_NONE;
    d->max_memory = 1u << 20;
    db_open(d);
    create(d, "a", 16, NPVDB_METRIC_L2);
    create(d, "b", 16, NPVDB_METRIC_L2);
    racer ra = {.d = d, .name = "a"}, rb = {.d = d, .name = "b"};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race_fill, &ra), 0);
    assert_int_equal(pthread_create(&tb, NULL, race_fill, &rb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(vectors_in(d, "a") + vectors_in(d, "b"),
                     ra.stored + rb.stored);
    uint64_t used = catalog_memory_used(d->cat);
    assert_int_equal(used, listed_memory(d));
    assert_true(used <= d->max_memory + d->max_memory / 8);
    db_free(d);
}

/* Recovery is never refused: data past a (new, lower) limit is restored
 * whole; inserts are refused until deletes bring it under. */
static void test_memory_recovery_over_limit(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_NONE);
    create(d, "a", 16, NPVDB_METRIC_L2);
    insert_ok(d, "a", "k", 0, 5000, 0.0f);
    uint64_t used = catalog_memory_used(d->cat);
    d->max_memory = used / 4;
    db_reopen(d); /* from the log */
    assert_int_equal(vectors_in(d, "a"), 5000);
    assert_int_equal(catalog_memory_used(d->cat), used);
    assert_int_equal(catalog_memory_limit(d->cat), used / 4);
    npvdb_error err = {0};
    assert_int_equal(insert(d, "a", "x", 0, 1, 0.0f, &err), NPVDB_ELIMIT);
    npvdb_snapshot_info info;
    assert_int_equal(catalog_snapshot(d->cat, &info, &err), NPVDB_OK);
    db_reopen(d); /* from the snapshot */
    assert_int_equal(vectors_in(d, "a"), 5000);
    /* Deletes bring it under (shards and the key table shrink). */
    char(*kb)[24] = malloc(4900 * sizeof *kb);
    const char **keys = malloc(4900 * sizeof *keys);
    for (unsigned i = 0; i < 4900; i++) {
        snprintf(kb[i], sizeof kb[i], "k%u", i);
        keys[i] = kb[i];
    }
    delete_ok(d, "a", keys, 4900, 4900);
    assert_int_equal(catalog_memory_used(d->cat), listed_memory(d));
    assert_true(catalog_memory_used(d->cat) < used / 8);
    insert_ok(d, "a", "x", 0, 10, 0.0f);
    free(kb);
    free(keys);
    db_free(d);
}

/* ---- training in the log ----------------------------------------------------
 */

/* Row i of the training tests: noise in [-1, 1), distinct per i. */
static void noise_row(float *r, uint32_t dim, unsigned i)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (i + 1);
    for (uint32_t j = 0; j < dim; j++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 32;
        r[j] = (float)(x >> 40) / (float)(1u << 23) - 1.0f;
    }
}

/* Inserts keys <p><from..to) with noise_row(i) through the catalog. */
static void insert_noise(db *d, const char *name, const char *p, unsigned from,
                         unsigned to)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    uint32_t dim = npvdb_dim(ref.coll);
    size_t n = to - from;
    char(*kb)[24] = malloc(n * sizeof *kb);
    const char **keys = malloc(n * sizeof *keys);
    float *rows = malloc(n * dim * sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        snprintf(kb[i], sizeof kb[i], "%s%zu", p, from + i);
        keys[i] = kb[i];
        noise_row(rows + i * dim, dim, (unsigned)(from + i));
    }
    npvdb_batch *b = NULL;
    uint64_t seq = 0;
    npvdb_code rc = npvdb_insert_prepare(ref.coll, keys, rows, n, &b, &err);
    if (rc == NPVDB_OK)
        rc = catalog_insert(d->cat, &ref, b, keys, rows, NULL, n, NULL, &seq,
                            &err);
    if (rc == NPVDB_OK) rc = catalog_wait_durable(d->cat, seq, &err);
    if (rc != NPVDB_OK) fail_msg("insert %s: %s", name, err.msg);
    npvdb_batch_free(b);
    catalog_release(d->cat, &ref);
    free(kb);
    free(keys);
    free(rows);
}

/* A collection's partition as bytes: the index (centroids, router groups),
 * then every shard in order with its keys and rows in row order, then the
 * results of a fixed set of searches. Two equal partitions give equal
 * bytes. */
typedef struct part {
    uint8_t *p;
    size_t n, cap;
} part;

static void part_put(part *b, const void *x, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

static int part_index(void *ctx, const npvdb_stats *st, const float *cent)
{
    (void)ctx;
    (void)cent;
    assert_true(st->trained);
    return 0;
}

static int part_shard(void *ctx, const npvdb_shard_view *v)
{
    part *b = ctx;
    uint32_t dim = *(const uint32_t *)b->p; /* the first word */
    part_put(b, &v->shard, sizeof v->shard);
    part_put(b, &v->n, sizeof v->n);
    for (size_t i = 0; i < v->n; i++) {
        part_put(b, v->keys[i], strlen(v->keys[i]) + 1);
        part_put(b, v->rows + i * dim, dim * sizeof(float));
    }
    return 0;
}

static part partition_of(db *d, const char *name)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    part b = {0};
    npvdb_index ix;
    assert_int_equal(npvdb_index_get(ref.coll, &ix, &err), NPVDB_OK);
    part_put(&b, &ix.dim, sizeof ix.dim);
    part_put(&b, &ix.n_shards, sizeof ix.n_shards);
    part_put(&b, &ix.n_groups, sizeof ix.n_groups);
    part_put(&b, ix.centroids, (size_t)ix.n_shards * ix.dim * sizeof(float));
    if (ix.n_groups) {
        part_put(&b, ix.group_centres,
                 (size_t)ix.n_groups * ix.dim * sizeof(float));
        part_put(&b, ix.group_of, ix.n_shards * sizeof(uint32_t));
    }
    assert_int_equal(npvdb_export(ref.coll, part_index, part_shard, &b, &err),
                     NPVDB_OK);
    float q[16 * 64];
    for (unsigned i = 0; i < 16; i++)
        noise_row(q + i * ix.dim, ix.dim, 900000 + i);
    npvdb_results res;
    assert_int_equal(npvdb_search(ref.coll, q, 16, 10, 4, &res, &err),
                     NPVDB_OK);
    for (size_t i = 0; i < 16 * 10; i++)
        if (res.keys[i]) part_put(&b, res.keys[i], strlen(res.keys[i]) + 1);
    part_put(&b, res.counts, 16 * sizeof *res.counts);
    part_put(&b, res.distances, 16 * 10 * sizeof *res.distances);
    npvdb_results_free(&res);
    npvdb_index_free(&ix);
    catalog_release(d->cat, &ref);
    return b;
}

static void part_equal(part *a, part *b)
{
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->p, b->p, a->n);
    free(a->p);
    free(b->p);
}

#define TRAIN_DIM 8
#define TRAIN_SHARDS 600 /* >= 512: the collection gets a router */

/* "auto" trains by itself on its third batch (n_shards x 2 = 1200 rows);
 * "smp" is created trained on a sample. */
static void create_training(db *d)
{
    npvdb_config a = {.dim = TRAIN_DIM,
                      .metric = NPVDB_METRIC_L2,
                      .n_shards = TRAIN_SHARDS,
                      .train_per_shard = 2,
                      .kmeans_iters = 4,
                      .seed = 9};
    npvdb_error err = {0};
    uint64_t seq;
    assert_int_equal(
        catalog_create(d->cat, "auto", &a, NULL, 0, 0, NULL, &seq, &err),
        NPVDB_OK);
    npvdb_config c = {.dim = TRAIN_DIM,
                      .metric = NPVDB_METRIC_COSINE,
                      .n_shards = 16,
                      .seed = 4};
    float sample[200 * TRAIN_DIM];
    for (unsigned i = 0; i < 200; i++)
        noise_row(sample + i * TRAIN_DIM, TRAIN_DIM, 500000 + i);
    assert_int_equal(
        catalog_create(d->cat, "smp", &c, sample, 200, 0, NULL, &seq, &err),
        NPVDB_OK);
    assert_int_equal(catalog_wait_durable(d->cat, seq, &err), NPVDB_OK);
}

static int trained(db *d, const char *name)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    npvdb_stats st;
    assert_int_equal(npvdb_stats_get(ref.coll, &st, &err), NPVDB_OK);
    int t = st.trained;
    npvdb_stats_free(&st);
    catalog_release(d->cat, &ref);
    return t;
}

static uint64_t index_epoch(db *d, const char *name)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    uint64_t e = npvdb_index_epoch(ref.coll);
    catalog_release(d->cat, &ref);
    return e;
}

/* After an automatic training and a training on Init's sample, a restart
 * from the log alone rebuilds the same partition (centroids bit-equal, every
 * row in the same shard at the same place, the same search results) and
 * runs no k-means. */
static void test_training_logged(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_ALWAYS);
    create_training(d);
    insert_noise(d, "auto", "a", 0, 500);
    insert_noise(d, "auto", "a", 500, 1000);
    assert_false(trained(d, "auto"));
    insert_noise(d, "auto", "a", 1000, 1500); /* trains here */
    assert_true(trained(d, "auto"));
    insert_noise(d, "auto", "a", 1500, 3000); /* through the router */
    insert_noise(d, "auto", "a", 100, 200);   /* upserts move rows */
    const char *gone[] = {"a7", "a1700", "a2999"};
    uint64_t seq;
    size_t nd;
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, "auto", &ref, &err), NPVDB_OK);
    assert_int_equal(catalog_delete(d->cat, &ref, gone, 3, &nd, &seq, &err),
                     NPVDB_OK);
    catalog_release(d->cat, &ref);
    assert_int_equal(nd, 3);
    insert_noise(d, "smp", "s", 0, 700);
    part want_a = partition_of(d, "auto"), want_s = partition_of(d, "smp");
    uint64_t runs = npvdb_kmeans_runs();
    db_reopen(d); /* no snapshot: the log alone */
    assert_int_equal(npvdb_kmeans_runs(), runs);
    part got_a = partition_of(d, "auto"), got_s = partition_of(d, "smp");
    part_equal(&want_a, &got_a);
    part_equal(&want_s, &got_s);
    /* The replayed collection goes on as the live one would: no second
     * training (its splits run 2-means, not a training), inserts routed. */
    uint64_t epoch = index_epoch(d, "auto");
    insert_noise(d, "auto", "a", 3000, 3200);
    assert_int_equal(index_epoch(d, "auto"), epoch);
    want_a = partition_of(d, "auto");
    runs = npvdb_kmeans_runs();
    db_reopen(d);
    got_a = partition_of(d, "auto");
    part_equal(&want_a, &got_a);
    assert_int_equal(npvdb_kmeans_runs(), runs);
    db_free(d);
}

static npvdb_stats stats_of(db *d, const char *name)
{
    catalog_ref ref;
    npvdb_error err = {0};
    assert_int_equal(catalog_acquire(d->cat, name, &ref, &err), NPVDB_OK);
    npvdb_stats st;
    assert_int_equal(npvdb_stats_get(ref.coll, &st, &err), NPVDB_OK);
    catalog_release(d->cat, &ref);
    npvdb_stats_free(&st);
    return st;
}

/* A collection that grows splits its shards and one that shrinks merges
 * them, each change logged: a restart from the log alone has the same
 * partition, without running a k-means (not even a split's 2-means). */
static void test_splits_and_merges_logged(void **state)
{
    (void)state;
    db *d = db_new(2, NPVDB_SYNC_NONE);
    npvdb_config a = {.dim = TRAIN_DIM,
                      .metric = NPVDB_METRIC_L2,
                      .n_shards = 8,
                      .train_per_shard = 16,
                      .seed = 3};
    npvdb_error err = {0};
    uint64_t seq;
    assert_int_equal(
        catalog_create(d->cat, "g", &a, NULL, 0, 0, NULL, &seq, &err),
        NPVDB_OK);
    for (unsigned i = 0; i < 4000; i += 250)
        insert_noise(d, "g", "g", i, i + 250);
    npvdb_stats grown = stats_of(d, "g");
    assert_true(grown.splits >= 8);
    assert_true(grown.n_shards > 8);
    assert_int_equal(grown.n_vectors, 4000);
    /* Delete 95% of the keys: shards fall below a third of the mean. */
    static char kb[3800][16];
    const char *keys[3800];
    for (unsigned i = 0; i < 3800; i++) {
        snprintf(kb[i], sizeof kb[i], "g%u", i);
        keys[i] = kb[i];
    }
    delete_ok(d, "g", keys, 3800, 3800);
    npvdb_stats shrunk = stats_of(d, "g");
    assert_true(shrunk.merges > 0);
    assert_true(shrunk.n_shards < grown.n_shards);
    part want = partition_of(d, "g");
    uint64_t runs = npvdb_kmeans_runs();
    db_reopen(d);
    assert_int_equal(npvdb_kmeans_runs(), runs);
    part got = partition_of(d, "g");
    part_equal(&want, &got);
    npvdb_stats again = stats_of(d, "g");
    assert_int_equal(again.n_shards, shrunk.n_shards);
    assert_int_equal(again.n_vectors, 200);
    assert_int_equal(again.splits, shrunk.splits); /* replayed ones count */
    assert_int_equal(again.merges, shrunk.merges);
    db_free(d);
}

/* A log from before TRAIN records (tests/storage/data/v2-train) still
 * replays by training again (k-means runs), with its contents, and every
 * replay gives the same partition. */
static void test_training_old_log(void **state)
{
    (void)state;
    char *base = tu_tempdir();
    char *src = tu_join(NPVDB_FIXTURES, "v2-train");
    char *dst = tu_join(base, "data");
    assert_int_equal(tu_copy_fixture(src, dst), 0);
    uint64_t runs = npvdb_kmeans_runs();
    db d = {.dir = dst, .keep = 2, .sync = NPVDB_SYNC_ALWAYS};
    db_open(&d);
    assert_true(npvdb_kmeans_runs() >= runs + 2); /* both trained again */
    assert_true(trained(&d, "auto"));
    assert_true(trained(&d, "sample"));
    assert_int_equal(vectors_in(&d, "auto"), 13);
    assert_int_equal(vectors_in(&d, "sample"), 12);
    assert_false(has_key(&d, "auto", "a3"));
    /* Re-opened, the same log trains to the same partition. */
    part a1 = partition_of(&d, "auto"), s1 = partition_of(&d, "sample");
    db_close(&d);
    db_open(&d);
    part a2 = partition_of(&d, "auto"), s2 = partition_of(&d, "sample");
    part_equal(&a1, &a2);
    part_equal(&s1, &s2);
    db_close(&d);
    tu_rmtree(base);
    free(base);
    free(src);
    free(dst);
}

/* The child of test_kill9_training: "auto" trains on batch TRAIN_BATCH
 * (batches of 100 rows, training at 1200); after each durable batch its
 * number goes down the pipe. Never returns. */
#define TRAIN_BATCH 11u
static void train_child(const char *dir, int fd)
{
    db d = {.dir = (char *)dir, .keep = 2, .sync = NPVDB_SYNC_ALWAYS};
    db_open(&d);
    create_training(&d);
    for (uint32_t b = 0;; b++) {
        char p[16];
        snprintf(p, sizeof p, "b%u-", b);
        insert_noise(&d, "auto", p, b * 100, b * 100 + 100);
        if (write(fd, &b, sizeof b) != sizeof b) _exit(5);
    }
}

/* kill -9 just before, during and just after the insert that trains: every
 * acknowledged batch is there, the one in flight whole or not at all; once
 * the training batch was acknowledged its TRAIN record is durable and the
 * replay runs no k-means; and every replay of the same log gives the same
 * partition. */
static void test_kill9_training(void **state)
{
    (void)state;
    const int after[] = {10, 11, 11, 12, 13};
    const unsigned delay_us[] = {0, 0, 3000, 0, 0};
    for (int round = 0; round < 5; round++) {
        char *dir = tu_tempdir();
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            train_child(dir, fds[1]);
        }
        close(fds[1]);
        uint32_t b = 0, acked = 0;
        int seen = 0;
        while (seen < after[round] && read(fds[0], &b, sizeof b) == sizeof b) {
            acked = b;
            seen++;
        }
        if (delay_us[round]) usleep(delay_us[round]);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        while (read(fds[0], &b, sizeof b) == sizeof b)
            acked = b;
        close(fds[0]);
        assert_int_equal(seen, after[round]);
        db d = {.dir = dir, .keep = 2, .sync = NPVDB_SYNC_ALWAYS};
        uint64_t runs = npvdb_kmeans_runs();
        db_open(&d);
        int is_trained = trained(&d, "auto");
        print_message("killed after batch %u was acknowledged: %s, %llu "
                      "k-means runs on replay\n",
                      acked, is_trained ? "trained" : "untrained",
                      (unsigned long long)(npvdb_kmeans_runs() - runs));
        if (acked >= TRAIN_BATCH) {
            assert_true(is_trained);
            assert_int_equal(npvdb_kmeans_runs(), runs);
        }
        uint64_t n = vectors_in(&d, "auto");
        assert_true(n == (acked + 1) * 100 || n == (acked + 2) * 100);
        for (uint32_t k = 0; k <= acked; k++) {
            char key[32];
            snprintf(key, sizeof key, "b%u-%u", k, k * 100 + 99);
            assert_true(has_key(&d, "auto", key));
        }
        if (is_trained) {
            part p1 = partition_of(&d, "auto");
            db_close(&d);
            db_open(&d);
            part p2 = partition_of(&d, "auto");
            part_equal(&p1, &p2);
        }
        db_close(&d);
        tu_rmtree(dir);
        free(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_list_drop),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_restart_identical),
        cmocka_unit_test(test_drop_leaves_disk),
        cmocka_unit_test(test_thousand_collections),
        cmocka_unit_test(test_concurrent_writers_and_snapshots),
        cmocka_unit_test(test_drop_waits_for_holder),
        cmocka_unit_test(test_v1_fixture_as_default),
        cmocka_unit_test(test_kill9),
        cmocka_unit_test(test_no_store),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_memory_limit_two_writers),
        cmocka_unit_test(test_memory_recovery_over_limit),
        cmocka_unit_test(test_training_logged),
        cmocka_unit_test(test_splits_and_merges_logged),
        cmocka_unit_test(test_training_old_log),
        cmocka_unit_test(test_kill9_training),
    };
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
