/*
 * fuzz_filter.c -- libFuzzer target for npvdb_filter_check and the filter
 * compiler/evaluator. The input bytes drive the construction of a filter
 * tree (counts, kinds, field names, values, bounds: anything a decoder of
 * the wire could hand over, including past every limit); the checker must
 * accept or refuse it without a crash, and an accepted filter must count
 * over a small collection with payloads (npvdb_count) within its size.
 */
#include "npvdb.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 6000

typedef struct src {
    const uint8_t *p;
    size_t n, pos;
    size_t nodes; /* conditions + values made, to bound the work */
} src;

static uint8_t byte(src *s)
{
    return s->pos < s->n ? s->p[s->pos++] : 0;
}

static double num(src *s)
{
    uint64_t b = 0;
    for (int i = 0; i < 8; i++)
        b |= (uint64_t)byte(s) << (8 * i);
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static const char *const names[4] = {"bucket", "tag", "price", "zz"};

/* A string taken from the input itself (may be bad UTF-8, empty, long). */
static void text(src *s, const char **p, uint32_t *len)
{
    uint8_t sel = byte(s);
    if (sel < 200) {
        *p = names[sel % 4];
        *len = (uint32_t)strlen(*p);
        return;
    }
    uint32_t l = byte(s) % 64;
    if (sel == 255) l = 300; /* past the name limit */
    if (l > s->n - s->pos) l = (uint32_t)(s->n - s->pos);
    *p = (const char *)s->p + s->pos;
    *len = l;
    s->pos += l;
}

static npvdb_filter *make_filter(src *s, int depth);

static void make_cond(src *s, npvdb_cond *c, int depth)
{
    memset(c, 0, sizeof *c);
    uint8_t k = byte(s);
    c->kind = (npvdb_cond_kind)(k % 6); /* 0 and 5 are not kinds */
    text(s, &c->field, &c->field_len);
    if (c->kind == NPVDB_COND_MATCH) {
        uint32_t nv = byte(s) % 5;
        if (byte(s) == 255) nv = 1100; /* past the list limit */
        npvdb_match_value *v = calloc(nv ? nv : 1, sizeof *v);
        if (!v) abort();
        for (uint32_t j = 0; j < nv && s->nodes < MAX_NODES; j++, s->nodes++) {
            v[j].type = (npvdb_value_type)(byte(s) % 6);
            v[j].i = (int8_t)byte(s);
            v[j].b = byte(s) % 3;
            text(s, &v[j].s, &v[j].s_len);
        }
        c->values = v;
        c->n_values = nv;
    } else if (c->kind == NPVDB_COND_RANGE) {
        uint8_t f = byte(s);
        c->has_lower = f & 1;
        c->lower_inclusive = (f >> 1) & 1;
        c->has_upper = (f >> 2) & 1;
        c->upper_inclusive = (f >> 3) & 1;
        c->lower = (f & 16) ? num(s) : (int8_t)byte(s);
        c->upper = (f & 32) ? num(s) : (int8_t)byte(s);
    } else if (c->kind == NPVDB_COND_FILTER && byte(s) != 7) {
        c->sub = make_filter(s, depth + 1);
    }
}

static void make_list(src *s, const npvdb_cond **out, uint32_t *n, int depth)
{
    uint32_t m = byte(s) % 4;
    if (byte(s) == 254) m = 4100; /* past the condition limit */
    npvdb_cond *c = calloc(m ? m : 1, sizeof *c);
    if (!c) abort();
    for (uint32_t i = 0; i < m; i++) {
        if (s->nodes++ >= MAX_NODES || depth > 20) {
            c[i].kind = NPVDB_COND_HAS_FIELD;
            c[i].field = "x";
            c[i].field_len = 1;
            continue;
        }
        make_cond(s, &c[i], depth);
    }
    *out = c;
    *n = m;
}

static npvdb_filter *make_filter(src *s, int depth)
{
    npvdb_filter *f = calloc(1, sizeof *f);
    if (!f) abort();
    make_list(s, &f->must, &f->n_must, depth);
    make_list(s, &f->should, &f->n_should, depth);
    make_list(s, &f->must_not, &f->n_must_not, depth);
    return f;
}

static void free_filter(npvdb_filter *f);

static void free_list(const npvdb_cond *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free((void *)c[i].values);
        if (c[i].sub) free_filter((npvdb_filter *)c[i].sub);
    }
    free((void *)c);
}

static void free_filter(npvdb_filter *f)
{
    free_list(f->must, f->n_must);
    free_list(f->should, f->n_should);
    free_list(f->must_not, f->n_must_not);
    free(f);
}

static npvdb_collection *coll;

/* 64 vectors whose payloads mix every type under the fuzzer's names. */
static void setup(void)
{
    npvdb_config cfg = {.dim = 2, .n_workers = 1};
    coll = npvdb_create(&cfg, NULL);
    if (!coll) abort();
    const char *keys[64];
    char kbuf[64][8];
    float x[128];
    npvdb_payload p[64];
    for (int i = 0; i < 64; i++) {
        snprintf(kbuf[i], sizeof kbuf[i], "k%d", i);
        keys[i] = kbuf[i];
        x[2 * i] = 1.0f + (float)i;
        x[2 * i + 1] = 1.0f;
        const char *items[1] = {names[i % 4]};
        uint32_t lens[1] = {(uint32_t)strlen(items[0])};
        npvdb_field f[3] = {
            {.name = "bucket",
             .name_len = 6,
             .type = NPVDB_VALUE_INT,
             .i = i % 8 - 4},
            {.name = "price",
             .name_len = 5,
             .type = NPVDB_VALUE_DOUBLE,
             .d = i * 0.5},
            (i & 1) ? (npvdb_field){.name = "tag",
                                    .name_len = 3,
                                    .type = NPVDB_VALUE_STRINGS,
                                    .n_items = 1,
                                    .items = items,
                                    .item_lens = lens}
                    : (npvdb_field){.name = "tag",
                                    .name_len = 3,
                                    .type = NPVDB_VALUE_BOOL,
                                    .b = i & 2 ? 1 : 0},
        };
        if (npvdb_payload_build(f, i % 4 ? 3 : 0, &p[i], NULL)) abort();
    }
    if (npvdb_upsert(coll, keys, x, p, 64, NULL, NULL)) abort();
    for (int i = 0; i < 64; i++)
        free((void *)p[i].data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!coll) setup();
    src s = {.p = data, .n = size};
    npvdb_filter *f = make_filter(&s, 1);
    npvdb_error err;
    if (npvdb_filter_check(f, &err) == NPVDB_OK) {
        uint64_t n = 0;
        if (npvdb_count(coll, f, &n, &err) != NPVDB_OK || n > 64) abort();
        float q[2] = {1, 2};
        npvdb_results r;
        npvdb_search_params sp = {.filter = f, .with_payload = 1};
        if (npvdb_search_ex(coll, q, 1, 5, &sp, &r, &err) != NPVDB_OK) abort();
        if (r.counts[0] > 5 || (n >= 5 && r.counts[0] != 5)) abort();
        npvdb_results_free(&r);
    } else if (err.code != NPVDB_EINVAL || !err.msg[0]) {
        abort();
    }
    free_filter(f);
    return 0;
}
