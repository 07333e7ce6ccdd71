/*
 * rebalance.c -- the partition follows the data: shards split when they
 * grow past a bound and merge when deletes leave them far below it, online,
 * without re-training (the SPFresh / LIRE recipe, SOSP 2023).
 *
 * Target. A collection of n vectors should have about T(n) = 4 sqrt(n)
 * shards, as a training would choose, or the n_shards it was created with
 * while that is more. A shard splits when it holds more than SPLIT_FACTOR
 * times the target mean n / T(n) (and at least 2 x train_per_shard, so that
 * small collections keep shards worth a probe); one that deletes leave under a
 * third of the mean merges.
 *
 * Split. A 2-means on the shard's rows (seeded by its principal direction,
 * see split_centroids) gives two centroids: the first takes
 * the shard's slot, the second becomes shard n_shards. Then only the
 * neighbourhood is reassigned: the shard's rows go to the nearest of the two
 * new centroids and its SPLIT_NEIGHBOURS nearest centroids, and a
 * neighbour's row moves only if one of the two new centroids is nearer than
 * its own (a row was at its nearest centroid before; only those two
 * changed). Rows farther away than the neighbourhood keep their shard: the
 * documented tolerance, like the router's (router.c).
 *
 * Merge. The shard's rows go to the nearest of its neighbours, and the last
 * shard moves into its slot (shard numbers stay dense).
 *
 * Locks. Everything is computed under write_mu (writers excluded, searches
 * running on the old shards): the 2-means, the new row assignment, copies
 * of the rebuilt shards. The exclusive lock is held only to swap the
 * rebuilt shard structs in and tell their rows' entries where they are
 * (the rows of at most SPLIT_NEIGHBOURS + 2 shards). index_mu is tried,
 * not waited for: an export (snapshot) walking the shards postpones
 * rebalancing to a later write.
 *
 * Replay. The split and merge steps after the 2-means (apply_split,
 * apply_merge) depend only on the stored rows and the centroids given, so
 * a log that records each change (npvdb_reshard: the shard, and for a
 * split the two centroids) replays to the same shard for every row, in the
 * same order, without a k-means.
 */
#include "validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A shard splits past SPLIT_FACTOR times the target mean, into halves of
 * about SPLIT_FACTOR / 2 of it each, so shard sizes range about
 * [0.8, 1.6] x the mean and the shard count stays near the target. At 2,
 * shards averaged 1.6 times the target mean (measured: 2,527 shards at 1M
 * vectors where a training makes 4,000) and a probe scanned that much
 * more; at 1.4, 400k drifting vectors made 15% more shards than the
 * target. */
#define SPLIT_FACTOR 1.6
#define SPLIT_NEIGHBOURS 16
#define SPLIT_ITERS 10
/* Splits one write may run (a batch that piles into one shard splits it
 * again and again); more wait for the next write to that shard. Merges
 * are not bounded: after a mass delete, shards of a few rows each merge
 * cheaply, and leaving them would keep the probe cost of the old size. */
#define SPLITS_PER_WRITE 256
#define MERGES_PER_WRITE NPVDB_MAX_SHARDS

/* ---- bounds ---- */

static double target_shards(const npvdb_collection *c, size_t n)
{
    double t = 4.0 * sqrt((double)n);
    if (t < c->cfg.n_shards) t = c->cfg.n_shards;
    return t < 1 ? 1 : t;
}

static size_t split_bound(const npvdb_collection *c)
{
    double b =
        SPLIT_FACTOR * (double)c->n_vectors / target_shards(c, c->n_vectors);
    size_t floor_rows = 2 * (size_t)c->cfg.train_per_shard;
    return b < (double)floor_rows ? floor_rows : (size_t)b;
}

static size_t merge_bound(const npvdb_collection *c)
{
    return (size_t)((double)c->n_vectors / target_shards(c, c->n_vectors) /
                    3.0);
}

/* ---- the neighbourhood ---- */

/* The (up to) R centroids nearest centroid s (L2 between centroids, ties to
 * the lower index), excluding s, into nb; returns how many. */
static uint32_t neighbours(const npvdb_collection *c, uint32_t s, uint32_t R,
                           uint32_t *nb, float *score)
{
    uint32_t nc = c->n_shards, dim = c->cfg.dim, n = 0;
    float *d = score;
    dots_block(c->centroids + (size_t)s * dim, 1, c->centroids, nc, dim, -2.0f,
               d);
    float best[SPLIT_NEIGHBOURS];
    for (uint32_t j = 0; j < nc; j++) {
        if (j == s) continue;
        float v = d[j] + c->cnorms[j];
        if (n == R && v >= best[n - 1]) continue;
        uint32_t i = n < R ? n++ : n - 1; /* insertion into a sorted list */
        while (i > 0 && best[i - 1] > v) {
            best[i] = best[i - 1];
            nb[i] = nb[i - 1];
            i--;
        }
        best[i] = v;
        nb[i] = j;
    }
    return n;
}

