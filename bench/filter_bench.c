/*
 * filter_bench.c -- npvdb-filter-bench: filtered search on clustered data.
 *
 * Builds a collection of generated clustered vectors (the mixture of
 * bench/engine_bench.c) where every vector carries an int payload field
 * "bucket" = a hash of its row mod 1000, uncorrelated with its position.
 * Then, for unfiltered search and filters keeping 50%, 10%, 1% and 0.1%
 * (range bucket < 500 and < 100, match bucket in 10 values and in 1), it
 * prints the plan the engine chose, recall@k against brute force over the
 * filtered set (the engine with every shard probed, which npvdb.h documents
 * as exact), and batched queries/s. Each filtered run is interleaved with
 * an unfiltered one in the same process, `--rounds` times, and the ratio
 * of the two medians is printed: on a shared, noisy machine the ratio is
 * what means something, not the absolute figures.
 *
 * White-box for one thing: the plan is read with plan_choose (internal.h).
 * A benchmark, never run by CTest.
 */
#include "internal.h"
#include "mixture.h"

#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct options {
    size_t n, nq;
    uint32_t dim, centres, shards, threads, nprobe, k, rounds;
    uint64_t seed;
} options;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const npvdb_error *err)
{
    fprintf(stderr, "npvdb-filter-bench: %s: %s\n", what,
            err ? err->msg : "failed");
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory", NULL);
    return p;
}

/* ---- data (mixture.h) ---- */

static void generate(const options *o, float *train, float *queries)
{
    uint64_t rng = o->seed;
    mixture m;
    if (mixture_init(&m, o->centres, o->dim, &rng)) die("out of memory", NULL);
    for (size_t i = 0; i < o->n; i++)
        mixture_sample(&m, &rng, train + i * o->dim);
    for (size_t i = 0; i < o->nq; i++)
        mixture_sample(&m, &rng, queries + i * o->dim);
    mixture_free(&m);
}

static int64_t bucket_of(size_t i)
{
    uint64_t s = i * 0x2545f4914f6cdd1dULL + 1;
    return (int64_t)(rng_next(&s) % 1000);
}

/* ---- build ---- */

static npvdb_collection *build(const options *o, const float *x,
                               uint32_t *shards)
{
    npvdb_error err;
    uint32_t ns = o->shards;
    if (!ns) ns = (uint32_t)(4.0 * sqrt((double)o->n) + 0.5);
    *shards = ns;
    npvdb_config cfg = {.dim = o->dim,
                        .metric = NPVDB_METRIC_L2,
                        .n_shards = ns,
                        .n_workers = o->threads,
                        .seed = o->seed};
    npvdb_collection *c = npvdb_create(&cfg, &err);
    if (!c) die("create", &err);
    size_t m = (size_t)ns * 64 < o->n ? (size_t)ns * 64 : o->n;
    float *sample = xmalloc(m * o->dim * sizeof(float));
    for (size_t i = 0; i < m; i++)
        memcpy(sample + i * o->dim, x + (i * o->n / m) * o->dim,
               o->dim * sizeof(float));
    if (npvdb_train(c, sample, m, &err)) die("train", &err);
    free(sample);
    const size_t batch = 10000;
    char(*names)[24] = xmalloc(batch * sizeof *names);
    const char **keys = xmalloc(batch * sizeof *keys);
    npvdb_payload *pl = xmalloc(batch * sizeof *pl);
    for (size_t first = 0; first < o->n; first += batch) {
        size_t cnt = o->n - first < batch ? o->n - first : batch;
        for (size_t i = 0; i < cnt; i++) {
            snprintf(names[i], sizeof names[i], "%zu", first + i);
            keys[i] = names[i];
            npvdb_field f = {.name = "bucket",
                             .name_len = 6,
                             .type = NPVDB_VALUE_INT,
                             .i = bucket_of(first + i)};
            if (npvdb_payload_build(&f, 1, &pl[i], &err)) die("payload", &err);
        }
        if (npvdb_upsert(c, keys, x + first * o->dim, pl, cnt, NULL, &err))
            die("upsert", &err);
        for (size_t i = 0; i < cnt; i++)
            free((void *)pl[i].data);
    }
    free(names);
    free(keys);
    free(pl);
    return c;
}

