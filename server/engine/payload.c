/*
 * payload.c -- the canonical payload blob (format in npvdb.h): the one
 * validator every decoder of a blob uses (npvdb_payload_check), the one
 * encoder (npvdb_payload_build) and a reader over checked blobs.
 *
 * The checker is strict so that "same fields" means "same bytes": names in
 * strictly increasing memcmp order (so no duplicates), UTF-8 names without
 * NUL and UTF-8 strings, finite doubles, bools 0 or 1, every count and
 * length within its limit, and nothing after the last field.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint16_t rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

uint64_t rd_u64(const uint8_t *p)
{
    return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32;
}

static uint8_t *wr_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *wr_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static uint8_t *wr_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

/* memcmp order, a prefix first: <0, 0, >0. */
int name_cmp(const char *a, uint32_t al, const char *b, uint32_t bl)
{
    int r = memcmp(a, b, al < bl ? al : bl);
    if (r) return r;
    return al < bl ? -1 : al > bl;
}

static int name_ok(const char *s, size_t n)
{
    return n >= 1 && n <= NPVDB_MAX_FIELD_NAME && !memchr(s, '\0', n) &&
           npvdb_utf8_valid(s, n);
}

/* ---- checking ---- */

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
} reader;

static int need(const reader *r, size_t n)
{
    return r->len - r->pos >= n;
}

/* Checks one string (u32 len, bytes) at r->pos; what names it. */
static npvdb_code check_str(reader *r, const char *what, uint32_t fi,
                            const char *name, uint32_t nl, npvdb_error *err)
{
    if (!need(r, 4))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: field %u '%.*s': %s truncated", fi,
                               (int)nl, name, what);
    uint32_t sl = rd_u32(r->p + r->pos);
    r->pos += 4;
    if (sl > NPVDB_MAX_STRING)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: field %u '%.*s': %s of %u bytes is "
                               "longer than %d",
                               fi, (int)nl, name, what, sl, NPVDB_MAX_STRING);
    if (!need(r, sl))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: field %u '%.*s': %s truncated", fi,
                               (int)nl, name, what);
    if (!npvdb_utf8_valid((const char *)r->p + r->pos, sl))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: field %u '%.*s': %s is not valid "
                               "UTF-8",
                               fi, (int)nl, name, what);
    r->pos += sl;
    return NPVDB_OK;
}

static npvdb_code check_value(reader *r, uint8_t type, uint32_t fi,
                              const char *name, uint32_t nl, npvdb_error *err)
{
    switch (type) {
    case NPVDB_VALUE_STRING:
        return check_str(r, "string", fi, name, nl, err);
    case NPVDB_VALUE_INT:
    case NPVDB_VALUE_DOUBLE:
        if (!need(r, 8)) break;
        if (type == NPVDB_VALUE_DOUBLE) {
            uint64_t bits = rd_u64(r->p + r->pos);
            double d;
            memcpy(&d, &bits, sizeof d);
            if (!isfinite(d))
                return npvdb_set_error(err, NPVDB_EINVAL,
                                       "payload: field %u '%.*s': double is "
                                       "NaN or Inf",
                                       fi, (int)nl, name);
        }
        r->pos += 8;
        return NPVDB_OK;
    case NPVDB_VALUE_BOOL:
        if (!need(r, 1)) break;
        if (r->p[r->pos] > 1)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u '%.*s': bool must be 0 "
                                   "or 1, got %u",
                                   fi, (int)nl, name, r->p[r->pos]);
        r->pos++;
        return NPVDB_OK;
    case NPVDB_VALUE_STRINGS: {
        if (!need(r, 2)) break;
        uint32_t cnt = rd_u16(r->p + r->pos);
        r->pos += 2;
        if (cnt > NPVDB_MAX_LIST)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u '%.*s': list of %u "
                                   "strings is longer than %d",
                                   fi, (int)nl, name, cnt, NPVDB_MAX_LIST);
        for (uint32_t j = 0; j < cnt; j++) {
            npvdb_code rc = check_str(r, "list item", fi, name, nl, err);
            if (rc) return rc;
        }
        return NPVDB_OK;
    }
    default:
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: field %u '%.*s': unknown type %u", fi,
                               (int)nl, name, type);
    }
    return npvdb_set_error(err, NPVDB_EINVAL,
                           "payload: field %u '%.*s': value truncated", fi,
                           (int)nl, name);
}

