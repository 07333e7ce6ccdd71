/*
 * search.c -- a query batch's way through the index:
 *  1. probe: one sgemm of queries x centroids per block -> the nprobe nearest
 *     shards of each query (partial selection), spread over the workers;
 *  2. invert: shard -> the queries that probe it (CSR arrays);
 *  3. scan: worker w takes the shards s with s % n_workers == w; for each,
 *     one sgemm of (its queries) x (shard rows) per tile, fused with a bounded
 *     top-k heap per query (partial selection, never a full sort);
 *  4. merge the workers' heaps per query and copy keys out while the read
 *     lock still pins the entries.
 * An untrained collection is one shard scanned exactly, split by row ranges.
 * Queries are processed in blocks so heap memory stays bounded for any k.
 *
 * A filter (see plan.c for the choice) either
 *  - gathers the passing rows of every shard once (PLAN_EXACT) and scans
 *    them like an untrained collection, or
 *  - stays inside the scan (PLAN_PROBE): each tile of a probed shard's rows
 *    is evaluated by the task that owns the shard, once per block, and only
 *    the passing rows are gathered and multiplied; a row that fails is never
 *    a candidate. A query whose probed shards held fewer than k passing rows
 *    is searched again with four times the shards, up to all of them.
 * The unfiltered scan keeps its own loop, with no per-row test.
 */
#include "internal.h"

#include "clock.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define QTILE 256              /* queries per sgemm tile */
#define RTILE 1024             /* shard rows per sgemm tile */
#define HEAP_BUDGET (1u << 20) /* heap slots per task per block */
#define INLINE_WORK (1u << 22) /* below this many flops, no thread hop */

typedef struct scan {
    npvdb_collection *c;
    const float *q, *qnorms; /* this block's queries (prepared) */
    size_t nq;
    uint32_t k, nprobe, n_tasks, dim;
    uint32_t *probes;       /* nq * nprobe shard ids */
    uint32_t *off, *qidx;   /* CSR: shard s probed by qidx[off[s]..off[s+1]) */
    npvdb_topk *heaps;      /* n_tasks sets of nq heaps */
    float **gather, **dots; /* per task tiles */
    size_t qtile, rtile;
    /* Scanned whole, split by row ranges (no probing): shard 0 of an
     * untrained collection, or the gathered passing set; else NULL. */
    const npvdb_shard *whole;
    const cfilter *filter; /* applied in the scan (PLAN_PROBE) */
    npvdb_shard *ftile;    /* per task: a tile's passing rows (filter) */
    uint32_t **fidx;       /* per task: their row numbers */
    const search_opts *o;  /* the caller's giving-up signals */
} scan;

/* Search results are incomplete after one of these. */
enum { SCAN_NOMEM = -1, SCAN_GAVE_UP = -2, SCAN_TOO_BIG = -3 };

/* The caller gave up: 1 cancelled, 2 deadline passed, 0 not (yet). Once
 * true it stays true, so a task that skipped its shards and the driver that
 * checks after the block agree. */
static int gave_up(const scan *s)
{
    const search_opts *o = s->o;
    if (!o) return 0;
    if (o->cancel && atomic_load_explicit(o->cancel, memory_order_relaxed))
        return 1;
    if (o->deadline_ns && npvdb_mono_ns() >= o->deadline_ns) return 2;
    return 0;
}

/* ---- 1. probe ---- */

/* The m smallest of v[0..n) (m <= n) into out, via a max-heap of m. */
static void smallest_m(const float *v, uint32_t n, uint32_t m, uint32_t *out,
                       float *hd)
{
    uint32_t size = 0;
    for (uint32_t j = 0; j < n; j++) {
        float d = v[j];
        if (size == m && d >= hd[0]) continue;
        uint32_t i;
        if (size < m) {
            i = size++;
            while (i > 0 && hd[(i - 1) / 2] < d) {
                hd[i] = hd[(i - 1) / 2];
                out[i] = out[(i - 1) / 2];
                i = (i - 1) / 2;
            }
        } else {
            i = 0;
            for (;;) {
                uint32_t c = 2 * i + 1;
                if (c >= m) break;
                if (c + 1 < m && hd[c + 1] > hd[c]) c++;
                if (hd[c] <= d) break;
                hd[i] = hd[c];
                out[i] = out[c];
                i = c;
            }
        }
        hd[i] = d;
        out[i] = j;
    }
}