/* ---- runs ---- */

typedef struct fcase {
    const char *name;
    npvdb_filter f;
} fcase;

static npvdb_results search(npvdb_collection *c, const float *q, size_t nq,
                            uint32_t k, uint32_t nprobe, const npvdb_filter *f,
                            double *secs)
{
    npvdb_error err;
    npvdb_results r;
    npvdb_search_params sp = {.nprobe = nprobe, .filter = f};
    double t0 = now();
    /* Not inplace: the engine copies (and only reads) the queries. */
    if (npvdb_search_ex(c, (float *)q, nq, k, &sp, &r, &err))
        die("search", &err);
    if (secs) *secs = now() - t0;
    return r;
}

static double recall(const npvdb_results *got, const npvdb_results *truth)
{
    size_t hits = 0, want = 0;
    for (size_t i = 0; i < got->nq; i++) {
        want += truth->counts[i];
        for (uint32_t a = 0; a < got->counts[i]; a++)
            for (uint32_t b = 0; b < truth->counts[i]; b++)
                if (!strcmp(got->keys[i * got->k + a],
                            truth->keys[i * truth->k + b])) {
                    hits++;
                    break;
                }
    }
    return want ? (double)hits / (double)want : 1.0;
}

static const char *plan_name(npvdb_collection *c, const npvdb_filter *f,
                             size_t nq, uint32_t nprobe, uint32_t k,
                             uint32_t *np)
{
    cfilter *cf = NULL;
    npvdb_error err;
    if (filter_compile(c, f, &cf, &err)) die("filter", &err);
    plan p = plan_choose(c, cf, nq, nprobe, k);
    filter_free(cf);
    *np = p.nprobe;
    if (!f) return "probe";
    return p.kind == PLAN_EXACT ? "exact" : "probe+filter";
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, uint32_t n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void run_case(npvdb_collection *c, const options *o, const float *q,
                     uint32_t shards, const fcase *fc)
{
    const npvdb_filter *f = fc->f.n_must ? &fc->f : NULL;
    uint64_t pass = 0;
    npvdb_error err;
    if (npvdb_count(c, f, &pass, &err)) die("count", &err);
    npvdb_results truth = search(c, q, o->nq, o->k, shards, f, NULL);
    npvdb_results got = search(c, q, o->nq, o->k, o->nprobe, f, NULL);
    double rec = recall(&got, &truth);
    npvdb_results_free(&truth);
    npvdb_results_free(&got);
    double *tf = xmalloc(o->rounds * sizeof *tf);
    double *tu = xmalloc(o->rounds * sizeof *tu);
    for (uint32_t r = 0; r < o->rounds; r++) {
        npvdb_results a = search(c, q, o->nq, o->k, o->nprobe, NULL, &tu[r]);
        npvdb_results b = search(c, q, o->nq, o->k, o->nprobe, f, &tf[r]);
        npvdb_results_free(&a);
        npvdb_results_free(&b);
    }
    double qf = (double)o->nq / median(tf, o->rounds);
    double qu = (double)o->nq / median(tu, o->rounds);
    uint32_t np;
    const char *pn = plan_name(c, f, o->nq, o->nprobe, o->k, &np);
    char nps[16] = "-"; /* the exact plan probes nothing */
    if (strcmp(pn, "exact")) snprintf(nps, sizeof nps, "%u", np);
    printf("%-12s %7.3f%%  %-12s %6s  %8.4f  %10.0f  %10.0f  %6.2f\n", fc->name,
           100.0 * (double)pass / (double)o->n, pn, nps, rec, qf, qu, qf / qu);
    fflush(stdout);
    free(tf);
    free(tu);
}

static size_t opt_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || *s == '-') {
        fprintf(stderr, "npvdb-filter-bench: bad number '%s'\n", s);
        exit(2);
    }
    return (size_t)v;
}

