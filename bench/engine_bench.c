/*
 * engine_bench.c -- npvdb-engine-bench: builds a collection from an
 * ann-benchmarks HDF5 file (or from a clustered dataset generated in memory
 * when no file is given), then measures, for each nprobe: recall@k against
 * the exact neighbours, and queries per second batched (all queries in one
 * npvdb_search call) and one query per call.
 *
 * It also reports build time (train + insert, the data already in memory, as
 * FAISS's train + add are timed in bench/faiss_compare.py) and memory: the
 * engine's own count (stats.memory_bytes) and the process's resident size
 * after the input copy is dropped, each against the raw bytes of vectors +
 * keys.
 *
 * Keys are the decimal train row numbers ("0", "1", ...), so a returned key
 * maps straight back to the row ids of the file's `neighbors`.
 *
 * This is a benchmark, not a test: it is never run by CTest.
 */
#include "mixture.h"
#include "annfile.h"
#include "npvdb.h"

#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NPROBES 32

typedef struct options {
    const char *file; /* NULL: generate */
    uint32_t shards;  /* 0: engine's automatic choice */
    uint32_t threads; /* 0: all cores */
    uint32_t nprobes[MAX_NPROBES];
    size_t n_nprobes;
    size_t queries; /* limit; 0: all */
    uint32_t k;
    size_t batch;          /* insert batch size */
    size_t train_sample;   /* 0: min(n, 64 * shards) */
    double single_seconds; /* time budget of the one-query-per-call loop */
    int csv;               /* machine-readable output */
    /* Generated dataset. */
    size_t gen_n, gen_q;
    uint32_t gen_dim, gen_centres;
    npvdb_metric gen_metric;
    uint64_t seed;
} options;

/* The data set in memory: train rows, queries, and the truth (row ids). */
typedef struct dataset {
    uint32_t dim;
    npvdb_metric metric;
    size_t n, nq;
    float *train;   /* n * dim; freed after the build */
    float *queries; /* nq * dim */
    int32_t *truth; /* nq * truth_w, NULL until computed */
    uint32_t truth_w;
    char *key_arena; /* decimal row numbers, NUL-separated */
    const char **keys;
    size_t key_bytes; /* sum of key lengths, without NULs */
} dataset;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads "VmRSS:" or "VmHWM:" from /proc/self/status, in bytes; 0 if absent. */
static size_t proc_status_bytes(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0, len = strlen(field);
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, field, len) == 0) kb = strtoull(line + len, NULL, 10);
    fclose(fp);
    return kb * 1024;
}

static void die_usage(const char *msg)
{
    fprintf(stderr,
            "%s\n"
            "usage: npvdb-engine-bench [FILE.hdf5] [options]\n"
            "  FILE.hdf5          ann-benchmarks layout (train, test, "
            "neighbors, attr distance);\n"
            "                     without it a clustered dataset is "
            "generated in memory\n"
            "  --shards N         number of IVF cells (0 = engine's auto, "
            "about 4*sqrt(n))\n"
            "  --threads N        engine worker threads (0 = all cores)\n"
            "  --nprobe LIST      comma-separated, default "
            "1,2,4,8,16,32,64\n"
            "  --queries N        use at most N queries (0 = all)\n"
            "  --k N              neighbours per query, recall@k (default "
            "10)\n"
            "  --batch N          insert batch size (default 10000)\n"
            "  --train-sample N   k-means sample rows (default "
            "min(n, 64*shards))\n"
            "  --single-seconds S time budget per nprobe for one query per "
            "call (default 3)\n"
            "  --csv              machine-readable output\n"
            "generated dataset: --n N (50000) --q N (1000) --dim D (64) "
            "--centres C (64)\n"
            "                   --metric cosine|l2|ip (cosine) --seed S\n",
            msg ? msg : "");
    exit(msg ? 2 : 0);
}

static size_t parse_size(const char *s, const char *what)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || *s == '-') {
        char m[128];
        snprintf(m, sizeof m, "bad %s: '%s'", what, s);
        die_usage(m);
    }
    return (size_t)v;
}

