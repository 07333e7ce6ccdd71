/*
 * snapshot_payload.c -- payload columns of a snapshot (see
 * snapshot_payload.h and the layout in snapshot.h).
 *
 * A column is one (field name, value type) pair: the ascending rows that
 * hold it and their values. Strings are variable-length UTF-8 for h5py;
 * HDF5 ends such strings at a NUL, so a column with a string holding a NUL
 * byte (valid UTF-8, allowed in values) is written as "string_bytes" /
 * "strings_bytes" instead: variable-length uint8 sequences, exact.
 */
#include "snapshot_payload.h"
#include "h5attr.h"
#include "crc32c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Column types as written in the `type` attribute. */
enum { CT_STRING, CT_INT, CT_DOUBLE, CT_BOOL, CT_STRINGS, CT_N };
static const char *const ct_names[CT_N] = {"string", "int", "double", "bool",
                                           "strings"};

static int ct_of(npvdb_value_type t)
{
    switch (t) {
    case NPVDB_VALUE_STRING:
        return CT_STRING;
    case NPVDB_VALUE_INT:
        return CT_INT;
    case NPVDB_VALUE_DOUBLE:
        return CT_DOUBLE;
    case NPVDB_VALUE_BOOL:
        return CT_BOOL;
    default:
        return CT_STRINGS;
    }
}

static const npvdb_value_type ct_value[CT_N] = {
    NPVDB_VALUE_STRING, NPVDB_VALUE_INT, NPVDB_VALUE_DOUBLE, NPVDB_VALUE_BOOL,
    NPVDB_VALUE_STRINGS};

/* A string: bytes (in an arena or HDF5's buffer) and length. */
typedef struct str {
    const char *p;
    uint32_t len;
} str;

/* One column. Scalars in num (int64 / double bits / bool as 0/1); strings
 * in strs: one per row (STRING) or the items of every row (STRINGS, split
 * by off[0..n]). */
typedef struct pcol {
    char *name;
    uint32_t name_len;
    int ct;
    int has_nul; /* a string holds a NUL byte: written as bytes */
    uint64_t *rows;
    uint64_t *num;
    size_t n, cap;
    str *strs;
    size_t ns, caps;
    uint64_t *off; /* STRINGS: n+1 */
} pcol;

static void pcol_clear(pcol *c)
{
    free(c->name);
    free(c->rows);
    free(c->num);
    free(c->strs);
    free(c->off);
    memset(c, 0, sizeof *c);
}

/* Grows a column for one more row (and off for STRINGS). */
static int pcol_reserve(pcol *c)
{
    if (c->n + 1 < c->cap) return 0;
    size_t cap = c->cap ? c->cap * 2 : 16;
    uint64_t *r = realloc(c->rows, cap * sizeof *r);
    if (r) c->rows = r;
    uint64_t *v = r ? realloc(c->num, cap * sizeof *v) : NULL;
    if (v) c->num = v;
    uint64_t *o = v ? realloc(c->off, (cap + 1) * sizeof *o) : NULL;
    if (o) c->off = o;
    if (!o) return -1;
    c->cap = cap;
    return 0;
}

static int pcol_push_str(pcol *c, const char *p, uint32_t len)
{
    if (c->ns == c->caps) {
        size_t cap = c->caps ? c->caps * 2 : 16;
        str *s = realloc(c->strs, cap * sizeof *s);
        if (!s) return -1;
        c->strs = s;
        c->caps = cap;
    }
    c->strs[c->ns].p = p;
    c->strs[c->ns++].len = len;
    if (len && memchr(p, 0, len)) c->has_nul = 1;
    return 0;
}

/* ---- an arena for string copies (pointers stay valid as it grows) ---- */

typedef struct block {
    struct block *next;
    size_t used, size;
    char data[];
} block;

static char *arena_copy(block **head, const char *p, size_t len)
{
    block *b = *head;
    if (!b || b->size - b->used < len) {
        size_t size = len > (1u << 20) ? len : (1u << 20);
        block *nb = malloc(sizeof *nb + size);
        if (!nb) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->size = size;
        *head = b = nb;
    }
    char *out = b->data + b->used;
    if (len) memcpy(out, p, len);
    b->used += len;
    return out;
}