/* ---- a candidate set of centroids for assigning some rows ---- */

typedef struct cands {
    uint32_t n;
    float *cent, *norms; /* n * dim, n */
} cands;

static void cands_set(cands *k, uint32_t i, const float *v, uint32_t dim)
{
    memcpy(k->cent + (size_t)i * dim, v, dim * sizeof(float));
    rows_sqnorms(v, 1, dim, &k->norms[i]);
}

/* Nearest candidate of each of the n rows. */
static int cands_assign(const npvdb_collection *c, const cands *k,
                        const float *rows, size_t n, uint32_t *out)
{
    float *tmp = malloc((size_t)ASSIGN_BLOCK * k->n * sizeof *tmp);
    if (!tmp) return -1;
    assign_nearest(rows, n, k->cent, k->norms, k->n, c->cfg.dim,
                   metric_uses_l2(c->cfg.metric), out, tmp);
    free(tmp);
    return 0;
}

/* ---- rebuilding the affected shards aside ---- */

/* One source shard's rows and where each goes (an index into the plan's
 * destinations). */
typedef struct src {
    const npvdb_shard *sh;
    uint32_t *dst;
} src;

/* A change of the partition, computed under write_mu: the sources are read,
 * the destinations built aside, and only apply_plan swaps them in. */
typedef struct plan_ {
    uint32_t n_src, n_dst;
    src s[SPLIT_NEIGHBOURS + 1];
    uint32_t slot[SPLIT_NEIGHBOURS + 2]; /* destination d's shard number */
    npvdb_shard built[SPLIT_NEIGHBOURS + 2];
    uint8_t mode[SPLIT_NEIGHBOURS + 2]; /* plan_mode */
    uint8_t own[SPLIT_NEIGHBOURS + 2];  /* SHRINK: its source */
} plan_;

/* What happens to a destination shard. A neighbour that only loses rows
 * (the common case: a few boundary rows go to the new centroids) is cut in
 * place under the exclusive lock instead of copied: rebuilding every
 * neighbour was two thirds of a split's time. */
enum plan_mode { PLAN_KEEP = 0, PLAN_SHRINK = 1, PLAN_BUILD = 2 };

static void plan_free(plan_ *p, bool built_too)
{
    for (uint32_t i = 0; i < p->n_src; i++)
        free(p->s[i].dst);
    for (uint32_t d = 0; built_too && d < p->n_dst; d++)
        shard_free(&p->built[d]);
}

/* Which destinations change, and how: one that keeps all its rows and gains
 * none stays (KEEP), one that gains none but loses some is cut in place
 * (SHRINK), any other is built aside (BUILD). A destination that is also
 * source i (slot match) keeps the rows whose dst is itself. */
static int plan_build(const npvdb_collection *c, plan_ *p)
{
    uint32_t dim = c->cfg.dim;
    size_t cnt[SPLIT_NEIGHBOURS + 2] = {0};
    for (uint32_t i = 0; i < p->n_src; i++)
        for (size_t r = 0; r < p->s[i].sh->n; r++)
            cnt[p->s[i].dst[r]]++;
    for (uint32_t d = 0; d < p->n_dst; d++) {
        const npvdb_shard *own =
            p->slot[d] < c->n_shards ? &c->shards[p->slot[d]] : NULL;
        p->mode[d] = PLAN_BUILD;
        for (uint32_t i = 0; own && i < p->n_src; i++) {
            if (p->s[i].sh != own) continue;
            size_t stay = 0;
            for (size_t r = 0; r < own->n; r++)
                stay += p->s[i].dst[r] == d;
            if (stay == cnt[d]) { /* nothing arrives */
                p->mode[d] = stay == own->n ? PLAN_KEEP : PLAN_SHRINK;
                p->own[d] = (uint8_t)i;
            }
        }
        if (p->mode[d] == PLAN_BUILD && cnt[d] &&
            shard_reserve(&p->built[d], cnt[d], dim))
            return -1;
    }
    /* Sources in order, rows in order: a replay builds the same shards. */
    for (uint32_t i = 0; i < p->n_src; i++) {
        const npvdb_shard *sh = p->s[i].sh;
        for (size_t r = 0; r < sh->n; r++) {
            uint32_t d = p->s[i].dst[r];
            if (p->mode[d] == PLAN_BUILD)
                shard_push(&p->built[d], dim, sh->entries[r],
                           sh->rows + r * dim, sh->sqnorms[r], sh->pay[r]);
        }
    }
    return 0;
}

