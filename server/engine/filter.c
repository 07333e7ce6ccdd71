/*
 * filter.c -- filters compiled against one collection and evaluated per
 * row, and npvdb_count.
 *
 * Compiling resolves every field name to the collection's field id once per
 * call (fields.c), sorts integer match values for a binary search, and
 * folds bool values into a mask, so filter_pass on a row compares integers
 * and at most the bytes of string values. A condition on a name no stored
 * payload has compiles to "false" and never looks at the row.
 */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

#define NO_ID UINT32_MAX

typedef struct cstr {
    const char *s; /* borrowed from the caller's filter */
    uint32_t len;
} cstr;

typedef struct ccond {
    npvdb_cond_kind kind;
    uint32_t fid;
    int64_t *ints; /* sorted */
    uint32_t n_ints, n_strs;
    cstr *strs;
    unsigned bools; /* bit b set: bool value b matches */
    int has_lo, lo_inc, has_hi, hi_inc;
    double lo, hi;
    cfilter *sub;
} ccond;

struct cfilter {
    ccond *must, *should, *must_not;
    uint32_t n_must, n_should, n_must_not;
};

/* ---- compiling ---- */

static void conds_free(ccond *c, uint32_t n)
{
    for (uint32_t i = 0; c && i < n; i++) {
        free(c[i].ints);
        free(c[i].strs);
        filter_free(c[i].sub);
    }
    free(c);
}

void filter_free(cfilter *f)
{
    if (!f) return;
    conds_free(f->must, f->n_must);
    conds_free(f->should, f->n_should);
    conds_free(f->must_not, f->n_must_not);
    free(f);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int compile_match(ccond *o, const npvdb_cond *c)
{
    uint32_t ni = 0, ns = 0;
    for (uint32_t j = 0; j < c->n_values; j++) {
        ni += c->values[j].type == NPVDB_VALUE_INT;
        ns += c->values[j].type == NPVDB_VALUE_STRING;
    }
    o->ints = ni ? malloc(ni * sizeof *o->ints) : NULL;
    o->strs = ns ? malloc(ns * sizeof *o->strs) : NULL;
    if ((ni && !o->ints) || (ns && !o->strs)) return -1;
    for (uint32_t j = 0; j < c->n_values; j++) {
        const npvdb_match_value *v = &c->values[j];
        if (v->type == NPVDB_VALUE_INT)
            o->ints[o->n_ints++] = v->i;
        else if (v->type == NPVDB_VALUE_STRING)
            o->strs[o->n_strs++] = (cstr){v->s, v->s_len};
        else if (v->type == NPVDB_VALUE_BOOL)
            o->bools |= 1u << (v->b ? 1 : 0);
    }
    if (o->n_ints) qsort(o->ints, o->n_ints, sizeof *o->ints, cmp_i64);
    return 0;
}

static int compile_list(const npvdb_collection *c, const npvdb_cond *in,
                        uint32_t n, ccond **out);

static cfilter *compile(const npvdb_collection *c, const npvdb_filter *f)
{
    cfilter *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->n_must = f->n_must;
    o->n_should = f->n_should;
    o->n_must_not = f->n_must_not;
    if (compile_list(c, f->must, f->n_must, &o->must) ||
        compile_list(c, f->should, f->n_should, &o->should) ||
        compile_list(c, f->must_not, f->n_must_not, &o->must_not)) {
        filter_free(o);
        return NULL;
    }
    return o;
}

static int compile_list(const npvdb_collection *c, const npvdb_cond *in,
                        uint32_t n, ccond **out)
{
    *out = NULL;
    if (!n) return 0;
    ccond *o = calloc(n, sizeof *o);
    if (!o) return -1;
    *out = o;
    for (uint32_t i = 0; i < n; i++) {
        const npvdb_cond *ci = &in[i];
        o[i].kind = ci->kind;
        if (ci->kind == NPVDB_COND_FILTER) {
            if (!(o[i].sub = compile(c, ci->sub))) return -1;
            continue;
        }
        o[i].fid = fieldmap_find(&c->fields, ci->field, ci->field_len);
        if (ci->kind == NPVDB_COND_MATCH && compile_match(&o[i], ci)) return -1;
        o[i].has_lo = ci->has_lower;
        o[i].lo_inc = ci->lower_inclusive;
        o[i].lo = ci->lower;
        o[i].has_hi = ci->has_upper;
        o[i].hi_inc = ci->upper_inclusive;
        o[i].hi = ci->upper;
    }
    return 0;
}

static int filter_empty(const npvdb_filter *f)
{
    return !f || (!f->n_must && !f->n_should && !f->n_must_not);
}

npvdb_code filter_compile(const npvdb_collection *c, const npvdb_filter *f,
                          cfilter **out, npvdb_error *err)
{
    *out = NULL;
    if (filter_empty(f)) return NPVDB_OK;
    *out = compile(c, f);
    if (!*out)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory compiling a filter");
    return NPVDB_OK;
}

/* ---- evaluating ---- */

static const npvdb_pslot *find_slot(const npvdb_pstore *p, uint32_t fid)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (p->slot[i].fid == fid) return &p->slot[i];
    return NULL;
}

