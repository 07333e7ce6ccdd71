/*
 * make_v2_train.c -- wrote the fixture v2-train/ in this folder with the
 * storage API of commit 233729a: a log (no snapshot) of two collections
 * that train, written before training was logged (no TRAIN record, INIT
 * version 2 with the training sample). See README.md.
 *
 *   cc -I server/engine -I server/storage -I server/common \
 *      tests/storage/data/make_v2_train.c
 * build/server/storage/libnpvdb_storage.a \
 *      build/server/engine/libnpvdb_engine.a
 * build/server/engine/libnpvdb_base.a \
 *      $(pkg-config --libs hdf5) -lopenblas -lpthread -lm
 *   ./a.out tests/storage/data/v2-train
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

/* The fixtures' row formula (README.md). */
static void row_of(float *r, uint32_t dim, unsigned i, float salt)
{
    for (uint32_t d = 0; d < dim; d++)
        r[d] = (float)((i * 7 + d * 3) % 11) - 5.0f + salt * (float)(d + 1);
}

static void append(npvdb_store *s, npvdb_store_rec *r)
{
    npvdb_error e = {0};
    uint64_t seq;
    if (npvdb_store_append(s, r, &seq, &e)) die("append", &e);
    if (npvdb_store_wait_durable(s, seq, &e)) die("wait", &e);
    npvdb_store_rec_free(r);
}

static void init(npvdb_store *s, const char *name, const npvdb_config *cfg,
                 unsigned n_train)
{
    npvdb_error e = {0};
    float train[8 * 8];
    for (unsigned i = 0; i < n_train; i++)
        row_of(train + i * cfg->dim, cfg->dim, 100 + i, 0.25f);
    npvdb_store_rec *r;
    if (npvdb_store_encode_init(name, cfg, train, n_train, &r, &e))
        die("init", &e);
    append(s, r);
}

static void insert(npvdb_store *s, const char *name, uint32_t dim,
                   const char *prefix, unsigned from, unsigned to)
{
    npvdb_error e = {0};
    char kb[32][16];
    const char *keys[32];
    float rows[32 * 8];
    unsigned n = to - from;
    for (unsigned i = 0; i < n; i++) {
        snprintf(kb[i], sizeof kb[i], "%s%u", prefix, from + i);
        keys[i] = kb[i];
        row_of(rows + i * dim, dim, from + i, 0.0f);
    }
    npvdb_store_rec *r;
    if (npvdb_store_encode_insert(name, keys, rows, NULL, n, dim, &r, &e))
        die("insert", &e);
    append(s, r);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    npvdb_store_config sc = {.data_dir = argv[1], .n_workers = 1};
    npvdb_error e = {0};
    npvdb_store *s = npvdb_store_open(&sc, NULL, &e);
    if (!s) die("open", &e);
    npvdb_config a = {.dim = 4,
                      .metric = NPVDB_METRIC_L2,
                      .n_shards = 2,
                      .train_per_shard = 4,
                      .kmeans_iters = 5,
                      .seed = 7};
    init(s, "auto", &a, 0);
    insert(s, "auto", 4, "a", 0, 5);  /* 5 < 8: untrained */
    insert(s, "auto", 4, "a", 5, 10); /* 10 >= 8: trains here */
    insert(s, "auto", 4, "a", 10, 14);
    npvdb_store_rec *r;
    const char *gone[] = {"a3"};
    if (npvdb_store_encode_delete("auto", gone, 1, &r, &e)) die("del", &e);
    append(s, r);
    npvdb_config b = {.dim = 3,
                      .metric = NPVDB_METRIC_COSINE,
                      .n_shards = 3,
                      .kmeans_iters = 5,
                      .seed = 11};
    init(s, "sample", &b, 8);
    insert(s, "sample", 3, "s", 0, 12);
    npvdb_store_close(s);
    return 0;
}
