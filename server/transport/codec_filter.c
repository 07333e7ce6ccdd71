/*
 * codec_filter.c -- the wire Filter -> an owned npvdb_filter tree, the one
 * converter for Search, GetClosest, Count and Scroll.
 *
 * The bytes are walked first (prescan): nesting depth, the number of
 * conditions and of match values are bounded there, before protobuf-c
 * allocates anything or recurses, since the wire is hostile. Only then is
 * the Filter unpacked and converted; every malformed condition is an
 * NPVDB_EINVAL naming where it is ("filter.must[1].should[0]: ...").
 */
#include "codec.h"
#include "codec_wire.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past one condition's list limit there is a total: a hostile filter of
 * 4096 lists of 1024 values would otherwise cost gigabytes. */
#define MAX_FILTER_VALUES 65536

enum { F_MUST = 1, F_SHOULD = 2, F_MUST_NOT = 3 };
enum { C_KEY = 1, C_MATCH = 2, C_RANGE = 3, C_HAS_FIELD = 4, C_FILTER = 5 };
enum {
    M_KEYWORD = 1,
    M_INTEGER = 2,
    M_BOOLEAN = 3,
    M_KEYWORDS = 4,
    M_INTEGERS = 5
};

typedef struct counts {
    size_t filters, conds, values;
} counts;

static npvdb_code malformed(npvdb_error *err)
{
    return npvdb_set_error(err, NPVDB_EINVAL, "filter: malformed message");
}

/* A string of the filter: protobuf-c would cut it at a NUL. */
static npvdb_code check_string(const wire_item *it, npvdb_error *err)
{
    if (it->wt != WT_LEN) return malformed(err);
    if (memchr(it->p, 0, it->len))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "filter: a string contains a NUL byte");
    return NPVDB_OK;
}

static npvdb_code add_values(counts *c, size_t n, npvdb_error *err)
{
    if (n > NPVDB_MAX_LIST)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "filter: a match list of %zu values is over "
                               "%d",
                               n, NPVDB_MAX_LIST);
    c->values += n;
    if (c->values > MAX_FILTER_VALUES)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "filter: more than %d match values in all",
                               MAX_FILTER_VALUES);
    return NPVDB_OK;
}

/* Counts the items of a StringList (strings) or IntList (packed or not). */
static npvdb_code scan_list(const uint8_t *p, size_t len, int ints, counts *c,
                            npvdb_error *err)
{
    size_t pos = 0, n = 0;
    wire_item it;
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return malformed(err);
        if (it.field != 1) continue;
        if (!ints) {
            npvdb_code rc = check_string(&it, err);
            if (rc != NPVDB_OK) return rc;
            n++;
        } else if (it.wt == WT_VARINT) {
            n++;
        } else if (it.wt == WT_LEN) {
            size_t q = 0;
            uint64_t v;
            while (q < it.len) {
                if (read_varint(it.p, it.len, &q, &v)) return malformed(err);
                n++;
            }
        } else {
            return malformed(err);
        }
    }
    return add_values(c, n, err);
}

static npvdb_code scan_match(const uint8_t *p, size_t len, counts *c,
                             npvdb_error *err)
{
    size_t pos = 0;
    wire_item it;
    npvdb_code rc = NPVDB_OK;
    while (rc == NPVDB_OK && pos < len) {
        if (wire_next(p, len, &pos, &it)) return malformed(err);
        switch (it.field) {
        case M_KEYWORD:
            rc = check_string(&it, err);
            if (rc == NPVDB_OK) rc = add_values(c, 1, err);
            break;
        case M_INTEGER:
        case M_BOOLEAN:
            if (it.wt != WT_VARINT) return malformed(err);
            rc = add_values(c, 1, err);
            break;
        case M_KEYWORDS:
        case M_INTEGERS:
            if (it.wt != WT_LEN) return malformed(err);
            rc = scan_list(it.p, it.len, it.field == M_INTEGERS, c, err);
            break;
        }
    }
    return rc;
}

static npvdb_code scan_filter(const uint8_t *p, size_t len, unsigned depth,
                              counts *c, npvdb_error *err);

static npvdb_code scan_condition(const uint8_t *p, size_t len, unsigned depth,
                                 counts *c, npvdb_error *err)
{
    size_t pos = 0;
    wire_item it;
    npvdb_code rc = NPVDB_OK;
    while (rc == NPVDB_OK && pos < len) {
        if (wire_next(p, len, &pos, &it)) return malformed(err);
        if (it.field < C_KEY || it.field > C_FILTER) continue;
        if (it.wt != WT_LEN) return malformed(err);
        if (it.field == C_KEY || it.field == C_HAS_FIELD)
            rc = check_string(&it, err);
        else if (it.field == C_MATCH)
            rc = scan_match(it.p, it.len, c, err);
        else if (it.field == C_FILTER)
            rc = scan_filter(it.p, it.len, depth + 1, c, err);
        /* C_RANGE holds four doubles: nothing to bound. */
    }
    return rc;
}

