/*
 * plan.c -- how a filtered search runs: scan exactly the vectors that pass,
 * or probe shards with the filter applied inside the scan.
 *
 * Selectivity is estimated by evaluating the filter on a fixed, evenly
 * spread sample of rows: PLAN_SAMPLE for one query, up to PLAN_SAMPLE_MAX
 * for a batch (8 per query, a few percent of the batch's own work; every
 * row when the collection is not much bigger). Chosen over a per-field
 * value index because its cost is bounded whatever the filter's shape
 * (ranges, should, must_not, nesting, lists) and it needs no upkeep on
 * writes and no memory; its relative error (about 1/sqrt(hits)) only
 * matters near the crossover, where both plans cost about the same.
 *
 * Costs are in multiply-adds (one row against one query is `dim`):
 *   exact  = N eval (collect the passing set) + nq P dim (one dense sgemm
 *            per tile of the gathered passing rows)
 *   probe  = nq n_shards dim (centroids) + min(N, nq np avg) eval (each
 *            probed shard's rows are evaluated once per block) + nq np avg
 *            s dim GATHER (only passing rows are multiplied, but in small
 *            per-shard tiles, about GATHER times less efficient)
 * with np = nprobe / s^0.6: the filtered k nearest are about the unfiltered
 * k/s nearest, so a selective filter must probe wider to keep recall; the
 * exponent keeps recall@10 at the default nprobe of 8 within a point of the
 * unfiltered one for s down to a few percent, where the exact plan takes
 * over (a query whose probed shards still hold fewer than k passing rows
 * probes more, see search.c). Exact wins ties by EXACT_BIAS: it is also the
 * plan with perfect recall. This is the shape of Qdrant's
 * full_scan_threshold and Weaviate's flatSearchCutoff, with the threshold
 * derived per call instead of configured.
 */
#include "internal.h"

#include <math.h>

#define PLAN_SAMPLE 1024     /* rows sampled for one query... */
#define PLAN_SAMPLE_MAX 8192 /* ...up to this many for a batch */
#define SAMPLE_PER_QUERY 8
#define EVAL_MACS 400.0 /* one filter evaluation, mostly a cache miss */
#define GATHER 2.0
#define EXACT_BIAS 1.25

/* Passing rows among `want` evenly spread ones, scaled to all. */
static double estimate_pass(const npvdb_collection *c, const cfilter *f,
                            size_t want)
{
    size_t n = c->n_vectors, m = n <= 2 * want ? n : want;
    size_t hits = 0, base = 0, i = 0;
    for (uint32_t s = 0; s < c->n_shards && i < m; s++) {
        const npvdb_shard *sh = &c->shards[s];
        /* Sample i is global row i * n / m; it lies in this shard while
         * below base + sh->n. */
        for (; i < m; i++) {
            size_t g = i * n / m;
            if (g >= base + sh->n) break;
            hits += filter_pass(f, sh->pay[g - base]);
        }
        base += sh->n;
    }
    return m ? (double)hits * (double)n / (double)m : 0.0;
}

plan plan_choose(const npvdb_collection *c, const cfilter *f, size_t nq,
                 uint32_t nprobe, uint32_t k)
{
    plan p = {.kind = PLAN_PROBE, .nprobe = nprobe};
    if (!f) return p;
    double n = (double)c->n_vectors, dim = c->cfg.dim;
    size_t m = nq * SAMPLE_PER_QUERY;
    m = m < PLAN_SAMPLE       ? PLAN_SAMPLE
        : m > PLAN_SAMPLE_MAX ? PLAN_SAMPLE_MAX
                              : m;
    p.est_pass = estimate_pass(c, f, m);
    double sel = n > 0 ? p.est_pass / n : 0;
    double exact = n * EVAL_MACS + (double)nq * p.est_pass * dim;
    if (!c->trained) {
        /* One shard either way: the gathered passing set makes big tiles;
         * past a quarter passing, filtering tile by tile is as good and
         * needs no copy. */
        p.kind = sel < 0.25 ? PLAN_EXACT : PLAN_PROBE;
        return p;
    }
    /* The rare passing row: at least one in the sample's worth. */
    double s = sel > 1.0 / PLAN_SAMPLE ? sel : 1.0 / PLAN_SAMPLE;
    double want = ceil((double)nprobe / pow(s, 0.6));
    double avg = n / c->n_shards;
    /* Enough probed rows to expect 2k that pass. */
    if (avg > 0 && want * avg * s < 2.0 * k) want = ceil(2.0 * k / (avg * s));
    if (want > c->n_shards) want = c->n_shards;
    if (want < nprobe) want = nprobe;
    double probed = (double)nq * want * avg;
    double probe = (double)nq * c->n_shards * dim +
                   (probed < n ? probed : n) * EVAL_MACS +
                   probed * s * dim * GATHER;
    p.nprobe = (uint32_t)want;
    if (exact <= EXACT_BIAS * probe) p.kind = PLAN_EXACT;
    return p;
}