static void arena_free(block *b)
{
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- writing ----------------------------------------------------------- */

struct pcols {
    pcol *cols;
    size_t n, cap;
    size_t *slots; /* open addressing: column index + 1, 0 = empty */
    size_t n_slots;
    block *arena;
};

pcols *pcols_new(void)
{
    pcols *p = calloc(1, sizeof *p);
    if (p && !(p->slots = calloc(64, sizeof *p->slots))) {
        free(p);
        return NULL;
    }
    if (p) p->n_slots = 64;
    return p;
}

void pcols_free(pcols *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++)
        pcol_clear(&p->cols[i]);
    free(p->cols);
    free(p->slots);
    arena_free(p->arena);
    free(p);
}

static size_t col_hash(const char *name, uint32_t len, int ct)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)ct;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    return (size_t)h;
}

static int rehash(pcols *p)
{
    size_t n = p->n_slots * 2;
    size_t *s = calloc(n, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < p->n; i++) {
        pcol *c = &p->cols[i];
        size_t h = col_hash(c->name, c->name_len, c->ct) & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = i + 1;
    }
    free(p->slots);
    p->slots = s;
    p->n_slots = n;
    return 0;
}

/* The column of (name, ct), created if new; NULL for no memory. */
static pcol *col_get(pcols *p, const char *name, uint32_t len, int ct)
{
    size_t mask = p->n_slots - 1;
    size_t h = col_hash(name, len, ct) & mask;
    for (; p->slots[h]; h = (h + 1) & mask) {
        pcol *c = &p->cols[p->slots[h] - 1];
        if (c->ct == ct && c->name_len == len && !memcmp(c->name, name, len))
            return c;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        pcol *v = realloc(p->cols, cap * sizeof *v);
        if (!v) return NULL;
        p->cols = v;
        p->cap = cap;
    }
    pcol *c = &p->cols[p->n];
    memset(c, 0, sizeof *c);
    if (!(c->name = malloc(len + 1))) return NULL;
    memcpy(c->name, name, len);
    c->name[len] = 0;
    c->name_len = len;
    c->ct = ct;
    p->slots[h] = ++p->n;
    if (p->n * 2 > p->n_slots && rehash(p) < 0) {
        /* Keeps working at a higher load; the next add retries. */
    }
    return c;
}