static void relocate(npvdb_collection *c, uint32_t slot);

/* Under rw exclusively: the plan's destinations take their new rows. The
 * shard structs replaced go to old[d] (to free after the lock). A shard cut
 * in place loses its leaving rows from the last down, so each swap-remove
 * moves a row already kept; their entries are told by the BUILD shards
 * that copied them. */
static void plan_swap(npvdb_collection *c, const plan_ *p, npvdb_shard *old)
{
    for (uint32_t d = 0; d < p->n_dst; d++) {
        npvdb_shard *sh = &c->shards[p->slot[d]];
        if (p->mode[d] == PLAN_SHRINK) {
            const uint32_t *dst = p->s[p->own[d]].dst;
            for (size_t r = sh->n; r-- > 0;)
                if (dst[r] != d) shard_remove(sh, c->cfg.dim, r);
        } else if (p->mode[d] == PLAN_BUILD) {
            old[d] = *sh;
            *sh = p->built[d];
        }
    }
    for (uint32_t d = 0; d < p->n_dst; d++)
        if (p->mode[d] == PLAN_BUILD) relocate(c, p->slot[d]);
}

/* Tells the rows of shard slot where they are (under rw exclusively). */
static void relocate(npvdb_collection *c, uint32_t slot)
{
    npvdb_shard *sh = &c->shards[slot];
    for (size_t r = 0; r < sh->n; r++) {
        sh->entries[r]->shard = slot;
        sh->entries[r]->row = (uint32_t)r;
    }
}

/* ---- capacity of the shard and centroid arrays ---- */

typedef struct arrays {
    npvdb_shard *shards;
    float *cent, *cnorms;
    uint32_t cap;
} arrays;

/* New arrays with room for `need` shards when the current ones lack it
 * (doubling); a->cap 0 when none are needed. */
static int arrays_grow(const npvdb_collection *c, uint32_t need, arrays *a)
{
    memset(a, 0, sizeof *a);
    if (need <= c->shard_cap) return 0;
    uint32_t cap = c->shard_cap * 2 > need ? c->shard_cap * 2 : need;
    if (cap > NPVDB_MAX_SHARDS) cap = NPVDB_MAX_SHARDS;
    a->shards = calloc(cap, sizeof *a->shards);
    a->cent = malloc((size_t)cap * c->cfg.dim * sizeof *a->cent);
    a->cnorms = malloc(cap * sizeof *a->cnorms);
    if (!a->shards || !a->cent || !a->cnorms) {
        free(a->shards);
        free(a->cent);
        free(a->cnorms);
        return -1;
    }
    a->cap = cap;
    return 0;
}

/* Under rw exclusively: moves the collection onto a's arrays; a then holds
 * the old ones, to free after the lock. */
static void arrays_swap(npvdb_collection *c, arrays *a)
{
    if (!a->cap) return;
    uint32_t nc = c->n_shards, dim = c->cfg.dim;
    memcpy(a->shards, c->shards, nc * sizeof *a->shards);
    memcpy(a->cent, c->centroids, (size_t)nc * dim * sizeof *a->cent);
    memcpy(a->cnorms, c->cnorms, nc * sizeof *a->cnorms);
    npvdb_shard *os = c->shards;
    float *oc = c->centroids, *on = c->cnorms;
    c->shards = a->shards;
    c->centroids = a->cent;
    c->cnorms = a->cnorms;
    c->shard_cap = a->cap;
    a->shards = os;
    a->cent = oc;
    a->cnorms = on;
}

static void arrays_free(arrays *a)
{
    free(a->shards);
    free(a->cent);
    free(a->cnorms);
}

/* ---- the router follows (writers only, under write_mu) ----
 *
 * A split adds a centroid to the group of the one it split, a merge moves
 * the last centroid's group into the merged slot. The grouping is kept in
 * c->gid through a run of changes, and the router is rebuilt from it once,
 * before the next assignment needs it (router_refresh): rebuilding copies
 * every centroid, too much to do per change when a mass delete merges
 * thousands of shards. */

/* c->gid with room for `need` centroids, taken from the router when it is
 * fresh. -1 for no memory (the caller drops the router then). */
