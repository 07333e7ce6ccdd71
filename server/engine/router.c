/*
 * router.c -- which shard an inserted row goes to, without scoring it
 * against every centroid.
 *
 * Exact assignment is one dot product per centroid per row: with the default
 * 4 sqrt(n) shards it was 70% of a bulk load's CPU (200k rows into 1789
 * shards: 92 GFLOP). The router groups the centroids with a second, small
 * k-means (sqrt(nc) groups). A row is scored against the group centres, then
 * exactly against the centroids of its ROUTER_PROBE best groups.
 *
 * That alone misses the nearest centroid for about 4% of rows, and some
 * misses land far away: a group centre is the mean of centroids that may
 * point in unrelated directions, so a row can rank its own group low. A
 * search then never probes that shard (measured on bench data: recall at
 * nprobe 32 fell from 1.0 to 0.989). So a found centroid is kept only when
 * it is clearly closer than the best group centre (squared distance at most
 * ROUTER_KEEP times); other rows, 4% on bench data, are assigned exactly.
 * The rows still routed to a near-but-not-nearest centroid (0.45%) then sit
 * in a neighbouring shard, and recall@10 at every nprobe stayed within
 * 0.001 of exact assignment while the work per row fell 7.3x
 * (bench/assign_routing.py reproduces this).
 *
 * Scores use the L2 form |c|^2 - 2 x.c throughout: for cosine, rows and
 * centroids are unit vectors, so it orders centroids as -x.c does. Inner
 * product gets no router: a group centre says nothing about the largest
 * inner product among its members.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROUTER_MIN_CENTROIDS 512 /* fewer: exact is cheap enough */
#define ROUTER_PROBE 3
/* Rows per block: the exact fallback's sgemm packs all centroids for the few
 * rows that need it, so it pays to gather those from many rows. */
#define ROUTER_BLOCK 1024
#define FALLBACK_CHUNK 64 /* rows per exact fallback sgemm */
#define ROUTER_KEEP (2.0f / 3.0f)
#define ROUTER_ITERS 20

void router_free(npvdb_router *r)
{
    free(r->gcent);
    free(r->gnorms);
    free(r->goff);
    free(r->member);
    free(r->mcent);
    free(r->mnorms);
    memset(r, 0, sizeof *r);
}

/* Orders the centroids by group (a counting sort on gid); `cursor` holds
 * n_groups scratch slots. */
static void group_members(npvdb_router *r, const float *cent,
                          const float *cnorms, const uint32_t *gid,
                          uint32_t *cursor)
{
    uint32_t G = r->n_groups;
    memset(r->goff, 0, (G + 1) * sizeof *r->goff);
    for (uint32_t j = 0; j < r->nc; j++)
        r->goff[gid[j] + 1]++;
    for (uint32_t g = 0; g < G; g++) {
        uint32_t size = r->goff[g + 1];
        if (size > r->max_group) r->max_group = size;
        r->goff[g + 1] += r->goff[g];
        cursor[g] = r->goff[g];
    }
    for (uint32_t j = 0; j < r->nc; j++)
        r->member[cursor[gid[j]]++] = j;
    for (uint32_t i = 0; i < r->nc; i++) {
        memcpy(r->mcent + (size_t)i * r->dim,
               cent + (size_t)r->member[i] * r->dim, r->dim * sizeof(float));
        r->mnorms[i] = cnorms[r->member[i]];
    }
}

/* Fills r from group centres gcent (G x dim, taken) and each centroid's
 * group gid[nc] (borrowed). On failure r is left empty and gcent freed. */
static int router_fill(npvdb_router *r, const float *cent, const float *cnorms,
                       uint32_t nc, uint32_t dim, float *gcent,
                       const uint32_t *gid, uint32_t G)
{
    memset(r, 0, sizeof *r);
    r->gcent = gcent;
    r->n_groups = G;
    r->nc = nc;
    r->dim = dim;
    r->gnorms = malloc(G * sizeof *r->gnorms);
    r->goff = malloc((G + 1) * sizeof *r->goff);
    r->member = malloc(nc * sizeof *r->member);
    r->mcent = malloc((size_t)nc * dim * sizeof *r->mcent);
    r->mnorms = malloc(nc * sizeof *r->mnorms);
    uint32_t *cursor = malloc(G * sizeof *cursor);
    int ok =
        r->gnorms && r->goff && r->member && r->mcent && r->mnorms && cursor;
    if (ok) {
        rows_sqnorms(r->gcent, G, dim, r->gnorms);
        group_members(r, cent, cnorms, gid, cursor);
    }
    free(cursor);
    if (!ok) router_free(r);
    return ok ? 0 : -1;
}