static void parse_nprobes(options *o, const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    o->n_nprobes = 0;
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (o->n_nprobes == MAX_NPROBES) die_usage("too many nprobe values");
        size_t v = parse_size(t, "nprobe");
        if (v < 1 || v > NPVDB_MAX_SHARDS) die_usage("nprobe must be 1..65536");
        o->nprobes[o->n_nprobes++] = (uint32_t)v;
    }
    if (o->n_nprobes == 0) die_usage("empty --nprobe list");
}

static npvdb_metric parse_metric(const char *s)
{
    if (strcmp(s, "cosine") == 0 || strcmp(s, "angular") == 0)
        return NPVDB_METRIC_COSINE;
    if (strcmp(s, "l2") == 0 || strcmp(s, "euclidean") == 0)
        return NPVDB_METRIC_L2;
    if (strcmp(s, "ip") == 0) return NPVDB_METRIC_IP;
    die_usage("--metric must be cosine, l2 or ip");
    return NPVDB_METRIC_COSINE;
}

static void parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"shards", 1, 0, 's'},
        {"threads", 1, 0, 't'},
        {"nprobe", 1, 0, 'p'},
        {"queries", 1, 0, 'Q'},
        {"k", 1, 0, 'k'},
        {"batch", 1, 0, 'b'},
        {"train-sample", 1, 0, 'T'},
        {"single-seconds", 1, 0, 'S'},
        {"csv", 0, 0, 'c'},
        {"n", 1, 0, 'n'},
        {"q", 1, 0, 'q'},
        {"dim", 1, 0, 'd'},
        {"centres", 1, 0, 'C'},
        {"metric", 1, 0, 'm'},
        {"seed", 1, 0, 'r'},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (options){.k = 10,
                   .batch = 10000,
                   .single_seconds = 3.0,
                   .gen_n = 50000,
                   .gen_q = 1000,
                   .gen_dim = 64,
                   .gen_centres = 64,
                   .seed = 42};
    parse_nprobes(o, "1,2,4,8,16,32,64");
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 's':
            o->shards = (uint32_t)parse_size(optarg, "--shards");
            break;
        case 't':
            o->threads = (uint32_t)parse_size(optarg, "--threads");
            break;
        case 'p':
            parse_nprobes(o, optarg);
            break;
        case 'Q':
            o->queries = parse_size(optarg, "--queries");
            break;
        case 'k':
            o->k = (uint32_t)parse_size(optarg, "--k");
            break;
        case 'b':
            o->batch = parse_size(optarg, "--batch");
            break;
        case 'T':
            o->train_sample = parse_size(optarg, "--train-sample");
            break;
        case 'S':
            o->single_seconds = atof(optarg);
            break;
        case 'c':
            o->csv = 1;
            break;
        case 'n':
            o->gen_n = parse_size(optarg, "--n");
            break;
        case 'q':
            o->gen_q = parse_size(optarg, "--q");
            break;
        case 'd':
            o->gen_dim = (uint32_t)parse_size(optarg, "--dim");
            break;
        case 'C':
            o->gen_centres = (uint32_t)parse_size(optarg, "--centres");
            break;
        case 'm':
            o->gen_metric = parse_metric(optarg);
            break;
        case 'r':
            o->seed = parse_size(optarg, "--seed");
            break;
        case 'h':
            die_usage(NULL);
            break;
        default:
            die_usage("unknown option");
        }
    }
    if (optind < argc) o->file = argv[optind++];
    if (optind < argc) die_usage("more than one file given");
    if (o->k < 1 || o->batch < 1)
        die_usage("--k and --batch must be at least 1");
    if (!o->file && (o->gen_n < 1 || o->gen_q < 1 || o->gen_dim < 1 ||
                     o->gen_dim > NPVDB_MAX_DIM || o->gen_centres < 1))
        die_usage("generated dataset needs --n, --q, --centres >= 1 and "
                  "--dim 1..4096");
}

static void *xcalloc(size_t n, size_t size, const char *what)
{
    void *p = n && size ? calloc(n, size) : NULL;
    if (!p) {
        fprintf(stderr, "out of memory allocating %s (%zu x %zu bytes)\n", what,
                n, size);
        exit(1);
    }
    return p;
}

/* ---- generated dataset (mixture.h) ------------------------------------ */