static void probe_task(void *ctx, uint32_t t)
{
    scan *s = ctx;
    npvdb_collection *c = s->c;
    uint32_t nc = c->n_shards;
    size_t lo = s->nq * t / s->n_tasks, hi = s->nq * (t + 1) / s->n_tasks;
    float *tmp = s->dots[t], *hd = s->gather[t];
    int l2 = metric_uses_l2(c->cfg.metric);
    for (size_t b = lo; b < hi; b += ASSIGN_BLOCK) {
        size_t m = hi - b < ASSIGN_BLOCK ? hi - b : ASSIGN_BLOCK;
        dots_block(s->q + b * s->dim, m, c->centroids, nc, s->dim,
                   l2 ? -2.0f : -1.0f, tmp);
        for (size_t i = 0; i < m; i++) {
            float *row = tmp + i * nc;
            if (l2)
                for (uint32_t j = 0; j < nc; j++)
                    row[j] += c->cnorms[j];
            smallest_m(row, nc, s->nprobe, s->probes + (b + i) * s->nprobe, hd);
        }
    }
}

/* ---- 2. invert ---- */

static void invert(scan *s)
{
    uint32_t nc = s->c->n_shards;
    memset(s->off, 0, (nc + 1) * sizeof *s->off);
    size_t np = s->nq * s->nprobe;
    for (size_t i = 0; i < np; i++)
        s->off[s->probes[i] + 1]++;
    for (uint32_t j = 0; j < nc; j++)
        s->off[j + 1] += s->off[j];
    for (size_t i = 0; i < np; i++) {
        uint32_t sh = s->probes[i];
        s->qidx[s->off[sh]++] = (uint32_t)(i / s->nprobe);
    }
    for (uint32_t j = nc; j > 0; j--)
        s->off[j] = s->off[j - 1];
    s->off[0] = 0;
}

/* ---- 3. scan ---- */

static void push_row(scan *s, npvdb_topk *h, uint32_t qi, const float *dots,
                     const npvdb_shard *sh, size_t r0, size_t nr)
{
    float bound = topk_bound(h, qi);
    switch (s->c->cfg.metric) {
    case NPVDB_METRIC_L2: {
        float qn = s->qnorms[qi];
        for (size_t j = 0; j < nr; j++) {
            float d = qn + sh->sqnorms[r0 + j] + dots[j]; /* dots = -2 q.x */
            if (d < bound) {
                topk_push(h, qi, d, sh->entries[r0 + j]);
                bound = topk_bound(h, qi);
            }
        }
        break;
    }
    case NPVDB_METRIC_COSINE:
    case NPVDB_METRIC_IP:
        for (size_t j = 0; j < nr; j++) {
            float d = dots[j]; /* dots = -q.x; cosine adds 1 at the end */
            if (d < bound) {
                topk_push(h, qi, d, sh->entries[r0 + j]);
                bound = topk_bound(h, qi);
            }
        }
        break;
    }
}

