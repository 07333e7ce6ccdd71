/*
 * filter_check.c -- npvdb_filter_check: the shape of a filter from outside
 * (the transport builds it from the wire), checked before any collection
 * sees it. Messages give the path of the bad condition, as in
 * "filter: must[0].should[2]: match has no values".
 */
#include "npvdb.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct walk {
    uint32_t conds;
    npvdb_error *err;
} walk;

static npvdb_code bad(walk *w, const char *path, const char *what)
{
    return npvdb_set_error(w->err, NPVDB_EINVAL, "filter: %s%s%s", path,
                           *path ? ": " : "", what);
}

static npvdb_code check_filter(walk *w, const npvdb_filter *f, const char *path,
                               int depth);

static npvdb_code check_field(walk *w, const npvdb_cond *c, const char *path)
{
    if (!c->field || c->field_len == 0) return bad(w, path, "empty field name");
    if (c->field_len > NPVDB_MAX_FIELD_NAME)
        return bad(w, path, "field name longer than 255 bytes");
    if (memchr(c->field, '\0', c->field_len) ||
        !npvdb_utf8_valid(c->field, c->field_len))
        return bad(w, path, "field name is not UTF-8 without NUL");
    return NPVDB_OK;
}

static npvdb_code check_value(walk *w, const npvdb_match_value *v, uint32_t j,
                              const char *path)
{
    char what[96];
    switch (v->type) {
    case NPVDB_VALUE_STRING:
        if (v->s_len > NPVDB_MAX_STRING) {
            snprintf(what, sizeof what,
                     "match value %u is longer than %d bytes", j,
                     NPVDB_MAX_STRING);
            return bad(w, path, what);
        }
        if ((v->s_len && !v->s) || !npvdb_utf8_valid(v->s, v->s_len)) {
            snprintf(what, sizeof what, "match value %u is not valid UTF-8", j);
            return bad(w, path, what);
        }
        return NPVDB_OK;
    case NPVDB_VALUE_INT:
        return NPVDB_OK;
    case NPVDB_VALUE_BOOL:
        if (v->b == 0 || v->b == 1) return NPVDB_OK;
        snprintf(what, sizeof what, "match value %u: bool must be 0 or 1", j);
        return bad(w, path, what);
    default:
        snprintf(what, sizeof what,
                 "match value %u has type %d: only string, int or bool", j,
                 (int)v->type);
        return bad(w, path, what);
    }
}

static npvdb_code check_cond(walk *w, const npvdb_cond *c, const char *path,
                             int depth)
{
    npvdb_code rc;
    char what[96];
    switch (c->kind) {
    case NPVDB_COND_MATCH:
        if ((rc = check_field(w, c, path))) return rc;
        if (c->n_values == 0 || !c->values)
            return bad(w, path, "match has no values");
        if (c->n_values > NPVDB_MAX_LIST) {
            snprintf(what, sizeof what, "match has %u values, more than %d",
                     c->n_values, NPVDB_MAX_LIST);
            return bad(w, path, what);
        }
        for (uint32_t j = 0; j < c->n_values; j++)
            if ((rc = check_value(w, &c->values[j], j, path))) return rc;
        return NPVDB_OK;
    case NPVDB_COND_RANGE:
        if ((rc = check_field(w, c, path))) return rc;
        if (!c->has_lower && !c->has_upper)
            return bad(w, path, "range has no bound");
        if ((c->has_lower && isnan(c->lower)) ||
            (c->has_upper && isnan(c->upper)))
            return bad(w, path, "range bound is NaN");
        return NPVDB_OK;
    case NPVDB_COND_HAS_FIELD:
        return check_field(w, c, path);
    case NPVDB_COND_FILTER:
        if (!c->sub) return bad(w, path, "nested filter is missing");
        return check_filter(w, c->sub, path, depth + 1);
    default:
        snprintf(what, sizeof what, "unknown condition kind %d", (int)c->kind);
        return bad(w, path, what);
    }
}

static npvdb_code check_list(walk *w, const npvdb_cond *list, uint32_t n,
                             const char *name, const char *path, int depth)
{
    char sub[NPVDB_ERRMSG_LEN];
    if (n && !list) {
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", name);
        return bad(w, sub, "conditions are missing");
    }
    if (n > NPVDB_MAX_FILTER_CONDS - w->conds) {
        w->conds = NPVDB_MAX_FILTER_CONDS + 1;
        return npvdb_set_error(w->err, NPVDB_EINVAL,
                               "filter: more than %d conditions",
                               NPVDB_MAX_FILTER_CONDS);
    }
    w->conds += n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s%s%s[%u]", path, *path ? "." : "", name,
                 i);
        npvdb_code rc = check_cond(w, &list[i], sub, depth);
        if (rc) return rc;
    }
    return NPVDB_OK;
}

static npvdb_code check_filter(walk *w, const npvdb_filter *f, const char *path,
                               int depth)
{
    if (depth > NPVDB_MAX_FILTER_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nested deeper than %d",
                 NPVDB_MAX_FILTER_DEPTH);
        return bad(w, path, what);
    }
    npvdb_code rc = check_list(w, f->must, f->n_must, "must", path, depth);
    if (rc == NPVDB_OK)
        rc = check_list(w, f->should, f->n_should, "should", path, depth);
    if (rc == NPVDB_OK)
        rc = check_list(w, f->must_not, f->n_must_not, "must_not", path, depth);
    return rc;
}

npvdb_code npvdb_filter_check(const npvdb_filter *f, npvdb_error *err)
{
    walk w = {.err = err};
    npvdb_code rc = f ? check_filter(&w, f, "", 1) : NPVDB_OK;
    if (rc == NPVDB_OK && err) {
        err->code = NPVDB_OK;
        err->msg[0] = '\0';
    }
    return rc;
}