static void generate(dataset *d, const options *o)
{
    uint64_t rng = o->seed;
    mixture m;
    if (mixture_init(&m, o->gen_centres, o->gen_dim, &rng)) {
        fprintf(stderr, "npvdb-engine-bench: out of memory for the mixture\n");
        exit(1);
    }
    d->dim = o->gen_dim;
    d->metric = o->gen_metric;
    d->n = o->gen_n;
    d->nq = o->queries && o->queries < o->gen_q ? o->queries : o->gen_q;
    d->train = xcalloc(d->n * d->dim, sizeof(float), "train");
    d->queries = xcalloc(d->nq * d->dim, sizeof(float), "queries");
    for (size_t i = 0; i < d->n; i++)
        mixture_sample(&m, &rng, d->train + i * d->dim);
    for (size_t i = 0; i < d->nq; i++)
        mixture_sample(&m, &rng, d->queries + i * d->dim);
    mixture_free(&m);
}

/* ---- dataset from an HDF5 file ------------------------------------------ */

static int load_file(dataset *d, const options *o)
{
    npvdb_error err = {0};
    npvdb_annfile *f = npvdb_annfile_open(o->file, &err);
    if (!f) {
        fprintf(stderr, "npvdb-engine-bench: %s\n", err.msg);
        return -1;
    }
    d->dim = npvdb_annfile_dim(f);
    d->metric = npvdb_annfile_metric(f);
    d->n = npvdb_annfile_train_rows(f);
    d->nq = npvdb_annfile_test_rows(f);
    d->truth_w = npvdb_annfile_neighbors_width(f);
    if (o->queries && o->queries < d->nq) d->nq = o->queries;
    if (d->n == 0 || d->nq == 0) {
        fprintf(stderr,
                "npvdb-engine-bench: %s: needs non-empty 'train' and "
                "'test'\n",
                o->file);
        npvdb_annfile_close(f);
        return -1;
    }
    d->train = xcalloc(d->n * d->dim, sizeof(float), "train");
    d->queries = xcalloc(d->nq * d->dim, sizeof(float), "queries");
    /* Chunks of 8192 rows: the reader's hyperslab path, as a loader streams. */
    npvdb_code rc = NPVDB_OK;
    for (size_t first = 0; rc == NPVDB_OK && first < d->n; first += 8192) {
        size_t cnt = d->n - first < 8192 ? d->n - first : 8192;
        rc = npvdb_annfile_read(f, "train", first, cnt,
                                d->train + first * d->dim, &err);
    }
    if (rc == NPVDB_OK)
        rc = npvdb_annfile_read(f, "test", 0, d->nq, d->queries, &err);
    if (rc == NPVDB_OK && d->truth_w) {
        d->truth = xcalloc(d->nq * d->truth_w, sizeof(int32_t), "neighbors");
        rc = npvdb_annfile_read_neighbors(f, 0, d->nq, d->truth, &err);
    }
    npvdb_annfile_close(f);
    if (rc != NPVDB_OK) {
        fprintf(stderr, "npvdb-engine-bench: %s\n", err.msg);
        return -1;
    }
    if (d->truth && d->truth_w < o->k) {
        fprintf(stderr,
                "npvdb-engine-bench: 'neighbors' has %u columns, "
                "fewer than --k %u\n",
                d->truth_w, o->k);
        return -1;
    }
    return 0;
}

static void make_keys(dataset *d)
{
    size_t cap = d->n * 21;
    d->key_arena = xcalloc(cap, 1, "keys");
    d->keys = xcalloc(d->n, sizeof *d->keys, "key pointers");
    char *p = d->key_arena;
    d->key_bytes = 0;
    for (size_t i = 0; i < d->n; i++) {
        int len = snprintf(p, 21, "%zu", i);
        d->keys[i] = p;
        p += len + 1;
        d->key_bytes += (size_t)len;
    }
}

static void drop_build_input(dataset *d)
{
    free(d->train);
    free(d->keys);
    free(d->key_arena);
    d->train = NULL;
    d->keys = NULL;
    d->key_arena = NULL;
}

static void dataset_free(dataset *d)
{
    drop_build_input(d);
    free(d->queries);
    free(d->truth);
}

/* ---- build --------------------------------------------------------------- */

typedef struct build_result {
    double train_s, insert_s;
    uint32_t shards, workers;
    size_t memory_bytes;
    size_t min_shard, max_shard;
} build_result;

