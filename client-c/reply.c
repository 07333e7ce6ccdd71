/*
 * reply.c -- SearchReply and GetClosestReply decoded from the wire bytes
 * (see reply.h). Field numbers are the ones of protos/npvdb/v1/npvdb.proto.
 */
#include "reply.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npvdb's wire format is little-endian float32"
#endif

/* Protobuf wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* SearchReply fields. */
enum { SR_K = 1, SR_COUNTS = 2, SR_KEYS = 3, SR_DISTANCES = 4 };
/* GetClosestReply fields. */
enum { GC_QUERY_INDEX = 1, GC_KEYS = 2, GC_DISTANCES = 3 };

static npvdb_status fail(npvdb_client_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static npvdb_status fail(npvdb_client_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = NPVDB_STATUS_INTERNAL;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return NPVDB_STATUS_INTERNAL;
}

/* ---- the wire ---- */

typedef struct wire {
    const uint8_t *p, *end;
} wire;

/* 0 on success, -1 when truncated or longer than 10 bytes. */
static int wire_varint(wire *w, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        if (shift < 64) v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* A length-delimited payload: *data, *len; 0 on success. */
static int wire_len(wire *w, const uint8_t **data, size_t *len)
{
    uint64_t n;
    if (wire_varint(w, &n) || n > (uint64_t)(w->end - w->p)) return -1;
    *data = w->p;
    *len = (size_t)n;
    w->p += n;
    return 0;
}

/* Skips the payload of an unknown field; 0 on success. */
static int wire_skip(wire *w, unsigned wt)
{
    uint64_t v;
    const uint8_t *d;
    size_t n;
    switch (wt) {
    case WT_VARINT:
        return wire_varint(w, &v);
    case WT_I64:
        if (w->end - w->p < 8) return -1;
        w->p += 8;
        return 0;
    case WT_I32:
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        return 0;
    case WT_LEN:
        return wire_len(w, &d, &n);
    default: /* groups are not proto3 */
        return -1;
    }
}

/* Reads a tag: *field and *wt; 0 on success. */
static int wire_tag(wire *w, uint32_t *field, unsigned *wt)
{
    uint64_t t;
    if (wire_varint(w, &t) || (t >> 3) == 0 || (t >> 3) > UINT32_MAX) return -1;
    *field = (uint32_t)(t >> 3);
    *wt = (unsigned)(t & 7);
    return 0;
}

/* ---- SearchReply ---- */

/* What a pass over a SearchReply found; keys are stored flat in
 * out->keys[0..n_keys) as they come. */
typedef struct search_scan {
    uint64_t k;
    size_t n_counts, n_keys, arena_len;
    const uint8_t *dist;
    size_t dist_len;
} search_scan;

/* Counts and keys past what the request allows are counted, not stored:
 * the checks after the pass report them with their numbers. */
static void add_count(search_scan *s, npvdb_client_results *out, uint64_t v)
{
    /* A count above k is caught by the checks after the pass. */
    if (s->n_counts < out->nq)
        out->counts[s->n_counts] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    s->n_counts++;
}

/* Packed counts: a run of varints. */
static int add_counts(search_scan *s, npvdb_client_results *out,
                      const uint8_t *d, size_t n)
{
    wire w = {d, d + n};
    while (w.p < w.end) {
        uint64_t v;
        if (wire_varint(&w, &v)) return -1;
        add_count(s, out, v);
    }
    return 0;
}

/* Copies one key into the arena (which holds at least the message's
 * length: a key takes more bytes on the wire than in the arena). */
static void add_key(search_scan *s, npvdb_client_results *out, const uint8_t *d,
                    size_t n)
{
    if (s->n_keys++ >= out->nq * out->k) return;
    char *dst = out->arena_ + s->arena_len;
    memcpy(dst, d, n);
    dst[n] = '\0';
    s->arena_len += n + 1;
    out->keys[s->n_keys - 1] = dst;
}

/* One field of a SearchReply; 0 on success, -1 when malformed. */
static int search_field(wire *w, search_scan *s, npvdb_client_results *out)
{
    uint32_t field;
    unsigned wt;
    const uint8_t *d;
    size_t n;
    uint64_t v;
    if (wire_tag(w, &field, &wt)) return -1;
    if (field == SR_K && wt == WT_VARINT) return wire_varint(w, &s->k);
    if (field == SR_COUNTS && wt == WT_VARINT) {
        if (wire_varint(w, &v)) return -1;
        add_count(s, out, v);
        return 0;
    }
    if (field == SR_COUNTS && wt == WT_LEN)
        return wire_len(w, &d, &n) || add_counts(s, out, d, n);
    if (field == SR_KEYS && wt == WT_LEN) {
        if (wire_len(w, &d, &n)) return -1;
        add_key(s, out, d, n);
        return 0;
    }
    if (field == SR_DISTANCES && wt == WT_LEN)
        return wire_len(w, &s->dist, &s->dist_len);
    if (field >= SR_K && field <= SR_DISTANCES) return -1; /* wrong type */
    return wire_skip(w, wt);
}

/* The shape of the reply against the request, before anything is read
 * through the counts. */
static npvdb_status check_search(const search_scan *s,
                                 const npvdb_client_results *out,
                                 npvdb_client_error *err)
{
    if (s->k != out->k)
        return fail(err, "search: reply has k %llu, the request %u",
                    (unsigned long long)s->k, out->k);
    if (s->n_counts != out->nq)
        return fail(err, "search: reply has %zu counts for %zu queries",
                    s->n_counts, out->nq);
    size_t sum = 0;
    for (size_t i = 0; i < out->nq; i++) {
        if (out->counts[i] > out->k)
            return fail(err,
                        "search: reply counts %u hits for query %zu, more "
                        "than k %u",
                        out->counts[i], i, out->k);
        sum += out->counts[i];
    }
    if (sum != s->n_keys)
        return fail(err,
                    "search: reply has %zu keys but its counts add up to %zu",
                    s->n_keys, sum);
    if (s->dist_len != out->nq * out->k * sizeof(float))
        return fail(err,
                    "search: reply has %zu bytes of distances, want %zu "
                    "(%zu queries x k %u x 4)",
                    s->dist_len, out->nq * out->k * sizeof(float), out->nq,
                    out->k);
    return NPVDB_STATUS_OK;
}

/* Copies the distances and turns the +inf padding past counts[i] into the
 * zeros get_closest leaves there. A padding slot that is not +inf means
 * the rows are misaligned: INTERNAL. */
static npvdb_status copy_distances(const search_scan *s,
                                   npvdb_client_results *out,
                                   npvdb_client_error *err)
{
    uint32_t k = out->k;
    /* memcpy: the bytes need not be aligned for float. */
    if (s->dist_len) memcpy(out->distances, s->dist, s->dist_len);
    for (size_t i = 0; i < out->nq; i++) {
        float *row = out->distances + i * k;
        for (uint32_t j = out->counts[i]; j < k; j++) {
            if (!(isinf(row[j]) && row[j] > 0))
                return fail(err,
                            "search: reply pads query %zu slot %u with %g, "
                            "not +inf",
                            i, j, (double)row[j]);
            row[j] = 0;
        }
    }
    return NPVDB_STATUS_OK;
}

/* Moves the flat keys to their slots keys[i*k + j]. Walking backwards is
 * safe in place: a slot is never before its source, so every source is
 * read before a later (lower) step could overwrite it. */
static void spread_keys(npvdb_client_results *out, size_t n_keys)
{
    size_t next = n_keys;
    for (size_t i = out->nq; i-- > 0;) {
        uint32_t c = out->counts[i];
        next -= c;
        for (uint32_t j = out->k; j-- > 0;)
            out->keys[i * out->k + j] = j < c ? out->keys[next + j] : NULL;
    }
}

static int search_alloc(npvdb_client_results *out, size_t nq, uint32_t k,
                        size_t len)
{
    size_t slots = nq * k;
    out->nq = nq;
    out->k = k;
    out->counts = calloc(nq ? nq : 1, sizeof *out->counts);
    out->distances = calloc(slots ? slots : 1, sizeof *out->distances);
    out->keys = calloc(slots ? slots : 1, sizeof *out->keys);
    out->arena_ = malloc(len + 1);
    return out->counts && out->distances && out->keys && out->arena_ ? 0 : -1;
}

static npvdb_status search_decode(const uint8_t *buf, size_t len,
                                  npvdb_client_results *out,
                                  npvdb_client_error *err)
{
    search_scan s = {0};
    wire w = {buf, buf + len};
    while (w.p < w.end) {
        if (search_field(&w, &s, out) == 0) continue;
        if (s.n_counts == SIZE_MAX)
            return fail(err, "search: reply has more than %zu counts", out->nq);
        if (s.n_keys == SIZE_MAX)
            return fail(err, "search: reply has more than %zu x %u keys",
                        out->nq, out->k);
        return fail(err, "search: malformed reply (%zu bytes, at byte %zu)",
                    len, (size_t)(w.p - buf));
    }
    npvdb_status rc = check_search(&s, out, err);
    if (rc == NPVDB_STATUS_OK) rc = copy_distances(&s, out, err);
    if (rc == NPVDB_STATUS_OK) spread_keys(out, s.n_keys);
    return rc;
}

npvdb_status npvdb_reply_search(const uint8_t *buf, size_t len, size_t nq,
                                uint32_t k, npvdb_client_results *out,
                                npvdb_client_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_status rc;
    if (k && nq > SIZE_MAX / sizeof(char *) / k)
        rc = fail(err, "search: %zu x %u results do not fit memory", nq, k);
    else if (search_alloc(out, nq, k, len)) {
        rc = NPVDB_STATUS_RESOURCE_EXHAUSTED;
        if (err) {
            err->code = rc;
            snprintf(err->msg, sizeof err->msg,
                     "search: out of memory for %zu x %u results", nq, k);
        }
    } else
        rc = search_decode(buf, len, out, err);
    if (rc != NPVDB_STATUS_OK) npvdb_client_results_free(out);
    return rc;
}

/* ---- GetClosestReply ---- */

int npvdb_reply_collector_init(npvdb_reply_collector *col,
                               npvdb_client_results *r, size_t nq, uint32_t k)
{
    memset(col, 0, sizeof *col);
    memset(r, 0, sizeof *r);
    col->r = r;
    r->nq = nq;
    r->k = k;
    if (k && nq > SIZE_MAX / sizeof(size_t) / k) return -1;
    size_t slots = nq * k;
    r->counts = calloc(nq ? nq : 1, sizeof *r->counts);
    r->distances = calloc(slots ? slots : 1, sizeof *r->distances);
    col->key_off = malloc((slots ? slots : 1) * sizeof *col->key_off);
    if (!r->counts || !r->distances || !col->key_off) return -1;
    for (size_t i = 0; i < slots; i++)
        col->key_off[i] = SIZE_MAX;
    return 0;
}

void npvdb_reply_collector_free(npvdb_reply_collector *col)
{
    free(col->key_off);
    col->key_off = NULL;
}

/* Room for `more` bytes in the arena; 0 on success. */
static int arena_reserve(npvdb_reply_collector *col, size_t more)
{
    if (more <= col->arena_cap - col->arena_len) return 0;
    size_t cap = col->arena_cap ? col->arena_cap : 4096;
    while (cap - col->arena_len < more) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *a = realloc(col->r->arena_, cap);
    if (!a) return -1;
    col->r->arena_ = a;
    col->arena_cap = cap;
    return 0;
}

/* One reply being decoded. */
typedef struct gc_scan {
    uint64_t index;
    size_t n_keys, n_dist;
    int too_many, no_memory;
} gc_scan;

static int gc_key(npvdb_reply_collector *col, size_t i, gc_scan *s,
                  const uint8_t *d, size_t n)
{
    npvdb_client_results *r = col->r;
    if (s->n_keys >= r->k) {
        s->too_many = 1;
        return -1;
    }
    if (arena_reserve(col, n + 1)) {
        s->no_memory = 1;
        return -1;
    }
    memcpy(r->arena_ + col->arena_len, d, n);
    r->arena_[col->arena_len + n] = '\0';
    col->key_off[i * r->k + s->n_keys++] = col->arena_len;
    col->arena_len += n + 1;
    return 0;
}

/* `n` distances of 4 bytes each from `d` (packed, or one unpacked). */
static int gc_distances(npvdb_reply_collector *col, size_t i, gc_scan *s,
                        const uint8_t *d, size_t n)
{
    npvdb_client_results *r = col->r;
    if (n > r->k - s->n_dist) {
        s->too_many = 1;
        return -1;
    }
    memcpy(r->distances + i * r->k + s->n_dist, d, n * sizeof(float));
    s->n_dist += n;
    return 0;
}

static int gc_field(wire *w, npvdb_reply_collector *col, size_t i, gc_scan *s)
{
    uint32_t field;
    unsigned wt;
    const uint8_t *d;
    size_t n;
    if (wire_tag(w, &field, &wt)) return -1;
    if (field == GC_QUERY_INDEX && wt == WT_VARINT)
        return wire_varint(w, &s->index);
    if (field == GC_KEYS && wt == WT_LEN)
        return wire_len(w, &d, &n) || gc_key(col, i, s, d, n);
    if (field == GC_DISTANCES && wt == WT_LEN)
        return wire_len(w, &d, &n) || n % sizeof(float) ||
               gc_distances(col, i, s, d, n / sizeof(float));
    if (field == GC_DISTANCES && wt == WT_I32) {
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        return gc_distances(col, i, s, w->p - 4, 1);
    }
    if (field >= GC_QUERY_INDEX && field <= GC_DISTANCES) return -1;
    return wire_skip(w, wt);
}

npvdb_status npvdb_reply_get_closest(npvdb_reply_collector *col, size_t i,
                                     const uint8_t *buf, size_t len,
                                     npvdb_client_error *err)
{
    npvdb_client_results *r = col->r;
    if (i >= r->nq)
        return fail(err, "get_closest: more than %zu replies", r->nq);
    gc_scan s = {0};
    wire w = {buf, buf + len};
    while (w.p < w.end) {
        if (gc_field(&w, col, i, &s) == 0) continue;
        if (s.no_memory) {
            if (err) {
                err->code = NPVDB_STATUS_RESOURCE_EXHAUSTED;
                snprintf(err->msg, sizeof err->msg,
                         "get_closest: out of memory");
            }
            return NPVDB_STATUS_RESOURCE_EXHAUSTED;
        }
        if (s.too_many)
            return fail(err, "get_closest: reply %zu has more than k %u hits",
                        i, r->k);
        return fail(err, "get_closest: malformed reply %zu", i);
    }
    if (s.index != i)
        return fail(err, "get_closest: reply %zu has query_index %llu (of %zu)",
                    i, (unsigned long long)s.index, r->nq);
    if (s.n_keys != s.n_dist)
        return fail(err,
                    "get_closest: reply %zu has %zu keys, %zu distances (k %u)",
                    i, s.n_keys, s.n_dist, r->k);
    r->counts[i] = (uint32_t)s.n_keys;
    return NPVDB_STATUS_OK;
}

int npvdb_reply_collector_finish(npvdb_reply_collector *col)
{
    npvdb_client_results *r = col->r;
    size_t slots = r->nq * r->k;
    r->keys = calloc(slots ? slots : 1, sizeof *r->keys);
    if (!r->keys) return -1;
    for (size_t i = 0; i < slots; i++)
        if (col->key_off[i] != SIZE_MAX)
            r->keys[i] = r->arena_ + col->key_off[i];
    return 0;
}