npvdb_code payload_scan(const uint8_t *data, size_t len, uint32_t *field_off,
                        npvdb_error *err)
{
    if (len == 0) return NPVDB_OK;
    if (!data)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: no data for %zu "
                               "bytes",
                               len);
    if (len > NPVDB_MAX_PAYLOAD)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: %zu bytes is more than %u", len,
                               NPVDB_MAX_PAYLOAD);
    if (len < 2)
        return npvdb_set_error(err, NPVDB_EINVAL, "payload: truncated");
    uint32_t n = rd_u16(data);
    if (n < 1 || n > NPVDB_MAX_FIELDS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: %u fields, must be 1..%d", n,
                               NPVDB_MAX_FIELDS);
    reader r = {.p = data, .len = len, .pos = 2};
    const char *prev = NULL;
    uint32_t prev_len = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t fo = r.pos;
        if (!need(&r, 2))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u truncated", i);
        uint8_t type = data[r.pos];
        uint32_t nl = data[r.pos + 1];
        r.pos += 2;
        if (!need(&r, nl))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u: name truncated", i);
        const char *name = (const char *)data + r.pos;
        if (!name_ok(name, nl))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u: name must be 1..%d "
                                   "bytes of UTF-8 without NUL",
                                   i, NPVDB_MAX_FIELD_NAME);
        if (prev && name_cmp(prev, prev_len, name, nl) >= 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload: field %u '%.*s' is repeated or "
                                   "out of order",
                                   i, (int)nl, name);
        r.pos += nl;
        npvdb_code rc = check_value(&r, type, i, name, nl, err);
        if (rc) return rc;
        if (field_off) field_off[i] = (uint32_t)fo;
        prev = name;
        prev_len = nl;
    }
    if (r.pos != len)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: %zu bytes after the last field",
                               len - r.pos);
    return NPVDB_OK;
}

npvdb_code npvdb_payload_check(const uint8_t *data, size_t len,
                               npvdb_error *err)
{
    npvdb_code rc = payload_scan(data, len, NULL, err);
    if (rc == NPVDB_OK) npvdb_ok(err);
    return rc;
}

/* ---- building ---- */

static npvdb_code build_str(const char *s, uint32_t n, const char *what,
                            const npvdb_field *f, npvdb_error *err)
{
    if (n > NPVDB_MAX_STRING)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload field '%.*s': %s of %u bytes is "
                               "longer than %d",
                               (int)f->name_len, f->name, what, n,
                               NPVDB_MAX_STRING);
    if (n && !s)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload field '%.*s': %s has no data",
                               (int)f->name_len, f->name, what);
    if (!npvdb_utf8_valid(s, n))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload field '%.*s': %s is not valid UTF-8",
                               (int)f->name_len, f->name, what);
    return NPVDB_OK;
}

/* Checks field f and returns its encoded size in *size. */
static npvdb_code build_check(const npvdb_field *f, size_t i, size_t *size,
                              npvdb_error *err)
{
    if (!f->name || !name_ok(f->name, f->name_len))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload field %zu: name must be 1..%d bytes "
                               "of UTF-8 without NUL",
                               i, NPVDB_MAX_FIELD_NAME);
    size_t sz = 2 + f->name_len;
    npvdb_code rc = NPVDB_OK;
    switch (f->type) {
    case NPVDB_VALUE_STRING:
        rc = build_str(f->s, f->s_len, "string", f, err);
        sz += 4 + (size_t)f->s_len;
        break;
    case NPVDB_VALUE_INT:
        sz += 8;
        break;
    case NPVDB_VALUE_DOUBLE:
        if (!isfinite(f->d))
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "payload field '%.*s': double is NaN or Inf",
                                 (int)f->name_len, f->name);
        sz += 8;
        break;
    case NPVDB_VALUE_BOOL:
        if (f->b != 0 && f->b != 1)
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "payload field '%.*s': bool must be 0 or 1, "
                                 "got %d",
                                 (int)f->name_len, f->name, f->b);
        sz += 1;
        break;
    case NPVDB_VALUE_STRINGS:
        if (f->n_items > NPVDB_MAX_LIST)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload field '%.*s': list of %u strings "
                                   "is longer than %d",
                                   (int)f->name_len, f->name, f->n_items,
                                   NPVDB_MAX_LIST);
        if (f->n_items && (!f->items || !f->item_lens))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payload field '%.*s': list has no items",
                                   (int)f->name_len, f->name);
        sz += 2;
        for (uint32_t j = 0; rc == NPVDB_OK && j < f->n_items; j++) {
            rc = build_str(f->items[j], f->item_lens[j], "list item", f, err);
            sz += 4 + (size_t)f->item_lens[j];
        }
        break;
    default:
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload field '%.*s': unknown type %d",
                               (int)f->name_len, f->name, (int)f->type);
    }
    *size = sz;
    return rc;
}