static int gid_track(npvdb_collection *c, uint32_t need)
{
    if (!c->router.n_groups && !c->router_stale) return 0;
    if (c->gid_cap < need) {
        uint32_t cap = need > 2 * c->gid_cap ? need : 2 * c->gid_cap;
        uint32_t *g = realloc(c->gid, cap * sizeof *g);
        if (!g) return -1;
        c->gid = g;
        c->gid_cap = cap;
    }
    if (!c->router_stale) router_groups(&c->router, c->gid);
    c->router_stale = true;
    return 0;
}

/* Without memory to track the grouping the router goes: inserts then
 * assign exactly, which is always right. */
static void router_drop(npvdb_collection *c)
{
    router_free(&c->router);
    c->router_stale = false;
}

void router_refresh(npvdb_collection *c)
{
    if (!c->router_stale) return;
    c->router_stale = false;
    npvdb_router r;
    memset(&r, 0, sizeof r);
    uint32_t G = c->router.n_groups, dim = c->cfg.dim;
    float *gcent = G ? malloc((size_t)G * dim * sizeof *gcent) : NULL;
    if (gcent && G <= c->n_shards) {
        memcpy(gcent, c->router.gcent, (size_t)G * dim * sizeof *gcent);
        router_from(&r, c->centroids, c->cnorms, c->n_shards, dim, gcent,
                    c->gid, G);
    }
    free(gcent);
    router_free(&c->router);
    c->router = r;
}

/* ---- split ---- */

/* Splits shard s: its centroid becomes ca, cb becomes shard n_shards, and
 * the neighbourhood is reassigned (see the top). Caller holds write_mu and
 * index_mu. Nothing changes on failure. */
static npvdb_code apply_split(npvdb_collection *c, uint32_t s, const float *ca,
                              const float *cb, npvdb_error *err)
{
    uint32_t nc = c->n_shards, dim = c->cfg.dim, nn = nc;
    if (!c->trained || s >= nc)
        return npvdb_set_error(err, NPVDB_EINVAL, "split of shard %u of %u", s,
                               nc);
    if (nc >= NPVDB_MAX_SHARDS)
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "a split would pass %d shards",
                               NPVDB_MAX_SHARDS);
    plan_ p;
    memset(&p, 0, sizeof p);
    uint32_t nb[SPLIT_NEIGHBOURS];
    float *score = malloc(nc * sizeof *score);
    cands k = {0};
    k.cent = malloc((size_t)(SPLIT_NEIGHBOURS + 2) * dim * sizeof *k.cent);
    k.norms = malloc((SPLIT_NEIGHBOURS + 2) * sizeof *k.norms);
    arrays a = {0};
    if (!score || !k.cent || !k.norms) goto oom;
    if (gid_track(c, nc + 1)) router_drop(c);
    uint32_t R = neighbours(c, s, SPLIT_NEIGHBOURS, nb, score);
    /* Destinations: 0 = s (ca), 1 = new (cb), 2.. = the neighbours. */
    p.n_dst = 2 + R;
    p.slot[0] = s;
    p.slot[1] = nn;
    k.n = 2 + R;
    cands_set(&k, 0, ca, dim);
    cands_set(&k, 1, cb, dim);
    for (uint32_t i = 0; i < R; i++) {
        p.slot[2 + i] = nb[i];
        cands_set(&k, 2 + i, c->centroids + (size_t)nb[i] * dim, dim);
    }
    /* Source 0: the split shard, over every candidate. */
    p.n_src = 1 + R;
    p.s[0].sh = &c->shards[s];
    p.s[0].dst = malloc((c->shards[s].n + 1) * sizeof(uint32_t));
    if (!p.s[0].dst ||
        cands_assign(c, &k, c->shards[s].rows, c->shards[s].n, p.s[0].dst))
        goto oom;
    /* Neighbour i: its own centroid first (ties stay), then ca, cb. */
    float tn[3], *tc = malloc((size_t)3 * dim * sizeof *tc);
    if (!tc) goto oom;
    cands three = {.n = 3, .cent = tc, .norms = tn};
    cands_set(&three, 1, ca, dim);
    cands_set(&three, 2, cb, dim);
    int bad = 0;
    for (uint32_t i = 0; i < R && !bad; i++) {
        const npvdb_shard *sh = &c->shards[nb[i]];
        p.s[1 + i].sh = sh;
        p.s[1 + i].dst = malloc((sh->n + 1) * sizeof(uint32_t));
        cands_set(&three, 0, c->centroids + (size_t)nb[i] * dim, dim);
        bad = !p.s[1 + i].dst ||
              cands_assign(c, &three, sh->rows, sh->n, p.s[1 + i].dst);
        for (size_t r = 0; !bad && r < sh->n; r++) {
            uint32_t d = p.s[1 + i].dst[r];
            p.s[1 + i].dst[r] = d == 0 ? 2 + i : d - 1;
        }
    }
    free(tc);
    if (bad || plan_build(c, &p) || arrays_grow(c, nc + 1, &a)) goto oom;
    if (c->router_stale) c->gid[nn] = c->gid[s];

    pthread_rwlock_wrlock(&c->rw);
    note_write(c);
    arrays_swap(c, &a);
    npvdb_shard old[SPLIT_NEIGHBOURS + 2];
    memset(old, 0, sizeof old);
    memset(&c->shards[nn], 0, sizeof c->shards[nn]);
    c->n_shards = nc + 1;
    plan_swap(c, &p, old);
    memcpy(c->centroids + (size_t)s * dim, ca, dim * sizeof(float));
    memcpy(c->centroids + (size_t)nn * dim, cb, dim * sizeof(float));
    c->cnorms[s] = k.norms[0];
    c->cnorms[nn] = k.norms[1];
    c->n_splits++;
    pthread_rwlock_unlock(&c->rw);

    for (uint32_t d = 0; d < p.n_dst; d++)
        shard_free(&old[d]); /* rows, norms, index arrays; payloads moved */
    arrays_free(&a);
    plan_free(&p, false);
    free(score);
    free(k.cent);
    free(k.norms);
    return NPVDB_OK;
