/*
 * reply.c -- SearchReply and GetClosestReply decoded from the wire bytes,
 * with their payloads, and the results they fill (see reply.h). Field
 * numbers are the ones of protos/npvdb/v1/npvdb.proto. No gRPC here: the
 * fuzz target (tests/fuzz/client) builds this file and payload.c alone.
 */
#include "reply.h"
#include "payload.h"

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
enum { SR_PAYLOADS = 5 };
/* GetClosestReply fields. */
enum { GC_QUERY_INDEX = 1, GC_KEYS = 2, GC_DISTANCES = 3, GC_PAYLOADS = 4 };
/* Payload, its map entry, Value (kinds are npvdb_client_value_type) and
 * StringList. */
enum { PL_FIELDS = 1, PE_KEY = 1, PE_VALUE = 2, SL_VALUES = 1 };

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

/* ---- Payload ----
 * A Payload message is decoded in two passes over its bytes: the first
 * counts fields, list strings and string bytes, so that the second fills
 * one block (payload.h) of exactly that room. Both passes read an entry
 * through parse_entry, so they cannot disagree. As protobuf does, the last
 * key, value and kind of an entry win; unknown fields are skipped. A
 * payload holding one name twice (which no map encoder sends) is INTERNAL.
 */

/* One map entry: its name and the kind (npvdb_client_value_type, 0 when no
 * value) with its varint / fixed64 or its bytes (a string, or a StringList
 * message). */
typedef struct entry_view {
    const uint8_t *name;
    size_t name_len;
    int kind;
    uint64_t v;
    const uint8_t *bytes;
    size_t len;
} entry_view;

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | p[b];
    return v;
}

/* One field of a Value message into e; 0 on success. */
static int value_field(wire *w, entry_view *e)
{
    uint32_t field;
    unsigned wt;
    if (wire_tag(w, &field, &wt)) return -1;
    switch (field) {
    case NPVDB_CLIENT_VALUE_STRING:
    case NPVDB_CLIENT_VALUE_STRINGS:
        if (wt != WT_LEN || wire_len(w, &e->bytes, &e->len)) return -1;
        break;
    case NPVDB_CLIENT_VALUE_INT:
    case NPVDB_CLIENT_VALUE_BOOL:
        if (wt != WT_VARINT || wire_varint(w, &e->v)) return -1;
        break;
    case NPVDB_CLIENT_VALUE_DOUBLE:
        if (wt != WT_I64 || w->end - w->p < 8) return -1;
        e->v = read_le64(w->p);
        w->p += 8;
        break;
    default:
        return wire_skip(w, wt);
    }
    e->kind = (int)field;
    return 0;
}

/* Reads a map entry; 0 on success (e->kind 0: it has no value). */
static int parse_entry(const uint8_t *d, size_t n, entry_view *e)
{
    memset(e, 0, sizeof *e);
    const uint8_t *value = NULL;
    size_t value_len = 0;
    wire w = {d, d + n};
    while (w.p < w.end) {
        uint32_t field;
        unsigned wt;
        if (wire_tag(&w, &field, &wt)) return -1;
        if (field == PE_KEY || field == PE_VALUE) {
            const uint8_t *b;
            size_t l;
            if (wt != WT_LEN || wire_len(&w, &b, &l)) return -1;
            if (field == PE_KEY) {
                e->name = b;
                e->name_len = l;
            } else {
                value = b;
                value_len = l;
            }
        } else if (wire_skip(&w, wt)) {
            return -1;
        }
    }
    w.p = value;
    w.end = value ? value + value_len : NULL;
    while (value && w.p < w.end)
        if (value_field(&w, e)) return -1;
    return 0;
}

/* Calls fn(ctx, bytes, len) for each string of a StringList message;
 * returns how many, or -1 when malformed. */
