/*
 * make_v1.c -- wrote the version 1 fixtures in this folder, with the storage
 * API of commit cef0ef2 (one collection, v1 records and snapshots). Kept for
 * the record; it does not build against later storage.h. See README.md.
 *
 *   cc -I server/engine -I server/storage make_v1.c \
 *      build/server/storage/libnpvdb_storage.a
 * build/server/engine/libnpvdb_engine.a build/server/engine/libnpvdb_base.a \
 *      $(pkg-config --libs hdf5) -lopenblas -lpthread -lm
 *   ./a.out tests/storage/data
 */
#include "storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const npvdb_error *e)
{
    fprintf(stderr, "%s: %s\n", what, e->msg);
    exit(1);
}

/* Row of key <prefix><i>: deterministic, so the test recomputes it. */
static void row_of(float *r, uint32_t dim, unsigned i, float salt)
{
    for (uint32_t d = 0; d < dim; d++)
        r[d] = (float)((i * 7 + d * 3) % 11) - 5.0f + salt * (float)(d + 1);
}

typedef struct fx {
    npvdb_store *s;
    npvdb_collection *c;
    uint32_t dim;
} fx;

static void init(fx *f, const npvdb_config *cfg, unsigned n_train)
{
    npvdb_error e = {0};
    uint64_t seq;
    float *train = calloc((size_t)n_train * cfg->dim + 1, sizeof(float));
    for (unsigned i = 0; i < n_train; i++)
        row_of(train + (size_t)i * cfg->dim, cfg->dim, 100 + i, 0.25f);
    if (npvdb_store_log_init(f->s, cfg, train, n_train, &seq, &e))
        die("log init", &e);
    npvdb_collection *c = npvdb_create(cfg, &e);
    if (!c) die("create", &e);
    if (n_train && npvdb_train(c, train, n_train, &e)) die("train", &e);
    npvdb_free(f->c);
    f->c = c;
    f->dim = cfg->dim;
    free(train);
    if (npvdb_store_wait_durable(f->s, seq, &e)) die("wait", &e);
}

static void insert(fx *f, const char *prefix, unsigned from, unsigned to,
                   float salt)
{
    npvdb_error e = {0};
    char kb[32][16];
    const char *keys[32];
    float rows[32 * 8];
    unsigned n = to - from;
    for (unsigned i = 0; i < n; i++) {
        snprintf(kb[i], sizeof kb[i], "%s%u", prefix, from + i);
        keys[i] = kb[i];
        row_of(rows + i * f->dim, f->dim, from + i, salt);
    }
    uint64_t seq;
    if (npvdb_store_log_insert(f->s, keys, rows, n, f->dim, &seq, &e))
        die("log insert", &e);
    if (npvdb_insert(f->c, keys, rows, n, NULL, &e)) die("insert", &e);
    if (npvdb_store_wait_durable(f->s, seq, &e)) die("wait", &e);
}

static void del(fx *f, const char *const *keys, size_t n)
{
    npvdb_error e = {0};
    uint64_t seq;
    if (npvdb_store_log_delete(f->s, keys, n, &seq, &e)) die("log delete", &e);
    if (npvdb_delete(f->c, keys, n, NULL, &e)) die("delete", &e);
    if (npvdb_store_wait_durable(f->s, seq, &e)) die("wait", &e);
}

static void snapshot(fx *f)
{
    npvdb_error e = {0};
    npvdb_snapshot_info info;
    if (npvdb_store_snapshot(f->s, f->c, npvdb_store_last_seq(f->s), &info, &e))
        die("snapshot", &e);
}

static fx open_dir(const char *root, const char *name)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    npvdb_store_config sc = {
        .data_dir = dir, .sync = NPVDB_SYNC_ALWAYS, .n_workers = 1};
    npvdb_error e = {0};
    npvdb_collection *c = NULL;
    fx f = {.s = npvdb_store_open(&sc, &c, &e)};
    if (!f.s) die("open", &e);
    if (c) die("open", &(npvdb_error){.msg = "directory is not empty"});
    return f;
}

static void close_dir(fx *f)
{
    npvdb_free(f->c);
    npvdb_store_close(f->s);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    /* Trained: L2, 2 shards trained on 8 sample rows; t0..t11, snapshot;
     * then t12..t15 and t3 again (salt 1), delete t0 t5 and "nope". */
    fx f = open_dir(root, "v1-trained");
    npvdb_config tc = {.dim = 4,
                       .metric = NPVDB_METRIC_L2,
                       .n_shards = 2,
                       .train_per_shard = 4,
                       .kmeans_iters = 5,
                       .default_nprobe = 2,
                       .seed = 7,
                       .n_workers = 1};
    init(&f, &tc, 8);
    insert(&f, "t", 0, 12, 0.0f);
    snapshot(&f);
    insert(&f, "t", 12, 16, 0.0f);
    insert(&f, "t", 3, 4, 1.0f);
    del(&f, (const char *[]){"t0", "t5", "nope"}, 3);
    close_dir(&f);

    /* Untrained: cosine, dim 3, n_shards 4 never reached; u0..u5, delete
     * u1, snapshot; then u6 u7, delete u2. */
    f = open_dir(root, "v1-untrained");
    npvdb_config uc = {.dim = 3,
                       .metric = NPVDB_METRIC_COSINE,
                       .n_shards = 4,
                       .train_per_shard = 64,
                       .seed = 3,
                       .n_workers = 1};
    init(&f, &uc, 0);
    insert(&f, "u", 0, 6, 0.0f);
    del(&f, (const char *[]){"u1"}, 1);
    snapshot(&f);
    insert(&f, "u", 6, 8, 0.0f);
    del(&f, (const char *[]){"u2"}, 1);
    close_dir(&f);

    /* Re-init after the snapshot: IP dim 2 replaces the snapshot's
     * collection (L2 dim 4, r0..r3); then w0..w3, delete w2. */
    f = open_dir(root, "v1-reinit");
    npvdb_config rc = {.dim = 4, .metric = NPVDB_METRIC_L2, .n_workers = 1};
    init(&f, &rc, 0);
    insert(&f, "r", 0, 4, 0.0f);
    snapshot(&f);
    npvdb_config wc = {
        .dim = 2, .metric = NPVDB_METRIC_IP, .n_shards = 1, .n_workers = 1};
    init(&f, &wc, 0);
    insert(&f, "w", 0, 4, 0.5f);
    del(&f, (const char *[]){"w2"}, 1);
    close_dir(&f);
    return 0;
}