/* Scans rows [r0, r1) of shard sh for queries qlist[0..nql) (NULL: all). */
static void scan_plain(scan *s, uint32_t t, const npvdb_shard *sh,
                       const uint32_t *qlist, size_t nql, size_t r0, size_t r1)
{
    uint32_t dim = s->dim;
    float alpha = metric_uses_l2(s->c->cfg.metric) ? -2.0f : -1.0f;
    npvdb_topk *h = &s->heaps[t];
    for (size_t qb = 0; qb < nql; qb += s->qtile) {
        size_t nqb = nql - qb < s->qtile ? nql - qb : s->qtile;
        const float *qblk = s->q + qb * dim;
        if (qlist) {
            float *g = s->gather[t];
            for (size_t i = 0; i < nqb; i++)
                memcpy(g + i * dim, s->q + (size_t)qlist[qb + i] * dim,
                       dim * sizeof *g);
            qblk = g;
        }
        for (size_t rb = r0; rb < r1; rb += s->rtile) {
            size_t nr = r1 - rb < s->rtile ? r1 - rb : s->rtile;
            dots_block(qblk, nqb, sh->rows + rb * dim, nr, dim, alpha,
                       s->dots[t]);
            for (size_t i = 0; i < nqb; i++) {
                uint32_t qi = qlist ? qlist[qb + i] : (uint32_t)(qb + i);
                push_row(s, h, qi, s->dots[t] + i * nr, sh, rb, nr);
            }
        }
    }
}

/* scan_plain over the rows of each tile that pass the filter, gathered
 * into the task's ftile: failing rows are never multiplied nor pushed. */
static void scan_filtered(scan *s, uint32_t t, const npvdb_shard *sh,
                          const uint32_t *qlist, size_t nql, size_t r0,
                          size_t r1)
{
    uint32_t dim = s->dim, *idx = s->fidx[t];
    npvdb_shard *ft = &s->ftile[t];
    for (size_t rb = r0; rb < r1; rb += s->rtile) {
        size_t nr = r1 - rb < s->rtile ? r1 - rb : s->rtile;
        size_t np = filter_rows(s->filter, sh, rb, rb + nr, idx);
        for (size_t j = 0; j < np; j++) {
            memcpy(ft->rows + j * dim, sh->rows + (size_t)idx[j] * dim,
                   dim * sizeof(float));
            ft->sqnorms[j] = sh->sqnorms[idx[j]];
            ft->entries[j] = sh->entries[idx[j]];
        }
        if (np) scan_plain(s, t, ft, qlist, nql, 0, np);
    }
}

static void scan_rows(scan *s, uint32_t t, const npvdb_shard *sh,
                      const uint32_t *qlist, size_t nql, size_t r0, size_t r1)
{
    if (s->filter)
        scan_filtered(s, t, sh, qlist, nql, r0, r1);
    else
        scan_plain(s, t, sh, qlist, nql, r0, r1);
}

static void scan_task(void *ctx, uint32_t t)
{
    scan *s = ctx;
    npvdb_collection *c = s->c;
    if (s->whole) {
        const npvdb_shard *sh = s->whole;
        size_t lo = sh->n * t / s->n_tasks, hi = sh->n * (t + 1) / s->n_tasks;
        scan_rows(s, t, sh, NULL, s->nq, lo, hi);
        return;
    }
    for (uint32_t sid = t; sid < c->n_shards; sid += s->n_tasks) {
        const npvdb_shard *sh = &c->shards[sid];
        size_t nql = s->off[sid + 1] - s->off[sid];
        if (!nql || !sh->n) continue;
        if (gave_up(s)) return; /* the driver sees it too and stops */
        scan_rows(s, t, sh, s->qidx + s->off[sid], nql, 0, sh->n);
    }
}

/* ---- 4. merge ---- */

static float final_distance(npvdb_metric m, float d)
{
    switch (m) {
    case NPVDB_METRIC_L2:
        return sqrtf(d > 0.0f ? d : 0.0f);
    case NPVDB_METRIC_COSINE:
        return 1.0f + d;
    case NPVDB_METRIC_IP:
        return d;
    }
    return d;
}

/* Folds every task's heap of query qi into task 0's and sorts it. */
static uint32_t merge_query(scan *s, size_t qi)
{
    npvdb_topk *dst = &s->heaps[0];
    for (uint32_t t = 1; t < s->n_tasks; t++) {
        npvdb_topk *src = &s->heaps[t];
        const float *d = src->dist + qi * src->k;
        npvdb_entry *const *e = src->ent + qi * src->k;
        for (uint32_t j = 0; j < src->size[qi]; j++)
            topk_push(dst, qi, d[j], e[j]);
    }
    return topk_sort(dst, qi);
}