static npvdb_code scan_filter(const uint8_t *p, size_t len, unsigned depth,
                              counts *c, npvdb_error *err)
{
    if (depth > NPVDB_MAX_FILTER_DEPTH)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "filter: nested deeper than %d levels",
                               NPVDB_MAX_FILTER_DEPTH);
    c->filters++;
    size_t pos = 0;
    wire_item it;
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return malformed(err);
        if (it.field < F_MUST || it.field > F_MUST_NOT) continue;
        if (it.wt != WT_LEN) return malformed(err);
        if (++c->conds > NPVDB_MAX_FILTER_CONDS)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "filter: more than %d conditions",
                                   NPVDB_MAX_FILTER_CONDS);
        npvdb_code rc = scan_condition(it.p, it.len, depth, c, err);
        if (rc != NPVDB_OK) return rc;
    }
    return NPVDB_OK;
}

/* ---- conversion ---- */

/* The tree's memory, sized by the prescan (upper bounds: protobuf-c may
 * merge repeated occurrences into fewer). */
typedef struct arena {
    npvdb_filter *filters;
    npvdb_cond *conds;
    npvdb_match_value *values;
    size_t n_filters, n_conds, n_values;
    counts cap;
} arena;

static npvdb_code convert_filter(const Npvdb__V1__Filter *m, const char *path,
                                 arena *a, const npvdb_filter **out,
                                 npvdb_error *err);

static npvdb_code overflow(npvdb_error *err)
{
    return npvdb_set_error(err, NPVDB_EINTERNAL, "filter: prescan undercount");
}

static npvdb_code match_values(const Npvdb__V1__Match *m, const char *path,
                               arena *a, npvdb_cond *c, npvdb_error *err)
{
    size_t n = 1;
    if (m->kind_case == NPVDB__V1__MATCH__KIND_KEYWORDS)
        n = m->keywords ? m->keywords->n_values : 0;
    if (m->kind_case == NPVDB__V1__MATCH__KIND_INTEGERS)
        n = m->integers ? m->integers->n_values : 0;
    if (m->kind_case == NPVDB__V1__MATCH__KIND__NOT_SET)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: match has nothing set",
                               path);
    if (n == 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: match.%s is empty", path,
                               m->kind_case == NPVDB__V1__MATCH__KIND_KEYWORDS
                                   ? "keywords"
                                   : "integers");
    if (n > NPVDB_MAX_LIST)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: match has %zu values, more than %d", path,
                               n, NPVDB_MAX_LIST);
    if (a->n_values + n > a->cap.values) return overflow(err);
    npvdb_match_value *v = a->values + a->n_values;
    a->n_values += n;
    memset(v, 0, n * sizeof *v);
    for (size_t j = 0; j < n; j++) {
        switch (m->kind_case) {
        case NPVDB__V1__MATCH__KIND_KEYWORD:
        case NPVDB__V1__MATCH__KIND_KEYWORDS: {
            const char *s = m->kind_case == NPVDB__V1__MATCH__KIND_KEYWORD
                                ? m->keyword
                                : m->keywords->values[j];
            v[j].type = NPVDB_VALUE_STRING;
            v[j].s = s;
            v[j].s_len = (uint32_t)strlen(s);
            break;
        }
        case NPVDB__V1__MATCH__KIND_INTEGER:
            v[j].type = NPVDB_VALUE_INT;
            v[j].i = m->integer;
            break;
        case NPVDB__V1__MATCH__KIND_INTEGERS:
            v[j].type = NPVDB_VALUE_INT;
            v[j].i = m->integers->values[j];
            break;
        case NPVDB__V1__MATCH__KIND_BOOLEAN:
            v[j].type = NPVDB_VALUE_BOOL;
            v[j].b = m->boolean != 0;
            break;
        default:
            break;
        }
    }
    c->values = v;
    c->n_values = (uint32_t)n;
    return NPVDB_OK;
}

static npvdb_code range_bounds(const Npvdb__V1__Range *r, const char *path,
                               npvdb_cond *c, npvdb_error *err)
{
    if (r->lower_case == NPVDB__V1__RANGE__LOWER__NOT_SET &&
        r->upper_case == NPVDB__V1__RANGE__UPPER__NOT_SET)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: range has no bound",
                               path);
    if (r->lower_case != NPVDB__V1__RANGE__LOWER__NOT_SET) {
        int incl = r->lower_case == NPVDB__V1__RANGE__LOWER_GTE;
        double v = incl ? r->gte : r->gt;
        if (!isfinite(v))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s: range.%s is not finite", path,
                                   incl ? "gte" : "gt");
        c->has_lower = 1;
        c->lower_inclusive = incl;
        c->lower = v;
    }
    if (r->upper_case != NPVDB__V1__RANGE__UPPER__NOT_SET) {
        int incl = r->upper_case == NPVDB__V1__RANGE__UPPER_LTE;
        double v = incl ? r->lte : r->lt;
        if (!isfinite(v))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s: range.%s is not finite", path,
                                   incl ? "lte" : "lt");
        c->has_upper = 1;
        c->upper_inclusive = incl;
        c->upper = v;
    }
    return NPVDB_OK;
}