static long list_walk(const uint8_t *d, size_t n,
                      void (*fn)(void *, const uint8_t *, size_t), void *ctx)
{
    wire w = {d, d + n};
    long count = 0;
    while (w.p < w.end) {
        uint32_t field;
        unsigned wt;
        const uint8_t *b;
        size_t l;
        if (wire_tag(&w, &field, &wt)) return -1;
        if (field != SL_VALUES) {
            if (wire_skip(&w, wt)) return -1;
            continue;
        }
        if (wt != WT_LEN || wire_len(&w, &b, &l)) return -1;
        if (fn) fn(ctx, b, l);
        count++;
    }
    return count;
}

/* Where the second pass writes. */
typedef struct pl_fill {
    npvdb_client_payload *p;
    char **ptrs;
    size_t *lens;
    size_t n_items;
    char *bytes;
} pl_fill;

/* Copies n bytes and a NUL into the block; returns the copy. */
static char *fill_bytes(pl_fill *f, const uint8_t *d, size_t n)
{
    char *s = f->bytes;
    if (n) memcpy(s, d, n);
    s[n] = '\0';
    f->bytes += n + 1;
    return s;
}

static void fill_item(void *ctx, const uint8_t *d, size_t n)
{
    pl_fill *f = ctx;
    f->lens[f->n_items] = n;
    f->ptrs[f->n_items++] = fill_bytes(f, d, n);
}

static void fill_field(pl_fill *f, const entry_view *e)
{
    npvdb_client_field *out = &f->p->fields[f->p->n++];
    memset(out, 0, sizeof *out);
    out->name = fill_bytes(f, e->name, e->name_len);
    out->name_len = e->name_len;
    out->type = (npvdb_client_value_type)e->kind;
    switch (e->kind) {
    case NPVDB_CLIENT_VALUE_STRING:
        out->str = fill_bytes(f, e->bytes, e->len);
        out->str_len = e->len;
        break;
    case NPVDB_CLIENT_VALUE_INT:
        out->i = (int64_t)e->v;
        break;
    case NPVDB_CLIENT_VALUE_DOUBLE:
        memcpy(&out->d, &e->v, sizeof out->d);
        break;
    case NPVDB_CLIENT_VALUE_BOOL:
        out->b = e->v != 0;
        break;
    case NPVDB_CLIENT_VALUE_STRINGS: {
        size_t first = f->n_items;
        out->n_strs = (size_t)list_walk(e->bytes, e->len, fill_item, f);
        out->strs = (const char *const *)(f->ptrs + first);
        out->str_lens = f->lens + first;
        break;
    }
    }
}

/* Room a payload needs: fields, list strings, string bytes. */
typedef struct pl_room {
    size_t fields, items, bytes;
} pl_room;

/* Pass 1 (fill NULL) or 2 over the entries of a Payload message. In pass
 * 1, *bad_at gets the entry at fault; 0 on success, -1 malformed, -2 an
 * entry without a value. */
static int payload_pass(const uint8_t *buf, size_t len, pl_room *room,
                        pl_fill *fill, size_t *bad_at)
{
    wire w = {buf, buf + len};
    size_t at = 0;
    while (w.p < w.end) {
        uint32_t field;
        unsigned wt;
        const uint8_t *d;
        size_t n;
        entry_view e;
        *bad_at = at;
        if (wire_tag(&w, &field, &wt)) return -1;
        if (field != PL_FIELDS) {
            if (wire_skip(&w, wt)) return -1;
            continue;
        }
        if (wt != WT_LEN || wire_len(&w, &d, &n) || parse_entry(d, n, &e))
            return -1;
        if (!e.kind) return -2;
        at++;
        if (fill) {
            fill_field(fill, &e);
            continue;
        }
        long items = 0;
        if (e.kind == NPVDB_CLIENT_VALUE_STRINGS &&
            (items = list_walk(e.bytes, e.len, NULL, NULL)) < 0)
            return -1;
        room->fields++;
        room->items += (size_t)items;
        /* A string of l bytes takes at least l + 2 on the wire: the bytes
         * of the value (with their NULs) fit in e.len + 1. */
        room->bytes += e.name_len + 1 +
                       (e.kind == NPVDB_CLIENT_VALUE_STRING ||
                                e.kind == NPVDB_CLIENT_VALUE_STRINGS
                            ? e.len + 1
                            : 0);
    }
    return 0;
}