oom:
    plan_free(&p, true);
    arrays_free(&a);
    free(score);
    free(k.cent);
    free(k.norms);
    return npvdb_set_error(err, NPVDB_ENOMEM,
                           "out of memory splitting shard %u", s);
}

/* ---- merge ---- */

/* Dissolves shard s into its neighbours and moves the last shard into its
 * slot. Caller holds write_mu and index_mu. Nothing changes on failure. */
static npvdb_code apply_merge(npvdb_collection *c, uint32_t s, npvdb_error *err)
{
    uint32_t nc = c->n_shards, dim = c->cfg.dim, last = nc - 1;
    if (!c->trained || s >= nc || nc < 2)
        return npvdb_set_error(err, NPVDB_EINVAL, "merge of shard %u of %u", s,
                               nc);
    plan_ p;
    memset(&p, 0, sizeof p);
    uint32_t nb[SPLIT_NEIGHBOURS];
    float *score = malloc(nc * sizeof *score);
    cands k = {0};
    k.cent = malloc((size_t)SPLIT_NEIGHBOURS * dim * sizeof *k.cent);
    k.norms = malloc(SPLIT_NEIGHBOURS * sizeof *k.norms);
    if (!score || !k.cent || !k.norms) goto oom;
    if (gid_track(c, nc)) router_drop(c);
    uint32_t R = neighbours(c, s, SPLIT_NEIGHBOURS, nb, score);
    k.n = R;
    p.n_dst = R;
    for (uint32_t i = 0; i < R; i++) {
        p.slot[i] = nb[i];
        cands_set(&k, i, c->centroids + (size_t)nb[i] * dim, dim);
    }
    /* Sources: each neighbour keeping its rows, then the merged shard (a
     * neighbour's own rows stay first). */
    p.n_src = R + 1;
    for (uint32_t i = 0; i <= R; i++) {
        const npvdb_shard *sh = &c->shards[i < R ? nb[i] : s];
        p.s[i].sh = sh;
        p.s[i].dst = malloc((sh->n + 1) * sizeof(uint32_t));
        if (!p.s[i].dst) goto oom;
        for (size_t r = 0; i < R && r < sh->n; r++)
            p.s[i].dst[r] = i;
    }
    if (cands_assign(c, &k, c->shards[s].rows, c->shards[s].n, p.s[R].dst) ||
        plan_build(c, &p))
        goto oom;

    pthread_rwlock_wrlock(&c->rw);
    note_write(c);
    npvdb_shard old[SPLIT_NEIGHBOURS + 1];
    memset(old, 0, sizeof old);
    plan_swap(c, &p, old);
    old[SPLIT_NEIGHBOURS] = c->shards[s]; /* its rows now live elsewhere */
    c->shards[s] = c->shards[last];
    memcpy(c->centroids + (size_t)s * dim, c->centroids + (size_t)last * dim,
           dim * sizeof(float));
    c->cnorms[s] = c->cnorms[last];
    memset(&c->shards[last], 0, sizeof c->shards[last]);
    c->n_shards = last;
    if (s != last) relocate(c, s);
    c->n_merges++;
    pthread_rwlock_unlock(&c->rw);

    for (uint32_t d = 0; d <= SPLIT_NEIGHBOURS; d++)
        shard_free(&old[d]);
    plan_free(&p, false);
    if (c->router_stale) c->gid[s] = c->gid[last];
    free(score);
    free(k.cent);
    free(k.norms);
    return NPVDB_OK;
oom:
    plan_free(&p, true);
    free(score);
    free(k.cent);
    free(k.norms);
    return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory merging shard %u",
                           s);
}