static int has_int(const ccond *c, int64_t v)
{
    uint32_t lo = 0, hi = c->n_ints;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (c->ints[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_ints && c->ints[lo] == v;
}

static int has_str(const ccond *c, const uint8_t *v)
{
    uint32_t len = rd_u32(v);
    for (uint32_t j = 0; j < c->n_strs; j++)
        if (c->strs[j].len == len && !memcmp(c->strs[j].s, v + 4, len))
            return 1;
    return 0;
}

static int match(const ccond *c, const npvdb_pslot *sl, const uint8_t *v)
{
    switch (sl->type) {
    case NPVDB_VALUE_INT:
        return c->n_ints && has_int(c, (int64_t)rd_u64(v));
    case NPVDB_VALUE_STRING:
        return c->n_strs && has_str(c, v);
    case NPVDB_VALUE_BOOL:
        return (c->bools >> v[0]) & 1;
    case NPVDB_VALUE_STRINGS: {
        if (!c->n_strs) return 0;
        uint32_t cnt = rd_u16(v);
        const uint8_t *it = v + 2;
        for (uint32_t j = 0; j < cnt; j++, it += 4 + rd_u32(it))
            if (has_str(c, it)) return 1;
        return 0;
    }
    }
    return 0; /* a double never equals a match value (wrong type) */
}

/* -1, 0, 1 as v <, ==, > b, exactly (no rounding of v to a double). */
static int cmp_int_double(int64_t v, double b)
{
    if (b >= 9223372036854775808.0) return -1;
    if (b < -9223372036854775808.0) return 1;
    double fl = floor(b);
    int64_t fi = (int64_t)fl;
    if (v != fi) return v < fi ? -1 : 1;
    return fl == b ? 0 : -1;
}

static int in_range(const ccond *c, const npvdb_pslot *sl, const uint8_t *v)
{
    int lo, hi; /* sign of value - bound */
    if (sl->type == NPVDB_VALUE_INT) {
        int64_t x = (int64_t)rd_u64(v);
        lo = c->has_lo ? cmp_int_double(x, c->lo) : 1;
        hi = c->has_hi ? cmp_int_double(x, c->hi) : -1;
    } else if (sl->type == NPVDB_VALUE_DOUBLE) {
        uint64_t bits = rd_u64(v);
        double x;
        memcpy(&x, &bits, sizeof x);
        lo = c->has_lo ? (x > c->lo) - (x < c->lo) : 1;
        hi = c->has_hi ? (x > c->hi) - (x < c->hi) : -1;
    } else {
        return 0;
    }
    return (lo > 0 || (lo == 0 && c->lo_inc)) &&
           (hi < 0 || (hi == 0 && c->hi_inc));
}

static int cond_holds(const ccond *c, const npvdb_pstore *p)
{
    if (c->kind == NPVDB_COND_FILTER) return filter_pass(c->sub, p);
    if (c->fid == NO_ID || !p) return 0;
    const npvdb_pslot *sl = find_slot(p, c->fid);
    if (!sl) return 0;
    const uint8_t *v = pstore_blob(p) + sl->off;
    switch (c->kind) {
    case NPVDB_COND_HAS_FIELD:
        return 1;
    case NPVDB_COND_MATCH:
        return match(c, sl, v);
    case NPVDB_COND_RANGE:
        return in_range(c, sl, v);
    default:
        return 0;
    }
}

bool filter_pass(const cfilter *f, const npvdb_pstore *p)
{
    if (!f) return true;
    for (uint32_t i = 0; i < f->n_must; i++)
        if (!cond_holds(&f->must[i], p)) return false;
    for (uint32_t i = 0; i < f->n_must_not; i++)
        if (cond_holds(&f->must_not[i], p)) return false;
    if (!f->n_should) return true;
    for (uint32_t i = 0; i < f->n_should; i++)
        if (cond_holds(&f->should[i], p)) return true;
    return false;
}

size_t filter_rows(const cfilter *f, const npvdb_shard *sh, size_t r0,
                   size_t r1, uint32_t *out)
{
    size_t n = 0;
    for (size_t r = r0; r < r1; r++) {
        /* The payloads are scattered on the heap: ask for the next ones
         * early, the evaluation is mostly waiting for memory. */
        if (r + 8 < r1 && sh->pay[r + 8]) __builtin_prefetch(sh->pay[r + 8]);
        if (filter_pass(f, sh->pay[r])) out[n++] = (uint32_t)r;
    }
    return n;
}

/* ---- count ---- */

typedef struct count_job {
    const npvdb_collection *c;
    const cfilter *f;
    uint32_t n_tasks;
    uint64_t *per_task;
} count_job;

static void count_task(void *ctx, uint32_t t)
{
    count_job *j = ctx;
    uint64_t n = 0;
    for (uint32_t s = t; s < j->c->n_shards; s += j->n_tasks) {
        const npvdb_shard *sh = &j->c->shards[s];
        for (size_t r = 0; r < sh->n; r++) {
            if (r + 8 < sh->n && sh->pay[r + 8])
                __builtin_prefetch(sh->pay[r + 8]);
            n += filter_pass(j->f, sh->pay[r]);
        }
    }
    j->per_task[t] = n;
}

/* Evaluations of a large collection are shared out over the workers
 * (each its shards); a small one is counted inline. */
#define COUNT_PARALLEL_MIN 65536

static npvdb_code count_locked(npvdb_collection *c, const cfilter *f,
                               uint64_t *out, npvdb_error *err)
{
    uint64_t one;
    count_job j = {.c = c, .f = f, .n_tasks = 1, .per_task = &one};
    if (c->n_vectors >= COUNT_PARALLEL_MIN && c->n_shards > 1) {
        j.n_tasks = pool_size(c->pool);
        j.per_task = calloc(j.n_tasks, sizeof *j.per_task);
        if (!j.per_task)
            return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory counting");
    }
    /* A failed pool_run ran nothing: count inline then. */
    if (j.n_tasks == 1 || pool_run(c->pool, j.n_tasks, count_task, &j)) {
        j.n_tasks = 1;
        count_task(&j, 0);
    }
    *out = 0;
    for (uint32_t t = 0; t < j.n_tasks; t++)
        *out += j.per_task[t];
    if (j.per_task != &one) free(j.per_task);
    return NPVDB_OK;
}

npvdb_code npvdb_count(npvdb_collection *c, const npvdb_filter *f,
                       uint64_t *out, npvdb_error *err)
{
    *out = 0;
    npvdb_code rc = npvdb_filter_check(f, err);
    if (rc) return rc;
    cfilter *cf = NULL;
    pthread_rwlock_rdlock(&c->rw);
    rc = filter_compile(c, f, &cf, err);
    if (rc == NPVDB_OK && !cf) *out = c->n_vectors;
    if (rc == NPVDB_OK && cf) rc = count_locked(c, cf, out, err);
    pthread_rwlock_unlock(&c->rw);
    filter_free(cf);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}