/* One block for a payload of `room`; NULL when out of memory. */
static npvdb_client_payload *payload_block(const pl_room *room, pl_fill *f)
{
    size_t head = sizeof(npvdb_client_payload);
    size_t fields = room->fields * sizeof(npvdb_client_field);
    size_t items = room->items * (sizeof(char *) + sizeof(size_t));
    /* Every count is bounded by the reply's length; this guards 32-bit
     * hosts against a wrap all the same. */
    if (room->fields > SIZE_MAX / 4 / sizeof(npvdb_client_field) ||
        room->items > SIZE_MAX / 4 / (sizeof(char *) + sizeof(size_t)) ||
        room->bytes > SIZE_MAX / 4)
        return NULL;
    unsigned char *b = malloc(head + fields + items + room->bytes);
    if (!b) return NULL;
    memset(f, 0, sizeof *f);
    f->p = (npvdb_client_payload *)(void *)b;
    memset(f->p, 0, sizeof *f->p);
    f->p->fields = (npvdb_client_field *)(void *)(b + head);
    f->ptrs = (char **)(void *)(b + head + fields);
    f->lens =
        (size_t *)(void *)(b + head + fields + room->items * sizeof(char *));
    f->bytes = (char *)b + head + fields + items;
    return f->p;
}

/* Payload `index` of a `what` reply; *out NULL when it has no fields. */
static npvdb_status decode_payload(const uint8_t *buf, size_t len,
                                   const char *what, size_t index,
                                   npvdb_client_payload **out,
                                   npvdb_client_error *err)
{
    *out = NULL;
    pl_room room = {0};
    size_t at = 0;
    int rc = payload_pass(buf, len, &room, NULL, &at);
    if (rc == -2)
        return fail(err, "%s: payload %zu: field %zu has no value", what, index,
                    at);
    if (rc)
        return fail(err, "%s: payload %zu: malformed (%zu bytes, field %zu)",
                    what, index, len, at);
    if (!room.fields) return NPVDB_STATUS_OK;
    pl_fill f;
    npvdb_client_payload *p = payload_block(&room, &f);
    if (!p) {
        if (err) {
            err->code = NPVDB_STATUS_RESOURCE_EXHAUSTED;
            snprintf(err->msg, sizeof err->msg,
                     "%s: out of memory for payload %zu", what, index);
        }
        return NPVDB_STATUS_RESOURCE_EXHAUSTED;
    }
    payload_pass(buf, len, &room, &f, &at); /* checked by pass 1 */
    size_t dup;
    if (npvdb_payload_sort(p, &dup)) {
        npvdb_status s =
            fail(err, "%s: payload %zu has the field '%.64s' twice", what,
                 index, p->fields[dup].name);
        free(p);
        return s;
    }
    *out = p;
    return NPVDB_STATUS_OK;
}

npvdb_status npvdb_reply_payload(const uint8_t *buf, size_t len,
                                 npvdb_client_payload **out,
                                 npvdb_client_error *err)
{
    return decode_payload(buf, len, "reply", 0, out, err);
}

npvdb_status npvdb_reply_payloads(const uint8_t *buf, size_t len,
                                  uint32_t field, const char *what,
                                  npvdb_client_payload **slots, size_t n_slots,
                                  size_t *n_found, npvdb_client_error *err)
{
    *n_found = 0;
    wire w = {buf, buf + len};
    while (w.p < w.end) {
        uint32_t f;
        unsigned wt;
        const uint8_t *d;
        size_t n;
        if (wire_tag(&w, &f, &wt))
            return fail(err, "%s: malformed reply (%zu bytes)", what, len);
        if (f != field) {
            if (wire_skip(&w, wt))
                return fail(err, "%s: malformed reply (%zu bytes)", what, len);
            continue;
        }
        if (wt != WT_LEN || wire_len(&w, &d, &n))
            return fail(err, "%s: malformed payload %zu", what, *n_found);
        if (*n_found == n_slots)
            return fail(err, "%s: reply has more payloads than its %zu keys",
                        what, n_slots);
        npvdb_status rc =
            decode_payload(d, n, what, *n_found, &slots[*n_found], err);
        if (rc != NPVDB_STATUS_OK) return rc;
        (*n_found)++;
    }
    return NPVDB_STATUS_OK;
}