/* ---- buffers ---- */

static void scan_free(scan *s)
{
    for (uint32_t t = 0; t < s->n_tasks; t++) {
        if (s->heaps) topk_free(&s->heaps[t]);
        if (s->gather) free(s->gather[t]);
        if (s->dots) free(s->dots[t]);
        if (s->ftile) {
            free(s->ftile[t].rows);
            free(s->ftile[t].sqnorms);
            free(s->ftile[t].entries);
        }
        if (s->fidx) free(s->fidx[t]);
    }
    free(s->ftile);
    free(s->fidx);
    s->ftile = NULL;
    s->fidx = NULL;
    free(s->heaps);
    free(s->gather);
    free(s->dots);
    free(s->probes);
    free(s->off);
    free(s->qidx);
    s->heaps = NULL;
    s->gather = s->dots = NULL;
    s->probes = s->off = s->qidx = NULL;
}

static size_t max_shard_rows(const scan *s)
{
    if (s->whole) return s->whole->n;
    size_t m = 0;
    for (uint32_t i = 0; i < s->c->n_shards; i++)
        if (s->c->shards[i].n > m) m = s->c->shards[i].n;
    return m;
}

static int ftile_alloc(scan *s)
{
    s->ftile = calloc(s->n_tasks, sizeof *s->ftile);
    s->fidx = calloc(s->n_tasks, sizeof *s->fidx);
    if (!s->ftile || !s->fidx) return -1;
    for (uint32_t t = 0; t < s->n_tasks; t++) {
        npvdb_shard *ft = &s->ftile[t];
        ft->rows = malloc(s->rtile * s->dim * sizeof(float));
        ft->sqnorms = malloc(s->rtile * sizeof(float));
        ft->entries = malloc(s->rtile * sizeof *ft->entries);
        s->fidx[t] = malloc(s->rtile * sizeof *s->fidx[t]);
        if (!ft->rows || !ft->sqnorms || !ft->entries || !s->fidx[t]) return -1;
    }
    return 0;
}

/* Tiles are sized to need, so a single small query does not pay for
 * megabytes of buffers it never touches. */
static int scan_alloc(scan *s, size_t block)
{
    npvdb_collection *c = s->c;
    s->heaps = calloc(s->n_tasks, sizeof *s->heaps);
    s->gather = calloc(s->n_tasks, sizeof *s->gather);
    s->dots = calloc(s->n_tasks, sizeof *s->dots);
    if (!s->heaps || !s->gather || !s->dots) return -1;
    size_t maxrows = max_shard_rows(s);
    s->qtile = block < QTILE ? block : QTILE;
    s->rtile = maxrows < RTILE ? (maxrows ? maxrows : 1) : RTILE;
    size_t dots = s->qtile * s->rtile, gather = s->qtile * s->dim;
    if (s->filter && ftile_alloc(s)) return -1;
    if (!s->whole) {
        size_t pb = block < ASSIGN_BLOCK ? block : ASSIGN_BLOCK;
        if (dots < pb * c->n_shards) dots = pb * c->n_shards;
        if (gather < s->nprobe) gather = s->nprobe;
        s->probes = malloc(block * s->nprobe * sizeof *s->probes);
        s->off = malloc((c->n_shards + 1) * sizeof *s->off);
        s->qidx = malloc(block * s->nprobe * sizeof *s->qidx);
        if (!s->probes || !s->off || !s->qidx) return -1;
    }
    for (uint32_t t = 0; t < s->n_tasks; t++) {
        s->gather[t] = malloc(gather * sizeof(float));
        s->dots[t] = malloc(dots * sizeof(float));
        if (!s->gather[t] || !s->dots[t] ||
            topk_init(&s->heaps[t], block, s->k))
            return -1;
    }
    return 0;
}

/* ---- driving one block ---- */