int router_build(npvdb_router *r, npvdb_pool *pool, const float *cent,
                 const float *cnorms, uint32_t nc, uint32_t dim,
                 npvdb_metric metric, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    if (nc < ROUTER_MIN_CENTROIDS || metric == NPVDB_METRIC_IP) return 0;
    uint32_t G = (uint32_t)(sqrt((double)nc) + 0.5);
    npvdb_error ignored;
    float *gcent = NULL, *gnorms = malloc(G * sizeof *gnorms);
    uint32_t *gid = malloc(nc * sizeof *gid);
    float *tmp = malloc((size_t)ASSIGN_BLOCK * G * sizeof *tmp);
    /* kmeans_train fails only on memory here: nc >= G rows. */
    int ok = gnorms && gid && tmp &&
             kmeans_train(pool, cent, nc, dim, G, ROUTER_ITERS,
                          metric == NPVDB_METRIC_COSINE, seed ^ 0x5eedu, &gcent,
                          &ignored) == NPVDB_OK;
    if (ok) {
        rows_sqnorms(gcent, G, dim, gnorms);
        assign_nearest(cent, nc, gcent, gnorms, G, dim, 1, gid, tmp);
        ok = router_fill(r, cent, cnorms, nc, dim, gcent, gid, G) == 0;
    } else {
        free(gcent);
    }
    free(gnorms);
    free(gid);
    free(tmp);
    return ok ? 0 : -1;
}

int router_from(npvdb_router *r, const float *cent, const float *cnorms,
                uint32_t nc, uint32_t dim, const float *gcent,
                const uint32_t *gid, uint32_t G)
{
    memset(r, 0, sizeof *r);
    if (!G) return 0;
    float *copy = malloc((size_t)G * dim * sizeof *copy);
    if (!copy) return -1;
    memcpy(copy, gcent, (size_t)G * dim * sizeof *copy);
    return router_fill(r, cent, cnorms, nc, dim, copy, gid, G);
}

void router_groups(const npvdb_router *r, uint32_t *gid)
{
    for (uint32_t g = 0; g < r->n_groups; g++)
        for (uint32_t i = r->goff[g]; i < r->goff[g + 1]; i++)
            gid[r->member[i]] = g;
}

/* ---- assignment ---- */

/* One block's scratch, carved from the caller's floats (uint32_t and float
 * have the same size and alignment). */
typedef struct route_tmp {
    float *gsc;      /* B x G group scores */
    const float *xn; /* |x|^2 of the block's rows (the caller's) */
    float *g1;       /* best group score */
    float *best;     /* best centroid score found */
    uint32_t *bidx;  /* its centroid */
    uint32_t *top;   /* B x PROBE groups per row */
    uint32_t *cnt;   /* G + 1: group g's rows are list[cnt[g], cnt[g+1]) */
    uint32_t *cur;   /* G fill cursors */
    uint32_t *list;  /* B x PROBE rows, grouped */
    uint32_t *fall;  /* rows for the exact fallback */
    uint32_t *fout;
    float *gbuf; /* B x dim gathered rows */
    float *dtmp; /* B x max_group scores */
    float *ftmp; /* FALLBACK_CHUNK x nc for assign_nearest */
} route_tmp;

size_t router_scratch(const npvdb_router *r)
{
    size_t B = ROUTER_BLOCK, G = r->n_groups;
    return B * G + 3 * B + 2 * B * ROUTER_PROBE + (2 * G + 1) + 2 * B +
           B * r->dim + B * r->max_group + (size_t)FALLBACK_CHUNK * r->nc;
}

static route_tmp carve(const npvdb_router *r, float *f)
{
    size_t B = ROUTER_BLOCK, G = r->n_groups;
    route_tmp t;
    t.gsc = f, f += B * G;
    t.xn = NULL;
    t.g1 = f, f += B;
    t.best = f, f += B;
    t.bidx = (uint32_t *)f, f += B;
    t.top = (uint32_t *)f, f += B * ROUTER_PROBE;
    t.cnt = (uint32_t *)f, f += G + 1;
    t.cur = (uint32_t *)f, f += G;
    t.list = (uint32_t *)f, f += B * ROUTER_PROBE;
    t.fall = (uint32_t *)f, f += B;
    t.fout = (uint32_t *)f, f += B;
    t.gbuf = f, f += B * r->dim;
    t.dtmp = f, f += B * r->max_group;
    t.ftmp = f;
    return t;
}

/* The ROUTER_PROBE lowest of v[0..n) into top (ascending); n >= PROBE. */
static void lowest(const float *v, uint32_t n, uint32_t *top)
{
    float val[ROUTER_PROBE];
    for (int p = 0; p < ROUTER_PROBE; p++) {
        val[p] = INFINITY;
        top[p] = 0;
    }
    /* The worst kept value in a register: most entries fail this test. */
    float worst = INFINITY;
    for (uint32_t j = 0; j < n; j++) {
        float x = v[j];
        if (!(x < worst)) continue;
        int at = ROUTER_PROBE - 1;
        while (at > 0 && x < val[at - 1]) {
            val[at] = val[at - 1];
            top[at] = top[at - 1];
            at--;
        }
        val[at] = x;
        top[at] = j;
        worst = val[ROUTER_PROBE - 1];
    }
}

