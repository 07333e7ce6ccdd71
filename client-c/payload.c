/*
 * payload.c -- npvdb_client_payload: the builder, the read accessors, and
 * the encoder of a Payload message (npvdb.v1.Payload) written by hand, so
 * that strings holding NUL bytes keep their length (protobuf-c packs C
 * strings up to their first NUL). See payload.h for the two kinds.
 */
#include "payload.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 255

/* Field numbers of Payload, its map entry, Value and StringList. */
enum { PAYLOAD_FIELDS = 1 };
enum { ENTRY_KEY = 1, ENTRY_VALUE = 2 };
enum { LIST_VALUES = 1 };
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

/* ---- names ---- */

static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

/* The first index whose name is not below `name`; *found when equal. */
static size_t lower_bound(const npvdb_client_payload *p, const char *name,
                          size_t len, int *found)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const npvdb_client_field *f = &p->fields[mid];
        if (name_cmp(f->name, f->name_len, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < p->n && name_cmp(p->fields[lo].name, p->fields[lo].name_len,
                                   name, len) == 0;
    return lo;
}

static int field_order(const void *a, const void *b)
{
    const npvdb_client_field *x = a, *y = b;
    return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

int npvdb_payload_sort(npvdb_client_payload *p, size_t *dup)
{
    if (p->n > 1) qsort(p->fields, p->n, sizeof *p->fields, field_order);
    for (size_t i = 1; i < p->n; i++)
        if (field_order(&p->fields[i - 1], &p->fields[i]) == 0) {
            *dup = i - 1;
            return -1;
        }
    return 0;
}

/* ---- builder ---- */

npvdb_client_payload *npvdb_client_payload_new(void)
{
    npvdb_client_payload *p = calloc(1, sizeof *p);
    if (p) p->builder = 1;
    return p;
}

void npvdb_payload_release(npvdb_client_payload *p)
{
    if (!p) return;
    if (p->builder) {
        for (size_t i = 0; i < p->n; i++)
            free(p->blocks[i]);
        free(p->blocks);
        free(p->fields);
    }
    free(p);
}

void npvdb_client_payload_free(npvdb_client_payload *p)
{
    npvdb_payload_release(p);
}

void npvdb_payloads_release(npvdb_client_payload **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        npvdb_payload_release(v[i]);
    free(v);
}

/* One malloc for a field: m list pointers, m lengths, the name (NUL
 * ended), then `bytes` bytes whose start goes to *chars. Sets f's name and
 * list arrays; NULL when out of memory or too large. */
static void *field_block(npvdb_client_field *f, const char *name, size_t nlen,
                         size_t m, size_t bytes, char **chars)
{
    size_t unit = sizeof(char *) + sizeof(size_t);
    if (m > (SIZE_MAX / 2) / unit || bytes > SIZE_MAX / 2 - m * unit - nlen)
        return NULL;
    size_t head = m * unit;
    unsigned char *b = malloc(head + nlen + 1 + bytes);
    if (!b) return NULL;
    if (m) {
        f->strs = (const char *const *)(void *)b;
        f->str_lens = (const size_t *)(void *)(b + m * sizeof(char *));
    }
    char *nm = (char *)b + head;
    memcpy(nm, name, nlen);
    nm[nlen] = '\0';
    f->name = nm;
    f->name_len = nlen;
    *chars = nm + nlen + 1;
    return b;
}

/* Puts f (with its block) into p, replacing a field of the same name;
 * frees the block on failure. 0 on success. */
static int put_field(npvdb_client_payload *p, const npvdb_client_field *f,
                     void *block)
{
    int found;
    size_t at = lower_bound(p, f->name, f->name_len, &found);
    if (found) {
        free(p->blocks[at]);
        p->fields[at] = *f;
        p->blocks[at] = block;
        return 0;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        npvdb_client_field *fs = realloc(p->fields, cap * sizeof *fs);
        if (fs) p->fields = fs;
        void **bs = fs ? realloc(p->blocks, cap * sizeof *bs) : NULL;
        if (!bs) {
            free(block);
            return -1;
        }
        p->blocks = bs;
        p->cap = cap;
    }
    memmove(p->fields + at + 1, p->fields + at,
            (p->n - at) * sizeof *p->fields);
    memmove(p->blocks + at + 1, p->blocks + at,
            (p->n - at) * sizeof *p->blocks);
    p->fields[at] = *f;
    p->blocks[at] = block;
    p->n++;
    return 0;
}

/* Checks the payload and the name; 0 when both are usable. */
static int check_set(const npvdb_client_payload *p, const char *name,
                     size_t *nlen)
{
    if (!p || !p->builder || !name) return -1;
    *nlen = strlen(name);
    return *nlen >= 1 && *nlen <= NAME_MAX_BYTES ? 0 : -1;
}

/* A field without strings of its own (int, double, bool). */
static int set_scalar(npvdb_client_payload *p, const char *name,
                      npvdb_client_field *f)
{
    size_t nlen;
    char *chars;
    if (check_set(p, name, &nlen)) return -1;
    void *b = field_block(f, name, nlen, 0, 0, &chars);
    return b ? put_field(p, f, b) : -1;
}

int npvdb_client_payload_set_strn(npvdb_client_payload *p, const char *name,
                                  const char *value, size_t len)
{
    size_t nlen;
    char *chars;
    if (check_set(p, name, &nlen) || (!value && len)) return -1;
    npvdb_client_field f = {.type = NPVDB_CLIENT_VALUE_STRING};
    void *b = len < SIZE_MAX / 2
                  ? field_block(&f, name, nlen, 0, len + 1, &chars)
                  : NULL;
    if (!b) return -1;
    if (len) memcpy(chars, value, len);
    chars[len] = '\0';
    f.str = chars;
    f.str_len = len;
    return put_field(p, &f, b);
}

int npvdb_client_payload_set_str(npvdb_client_payload *p, const char *name,
                                 const char *value)
{
    if (!value) return -1;
    return npvdb_client_payload_set_strn(p, name, value, strlen(value));
}

int npvdb_client_payload_set_int(npvdb_client_payload *p, const char *name,
                                 int64_t value)
{
    npvdb_client_field f = {.type = NPVDB_CLIENT_VALUE_INT, .i = value};
    return set_scalar(p, name, &f);
}

int npvdb_client_payload_set_double(npvdb_client_payload *p, const char *name,
                                    double value)
{
    if (!isfinite(value)) return -1;
    npvdb_client_field f = {.type = NPVDB_CLIENT_VALUE_DOUBLE, .d = value};
    return set_scalar(p, name, &f);
}

int npvdb_client_payload_set_bool(npvdb_client_payload *p, const char *name,
                                  int value)
{
    npvdb_client_field f = {.type = NPVDB_CLIENT_VALUE_BOOL, .b = value != 0};
    return set_scalar(p, name, &f);
}

int npvdb_client_payload_set_strings(npvdb_client_payload *p, const char *name,
                                     const char *const *values, size_t n)
{
    size_t nlen, bytes = 0;
    char *chars;
    if (check_set(p, name, &nlen) || (n && !values)) return -1;
    for (size_t j = 0; j < n; j++) {
        if (!values[j]) return -1;
        size_t l = strlen(values[j]);
        if (l >= SIZE_MAX / 4 - bytes) return -1;
        bytes += l + 1;
    }
    npvdb_client_field f = {.type = NPVDB_CLIENT_VALUE_STRINGS, .n_strs = n};
    void *b = field_block(&f, name, nlen, n, bytes, &chars);
    if (!b) return -1;
    char **ptrs = (char **)b;
    size_t *lens = (size_t *)(void *)((unsigned char *)b + n * sizeof(char *));
    for (size_t j = 0; j < n; j++) {
        size_t l = strlen(values[j]);
        memcpy(chars, values[j], l + 1);
        ptrs[j] = chars;
        lens[j] = l;
        chars += l + 1;
    }
    return put_field(p, &f, b);
}

int npvdb_client_payload_remove(npvdb_client_payload *p, const char *name)
{
    if (!p || !p->builder || !name) return -1;
    int found;
    size_t at = lower_bound(p, name, strlen(name), &found);
    if (!found) return -1;
    free(p->blocks[at]);
    memmove(p->fields + at, p->fields + at + 1,
            (p->n - at - 1) * sizeof *p->fields);
    memmove(p->blocks + at, p->blocks + at + 1,
            (p->n - at - 1) * sizeof *p->blocks);
    p->n--;
    return 0;
}

/* ---- read accessors ---- */

size_t npvdb_client_payload_len(const npvdb_client_payload *p)
{
    return p ? p->n : 0;
}

const npvdb_client_field *
npvdb_client_payload_field(const npvdb_client_payload *p, size_t i)
{
    return p && i < p->n ? &p->fields[i] : NULL;
}

const npvdb_client_field *
npvdb_client_payload_find(const npvdb_client_payload *p, const char *name)
{
    if (!p || !name) return NULL;
    int found;
    size_t at = lower_bound(p, name, strlen(name), &found);
    return found ? &p->fields[at] : NULL;
}

/* ---- encoder ---- */

size_t npvdb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Bytes of a length-delimited field holding n bytes (tags here fit one
 * byte). */
static size_t len_field(size_t n)
{
    return 1 + npvdb_varint_size(n) + n;
}

static size_t list_size(const npvdb_client_field *f)
{
    size_t n = 0;
    for (size_t j = 0; j < f->n_strs; j++)
        n += len_field(f->str_lens[j]);
    return n;
}

/* Bytes of the Value message of f. */
static size_t value_size(const npvdb_client_field *f)
{
    switch (f->type) {
    case NPVDB_CLIENT_VALUE_STRING:
        return len_field(f->str_len);
    case NPVDB_CLIENT_VALUE_INT:
        return 1 + npvdb_varint_size((uint64_t)f->i);
    case NPVDB_CLIENT_VALUE_DOUBLE:
        return 1 + 8;
    case NPVDB_CLIENT_VALUE_BOOL:
        return 2;
    case NPVDB_CLIENT_VALUE_STRINGS:
        return len_field(list_size(f));
    }
    return 0;
}

static size_t entry_size(const npvdb_client_field *f)
{
    return len_field(f->name_len) + len_field(value_size(f));
}

size_t npvdb_payload_size(const npvdb_client_payload *p)
{
    size_t n = 0;
    for (size_t i = 0; p && i < p->n; i++)
        n += len_field(entry_size(&p->fields[i]));
    return n;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

static uint8_t *put_tag(uint8_t *o, uint32_t field, unsigned wt)
{
    return put_varint(o, (uint64_t)field << 3 | wt);
}

static uint8_t *put_bytes(uint8_t *o, uint32_t field, const void *s, size_t n)
{
    o = put_tag(o, field, WT_LEN);
    o = put_varint(o, n);
    if (n) memcpy(o, s, n);
    return o + n;
}

static uint8_t *put_value(uint8_t *o, const npvdb_client_field *f)
{
    uint64_t bits;
    switch (f->type) {
    case NPVDB_CLIENT_VALUE_STRING:
        return put_bytes(o, NPVDB_CLIENT_VALUE_STRING, f->str, f->str_len);
    case NPVDB_CLIENT_VALUE_INT:
        o = put_tag(o, NPVDB_CLIENT_VALUE_INT, WT_VARINT);
        return put_varint(o, (uint64_t)f->i);
    case NPVDB_CLIENT_VALUE_DOUBLE:
        o = put_tag(o, NPVDB_CLIENT_VALUE_DOUBLE, WT_I64);
        memcpy(&bits, &f->d, 8);
        for (int b = 0; b < 8; b++)
            *o++ = (uint8_t)(bits >> (8 * b));
        return o;
    case NPVDB_CLIENT_VALUE_BOOL:
        o = put_tag(o, NPVDB_CLIENT_VALUE_BOOL, WT_VARINT);
        *o++ = f->b ? 1 : 0;
        return o;
    case NPVDB_CLIENT_VALUE_STRINGS:
        o = put_tag(o, NPVDB_CLIENT_VALUE_STRINGS, WT_LEN);
        o = put_varint(o, list_size(f));
        for (size_t j = 0; j < f->n_strs; j++)
            o = put_bytes(o, LIST_VALUES, f->strs[j], f->str_lens[j]);
        return o;
    }
    return o;
}

uint8_t *npvdb_payload_put(uint8_t *o, uint32_t field,
                           const npvdb_client_payload *p)
{
    o = put_tag(o, field, WT_LEN);
    o = put_varint(o, npvdb_payload_size(p));
    for (size_t i = 0; p && i < p->n; i++) {
        const npvdb_client_field *f = &p->fields[i];
        o = put_tag(o, PAYLOAD_FIELDS, WT_LEN);
        o = put_varint(o, entry_size(f));
        o = put_bytes(o, ENTRY_KEY, f->name, f->name_len);
        o = put_tag(o, ENTRY_VALUE, WT_LEN);
        o = put_varint(o, value_size(f));
        o = put_value(o, f);
    }
    return o;
}