/* fn(ctx, t) for every task, inline when the work is small. */
static int run_on(scan *s, pool_fn fn, void *ctx, size_t work)
{
    if (work < INLINE_WORK) {
        for (uint32_t t = 0; t < s->n_tasks; t++)
            fn(ctx, t);
        return 0;
    }
    return pool_run(s->c->pool, s->n_tasks, fn, ctx);
}

static int run_tasks(scan *s, pool_fn fn, size_t work)
{
    return run_on(s, fn, s, work);
}

static size_t scan_work(const scan *s)
{
    const npvdb_collection *c = s->c;
    if (s->whole) return s->nq * s->whole->n * s->dim;
    size_t w = 0;
    for (uint32_t j = 0; j < c->n_shards; j++)
        w += (size_t)(s->off[j + 1] - s->off[j]) * c->shards[j].n;
    return w * s->dim;
}

static int search_block(scan *s)
{
    for (uint32_t t = 0; t < s->n_tasks; t++)
        topk_reset(&s->heaps[t]);
    if (!s->whole) {
        if (run_tasks(s, probe_task, s->nq * s->c->n_shards * s->dim))
            return -1;
        invert(s);
    }
    return run_tasks(s, scan_task, scan_work(s));
}

/* ---- results ---- */

static int results_alloc(npvdb_results *r, size_t nq, uint32_t k,
                         bool with_payload)
{
    memset(r, 0, sizeof *r);
    r->nq = nq;
    r->k = k;
    r->counts = calloc(nq, sizeof *r->counts);
    r->distances = malloc(nq * k * sizeof *r->distances);
    r->keys = calloc(nq * k, sizeof *r->keys);
    r->key_lens = calloc(nq * k, sizeof *r->key_lens);
    if (with_payload && !(r->payloads = calloc(nq * k, sizeof *r->payloads)))
        return -1;
    return (r->counts && r->distances && r->keys && r->key_lens) ? 0 : -1;
}

void npvdb_results_free(npvdb_results *r)
{
    if (!r) return;
    free(r->counts);
    free(r->distances);
    free((void *)r->keys);
    free(r->key_lens);
    free(r->payloads);
    free(r->arena_);
    memset(r, 0, sizeof *r);
}

/* The norm expansion |q|^2 + |x|^2 - 2 q.x cancels badly near 0 (a vector's
 * distance to itself comes out as ~1e-3, not 0). The final k hits are few,
 * so L2 recomputes them directly and re-orders them. */
static void refine_l2(const scan *s, size_t qi, float *d, npvdb_entry **e,
                      uint32_t n)
{
    const float *q = s->q + qi * s->dim;
    for (uint32_t j = 0; j < n; j++) {
        const float *x =
            s->c->shards[e[j]->shard].rows + (size_t)e[j]->row * s->dim;
        float acc = 0;
        for (uint32_t t = 0; t < s->dim; t++)
            acc += (q[t] - x[t]) * (q[t] - x[t]);
        d[j] = acc;
    }
    for (uint32_t j = 1; j < n;
         j++) { /* insertion sort: n is k, nearly sorted */
        float dv = d[j];
        npvdb_entry *ev = e[j];
        uint32_t i = j;
        for (; i > 0 && d[i - 1] > dv; i--) {
            d[i] = d[i - 1];
            e[i] = e[i - 1];
        }
        d[i] = dv;
        e[i] = ev;
    }
}

/* Merges a block's heaps into result rows rows[q0 + i] (rows NULL: q0 + i)
 * of r; keys are copied later, so entries are kept in the keys slots
 * meanwhile (the read lock pins them). */