static int fail(const char *what, const npvdb_error *err)
{
    fprintf(stderr, "npvdb-engine-bench: %s: %s (%s)\n", what, err->msg,
            npvdb_code_name(err->code));
    return -1;
}

/* Trains on an evenly strided sample of the train rows: deterministic and
 * spread over the whole file (files are often sorted by source). */
static int train(npvdb_collection *c, const dataset *d, size_t want,
                 double *secs)
{
    npvdb_error err = {0};
    size_t m = want < d->n ? want : d->n;
    float *sample = xcalloc(m * d->dim, sizeof(float), "training sample");
    for (size_t i = 0; i < m; i++)
        memcpy(sample + i * d->dim, d->train + (i * d->n / m) * d->dim,
               d->dim * sizeof(float));
    double t0 = now();
    npvdb_code rc = npvdb_train(c, sample, m, &err);
    *secs = now() - t0;
    free(sample);
    return rc == NPVDB_OK ? 0 : fail("train", &err);
}

static int insert_all(npvdb_collection *c, const dataset *d, size_t batch,
                      double *secs)
{
    npvdb_error err = {0};
    double t0 = now();
    for (size_t first = 0; first < d->n; first += batch) {
        size_t cnt = d->n - first < batch ? d->n - first : batch;
        if (npvdb_insert(c, d->keys + first, d->train + first * d->dim, cnt,
                         NULL, &err) != NPVDB_OK)
            return fail("insert", &err);
    }
    *secs = now() - t0;
    return 0;
}

static int read_stats(npvdb_collection *c, build_result *b)
{
    npvdb_error err = {0};
    npvdb_stats st;
    if (npvdb_stats_get(c, &st, &err) != NPVDB_OK) return fail("stats", &err);
    b->shards = st.n_shards;
    b->workers = st.n_workers;
    b->memory_bytes = st.memory_bytes;
    b->min_shard = SIZE_MAX;
    b->max_shard = 0;
    for (uint32_t s = 0; s < st.n_shards; s++) {
        size_t v = (size_t)st.shard_counts[s];
        b->min_shard = v < b->min_shard ? v : b->min_shard;
        b->max_shard = v > b->max_shard ? v : b->max_shard;
    }
    npvdb_stats_free(&st);
    return 0;
}

static npvdb_collection *build(const dataset *d, const options *o,
                               build_result *b)
{
    npvdb_error err = {0};
    npvdb_config cfg = {.dim = d->dim,
                        .metric = d->metric,
                        .n_shards = o->shards,
                        .n_workers = o->threads,
                        .seed = o->seed};
    /* The engine's automatic count (4*sqrt(n), rounded) computed here on
     * the full n and passed explicitly: trained on a sample before the
     * inserts, the engine would size the index by the sample instead. */
    uint32_t shards = o->shards;
    if (!shards) {
        double s = 4.0 * sqrt((double)d->n) + 0.5;
        shards = s < 1                  ? 1
                 : s > NPVDB_MAX_SHARDS ? NPVDB_MAX_SHARDS
                                        : (uint32_t)s;
    }
    cfg.n_shards = shards;
    /* Trained explicitly before the inserts, so auto-training never runs
     * inside the timed insert loop. */
    npvdb_collection *c = npvdb_create(&cfg, &err);
    if (!c) {
        fail("create", &err);
        return NULL;
    }
    size_t sample = o->train_sample ? o->train_sample : (size_t)shards * 64;
    if (train(c, d, sample, &b->train_s) != 0 ||
        insert_all(c, d, o->batch, &b->insert_s) != 0 ||
        read_stats(c, b) != 0) {
        npvdb_free(c);
        return NULL;
    }
    return c;
}

/* ---- search -------------------------------------------------------------- */

/* recall@k of one result set against truth rows (first k columns). */
static double recall(const npvdb_results *r, const int32_t *truth,
                     uint32_t truth_w, size_t first_q, uint32_t k)
{
    size_t hits = 0;
    for (size_t i = 0; i < r->nq; i++) {
        const int32_t *t = truth + (first_q + i) * truth_w;
        for (uint32_t j = 0; j < r->counts[i] && j < k; j++) {
            long id = strtol(r->keys[i * r->k + j], NULL, 10);
            for (uint32_t h = 0; h < k; h++)
                if (t[h] == id) {
                    hits++;
                    break;
                }
        }
    }
    return (double)hits / ((double)r->nq * k);
}