static uint8_t *build_field(uint8_t *p, const npvdb_field *f)
{
    *p++ = (uint8_t)f->type;
    *p++ = (uint8_t)f->name_len;
    memcpy(p, f->name, f->name_len);
    p += f->name_len;
    switch (f->type) {
    case NPVDB_VALUE_STRING:
        p = wr_u32(p, f->s_len);
        if (f->s_len) memcpy(p, f->s, f->s_len);
        return p + f->s_len;
    case NPVDB_VALUE_INT:
        return wr_u64(p, (uint64_t)f->i);
    case NPVDB_VALUE_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, &f->d, sizeof bits);
        return wr_u64(p, bits);
    }
    case NPVDB_VALUE_BOOL:
        *p = (uint8_t)f->b;
        return p + 1;
    case NPVDB_VALUE_STRINGS:
        p = wr_u16(p, f->n_items);
        for (uint32_t j = 0; j < f->n_items; j++) {
            p = wr_u32(p, f->item_lens[j]);
            if (f->item_lens[j]) memcpy(p, f->items[j], f->item_lens[j]);
            p += f->item_lens[j];
        }
        return p;
    }
    return p;
}

npvdb_code npvdb_payload_build(const npvdb_field *fields, size_t n,
                               npvdb_payload *out, npvdb_error *err)
{
    out->data = NULL;
    out->len = 0;
    if (n == 0) {
        npvdb_ok(err);
        return NPVDB_OK;
    }
    if (n > NPVDB_MAX_FIELDS)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: %zu fields, more than %d", n,
                               NPVDB_MAX_FIELDS);
    if (!fields)
        return npvdb_set_error(err, NPVDB_EINVAL, "payload: no fields given");
    size_t order[NPVDB_MAX_FIELDS], total = 2;
    for (size_t i = 0; i < n; i++) {
        size_t sz = 0;
        npvdb_code rc = build_check(&fields[i], i, &sz, err);
        if (rc) return rc;
        total += sz;
        /* Insertion sort by name: n <= 64. */
        size_t j = i;
        for (; j > 0; j--) {
            const npvdb_field *a = &fields[order[j - 1]], *b = &fields[i];
            int c = name_cmp(a->name, a->name_len, b->name, b->name_len);
            if (c == 0)
                return npvdb_set_error(err, NPVDB_EINVAL,
                                       "payload field '%.*s' is given twice",
                                       (int)b->name_len, b->name);
            if (c < 0) break;
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
    if (total > NPVDB_MAX_PAYLOAD)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload: %zu bytes is more than %u", total,
                               NPVDB_MAX_PAYLOAD);
    uint8_t *blob = malloc(total);
    if (!blob)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for a payload of %zu bytes",
                               total);
    uint8_t *p = wr_u16(blob, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        p = build_field(p, &fields[order[i]]);
    out->data = blob;
    out->len = (uint32_t)total;
    npvdb_ok(err);
    return NPVDB_OK;
}

/* ---- reading a checked blob ---- */

/* Skips the value of `type` at p; returns the byte after it. */
const uint8_t *payload_skip_value(const uint8_t *p, uint8_t type)
{
    switch (type) {
    case NPVDB_VALUE_STRING:
        return p + 4 + rd_u32(p);
    case NPVDB_VALUE_INT:
    case NPVDB_VALUE_DOUBLE:
        return p + 8;
    case NPVDB_VALUE_BOOL:
        return p + 1;
    case NPVDB_VALUE_STRINGS: {
        uint32_t cnt = rd_u16(p);
        p += 2;
        for (uint32_t j = 0; j < cnt; j++)
            p += 4 + rd_u32(p);
        return p;
    }
    }
    return p;
}

void payload_read_value(const uint8_t *v, uint8_t type, npvdb_field *f)
{
    f->type = (npvdb_value_type)type;
    switch (type) {
    case NPVDB_VALUE_STRING:
        f->s_len = rd_u32(v);
        f->s = (const char *)v + 4;
        break;
    case NPVDB_VALUE_INT:
        f->i = (int64_t)rd_u64(v);
        break;
    case NPVDB_VALUE_DOUBLE: {
        uint64_t bits = rd_u64(v);
        memcpy(&f->d, &bits, sizeof f->d);
        break;
    }
    case NPVDB_VALUE_BOOL:
        f->b = v[0];
        break;
    case NPVDB_VALUE_STRINGS:
        f->n_items = rd_u16(v);
        f->list_ = v + 2;
        break;
    }
}

int npvdb_payload_next(const npvdb_payload *p, size_t *pos, npvdb_field *f)
{
    if (!p->len) return 0;
    if (*pos == 0) *pos = 2;
    if (*pos >= p->len) return 0;
    const uint8_t *q = p->data + *pos;
    memset(f, 0, sizeof *f);
    uint8_t type = q[0];
    f->name_len = q[1];
    f->name = (const char *)q + 2;
    const uint8_t *v = q + 2 + f->name_len;
    payload_read_value(v, type, f);
    *pos = (size_t)(payload_skip_value(v, type) - p->data);
    return 1;
}

void npvdb_payload_item(const npvdb_field *f, uint32_t j, const char **s,
                        uint32_t *len)
{
    const uint8_t *p = f->list_;
    for (uint32_t i = 0; i < j; i++)
        p += 4 + rd_u32(p);
    *len = rd_u32(p);
    *s = (const char *)p + 4;
}