static npvdb_code add_field(pcols *p, uint64_t row, const npvdb_field *f,
                            npvdb_error *err)
{
    int ct = ct_of(f->type);
    pcol *c = col_get(p, f->name, f->name_len, ct);
    if (!c || pcol_reserve(c) < 0) goto nomem;
    if (c->n == 0) c->off[0] = 0;
    c->rows[c->n] = row;
    if (ct == CT_INT) memcpy(&c->num[c->n], &f->i, 8);
    if (ct == CT_DOUBLE) memcpy(&c->num[c->n], &f->d, 8);
    if (ct == CT_BOOL) c->num[c->n] = f->b ? 1 : 0;
    if (ct == CT_STRING) {
        char *s = arena_copy(&p->arena, f->s, f->s_len);
        if (!s || pcol_push_str(c, s, f->s_len) < 0) goto nomem;
    }
    if (ct == CT_STRINGS) {
        /* Items as encoded in the blob: u32 len, bytes (npvdb.h). */
        const uint8_t *q = f->list_;
        for (uint32_t j = 0; j < f->n_items; j++) {
            uint32_t len = (uint32_t)q[0] | (uint32_t)q[1] << 8 |
                           (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
            char *s = arena_copy(&p->arena, (const char *)q + 4, len);
            if (!s || pcol_push_str(c, s, len) < 0) goto nomem;
            q += 4 + len;
        }
        c->off[c->n + 1] = c->ns;
    }
    c->n++;
    return NPVDB_OK;
nomem:
    return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for payload columns");
}

npvdb_code pcols_add(pcols *p, uint64_t row, const npvdb_payload *pl,
                     npvdb_error *err)
{
    size_t pos = 0;
    npvdb_field f;
    while (npvdb_payload_next(pl, &pos, &f)) {
        npvdb_code rc = add_field(p, row, &f, err);
        if (rc != NPVDB_OK) return rc;
    }
    return NPVDB_OK;
}

/* The checksum of a column as snapshot.h defines it. */
static uint32_t col_crc(const pcol *c)
{
    uint32_t crc = npvdb_crc32c(0, c->rows, c->n * 8);
    if (c->ct == CT_STRING || c->ct == CT_STRINGS) {
        static const char nul = 0;
        for (size_t i = 0; i < c->ns; i++) {
            crc = npvdb_crc32c(crc, c->strs[i].p, c->strs[i].len);
            crc = npvdb_crc32c(crc, &nul, 1);
        }
        if (c->ct == CT_STRINGS)
            crc = npvdb_crc32c(crc, c->off, (c->n + 1) * 8);
    } else {
        crc = npvdb_crc32c(crc, c->num, c->n * 8);
    }
    return crc;
}

/* A 1-D dataset of n elements written whole (contiguous: it never grows). */
static int put_ds(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                  size_t n, const void *buf)
{
    hsize_t dims[1] = {n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d =
        H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0 && (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL,
                                           H5P_DEFAULT, buf) >= 0);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static hid_t str_type(int bytes)
{
    if (bytes) return H5Tvlen_create(H5T_NATIVE_UINT8);
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0) {
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
    }
    return t;
}

/* Writes the strings of c as `values`: vlen UTF-8 (NUL-terminated copies)
 * or, for a column with a NUL inside, vlen uint8. */
static int put_strings(hid_t g, const pcol *c)
{
    hid_t t = str_type(c->has_nul);
    size_t n = c->ns;
    int ok = t >= 0;
    void *buf = NULL;
    char *copies = NULL;
    if (ok && c->has_nul) {
        hvl_t *v = malloc((n ? n : 1) * sizeof *v);
        for (size_t i = 0; v && i < n; i++) {
            v[i].len = c->strs[i].len;
            v[i].p = (void *)c->strs[i].p;
        }
        buf = v;
    } else if (ok) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
            total += c->strs[i].len + 1;
        const char **v = malloc((n ? n : 1) * sizeof *v);
        copies = malloc(total ? total : 1);
        char *q = copies;
        for (size_t i = 0; v && copies && i < n; i++) {
            memcpy(q, c->strs[i].p, c->strs[i].len);
            q[c->strs[i].len] = 0;
            v[i] = q;
            q += c->strs[i].len + 1;
        }
        buf = copies ? (void *)v : NULL;
        if (!copies) free(v);
    }
    ok = ok && buf && put_ds(g, "values", t, t, n, buf) == 0;
    free(buf);
    free(copies);
    if (t >= 0) H5Tclose(t);
    return ok ? 0 : -1;
}

static int write_col(hid_t g, const pcol *c)
{
    char type[32];
    snprintf(type, sizeof type, "%s%s", ct_names[c->ct],
             c->has_nul ? "_bytes" : "");
    if (h5attr_put_str(g, "field", c->name, c->name_len) < 0 ||
        h5attr_put_str(g, "type", type, strlen(type)) < 0 ||
        h5attr_put_u64(g, "n", c->n) < 0 ||
        h5attr_put_u64(g, "crc32c", col_crc(c)) < 0 ||
        put_ds(g, "rows", H5T_STD_U64LE, H5T_NATIVE_UINT64, c->n, c->rows) < 0)
        return -1;
    switch (c->ct) {
    case CT_INT:
        return put_ds(g, "values", H5T_STD_I64LE, H5T_NATIVE_INT64, c->n,
                      c->num);
    case CT_DOUBLE:
        return put_ds(g, "values", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, c->n,
                      c->num);
    case CT_BOOL: {
        uint8_t *b = malloc(c->n ? c->n : 1);
        for (size_t i = 0; b && i < c->n; i++)
            b[i] = (uint8_t)c->num[i];
        int rc =
            b ? put_ds(g, "values", H5T_STD_U8LE, H5T_NATIVE_UINT8, c->n, b)
              : -1;
        free(b);
        return rc;
    }
    case CT_STRINGS:
        if (put_ds(g, "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, c->n + 1,
                   c->off) < 0)
            return -1;
        /* fallthrough */
    default:
        return put_strings(g, c);
    }
}