static void parse(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"n", 1, 0, 'n'},       {"q", 1, 0, 'q'},      {"dim", 1, 0, 'd'},
        {"centres", 1, 0, 'C'}, {"shards", 1, 0, 's'}, {"threads", 1, 0, 't'},
        {"nprobe", 1, 0, 'p'},  {"k", 1, 0, 'k'},      {"rounds", 1, 0, 'r'},
        {"seed", 1, 0, 'S'},    {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    *o = (options){.n = 200000,
                   .nq = 1000,
                   .dim = 128,
                   .centres = 64,
                   .nprobe = 8,
                   .k = 10,
                   .rounds = 5,
                   .seed = 42};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'n':
            o->n = opt_size(optarg);
            break;
        case 'q':
            o->nq = opt_size(optarg);
            break;
        case 'd':
            o->dim = (uint32_t)opt_size(optarg);
            break;
        case 'C':
            o->centres = (uint32_t)opt_size(optarg);
            break;
        case 's':
            o->shards = (uint32_t)opt_size(optarg);
            break;
        case 't':
            o->threads = (uint32_t)opt_size(optarg);
            break;
        case 'p':
            o->nprobe = (uint32_t)opt_size(optarg);
            break;
        case 'k':
            o->k = (uint32_t)opt_size(optarg);
            break;
        case 'r':
            o->rounds = (uint32_t)opt_size(optarg);
            break;
        case 'S':
            o->seed = opt_size(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: npvdb-filter-bench [--n 200000] [--q 1000] "
                    "[--dim 128] [--centres 64] [--shards 0=4*sqrt(n)]\n"
                    "       [--threads 0=all] [--nprobe 8] [--k 10] "
                    "[--rounds 5] [--seed 42]\n");
            exit(ch == 'h' ? 0 : 2);
        }
    }
    if (o->n < 1 || o->nq < 1 || o->dim < 1 || o->dim > NPVDB_MAX_DIM ||
        o->centres < 1 || o->nprobe < 1 || o->k < 1 || o->rounds < 1) {
        fprintf(stderr, "npvdb-filter-bench: sizes must be >= 1\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    options o;
    parse(argc, argv, &o);
    float *x = xmalloc(o.n * o.dim * sizeof(float));
    float *q = xmalloc(o.nq * o.dim * sizeof(float));
    generate(&o, x, q);
    uint32_t shards;
    double t0 = now();
    npvdb_collection *c = build(&o, x, &shards);
    free(x);
    printf("data        %zu x %u clustered (%u centres), l2, %zu queries "
           "per call, %u shards, nprobe %u, k %u, build %.1f s\n",
           o.n, o.dim, o.centres, o.nq, shards, o.nprobe, o.k, now() - t0);
    npvdb_cond r500 = {.kind = NPVDB_COND_RANGE,
                       .field = "bucket",
                       .field_len = 6,
                       .has_upper = 1,
                       .upper = 500};
    npvdb_cond r100 = r500;
    r100.upper = 100;
    npvdb_match_value ten[10], one[1] = {{.type = NPVDB_VALUE_INT, .i = 0}};
    for (int i = 0; i < 10; i++)
        ten[i] = (npvdb_match_value){.type = NPVDB_VALUE_INT, .i = i * 97};
    npvdb_cond m10 = {.kind = NPVDB_COND_MATCH,
                      .field = "bucket",
                      .field_len = 6,
                      .values = ten,
                      .n_values = 10};
    npvdb_cond m1 = {.kind = NPVDB_COND_MATCH,
                     .field = "bucket",
                     .field_len = 6,
                     .values = one,
                     .n_values = 1};
    const fcase cases[] = {
        {"none", {0}},
        {"range<500", {.must = &r500, .n_must = 1}},
        {"range<100", {.must = &r100, .n_must = 1}},
        {"match10", {.must = &m10, .n_must = 1}},
        {"match1", {.must = &m1, .n_must = 1}},
    };
    printf("%-12s %8s  %-12s %6s  %8s  %10s  %10s  %6s\n", "filter", "passes",
           "plan", "nprobe", "recall", "q/s", "q/s unfilt", "ratio");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(c, &o, q, shards, &cases[i]);
    npvdb_free(c);
    free(q);
    return 0;
}