/* ---- the journal: what a log records (npvdb_reshard_take) ---- */

static int journal_reserve(npvdb_collection *c)
{
    if (!c->journal_on || c->jr_n < c->jr_cap) return 0;
    size_t cap = c->jr_cap ? 2 * c->jr_cap : 16;
    npvdb_reshard *j = realloc(c->jr, cap * sizeof *j);
    if (!j) return -1;
    c->jr = j;
    c->jr_cap = cap;
    return 0;
}

/* After journal_reserve: cannot fail (cent, 2 * dim floats or NULL, is
 * taken). */
static void journal_add(npvdb_collection *c, npvdb_reshard_kind kind,
                        uint32_t shard, float *cent, uint32_t n_before)
{
    if (!c->journal_on) {
        free(cent);
        return;
    }
    c->jr[c->jr_n++] = (npvdb_reshard){.kind = kind,
                                       .shard = shard,
                                       .dim = c->cfg.dim,
                                       .centroids = cent,
                                       .n_shards = n_before};
}

/* ---- deciding (live writes only; replay applies the journal) ---- */

/* ---- the two centroids of a split ----
 *
 * Lloyd's 2-means seeded by two random rows is at the mercy of outliers: a
 * dense cluster with one stray row splits 132/1 and the shard stays big.
 * So the seed is the principal direction instead: the rows are cut at the
 * median of their projection on it (power iteration on the covariance),
 * which halves any shard that is not all duplicates, and a few Lloyd steps
 * then move the cut to where the data is thinnest. */

#define POWER_ITERS 8

