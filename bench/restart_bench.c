/*
 * restart_bench.c -- npvdb-restart-bench: how long a restart from the log
 * alone (no snapshot) takes, with and without the TRAIN record.
 *
 * The same writes (one collection, automatic shards, n rows of a mixture in
 * batches of 10,000) are logged twice: through the catalog, which logs the
 * index its automatic training made (TRAIN, after the insert that trained),
 * and as the records the server wrote before TRAIN existed (INIT and
 * INSERTs only). Each log is then opened `rounds` times, interleaved, and
 * the open (replay) is timed; k-means runs are counted.
 *
 *   npvdb-restart-bench [n=200000] [dim=128] [rounds=3] [workers=2]
 */
#include "catalog.h"
#include "mixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 10000

static void die(const char *what, const npvdb_error *e)
{
    fprintf(stderr, "%s: %s\n", what, e->msg);
    exit(1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct data {
    size_t n;
    uint32_t dim;
    float *rows;
    char (*kb)[24];
    const char **keys;
} data;

static void make_data(data *d, size_t n, uint32_t dim)
{
    uint64_t rng = 12345;
    mixture m;
    d->n = n;
    d->dim = dim;
    d->rows = malloc(n * dim * sizeof *d->rows);
    d->kb = malloc(n * sizeof *d->kb);
    d->keys = malloc(n * sizeof *d->keys);
    if (!d->rows || !d->kb || !d->keys || mixture_init(&m, 100, dim, &rng)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        mixture_sample(&m, &rng, d->rows + i * dim);
        snprintf(d->kb[i], sizeof d->kb[i], "k%zu", i);
        d->keys[i] = d->kb[i];
    }
    mixture_free(&m);
}

static npvdb_store *open_store(const char *dir, npvdb_workers *w)
{
    npvdb_store_config sc = {
        .data_dir = dir, .sync = NPVDB_SYNC_NONE, .workers = w};
    npvdb_error e = {0};
    npvdb_store *s = npvdb_store_open(&sc, NULL, &e);
    if (!s) die("store open", &e);
    return s;
}

/* The log the server writes now: through the catalog. */
static void write_new(const char *dir, const data *d, npvdb_workers *w)
{
    npvdb_store *s = open_store(dir, w);
    npvdb_error e = {0};
    catalog_config cc = {.store = s, .workers = w};
    npvdb_catalog *cat = catalog_open(&cc, &e);
    if (!cat) die("catalog", &e);
    npvdb_config cfg = {.dim = d->dim, .metric = NPVDB_METRIC_L2};
    uint64_t seq;
    if (catalog_create(cat, "b", &cfg, NULL, 0, 0, NULL, &seq, &e))
        die("create", &e);
    catalog_ref ref;
    if (catalog_acquire(cat, "b", &ref, &e)) die("acquire", &e);
    for (size_t at = 0; at < d->n; at += BATCH) {
        size_t k = d->n - at < BATCH ? d->n - at : BATCH;
        npvdb_batch *b;
        const float *rows = d->rows + at * d->dim;
        if (npvdb_insert_prepare(ref.coll, d->keys + at, rows, k, &b, &e) ||
            catalog_insert(cat, &ref, b, d->keys + at, rows, NULL, k, NULL,
                           &seq, &e))
            die("insert", &e);
        npvdb_batch_free(b);
    }
    catalog_release(cat, &ref);
    catalog_close(cat);
    npvdb_store_close(s);
}

static void append(npvdb_store *s, npvdb_code enc, npvdb_store_rec *r,
                   const npvdb_error *e)
{
    uint64_t seq;
    npvdb_error e2 = {0};
    if (enc) die("encode", e);
    if (npvdb_store_append(s, r, &seq, &e2)) die("append", &e2);
    npvdb_store_rec_free(r);
}

/* The log the server wrote before TRAIN records: the same writes. */
static void write_old(const char *dir, const data *d, npvdb_workers *w)
{
    npvdb_store *s = open_store(dir, w);
    npvdb_error e = {0};
    npvdb_config cfg = {.dim = d->dim, .metric = NPVDB_METRIC_L2};
    npvdb_store_rec *r;
    npvdb_code rc = npvdb_store_encode_init("b", &cfg, NULL, 0, &r, &e);
    append(s, rc, r, &e); /* r read after the encoder ran */
    for (size_t at = 0; at < d->n; at += BATCH) {
        size_t k = d->n - at < BATCH ? d->n - at : BATCH;
        rc = npvdb_store_encode_insert("b", d->keys + at, d->rows + at * d->dim,
                                       NULL, k, d->dim, &r, &e);
        append(s, rc, r, &e);
    }
    npvdb_store_close(s);
}

/* Opens dir (replaying its log); returns the seconds, *runs the k-means
 * runs, *ix the index. */
static double time_open(const char *dir, npvdb_workers *w, uint64_t *runs,
                        npvdb_index *ix)
{
    uint64_t k0 = npvdb_kmeans_runs();
    double t0 = now();
    npvdb_store *s = open_store(dir, w);
    npvdb_store_coll *v;
    size_t n;
    npvdb_store_take_restored(s, &v, &n);
    double t = now() - t0;
    *runs = npvdb_kmeans_runs() - k0;
    npvdb_error e = {0};
    if (n != 1 || npvdb_index_get(v[0].coll, ix, &e)) die("restored", &e);
    for (size_t i = 0; i < n; i++)
        npvdb_free(v[i].coll);
    free(v);
    npvdb_store_close(s);
    return t;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    uint32_t dim = argc > 2 ? (uint32_t)atoi(argv[2]) : 128;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    uint32_t nw = argc > 4 ? (uint32_t)atoi(argv[4]) : 2;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char base[4096], dnew[4200], dold[4200];
    snprintf(base, sizeof base, "%s/npvdb-restart-XXXXXX", tmp);
    if (!mkdtemp(base)) return 1;
    snprintf(dnew, sizeof dnew, "%s/new", base);
    snprintf(dold, sizeof dold, "%s/old", base);
    npvdb_error e = {0};
    npvdb_workers *w = npvdb_workers_create(nw, &e);
    if (!w) die("workers", &e);
    data d;
    make_data(&d, n, dim);
    double t0 = now();
    write_new(dnew, &d, w);
    printf("logged %zu x %u through the catalog in %.1f s\n", n, dim,
           now() - t0);
    write_old(dold, &d, w);
    double sum[2] = {0, 0};
    for (int r = 0; r < rounds; r++) {
        const char *dirs[2] = {dold, dnew};
        npvdb_index ix[2];
        for (int k = 0; k < 2; k++) {
            uint64_t runs;
            double t = time_open(dirs[k], w, &runs, &ix[k]);
            sum[k] += t;
            printf("round %d %s log: open %.2f s, %llu k-means runs, %u "
                   "shards\n",
                   r, k ? "new (TRAIN)" : "old (no TRAIN)", t,
                   (unsigned long long)runs, ix[k].n_shards);
        }
        int same = ix[0].n_shards == ix[1].n_shards &&
                   memcmp(ix[0].centroids, ix[1].centroids,
                          (size_t)ix[0].n_shards * dim * sizeof(float)) == 0;
        printf("round %d centroids old == new: %s\n", r, same ? "yes" : "no");
        npvdb_index_free(&ix[0]);
        npvdb_index_free(&ix[1]);
    }
    printf("mean open: old %.2f s, new %.2f s\n", sum[0] / rounds,
           sum[1] / rounds);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", base);
    npvdb_workers_free(w);
    free(d.rows);
    free(d.kb);
    free(d.keys);
    return 0;
}