npvdb_code pcols_write(pcols *p, hid_t loc, uint64_t *n, npvdb_error *err)
{
    *n = 0;
    hid_t g = H5Gcreate2(loc, "payload", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return npvdb_set_error(err, NPVDB_EINTERNAL,
                               "cannot create the payload group");
    npvdb_code rc = NPVDB_OK;
    for (size_t i = 0; rc == NPVDB_OK && i < p->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "%zu", i);
        hid_t cg = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (cg < 0 || write_col(cg, &p->cols[i]) < 0)
            rc = npvdb_set_error(err, NPVDB_EINTERNAL,
                                 "cannot write payload column '%s'",
                                 p->cols[i].name);
        if (cg >= 0) H5Gclose(cg);
    }
    H5Gclose(g);
    if (rc == NPVDB_OK) *n = p->n;
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

struct prows {
    pcol *cols;
    size_t n_cols;
    uint64_t n_rows;
    uint32_t *count;     /* fields per row */
    uint64_t *start;     /* first field of each row in fields */
    npvdb_field *fields; /* every value, grouped by row */
    const char **items;  /* STRINGS item pointers, per column in order */
    uint32_t *item_lens;
    block *arena;
};

void prows_free(prows *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_cols; i++)
        pcol_clear(&p->cols[i]);
    free(p->cols);
    free(p->count);
    free(p->start);
    free(p->fields);
    free(p->items);
    free(p->item_lens);
    arena_free(p->arena);
    free(p);
}

/* Opens 1-D dataset `name` of exactly n elements; -1 if not. */
static hid_t open_1d(hid_t g, const char *name, uint64_t n)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == 1 && dims[0] == n;
    if (sp >= 0) H5Sclose(sp);
    if (!ok) {
        H5Dclose(d);
        return -1;
    }
    return d;
}