/* ---- results ---- */

void npvdb_client_results_free(npvdb_client_results *r)
{
    if (!r) return;
    free(r->counts);
    free(r->keys);
    free(r->distances);
    free(r->arena_);
    npvdb_payloads_release(r->payloads_, r->payloads_ ? r->nq * r->k : 0);
    memset(r, 0, sizeof *r);
}

const npvdb_client_payload *
npvdb_client_results_payload(const npvdb_client_results *r, size_t i,
                             uint32_t j)
{
    if (!r || !r->payloads_ || i >= r->nq || j >= r->counts[i]) return NULL;
    return r->payloads_[i * r->k + j];
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

/* Moves the flat payloads [0, n_keys) to their slots, as spread_keys does
 * the keys: each pointer ends in exactly one slot, the others are NULL. */
static void spread_payloads(npvdb_client_results *out, size_t n_keys)
{
    npvdb_client_payload **v = out->payloads_;
    size_t next = n_keys;
    for (size_t i = out->nq; i-- > 0;) {
        uint32_t c = out->counts[i];
        next -= c;
        for (uint32_t j = out->k; j-- > 0;)
            v[i * out->k + j] = j < c ? v[next + j] : NULL;
    }
}

/* The payloads of a checked reply: one per key, flat as the keys. */
static npvdb_status search_payloads(const uint8_t *buf, size_t len,
                                    size_t n_keys, npvdb_client_results *out,
                                    npvdb_client_error *err)
{
    size_t found;
    npvdb_status rc = npvdb_reply_payloads(buf, len, SR_PAYLOADS, "search",
                                           out->payloads_, n_keys, &found, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    if (found != n_keys)
        return fail(err, "search: reply has %zu payloads for %zu keys", found,
                    n_keys);
    spread_payloads(out, n_keys);
    return NPVDB_STATUS_OK;
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
    if (rc == NPVDB_STATUS_OK && out->payloads_)
        rc = search_payloads(buf, len, s.n_keys, out, err);
    return rc;
}

npvdb_status npvdb_reply_search(const uint8_t *buf, size_t len, size_t nq,
                                uint32_t k, npvdb_client_results *out,
                                npvdb_client_error *err)
{
    return npvdb_reply_search_ex(buf, len, nq, k, 0, out, err);
}

npvdb_status npvdb_reply_search_ex(const uint8_t *buf, size_t len, size_t nq,
                                   uint32_t k, int with_payload,
                                   npvdb_client_results *out,
                                   npvdb_client_error *err)
{
    memset(out, 0, sizeof *out);
    npvdb_status rc;
    if (k && nq > SIZE_MAX / sizeof(char *) / k)
        rc = fail(err, "search: %zu x %u results do not fit memory", nq, k);
    else if (search_alloc(out, nq, k, len) ||
             (with_payload &&
              !(out->payloads_ =
                    calloc(nq && k ? nq * k : 1, sizeof *out->payloads_)))) {
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
    if (!r->payloads_) return NPVDB_STATUS_OK;
    size_t found;
    npvdb_status rc =
        npvdb_reply_payloads(buf, len, GC_PAYLOADS, "get_closest",
                             r->payloads_ + i * r->k, s.n_keys, &found, err);
    if (rc == NPVDB_STATUS_OK && found != s.n_keys)
        rc = fail(err, "get_closest: reply %zu has %zu payloads for %zu keys",
                  i, found, s.n_keys);
    return rc;
}

int npvdb_reply_collector_want_payloads(npvdb_reply_collector *col)
{
    npvdb_client_results *r = col->r;
    size_t slots = r->nq * r->k;
    r->payloads_ = calloc(slots ? slots : 1, sizeof *r->payloads_);
    return r->payloads_ ? 0 : -1;
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