/* Exact truth for a generated dataset: the engine with every shard probed
 * (documented as an exact search). Returns the seconds it took. */
static double exact_truth(npvdb_collection *c, dataset *d, uint32_t shards,
                          uint32_t k)
{
    npvdb_error err = {0};
    npvdb_results r;
    double t0 = now();
    if (npvdb_search(c, d->queries, d->nq, k, shards, &r, &err) != NPVDB_OK)
        return fail("exact search", &err);
    double secs = now() - t0;
    d->truth_w = k;
    d->truth = xcalloc(d->nq * k, sizeof(int32_t), "truth");
    for (size_t i = 0; i < d->nq; i++)
        for (uint32_t j = 0; j < k; j++)
            d->truth[i * k + j] =
                j < r.counts[i] ? (int32_t)strtol(r.keys[i * k + j], NULL, 10)
                                : -1;
    npvdb_results_free(&r);
    return secs;
}

typedef struct probe_result {
    uint32_t nprobe;
    double recall, batch_qps, single_qps;
    size_t single_n;
} probe_result;

static int run_batch(npvdb_collection *c, const dataset *d, uint32_t k,
                     probe_result *p)
{
    npvdb_error err = {0};
    npvdb_results r;
    double t0 = now();
    if (npvdb_search(c, d->queries, d->nq, k, p->nprobe, &r, &err) != NPVDB_OK)
        return fail("search", &err);
    double secs = now() - t0;
    p->batch_qps = (double)d->nq / secs;
    p->recall = recall(&r, d->truth, d->truth_w, 0, k);
    npvdb_results_free(&r);
    return 0;
}

/* One query per call until all queries ran or the time budget is spent. */
static int run_single(npvdb_collection *c, const dataset *d, uint32_t k,
                      double budget, probe_result *p)
{
    npvdb_error err = {0};
    double t0 = now(), t = t0;
    size_t i = 0;
    for (; i < d->nq && (i == 0 || t - t0 < budget); i++) {
        npvdb_results r;
        if (npvdb_search(c, d->queries + i * d->dim, 1, k, p->nprobe, &r,
                         &err) != NPVDB_OK)
            return fail("search", &err);
        npvdb_results_free(&r);
        if ((i & 15) == 15) t = now();
    }
    p->single_n = i;
    p->single_qps = (double)i / (now() - t0);
    return 0;
}

/* ---- report -------------------------------------------------------------- */

typedef struct mem_result {
    size_t rss, rss_trim, hwm, base; /* bytes */
} mem_result;

static double mib(size_t bytes)
{
    return (double)bytes / 1048576.0;
}

static void print_build(const options *o, const dataset *d,
                        const build_result *b, const mem_result *m)
{
    size_t raw = d->n * d->dim * sizeof(float) + d->key_bytes;
    size_t grow = m->rss > m->base ? m->rss - m->base : 0;
    size_t grow_trim = m->rss_trim > m->base ? m->rss_trim - m->base : 0;
    if (o->csv) {
        printf("build,n=%zu,dim=%u,metric=%s,shards=%u,workers=%u,"
               "train_s=%.3f,insert_s=%.3f,memory_bytes=%zu,raw_bytes=%zu,"
               "rss_growth_bytes=%zu,rss_growth_trimmed_bytes=%zu,"
               "hwm_bytes=%zu\n",
               d->n, d->dim, npvdb_metric_name(d->metric), b->shards,
               b->workers, b->train_s, b->insert_s, b->memory_bytes, raw, grow,
               grow_trim, m->hwm);
        return;
    }
    printf("dataset     %zu x %u (%s), %zu queries, source %s\n", d->n, d->dim,
           npvdb_metric_name(d->metric), d->nq,
           o->file ? o->file : "generated in memory");
    printf("index       %u shards (sizes %zu..%zu), %u workers\n", b->shards,
           b->min_shard, b->max_shard, b->workers);
    printf("build       train %.2f s + insert %.2f s = %.2f s (%.0f vectors/s "
           "insert)\n",
           b->train_s, b->insert_s, b->train_s + b->insert_s,
           (double)d->n / b->insert_s);
    printf("memory      raw vectors+keys %.1f MiB; engine's count %.1f MiB "
           "(%.2fx raw)\n",
           mib(raw), mib(b->memory_bytes), (double)b->memory_bytes / raw);
    printf("            process RSS growth %.1f MiB (%.2fx raw), %.1f MiB "
           "(%.2fx) after malloc_trim; peak RSS %.1f MiB\n",
           mib(grow), (double)grow / raw, mib(grow_trim),
           (double)grow_trim / raw, mib(m->hwm));
}

