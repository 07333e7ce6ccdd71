/*
 * scroll.c -- npvdb_scroll: pages through a collection by walking its key
 * map with Redis dictScan's reverse-binary bucket cursor. The map only
 * grows (power-of-two bucket counts, never shrunk), and in reverse-binary
 * order the buckets a bucket splits into when the table doubles come
 * together, so a cursor taken before a growth still covers every bucket
 * after it: a key stored for the whole scroll is seen at least once, and
 * exactly once when nothing is written meanwhile.
 *
 * A page may stop inside a bucket (a full page, or `limit` smaller than a
 * chain): the cursor then also holds the hash to resume from, and the
 * bucket's entries are taken in hash order. Keys with one full 32-bit hash
 * in one bucket go together, so a page exceeds `limit` only if such a group
 * alone is bigger than it (two keys of equal hash in a page of 1).
 *
 * Cursor: low 32 bits the bucket cursor, high 32 bits the first hash of
 * that bucket still to do (0: the whole bucket).
 */
#include "validate.h"

#include <stdlib.h>
#include <string.h>

/* Buckets plus entries looked at per page, per item asked for: the bound
 * of a page's work when the filter passes little. */
#define WORK_PER_ITEM 64
#define MIN_WORK 4096

typedef struct pager {
    npvdb_collection *c;
    const cfilter *f;
    npvdb_scroll_cb cb;
    void *ctx;
    uint32_t limit, emitted;
    int stopped; /* the callback said stop */
    npvdb_entry **ents;
    size_t cap;
} pager;

static uint32_t rev32(uint32_t v)
{
    v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
    v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
    v = ((v >> 4) & 0x0f0f0f0fu) | ((v & 0x0f0f0f0fu) << 4);
    v = ((v >> 8) & 0x00ff00ffu) | ((v & 0x00ff00ffu) << 8);
    return (v >> 16) | (v << 16);
}

/* The bucket after v in reverse-binary order under mask m; 0 at the end. */
static uint32_t next_bucket(uint32_t v, uint32_t m)
{
    v |= ~m;
    v = rev32(v);
    v++;
    return rev32(v);
}

static const npvdb_pstore *payload_of(const npvdb_collection *c,
                                      const npvdb_entry *e)
{
    return c->shards[e->shard].pay[e->row];
}

/* The entries of bucket b with hash >= from, in hash order, into p->ents;
 * returns how many, or -1 out of memory. */
static long bucket_entries(pager *p, size_t b, uint32_t from)
{
    size_t n = 0;
    for (npvdb_entry *e = p->c->map.buckets[b]; e; e = e->next) {
        if (e->hash < from) continue;
        if (n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 16;
            npvdb_entry **ne = realloc(p->ents, cap * sizeof *ne);
            if (!ne) return -1;
            p->ents = ne;
            p->cap = cap;
        }
        size_t i = n++; /* insertion sort: chains are short */
        for (; i > 0 && p->ents[i - 1]->hash > e->hash; i--)
            p->ents[i] = p->ents[i - 1];
        p->ents[i] = e;
    }
    return (long)n;
}

static int emit(pager *p, const npvdb_entry *e, const npvdb_pstore *ps)
{
    const npvdb_shard *sh = &p->c->shards[e->shard];
    npvdb_scroll_item it = {
        .key = e->key,
        .key_len = e->len,
        .vector = sh->rows + (size_t)e->row * p->c->cfg.dim,
        .payload =
            ps ? (npvdb_payload){pstore_blob(ps), ps->len} : (npvdb_payload){0},
    };
    p->emitted++;
    if (p->cb(p->ctx, &it)) p->stopped = 1;
    return p->stopped;
}

/* Emits the passing entries of ents[0..n) by groups of one hash. Returns
 * 1 and sets *resume when the page filled before a group. */
static int emit_bucket(pager *p, size_t n, uint32_t *resume)
{
    for (size_t g = 0; g < n;) {
        size_t end = g + 1, pass = 0;
        while (end < n && p->ents[end]->hash == p->ents[g]->hash)
            end++;
        for (size_t i = g; i < end; i++)
            pass += filter_pass(p->f, payload_of(p->c, p->ents[i]));
        if (pass && p->emitted && p->emitted + pass > p->limit) {
            *resume = p->ents[g]->hash;
            return 1;
        }
        for (size_t i = g; i < end && !p->stopped; i++) {
            const npvdb_pstore *ps = payload_of(p->c, p->ents[i]);
            if (filter_pass(p->f, ps)) emit(p, p->ents[i], ps);
        }
        if (p->stopped) return 0;
        g = end;
    }
    return 0;
}

/* One page from cursor (see the top); caller holds rw shared. */
static npvdb_code page(pager *p, uint64_t cursor, uint64_t *next, int *done,
                       npvdb_error *err)
{
    const npvdb_keymap *m = &p->c->map;
    uint32_t mask = (uint32_t)m->mask, v = (uint32_t)cursor;
    uint32_t from = (uint32_t)(cursor >> 32);
    size_t work = 0, bound = (size_t)p->limit * WORK_PER_ITEM;
    if (bound < MIN_WORK) bound = MIN_WORK;
    for (;;) {
        long n = bucket_entries(p, v & mask, from);
        if (n < 0)
            return npvdb_set_error(err, NPVDB_ENOMEM,
                                   "out of memory scrolling");
        uint32_t resume;
        if (emit_bucket(p, (size_t)n, &resume)) {
            *next = (uint64_t)resume << 32 | v;
            return NPVDB_OK;
        }
        if (p->stopped)
            return npvdb_set_error(err, NPVDB_EINTERNAL,
                                   "scroll stopped by the callback");
        from = 0;
        work += (size_t)n + 1;
        v = next_bucket(v, mask);
        if (v == 0) {
            *next = 0;
            *done = 1;
            return NPVDB_OK;
        }
        if (p->emitted >= p->limit || work >= bound) {
            *next = v;
            return NPVDB_OK;
        }
    }
}

npvdb_code npvdb_scroll(npvdb_collection *c, uint64_t cursor, uint32_t limit,
                        const npvdb_filter *f, npvdb_scroll_cb on_item,
                        void *ctx, uint64_t *next, int *done, npvdb_error *err)
{
    *next = cursor;
    *done = 0;
    if (limit < 1 || limit > NPVDB_MAX_K)
        return npvdb_set_error(err, NPVDB_EINVAL, "limit must be 1..%d, got %u",
                               NPVDB_MAX_K, limit);
    if (!on_item)
        return npvdb_set_error(err, NPVDB_EINVAL, "no item callback given");
    npvdb_code rc = npvdb_filter_check(f, err);
    if (rc) return rc;
    cfilter *cf = NULL;
    pager p = {.c = c, .cb = on_item, .ctx = ctx, .limit = limit};
    pthread_rwlock_rdlock(&c->rw);
    rc = filter_compile(c, f, &cf, err);
    p.f = cf;
    if (rc == NPVDB_OK) rc = page(&p, cursor, next, done, err);
    pthread_rwlock_unlock(&c->rw);
    filter_free(cf);
    free(p.ents);
    if (rc) {
        *next = cursor;
        *done = 0;
        return rc;
    }
    npvdb_ok(err);
    return NPVDB_OK;
}
