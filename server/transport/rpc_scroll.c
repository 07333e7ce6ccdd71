/*
 * rpc_scroll.c -- Scroll (unary): one page of a collection's keys (with
 * vectors and payloads if asked), of the vectors passing an optional
 * filter. The cursor is the engine's, wrapped with a check (codec.c); an
 * empty next_cursor means the scroll is complete. A page is bounded by the
 * limit and by the message limit: items that would not fit are left for
 * the next page (the engine's cursor cannot resume inside a page, so the
 * page is cut before the engine is asked: limit is lowered to what fits).
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* The page being collected by on_item (called under the engine's read
 * lock): copies of keys, vectors and payloads. */
typedef struct page {
    uint32_t dim;
    int with_vectors, with_payload;
    size_t n, cap;
    char **keys;
    float *rows;
    npvdb_payload *pls;
    int oom;
} page;

static void page_free(page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->keys[i]);
        if (p->pls) free((void *)p->pls[i].data);
    }
    free(p->keys);
    free(p->rows);
    free(p->pls);
}

static int page_alloc(page *p, size_t cap)
{
    p->cap = cap;
    p->keys = calloc(cap, sizeof *p->keys);
    if (p->with_vectors) p->rows = malloc(cap * p->dim * sizeof(float));
    if (p->with_payload) p->pls = calloc(cap, sizeof *p->pls);
    return p->keys && (!p->with_vectors || p->rows) &&
           (!p->with_payload || p->pls);
}

static int on_item(void *ctx, const npvdb_scroll_item *it)
{
    page *p = ctx;
    if (p->n == p->cap) return 1; /* the engine keeps to the limit */
    char *k = malloc(it->key_len + 1);
    uint8_t *pl = NULL;
    if (p->with_payload && it->payload.len) pl = malloc(it->payload.len);
    if (!k || (p->with_payload && it->payload.len && !pl)) {
        free(k);
        free(pl);
        p->oom = 1;
        return 1;
    }
    memcpy(k, it->key, it->key_len);
    k[it->key_len] = 0;
    if (p->with_vectors)
        memcpy(p->rows + p->n * p->dim, it->vector, p->dim * sizeof(float));
    if (pl) {
        memcpy(pl, it->payload.data, it->payload.len);
        p->pls[p->n] = (npvdb_payload){pl, it->payload.len};
    }
    p->keys[p->n++] = k;
    return 0;
}

static void reply(npvdb_server *s, const page *p, uint64_t next, int done,
                  nt_result *res)
{
    uint8_t cur[CODEC_CURSOR_LEN];
    Npvdb__V1__ScrollReply r = NPVDB__V1__SCROLL_REPLY__INIT;
    r.n_keys = p->n;
    r.keys = p->keys;
    if (p->with_vectors) {
        r.vectors.data = (uint8_t *)p->rows;
        r.vectors.len = p->n * p->dim * sizeof(float);
    }
    if (!done) {
        codec_scroll_cursor(next, cur);
        r.next_cursor.data = cur;
        r.next_cursor.len = sizeof cur;
    }
    nt_result_pack_payloads(s, res, &r.base, p->pls, p->pls ? p->n : 0, 3);
}

/* Lowers limit so that a page of vectors fits the message limit (keys and
 * payloads are bounded too: at most 1 KiB + 1 MiB each, but a page of
 * big payloads is rare; the pack refuses what does not fit). */
static uint32_t fit_limit(npvdb_server *s, const codec_scroll *q, uint32_t dim)
{
    size_t per = NPVDB_MAX_KEY_LEN + 8;
    if (q->with_vectors) per += (size_t)dim * sizeof(float);
    size_t fit = s->max_message / 2 / per;
    if (fit == 0) fit = 1;
    return q->limit < fit ? q->limit : (uint32_t)fit;
}

static void handle_scroll(npvdb_server *s, const uint8_t *buf, size_t len,
                          nt_result *res)
{
    npvdb_error err = {0};
    codec_scroll req;
    catalog_ref ref;
    if (codec_decode_scroll(buf, len, &req, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return;
    }
    if (!nt_acquire(s, &req.collection, &ref, res)) {
        codec_scroll_free(&req);
        return;
    }
    page p = {.dim = npvdb_dim(ref.coll),
              .with_vectors = req.with_vectors,
              .with_payload = req.with_payload};
    uint32_t limit = fit_limit(s, &req, p.dim);
    uint64_t next = 0;
    int done = 0;
    if (!page_alloc(&p, limit))
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory for a page of %u", limit);
    else if (npvdb_scroll(ref.coll, req.cursor, limit, req.filter.root, on_item,
                          &p, &next, &done, &err) != NPVDB_OK) {
        if (p.oom)
            nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "out of memory for a page of %u", limit);
        else
            nt_result_error(res, &err);
    } else {
        reply(s, &p, next, done, res);
    }
    nt_release(s, &ref);
    page_free(&p);
    codec_scroll_free(&req);
}

const nt_method nt_rpc_scroll = {
    .path = "/npvdb.v1.VectorDB/Scroll",
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_scroll,
};