static void print_probe(const options *o, const probe_result *p)
{
    if (o->csv) {
        printf("search,nprobe=%u,k=%u,recall=%.4f,batch_qps=%.1f,"
               "single_qps=%.1f,single_n=%zu\n",
               p->nprobe, o->k, p->recall, p->batch_qps, p->single_qps,
               p->single_n);
        return;
    }
    printf("%8u  %9.4f  %12.0f  %12.0f  %8zu\n", p->nprobe, p->recall,
           p->batch_qps, p->single_qps, p->single_n);
}

static int run_searches(npvdb_collection *c, const dataset *d, const options *o)
{
    if (!o->csv)
        printf("%8s  %9s  %12s  %12s  %8s\n", "nprobe", "recall@k", "batch q/s",
               "single q/s", "single n");
    for (size_t i = 0; i < o->n_nprobes; i++) {
        probe_result p = {.nprobe = o->nprobes[i]};
        if (run_batch(c, d, o->k, &p) != 0 ||
            run_single(c, d, o->k, o->single_seconds, &p) != 0)
            return -1;
        print_probe(o, &p);
        fflush(stdout);
    }
    return 0;
}

/* Bytes the benchmark itself keeps resident while searching. */
static size_t kept_bytes(const dataset *d)
{
    return d->nq * d->dim * sizeof(float) +
           (d->truth ? d->nq * d->truth_w * sizeof(int32_t) : 0);
}

static int load(dataset *d, const options *o)
{
    if (o->file) return load_file(d, o);
    generate(d, o);
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    dataset d = {0};
    build_result b = {0};
    parse_args(argc, argv, &o);
    /* Big temporaries (k-means samples, message and search buffers) come
     * and go. A fixed threshold stops glibc from raising it after the first
     * big free, so they keep going back to the kernel instead of staying
     * resident in the heap (the engine itself is ~1.2x the raw vectors). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_ARENA_MAX, 2); /* as server/main.c: the server's figures */
    /* Baseline before any data: libraries, stacks, allocator. */
    size_t rss0 = proc_status_bytes("VmRSS:");
    if (load(&d, &o) != 0) {
        dataset_free(&d);
        return 1;
    }
    if (o.k > d.n) {
        fprintf(stderr, "npvdb-engine-bench: --k %u exceeds %zu vectors\n", o.k,
                d.n);
        dataset_free(&d);
        return 1;
    }
    make_keys(&d);
    npvdb_collection *c = build(&d, &o, &b);
    if (!c) {
        dataset_free(&d);
        return 1;
    }
    /* The input copy goes back to the kernel (each buffer is one large
     * mmap'ed block), so what remains above the baseline is the engine plus
     * the queries and truth we keep. */
    size_t key_bytes = d.key_bytes;
    drop_build_input(&d);
    d.key_bytes = key_bytes;
    mem_result mem = {.rss = proc_status_bytes("VmRSS:"),
                      .hwm = proc_status_bytes("VmHWM:"),
                      .base = rss0 + kept_bytes(&d)};
    /* Also after handing free heap pages back: tells memory the engine
     * holds apart from memory the allocator keeps for reuse. */
    malloc_trim(0);
    mem.rss_trim = proc_status_bytes("VmRSS:");
    print_build(&o, &d, &b, &mem);
    if (!d.truth) {
        double secs = exact_truth(c, &d, b.shards, o.k);
        if (secs < 0) {
            npvdb_free(c);
            dataset_free(&d);
            return 1;
        }
        if (!o.csv)
            printf("truth       exact search (nprobe = %u shards): %.0f "
                   "queries/s batched\n",
                   b.shards, (double)d.nq / secs);
    }
    int rc = run_searches(c, &d, &o);
    npvdb_free(c);
    dataset_free(&d);
    return rc == 0 ? 0 : 1;
}