/* Group scores, each row's best groups, and the rows of each group. */
static void rank_groups(const npvdb_router *r, const float *x, size_t m,
                        route_tmp *t)
{
    uint32_t G = r->n_groups;
    dots_block(x, m, r->gcent, G, r->dim, -2.0f, t->gsc);
    memset(t->cnt, 0, (G + 1) * sizeof *t->cnt);
    for (size_t i = 0; i < m; i++) {
        float *s = t->gsc + i * G;
        for (uint32_t g = 0; g < G; g++)
            s[g] += r->gnorms[g];
        uint32_t *top = t->top + i * ROUTER_PROBE;
        lowest(s, G, top);
        t->g1[i] = s[top[0]];
        t->best[i] = INFINITY;
        for (int p = 0; p < ROUTER_PROBE; p++)
            t->cnt[top[p] + 1]++;
    }
    for (uint32_t g = 0; g < G; g++) {
        t->cnt[g + 1] += t->cnt[g];
        t->cur[g] = t->cnt[g];
    }
    for (size_t i = 0; i < m; i++)
        for (int p = 0; p < ROUTER_PROBE; p++)
            t->list[t->cur[t->top[i * ROUTER_PROBE + p]]++] = (uint32_t)i;
}

/* Exact scores of the rows probing group g against its centroids. */
static void scan_group(const npvdb_router *r, const float *x, uint32_t g,
                       const uint32_t *rows, uint32_t k, route_tmp *t)
{
    uint32_t lo = r->goff[g], size = r->goff[g + 1] - lo, dim = r->dim;
    if (!size) return;
    for (uint32_t i = 0; i < k; i++)
        memcpy(t->gbuf + (size_t)i * dim, x + (size_t)rows[i] * dim,
               dim * sizeof(float));
    dots_block(t->gbuf, k, r->mcent + (size_t)lo * dim, size, dim, -2.0f,
               t->dtmp);
    for (uint32_t i = 0; i < k; i++) {
        const float *d = t->dtmp + (size_t)i * size;
        uint32_t j = argmin_row(d, r->mnorms + lo, size);
        float s = d[j] + r->mnorms[lo + j];
        if (s < t->best[rows[i]]) {
            t->best[rows[i]] = s;
            t->bidx[rows[i]] = r->member[lo + j];
        }
    }
}

/* Rows whose found centroid is not clearly nearer than their best group
 * centre are assigned exactly (see the top of this file). */
static uint32_t fallback(const npvdb_router *r, const float *x, size_t m,
                         const float *cent, const float *cnorms, int use_l2,
                         uint32_t *out, route_tmp *t)
{
    uint32_t nf = 0, dim = r->dim;
    for (size_t i = 0; i < m; i++) {
        float found = t->xn[i] + t->best[i], group = t->xn[i] + t->g1[i];
        if (found <= ROUTER_KEEP * group) {
            out[i] = t->bidx[i];
            continue;
        }
        memcpy(t->gbuf + (size_t)nf * dim, x + i * dim, dim * sizeof(float));
        t->fall[nf++] = (uint32_t)i;
    }
    for (uint32_t lo = 0; lo < nf; lo += FALLBACK_CHUNK) {
        uint32_t k = nf - lo < FALLBACK_CHUNK ? nf - lo : FALLBACK_CHUNK;
        assign_nearest(t->gbuf + (size_t)lo * dim, k, cent, cnorms, r->nc, dim,
                       use_l2, t->fout + lo, t->ftmp);
    }
    for (uint32_t i = 0; i < nf; i++)
        out[t->fall[i]] = t->fout[i];
    return nf;
}

size_t router_assign(const npvdb_router *r, const float *x, const float *xn,
                     size_t n, const float *cent, const float *cnorms,
                     int use_l2, uint32_t *out, float *scratch)
{
    size_t exact = 0;
    route_tmp t = carve(r, scratch);
    for (size_t b = 0; b < n; b += ROUTER_BLOCK) {
        size_t m = n - b < ROUTER_BLOCK ? n - b : ROUTER_BLOCK;
        const float *xb = x + b * r->dim;
        t.xn = xn + b;
        rank_groups(r, xb, m, &t);
        for (uint32_t g = 0; g < r->n_groups; g++)
            scan_group(r, xb, g, t.list + t.cnt[g], t.cnt[g + 1] - t.cnt[g],
                       &t);
        exact += fallback(r, xb, m, cent, cnorms, use_l2, out + b, &t);
    }
    return exact;
}