static int read_1d(hid_t g, const char *name, hid_t mt, uint64_t n, void *buf)
{
    hid_t d = open_1d(g, name, n);
    if (d < 0) return -1;
    int ok = n == 0 || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* Reads n strings of `values` into the arena (copies; HDF5's buffers are
 * reclaimed at once). */
static int read_strings(hid_t g, pcol *c, block **arena, uint64_t n, int bytes)
{
    hid_t d = open_1d(g, "values", n);
    hid_t t = str_type(bytes);
    int ok = d >= 0 && t >= 0;
    void *buf =
        ok ? calloc(n ? n : 1, bytes ? sizeof(hvl_t) : sizeof(char *)) : NULL;
    ok = ok && buf &&
         (n == 0 || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    for (uint64_t i = 0; ok && i < n; i++) {
        const char *s;
        size_t len;
        if (bytes) {
            s = ((hvl_t *)buf)[i].p;
            len = ((hvl_t *)buf)[i].len;
        } else {
            s = ((char **)buf)[i];
            len = s ? strlen(s) : 0;
        }
        if ((!s && len) || len > NPVDB_MAX_STRING) {
            ok = 0;
            break;
        }
        char *cp = arena_copy(arena, s ? s : "", len);
        ok = cp && pcol_push_str(c, cp, (uint32_t)len) == 0;
    }
    if (buf && d >= 0 && t >= 0) {
        /* Frees what HDF5 allocated, also after a partial read (calloc'ed:
         * entries never filled are NULL and skipped). */
        hsize_t cnt = n;
        hid_t ms = H5Screate_simple(1, &cnt, NULL);
        H5Dvlen_reclaim(t, ms, H5P_DEFAULT, buf);
        H5Sclose(ms);
    }
    free(buf);
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    return ok ? 0 : -1;
}

/* Parses the type attribute: column type and the _bytes form. */
static int parse_type(const char *s, int *ct, int *bytes)
{
    for (int i = 0; i < CT_N; i++) {
        size_t l = strlen(ct_names[i]);
        if (strncmp(s, ct_names[i], l) != 0) continue;
        if (s[l] == 0) {
            *ct = i;
            *bytes = 0;
            return 0;
        }
        if (strcmp(s + l, "_bytes") == 0 &&
            (i == CT_STRING || i == CT_STRINGS)) {
            *ct = i;
            *bytes = 1;
            return 0;
        }
    }
    return -1;
}

/* Reads one column group into c and checks it against n_rows. */
static npvdb_code read_col(hid_t g, pcol *c, block **arena, uint64_t n_rows,
                           npvdb_error *err)
{
    char name[NPVDB_MAX_FIELD_NAME + 2], type[32];
    uint64_t n, crc;
    int bytes;
    long nl = h5attr_get_str(g, "field", name, sizeof name);
    if (nl <= 0 || h5attr_get_str(g, "type", type, sizeof type) < 0 ||
        parse_type(type, &c->ct, &bytes) < 0 ||
        h5attr_get_u64(g, "n", &n) < 0 ||
        h5attr_get_u64(g, "crc32c", &crc) < 0 || n > n_rows)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload column attributes are bad");
    if (!(c->name = strdup(name)))
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory");
    c->name_len = (uint32_t)nl;
    size_t cap = n ? (size_t)n : 1;
    c->rows = malloc(cap * sizeof *c->rows);
    c->num = malloc(cap * sizeof *c->num);
    c->off = malloc((cap + 1) * sizeof *c->off);
    if (!c->rows || !c->num || !c->off)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for column '%s'",
                               c->name);
    c->n = c->cap = (size_t)n;
    int ok = read_1d(g, "rows", H5T_NATIVE_UINT64, n, c->rows) == 0;
    for (uint64_t i = 0; ok && i < n; i++)
        ok = c->rows[i] < n_rows && (i == 0 || c->rows[i] > c->rows[i - 1]);
    if (ok && c->ct == CT_INT)
        ok = read_1d(g, "values", H5T_NATIVE_INT64, n, c->num) == 0;
    if (ok && c->ct == CT_DOUBLE)
        ok = read_1d(g, "values", H5T_NATIVE_DOUBLE, n, c->num) == 0;
    if (ok && c->ct == CT_BOOL) {
        uint8_t *b = malloc(cap);
        ok = b && read_1d(g, "values", H5T_NATIVE_UINT8, n, b) == 0;
        for (uint64_t i = 0; ok && i < n; i++)
            c->num[i] = b[i];
        free(b);
    }
    uint64_t n_str = n;
    if (ok && c->ct == CT_STRINGS) {
        ok = read_1d(g, "offsets", H5T_NATIVE_UINT64, n + 1, c->off) == 0 &&
             c->off[0] == 0;
        for (uint64_t i = 0; ok && i < n; i++)
            ok = c->off[i] <= c->off[i + 1] &&
                 c->off[i + 1] - c->off[i] <= NPVDB_MAX_LIST;
        n_str = ok ? c->off[n] : 0;
    }
    if (ok && (c->ct == CT_STRING || c->ct == CT_STRINGS))
        ok = read_strings(g, c, arena, n_str, bytes) == 0;
    if (!ok)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload column '%s' (%s) is unreadable or "
                               "inconsistent",
                               c->name, type);
    c->has_nul = bytes;
    if (col_crc(c) != crc)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payload column '%s' checksum mismatch",
                               c->name);
    return NPVDB_OK;
}

/* Groups every value by row: count, start, fields. */
static npvdb_code index_rows(prows *p, npvdb_error *err)
{
    size_t total = 0, n_items = 0;
    p->count = calloc(p->n_rows ? p->n_rows : 1, sizeof *p->count);
    p->start = calloc(p->n_rows + 1, sizeof *p->start);
    if (!p->count || !p->start) goto nomem;
    for (size_t i = 0; i < p->n_cols; i++) {
        const pcol *c = &p->cols[i];
        total += c->n;
        if (c->ct == CT_STRINGS) n_items += c->ns;
        for (size_t j = 0; j < c->n; j++)
            if (++p->count[c->rows[j]] > NPVDB_MAX_FIELDS)
                return npvdb_set_error(
                    err, NPVDB_EINVAL, "row %llu has over %d payload fields",
                    (unsigned long long)c->rows[j], NPVDB_MAX_FIELDS);
    }
    for (uint64_t r = 0; r < p->n_rows; r++)
        p->start[r + 1] = p->start[r] + p->count[r];
    p->fields = calloc(total ? total : 1, sizeof *p->fields);
    p->items = malloc((n_items ? n_items : 1) * sizeof *p->items);
    p->item_lens = malloc((n_items ? n_items : 1) * sizeof *p->item_lens);
    if (!p->fields || !p->items || !p->item_lens) goto nomem;
    uint32_t *fill = p->count; /* reused as a cursor, restored below */
    memset(fill, 0, p->n_rows * sizeof *fill);
    size_t it = 0;
    for (size_t i = 0; i < p->n_cols; i++) {
        const pcol *c = &p->cols[i];
        size_t item0 = it;
        if (c->ct == CT_STRINGS)
            for (size_t k = 0; k < c->ns; k++) {
                p->items[it] = c->strs[k].p;
                p->item_lens[it++] = c->strs[k].len;
            }
        for (size_t j = 0; j < c->n; j++) {
            uint64_t r = c->rows[j];
            npvdb_field *f = &p->fields[p->start[r] + fill[r]++];
            f->name = c->name;
            f->name_len = c->name_len;
            f->type = ct_value[c->ct];
            if (c->ct == CT_INT) memcpy(&f->i, &c->num[j], 8);
            if (c->ct == CT_DOUBLE) memcpy(&f->d, &c->num[j], 8);
            if (c->ct == CT_BOOL) f->b = (int)c->num[j];
            if (c->ct == CT_STRING) {
                f->s = c->strs[j].p;
                f->s_len = c->strs[j].len;
            }
            if (c->ct == CT_STRINGS) {
                f->n_items = (uint32_t)(c->off[j + 1] - c->off[j]);
                f->items = p->items + item0 + c->off[j];
                f->item_lens = p->item_lens + item0 + c->off[j];
            }
        }
    }
    return NPVDB_OK;
nomem:
    return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for payload rows");
}