/* The top principal direction of the m rows around mean mu, into v. */
static void principal(const float *x, size_t m, uint32_t dim, const double *mu,
                      double *v, double *w)
{
    for (uint32_t d = 0; d < dim; d++) /* a fixed start: any non-degenerate */
        v[d] = x[d] - mu[d] + (d % 2 ? 1e-3 : -1e-3);
    for (int it = 0; it < POWER_ITERS; it++) {
        memset(w, 0, dim * sizeof *w);
        for (size_t r = 0; r < m; r++) {
            const float *xr = x + r * dim;
            double p = 0;
            for (uint32_t d = 0; d < dim; d++)
                p += (xr[d] - mu[d]) * v[d];
            for (uint32_t d = 0; d < dim; d++)
                w[d] += p * (xr[d] - mu[d]);
        }
        double norm = 0;
        for (uint32_t d = 0; d < dim; d++)
            norm += w[d] * w[d];
        if (norm == 0) return; /* all rows equal along v: keep it */
        norm = 1 / sqrt(norm);
        for (uint32_t d = 0; d < dim; d++)
            v[d] = w[d] * norm;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Means of the rows with side[r] == 0 and == 1 into cent (2 x dim); counts
 * into cnt. */
static void half_means(const float *x, size_t m, uint32_t dim,
                       const uint32_t *side, double *acc, float *cent,
                       size_t *cnt)
{
    memset(acc, 0, 2 * dim * sizeof *acc);
    cnt[0] = cnt[1] = 0;
    for (size_t r = 0; r < m; r++) {
        double *a = acc + (size_t)side[r] * dim;
        for (uint32_t d = 0; d < dim; d++)
            a[d] += x[r * dim + d];
        cnt[side[r]]++;
    }
    for (int h = 0; h < 2; h++)
        for (uint32_t d = 0; d < dim; d++)
            cent[(size_t)h * dim + d] =
                (float)(cnt[h] ? acc[(size_t)h * dim + d] / (double)cnt[h] : 0);
}

/* The split's two centroids (the first 2 x dim floats of the result,
 * caller frees) and how many rows each takes; NULL for no memory. */
static float *split_centroids(const npvdb_collection *c, const npvdb_shard *sh,
                              size_t *cnt)
{
    uint32_t dim = c->cfg.dim;
    size_t m = sh->n;
    const float *x = sh->rows;
    double *mu = calloc(4 * (size_t)dim, sizeof *mu);
    double *proj = malloc(m * sizeof *proj), *sorted = malloc(m * sizeof *proj);
    uint32_t *side = malloc(m * sizeof *side);
    float *cent = malloc(4 * (size_t)dim * sizeof *cent); /* and a spare */
    if (!mu || !proj || !sorted || !side || !cent) {
        free(cent);
        cent = NULL;
        goto out;
    }
    double *v = mu + dim, *w = mu + 2 * (size_t)dim;
    for (size_t r = 0; r < m; r++)
        for (uint32_t d = 0; d < dim; d++)
            mu[d] += x[r * dim + d];
    for (uint32_t d = 0; d < dim; d++)
        mu[d] /= (double)m;
    principal(x, m, dim, mu, v, w);
    for (size_t r = 0; r < m; r++) {
        double p = 0;
        for (uint32_t d = 0; d < dim; d++)
            p += (x[r * dim + d] - mu[d]) * v[d];
        proj[r] = sorted[r] = p;
    }
    qsort(sorted, m, sizeof *sorted, cmp_double);
    double median = sorted[m / 2];
    for (size_t r = 0; r < m; r++)
        side[r] = proj[r] >= median;
    cands k = {.n = 2, .cent = cent};
    float norms[2], *cut = cent + 2 * (size_t)dim; /* the median cut */
    size_t cut_cnt[2] = {0, 0};
    k.norms = norms;
    for (int it = 0; it < SPLIT_ITERS; it++) {
        half_means(x, m, dim, side, mu, cent, cnt);
        if (c->cfg.metric == NPVDB_METRIC_COSINE) rows_normalise(cent, 2, dim);
        if (it == 0) { /* the median cut, balanced by construction */
            memcpy(cut, cent, 2 * (size_t)dim * sizeof *cent);
            cut_cnt[0] = cnt[0];
            cut_cnt[1] = cnt[1];
        }
        if (!cnt[0] || !cnt[1] || it == SPLIT_ITERS - 1) break;
        rows_sqnorms(cent, 2, dim, norms);
        if (cands_assign(c, &k, x, m, side)) break; /* keep the last cut */
    }
    /* Lloyd's steps may walk to a few outliers beside one dense cluster:
     * then the median cut is the better split. */
    if (cnt[0] < m / 8 || cnt[1] < m / 8) {
        memcpy(cent, cut, 2 * (size_t)dim * sizeof *cent);
        cnt[0] = cut_cnt[0];
        cnt[1] = cut_cnt[1];
    }
out:
    free(mu);
    free(proj);
    free(sorted);
    free(side);
    return cent;
}

/* Splits shard s when both halves are worth it: 1 if split, 0 if not (held
 * until the shard doubles), -1 on failure. */
static int split_live(npvdb_collection *c, uint32_t s)
{
    npvdb_shard *sh = &c->shards[s];
    uint32_t dim = c->cfg.dim;
    npvdb_error e;
    size_t m = sh->n, cnt[2];
    if (journal_reserve(c)) return -1;
    float *cent = split_centroids(c, sh, cnt);
    if (!cent) return -1;
    /* Duplicates: a split would not shrink the shard. Try again when it
     * has doubled. */
    if (cnt[0] < m / 8 || cnt[1] < m / 8) {
        sh->split_hold = 2 * m;
        free(cent);
        return 0;
    }
    if (apply_split(c, s, cent, cent + dim, &e)) {
        free(cent);
        return -1;
    }
    journal_add(c, NPVDB_RESHARD_SPLIT, s, cent, c->n_shards - 1);
    return 1;
}

static bool rebalance_allowed(npvdb_collection *c)
{
    return c->rebalance && c->trained && !c->defer_train;
}

/* The first marked shard over the split bound, or UINT32_MAX. */
static uint32_t next_big(const npvdb_collection *c, const uint8_t *mark)
{
    size_t bound = split_bound(c);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        const npvdb_shard *sh = &c->shards[s];
        if (mark[s] && sh->n > bound && sh->n >= sh->split_hold) return s;
    }
    return UINT32_MAX;
}

void rebalance_splits(npvdb_collection *c, const uint32_t *touched, size_t n)
{
    if (!rebalance_allowed(c) || !n) return;
    if (pthread_mutex_trylock(&c->index_mu)) return; /* an export runs */
    if (c->check_all) { /* a fresh index: its big shards were not touched */
        touched = NULL;
        n = c->n_shards;
        c->check_all = false;
    }
    uint8_t *mark = calloc(NPVDB_MAX_SHARDS, 1);
    if (mark) {
        for (size_t i = 0; i < n; i++)
            if (!touched || touched[i] < c->n_shards)
                mark[touched ? touched[i] : i] = 1;
    }
    for (int done = 0;
         mark && done < SPLITS_PER_WRITE && c->n_shards < NPVDB_MAX_SHARDS;) {
        uint32_t s = next_big(c, mark), before = c->n_shards;
        if (s == UINT32_MAX) break;
        int r = split_live(c, s);
        if (r < 0) break; /* memory: a later write tries again */
        if (r == 0) {
            mark[s] = 0;
            continue;
        }
        mark[before] = 1; /* both halves may still be over the bound */
        done++;
    }
    free(mark);
    pthread_mutex_unlock(&c->index_mu);
}

void rebalance_merges(npvdb_collection *c, const uint32_t *touched, size_t n)
{
    if (!rebalance_allowed(c) || !n || c->n_shards < 2) return;
    if (pthread_mutex_trylock(&c->index_mu)) return;
    uint8_t *mark = calloc(NPVDB_MAX_SHARDS, 1);
    if (!mark) goto out;
    for (size_t i = 0; i < n; i++)
        if (touched[i] < c->n_shards) mark[touched[i]] = 1;
    size_t bound = merge_bound(c);
    npvdb_error e;
    for (int done = 0; done < MERGES_PER_WRITE && c->n_shards > 1;) {
        uint32_t s = 0, nc = c->n_shards;
        while (s < nc && !(mark[s] && c->shards[s].n < bound))
            s++;
        if (s == nc) break;
        if (journal_reserve(c) || apply_merge(c, s, &e)) break;
        journal_add(c, NPVDB_RESHARD_MERGE, s, NULL, nc);
        mark[s] = mark[nc - 1]; /* the last shard moved into s */
        mark[nc - 1] = 0;
        done++;
    }
out:
    free(mark);
    pthread_mutex_unlock(&c->index_mu);
}

/* ---- public ---- */

void npvdb_set_rebalance(npvdb_collection *c, int on)
{
    pthread_mutex_lock(&c->write_mu);
    c->rebalance = on != 0;
    pthread_mutex_unlock(&c->write_mu);
}

void npvdb_journal(npvdb_collection *c, int on)
{
    pthread_mutex_lock(&c->write_mu);
    c->journal_on = on != 0;
    pthread_mutex_unlock(&c->write_mu);
}

void npvdb_reshards_free(npvdb_reshard *ops, size_t n)
{
    for (size_t i = 0; ops && i < n; i++)
        free(ops[i].centroids);
    free(ops);
}

void npvdb_reshard_take(npvdb_collection *c, npvdb_reshard **ops, size_t *n)
{
    pthread_mutex_lock(&c->write_mu);
    *ops = c->jr_n ? c->jr : NULL;
    *n = c->jr_n;
    if (c->jr_n) {
        c->jr = NULL;
        c->jr_n = c->jr_cap = 0;
    }
    pthread_mutex_unlock(&c->write_mu);
}

npvdb_code npvdb_reshard_apply(npvdb_collection *c, const npvdb_reshard *op,
                               npvdb_error *err)
{
    if (op->kind == NPVDB_RESHARD_SPLIT) {
        if (op->dim != c->cfg.dim || !op->centroids)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "split with centroids of dim %u for a "
                                   "collection of dim %u",
                                   op->dim, c->cfg.dim);
        npvdb_code rc = check_rows(op->centroids, 2, op->dim, "centroid", err);
        if (rc) return rc;
    } else if (op->kind != NPVDB_RESHARD_MERGE) {
        return npvdb_set_error(err, NPVDB_EINVAL, "unknown reshard kind %d",
                               (int)op->kind);
    }
    pthread_mutex_lock(&c->write_mu);
    pthread_mutex_lock(&c->index_mu);
    npvdb_code rc;
    if (op->n_shards && op->n_shards != c->n_shards)
        rc = npvdb_set_error(err, NPVDB_ESTATE,
                             "a change made at %u shards does not fit a "
                             "collection of %u",
                             op->n_shards, c->n_shards);
    else if (op->kind == NPVDB_RESHARD_SPLIT)
        rc = apply_split(c, op->shard, op->centroids, op->centroids + op->dim,
                         err);
    else
        rc = apply_merge(c, op->shard, err);
    pthread_mutex_unlock(&c->index_mu);
    pthread_mutex_unlock(&c->write_mu);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