static void collect_block(scan *s, npvdb_results *r, size_t q0,
                          const uint32_t *rows)
{
    npvdb_metric m = s->c->cfg.metric;
    for (size_t i = 0; i < s->nq; i++) {
        uint32_t n = merge_query(s, i);
        const npvdb_topk *h = &s->heaps[0];
        if (m == NPVDB_METRIC_L2)
            refine_l2(s, i, h->dist + i * h->k, h->ent + i * h->k, n);
        size_t row = rows ? rows[q0 + i] : q0 + i, base = row * r->k;
        r->counts[row] = n;
        for (uint32_t j = 0; j < r->k; j++) {
            if (j < n) {
                npvdb_entry *e = h->ent[i * h->k + j];
                r->distances[base + j] =
                    final_distance(m, h->dist[i * h->k + j]);
                r->keys[base + j] = (const char *)e;
                r->key_lens[base + j] = e->len;
            } else {
                r->distances[base + j] = INFINITY;
                r->keys[base + j] = NULL;
                r->key_lens[base + j] = 0;
            }
        }
    }
}

static const npvdb_pstore *entry_payload(const npvdb_collection *c,
                                         const npvdb_entry *e)
{
    return c->shards[e->shard].pay[e->row];
}

/* Copies keys (and payloads) of the hits into one arena, under the read
 * lock that still pins the entries; SCAN_TOO_BIG past `max` bytes (0: no
 * bound), measured before anything is allocated. */
static int copy_keys(const npvdb_collection *c, npvdb_results *r, size_t max,
                     size_t *bytes)
{
    size_t total = 1, slots = r->nq * r->k;
    for (size_t i = 0; i < slots; i++) {
        if (!r->keys[i]) continue;
        total += r->key_lens[i] + 1;
        if (r->payloads) {
            const npvdb_pstore *p =
                entry_payload(c, (const npvdb_entry *)r->keys[i]);
            if (p) total += p->len;
        }
    }
    *bytes = total - 1;
    if (max && total - 1 > max) return SCAN_TOO_BIG;
    r->arena_ = malloc(total);
    if (!r->arena_) return SCAN_NOMEM;
    char *p = r->arena_;
    for (size_t i = 0; i < slots; i++) {
        if (!r->keys[i]) continue;
        const npvdb_entry *e = (const npvdb_entry *)r->keys[i];
        const npvdb_pstore *ps = r->payloads ? entry_payload(c, e) : NULL;
        memcpy(p, e->key, e->len + 1);
        r->keys[i] = p;
        p += e->len + 1;
        if (ps) {
            memcpy(p, pstore_blob(ps), ps->len);
            r->payloads[i] = (npvdb_payload){(const uint8_t *)p, ps->len};
            p += ps->len;
        }
    }
    return 0;
}

/* ---- the passing set (PLAN_EXACT) ---- */

typedef struct gather_job {
    scan *s;
    uint64_t **found; /* per task: (shard << 32 | row) of passing rows */
    size_t *n_found, *cap;
    size_t *at; /* per task: first row in the flat set */
    npvdb_shard *flat;
    atomic_int failed;
} gather_job;

static void find_task(void *ctx, uint32_t t)
{
    gather_job *g = ctx;
    const npvdb_collection *c = g->s->c;
    for (uint32_t sid = t; sid < c->n_shards; sid += g->s->n_tasks) {
        const npvdb_shard *sh = &c->shards[sid];
        for (size_t r = 0; r < sh->n; r++) {
            if (r + 8 < sh->n && sh->pay[r + 8])
                __builtin_prefetch(sh->pay[r + 8]);
            if (!filter_pass(g->s->filter, sh->pay[r])) continue;
            if (g->n_found[t] == g->cap[t]) {
                size_t cap = g->cap[t] ? 2 * g->cap[t] : 1024;
                uint64_t *p = realloc(g->found[t], cap * sizeof *p);
                if (!p) {
                    atomic_store(&g->failed, 1);
                    return;
                }
                g->found[t] = p;
                g->cap[t] = cap;
            }
            g->found[t][g->n_found[t]++] = (uint64_t)sid << 32 | r;
        }
    }
}