static npvdb_code need_key(const Npvdb__V1__Condition *m, const char *what,
                           const char *path, npvdb_cond *c, npvdb_error *err)
{
    if (!m->key || !m->key[0])
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: %s needs a key", path,
                               what);
    c->field = m->key;
    c->field_len = (uint32_t)strlen(m->key);
    return NPVDB_OK;
}

static npvdb_code convert_cond(const Npvdb__V1__Condition *m, const char *path,
                               arena *a, npvdb_cond *c, npvdb_error *err)
{
    memset(c, 0, sizeof *c);
    npvdb_code rc;
    switch (m->condition_case) {
    case NPVDB__V1__CONDITION__CONDITION_MATCH:
        c->kind = NPVDB_COND_MATCH;
        rc = need_key(m, "match", path, c, err);
        return rc ? rc : match_values(m->match, path, a, c, err);
    case NPVDB__V1__CONDITION__CONDITION_RANGE:
        c->kind = NPVDB_COND_RANGE;
        rc = need_key(m, "range", path, c, err);
        return rc ? rc : range_bounds(m->range, path, c, err);
    case NPVDB__V1__CONDITION__CONDITION_HAS_FIELD:
        c->kind = NPVDB_COND_HAS_FIELD;
        if (!m->has_field || !m->has_field[0])
            return npvdb_set_error(err, NPVDB_EINVAL, "%s: has_field is empty",
                                   path);
        c->field = m->has_field;
        c->field_len = (uint32_t)strlen(m->has_field);
        return NPVDB_OK;
    case NPVDB__V1__CONDITION__CONDITION_FILTER:
        c->kind = NPVDB_COND_FILTER;
        return convert_filter(m->filter, path, a, &c->sub, err);
    default:
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: condition has nothing set", path);
    }
}

/* Converts one list (must, should or must_not) of a filter at `path`. */
static npvdb_code convert_list(Npvdb__V1__Condition *const *list, size_t n,
                               const char *path, const char *name, arena *a,
                               const npvdb_cond **out, uint32_t *n_out,
                               npvdb_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0) return NPVDB_OK;
    if (a->n_conds + n > a->cap.conds) return overflow(err);
    npvdb_cond *c = a->conds + a->n_conds;
    a->n_conds += n;
    for (size_t j = 0; j < n; j++) {
        char sub[320];
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, name, j);
        npvdb_code rc = convert_cond(list[j], sub, a, &c[j], err);
        if (rc != NPVDB_OK) return rc;
    }
    *out = c;
    *n_out = (uint32_t)n;
    return NPVDB_OK;
}

static npvdb_code convert_filter(const Npvdb__V1__Filter *m, const char *path,
                                 arena *a, const npvdb_filter **out,
                                 npvdb_error *err)
{
    if (a->n_filters >= a->cap.filters) return overflow(err);
    npvdb_filter *f = &a->filters[a->n_filters++];
    memset(f, 0, sizeof *f);
    npvdb_code rc = convert_list(m->must, m->n_must, path, "must", a, &f->must,
                                 &f->n_must, err);
    if (rc == NPVDB_OK)
        rc = convert_list(m->should, m->n_should, path, "should", a, &f->should,
                          &f->n_should, err);
    if (rc == NPVDB_OK)
        rc = convert_list(m->must_not, m->n_must_not, path, "must_not", a,
                          &f->must_not, &f->n_must_not, err);
    *out = f;
    return rc;
}

npvdb_code codec_decode_filter(const uint8_t *buf, size_t len,
                               codec_filter *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    counts c = {0};
    npvdb_code rc = scan_filter(buf, len, 1, &c, err);
    if (rc != NPVDB_OK) return rc;
    Npvdb__V1__Filter *m = npvdb__v1__filter__unpack(NULL, len, buf);
    if (!m) return malformed(err);
    out->msg_ = m;
    size_t bytes = c.filters * sizeof(npvdb_filter) +
                   c.conds * sizeof(npvdb_cond) +
                   c.values * sizeof(npvdb_match_value);
    char *mem = malloc(bytes);
    if (!mem) {
        codec_filter_free(out);
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for a filter of %zu conditions",
                               c.conds);
    }
    out->arena_ = mem;
    arena a = {0};
    a.cap = c;
    a.filters = (npvdb_filter *)mem;
    a.conds = (npvdb_cond *)(mem + c.filters * sizeof(npvdb_filter));
    a.values = (npvdb_match_value *)(mem + c.filters * sizeof(npvdb_filter) +
                                     c.conds * sizeof(npvdb_cond));
    rc = convert_filter(m, "filter", &a, &out->root, err);
    if (rc != NPVDB_OK) codec_filter_free(out);
    return rc;
}

void codec_filter_free(codec_filter *f)
{
    if (!f) return;
    if (f->msg_) npvdb__v1__filter__free_unpacked(f->msg_, NULL);
    free(f->arena_);
    memset(f, 0, sizeof *f);
}