npvdb_code prows_read(hid_t loc, uint64_t n_rows, uint64_t n_cols, prows **out,
                      npvdb_error *err)
{
    *out = NULL;
    if (n_cols == 0) return NPVDB_OK;
    /* Each column holds at least one row: bounds n_cols before allocating. */
    if (n_cols > n_rows * NPVDB_MAX_FIELDS)
        return npvdb_set_error(
            err, NPVDB_EINVAL, "%llu payload columns for %llu rows",
            (unsigned long long)n_cols, (unsigned long long)n_rows);
    prows *p = calloc(1, sizeof *p);
    if (p) p->cols = calloc((size_t)n_cols, sizeof *p->cols);
    if (!p || !p->cols) {
        free(p);
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for columns");
    }
    p->n_cols = (size_t)n_cols;
    p->n_rows = n_rows;
    npvdb_code rc = NPVDB_OK;
    hid_t g = H5Lexists(loc, "payload", H5P_DEFAULT) > 0
                  ? H5Gopen2(loc, "payload", H5P_DEFAULT)
                  : -1;
    if (g < 0) rc = npvdb_set_error(err, NPVDB_EINVAL, "payload group missing");
    for (size_t i = 0; rc == NPVDB_OK && i < p->n_cols; i++) {
        char name[32];
        snprintf(name, sizeof name, "%zu", i);
        hid_t cg = H5Lexists(g, name, H5P_DEFAULT) > 0
                       ? H5Gopen2(g, name, H5P_DEFAULT)
                       : -1;
        if (cg < 0)
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "payload column %zu missing", i);
        else
            rc = read_col(cg, &p->cols[i], &p->arena, n_rows, err);
        if (cg >= 0) H5Gclose(cg);
    }
    if (g >= 0) H5Gclose(g);
    if (rc == NPVDB_OK) rc = index_rows(p, err);
    if (rc == NPVDB_OK) {
        for (uint64_t r = 0; r < n_rows; r++) /* restore the counts */
            p->count[r] = (uint32_t)(p->start[r + 1] - p->start[r]);
        *out = p;
    } else {
        prows_free(p);
    }
    return rc;
}

npvdb_code prows_build(prows *p, uint64_t at, size_t n, npvdb_payload *out,
                       npvdb_error *err)
{
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = at + i;
        if (r >= p->n_rows || p->count[r] == 0) continue;
        npvdb_error e;
        if (npvdb_payload_build(p->fields + p->start[r], p->count[r], &out[i],
                                &e) != NPVDB_OK) {
            for (size_t j = 0; j < i; j++)
                free((void *)out[j].data);
            memset(out, 0, n * sizeof *out);
            return npvdb_set_error(
                err, e.code == NPVDB_ENOMEM ? e.code : NPVDB_EINVAL,
                "payload of row %llu: %s", (unsigned long long)r, e.msg);
        }
    }
    return NPVDB_OK;
}