static void copy_task(void *ctx, uint32_t t)
{
    gather_job *g = ctx;
    const npvdb_collection *c = g->s->c;
    uint32_t dim = g->s->dim;
    npvdb_shard *f = g->flat;
    for (size_t i = 0; i < g->n_found[t]; i++) {
        const npvdb_shard *sh = &c->shards[g->found[t][i] >> 32];
        size_t r = (uint32_t)g->found[t][i], o = g->at[t] + i;
        memcpy(f->rows + o * dim, sh->rows + r * dim, dim * sizeof(float));
        f->sqnorms[o] = sh->sqnorms[r];
        f->entries[o] = sh->entries[r];
    }
}

static void flat_free(npvdb_shard *f)
{
    free(f->rows);
    free(f->sqnorms);
    free(f->entries);
    memset(f, 0, sizeof *f);
}

/* Gathers the rows passing s->filter into *flat, on the workers: one pass
 * finds them (each task its shards), the second copies them. */
static int gather_passing(scan *s, npvdb_shard *flat)
{
    uint32_t nt = s->n_tasks;
    gather_job g = {.s = s, .flat = flat};
    atomic_init(&g.failed, 0);
    g.found = calloc(nt, sizeof *g.found);
    g.n_found = calloc(nt, sizeof *g.n_found);
    g.cap = calloc(nt, sizeof *g.cap);
    g.at = calloc(nt, sizeof *g.at);
    int rc = -1;
    size_t work = s->c->n_vectors * 64; /* evaluations, weighed as flops */
    if (!g.found || !g.n_found || !g.cap || !g.at ||
        run_on(s, find_task, &g, work) || atomic_load(&g.failed))
        goto done;
    size_t total = 0;
    for (uint32_t t = 0; t < nt; t++) {
        g.at[t] = total;
        total += g.n_found[t];
    }
    size_t m = total ? total : 1;
    flat->rows = malloc(m * s->dim * sizeof(float));
    flat->sqnorms = malloc(m * sizeof(float));
    flat->entries = malloc(m * sizeof *flat->entries);
    flat->n = flat->cap = total;
    if (!flat->rows || !flat->sqnorms || !flat->entries ||
        run_on(s, copy_task, &g, total * s->dim))
        goto done;
    rc = 0;
done:
    for (uint32_t t = 0; g.found && t < nt; t++)
        free(g.found[t]);
    free(g.found);
    free(g.n_found);
    free(g.cap);
    free(g.at);
    return rc;
}

/* ---- driving a search ---- */

/* Heaps need no more slots than there are candidates: a short row (k past
 * what passes) is padded by collect_block. */
static uint32_t heap_k(uint32_t k, size_t candidates)
{
    if (candidates < k) k = (uint32_t)candidates;
    return k ? k : 1;
}

/* Searches nq prepared queries (norms qn) in blocks and writes result rows
 * rows[i] (NULL: i). s is set up but not allocated. */
static int run_scan(scan *s, const float *q, const float *qn, size_t nq,
                    const uint32_t *rows, npvdb_results *out)
{
    size_t block = HEAP_BUDGET / s->k;
    if (block < 1) block = 1;
    if (block > nq) block = nq;
    int rc = scan_alloc(s, block);
    for (size_t q0 = 0; rc == 0 && q0 < nq; q0 += block) {
        s->nq = nq - q0 < block ? nq - q0 : block;
        s->q = q + q0 * s->dim;
        s->qnorms = qn + q0;
        rc = search_block(s);
        if (rc == 0 && gave_up(s)) rc = SCAN_GAVE_UP;
        if (rc == 0) collect_block(s, out, q0, rows);
    }
    scan_free(s);
    return rc;
}

/* PLAN_PROBE with a filter: the queries whose probed shards held fewer
 * than k passing rows are searched again, probing four times as many
 * shards, until they have k or every shard was probed. */
static int probe_more(scan *base, const float *q, const float *qn, size_t nq,
                      uint32_t k, uint32_t nprobe, npvdb_results *out)
{
    uint32_t nc = base->c->n_shards, dim = base->dim;
    uint32_t *rows = malloc(nq * sizeof *rows);
    float *q2 = malloc(nq * dim * sizeof *q2), *qn2 = malloc(nq * sizeof *qn2);
    int rc = rows && q2 && qn2 ? 0 : -1;
    while (rc == 0 && nprobe < nc) {
        size_t m = 0;
        for (size_t i = 0; i < nq; i++)
            if (out->counts[i] < k) rows[m++] = (uint32_t)i;
        if (!m) break;
        nprobe = nprobe > nc / 4 ? nc : nprobe * 4;
        for (size_t i = 0; i < m; i++) {
            memcpy(q2 + i * dim, q + (size_t)rows[i] * dim, dim * sizeof *q2);
            qn2[i] = qn[rows[i]];
        }
        scan s = *base;
        s.nprobe = nprobe;
        rc = run_scan(&s, q2, qn2, m, rows, out);
    }
    free(rows);
    free(q2);
    free(qn2);
    return rc;
}

/* The error of a search that stopped with `rc` (a SCAN_ value). */
static npvdb_code search_error(const scan *s, int rc, size_t nq, uint32_t k,
                               size_t bytes, npvdb_error *err)
{
    if (rc == SCAN_GAVE_UP)
        return gave_up(s) == 1
                   ? npvdb_set_error(err, NPVDB_ECANCELLED,
                                     "search of %zu queries cancelled", nq)
                   : npvdb_set_error(err, NPVDB_ETIMEDOUT,
                                     "search of %zu queries (k=%u) stopped: "
                                     "its deadline passed",
                                     nq, k);
    if (rc == SCAN_TOO_BIG)
        return npvdb_set_error(
            err, NPVDB_ELIMIT,
            "the results of %zu queries (k=%u) hold %zu bytes of keys%s, "
            "over the %zu-byte bound: ask for fewer queries or a smaller k",
            nq, k, bytes, s->o->with_payload ? " and payloads" : "",
            s->o->max_result_bytes);
    return npvdb_set_error(err, NPVDB_ENOMEM,
                           "out of memory searching %zu queries (k=%u)", nq, k);
}

/* q: nq prepared queries (normalised for cosine). Caller holds rw shared. */
npvdb_code search_locked(npvdb_collection *c, const float *q, size_t nq,
                         uint32_t k, const search_opts *o, npvdb_results *out,
                         npvdb_error *err)
{
    plan pl = plan_choose(c, o->filter, nq, o->nprobe, k);
    if (o->plan_out) *o->plan_out = pl;
    scan s = {.c = c,
              .k = heap_k(k, c->n_vectors),
              .dim = c->cfg.dim,
              .n_tasks = pool_size(c->pool),
              .whole = c->trained ? NULL : &c->shards[0],
              .filter = o->filter,
              .nprobe = pl.nprobe < c->n_shards ? pl.nprobe : c->n_shards,
              .o = o};
    npvdb_shard flat = {0};
    float *qn = malloc(nq * sizeof *qn);
    size_t bytes = 0;
    int rc = SCAN_NOMEM;
    if (!qn || results_alloc(out, nq, k, o->with_payload)) goto done;
    rows_sqnorms(q, nq, s.dim, qn);
    if (o->filter && pl.kind == PLAN_EXACT) {
        if (gather_passing(&s, &flat)) goto done;
        s.whole = &flat;
        s.filter = NULL; /* every gathered row passes */
        s.k = heap_k(k, flat.n);
    }
    if ((rc = run_scan(&s, q, qn, nq, NULL, out))) goto done;
    if (s.filter && !s.whole &&
        (rc = probe_more(&s, q, qn, nq, k, s.nprobe, out)))
        goto done;
    rc = copy_keys(c, out, o->max_result_bytes, &bytes);
    if (o->result_bytes) *o->result_bytes = bytes;
done:
    free(qn);
    flat_free(&flat);
    if (rc == 0) return NPVDB_OK;
    npvdb_results_free(out);
    return search_error(&s, rc, nq, k, bytes, err);
}
