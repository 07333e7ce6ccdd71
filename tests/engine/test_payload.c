/*
 * test_payload.c -- the canonical payload blob: build/check/next round
 * trips, canonical bytes whatever the field order, every refusal of the
 * checker and the builder (naming what was wrong), and payloads stored with
 * vectors: upsert replaces them, an insert without one clears it, delete,
 * get, export/restore, memory accounting, and a batch with a bad payload
 * applies nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"
#include "npvdb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(npvdb_code got, npvdb_code want, const npvdb_error *err,
                   const char *fragment)
{
    assert_int_equal(got, want);
    assert_int_equal(err->code, want);
    if (!strstr(err->msg, fragment))
        fail_msg("'%s' lacks '%s'", err->msg, fragment);
}

static npvdb_field fstr(const char *name, const char *v)
{
    return (npvdb_field){.name = name,
                         .name_len = (uint32_t)strlen(name),
                         .type = NPVDB_VALUE_STRING,
                         .s = v,
                         .s_len = (uint32_t)strlen(v)};
}

static npvdb_field fint(const char *name, int64_t v)
{
    return (npvdb_field){.name = name,
                         .name_len = (uint32_t)strlen(name),
                         .type = NPVDB_VALUE_INT,
                         .i = v};
}

static const char *const tags[3] = {"red", "", "blue"};
static const uint32_t tag_lens[3] = {3, 0, 4};

/* Five fields, one of each type, in a non-sorted order. */
static void five(npvdb_field *f)
{
    f[0] = fint("n", -42);
    f[1] = fstr("lang", "fr\xc3\xa9");
    f[2] = (npvdb_field){
        .name = "ok", .name_len = 2, .type = NPVDB_VALUE_BOOL, .b = 1};
    f[3] = (npvdb_field){
        .name = "price", .name_len = 5, .type = NPVDB_VALUE_DOUBLE, .d = 2.5};
    f[4] = (npvdb_field){.name = "tags",
                         .name_len = 4,
                         .type = NPVDB_VALUE_STRINGS,
                         .n_items = 3,
                         .items = tags,
                         .item_lens = tag_lens};
}

static void test_round_trip(void **s)
{
    (void)s;
    npvdb_field f[5], g[5];
    five(f);
    npvdb_payload p, q;
    npvdb_error err;
    assert_int_equal(npvdb_payload_build(f, 5, &p, &err), NPVDB_OK);
    assert_int_equal(npvdb_payload_check(p.data, p.len, &err), NPVDB_OK);
    /* Canonical: another order gives the same bytes. */
    for (int i = 0; i < 5; i++)
        g[i] = f[4 - i];
    assert_int_equal(npvdb_payload_build(g, 5, &q, &err), NPVDB_OK);
    assert_int_equal(p.len, q.len);
    assert_memory_equal(p.data, q.data, p.len);
    free((void *)q.data);
    /* Read back in name order: lang, n, ok, price, tags. */
    const char *order[5] = {"lang", "n", "ok", "price", "tags"};
    size_t pos = 0;
    npvdb_field r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(npvdb_payload_next(&p, &pos, &r), 1);
        assert_int_equal(r.name_len, strlen(order[i]));
        assert_memory_equal(r.name, order[i], r.name_len);
    }
    assert_int_equal(npvdb_payload_next(&p, &pos, &r), 0);
    pos = 0;
    npvdb_payload_next(&p, &pos, &r);
    assert_int_equal(r.type, NPVDB_VALUE_STRING);
    assert_int_equal(r.s_len, 4);
    assert_memory_equal(r.s, "fr\xc3\xa9", 4);
    npvdb_payload_next(&p, &pos, &r);
    assert_int_equal(r.i, -42);
    npvdb_payload_next(&p, &pos, &r);
    assert_int_equal(r.b, 1);
    npvdb_payload_next(&p, &pos, &r);
    assert_true(r.d == 2.5);
    npvdb_payload_next(&p, &pos, &r);
    assert_int_equal(r.n_items, 3);
    for (uint32_t j = 0; j < 3; j++) {
        const char *it;
        uint32_t len;
        npvdb_payload_item(&r, j, &it, &len);
        assert_int_equal(len, tag_lens[j]);
        assert_memory_equal(it, tags[j], len);
    }
    /* Every truncation is refused, and so is one byte more. */
    for (uint32_t l = 1; l < p.len; l++)
        assert_int_not_equal(npvdb_payload_check(p.data, l, &err), NPVDB_OK);
    uint8_t *more = malloc(p.len + 1);
    memcpy(more, p.data, p.len);
    more[p.len] = 0;
    expect(npvdb_payload_check(more, p.len + 1, &err), NPVDB_EINVAL, &err,
           "1 bytes after the last field");
    free(more);
    free((void *)p.data);
    /* No fields: no payload. */
    assert_int_equal(npvdb_payload_build(NULL, 0, &p, &err), NPVDB_OK);
    assert_int_equal(p.len, 0);
    assert_int_equal(npvdb_payload_check(NULL, 0, &err), NPVDB_OK);
}

/* A blob with one field: type, name, value bytes. */
static size_t one(uint8_t *b, uint8_t type, const char *name,
                  const uint8_t *val, size_t vlen)
{
    size_t nl = strlen(name), o = 0;
    b[o++] = 1;
    b[o++] = 0;
    b[o++] = type;
    b[o++] = (uint8_t)nl;
    memcpy(b + o, name, nl);
    o += nl;
    memcpy(b + o, val, vlen);
    return o + vlen;
}

static void test_check_refusals(void **s)
{
    (void)s;
    npvdb_error err;
    uint8_t b[64];
    const uint8_t i8[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    size_t n = one(b, NPVDB_VALUE_INT, "a", i8, 8);
    assert_int_equal(npvdb_payload_check(b, n, &err), NPVDB_OK);
    b[0] = 0;
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "0 fields, must be 1..64");
    b[0] = 65;
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err, "65 fields");
    n = one(b, 9, "a", i8, 8);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "unknown type 9");
    n = one(b, NPVDB_VALUE_INT, "a\xff", i8, 8);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err, "UTF-8");
    n = one(b, NPVDB_VALUE_INT, "", i8, 8);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err, "name must be");
    uint8_t nul[] = {'a', 0, 'b'};
    n = one(b, NPVDB_VALUE_INT, "axb", i8, 8);
    memcpy(b + 4, nul, 3);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err, "without NUL");
    const uint8_t nan[8] = {0, 0, 0, 0, 0, 0, 0xf8, 0x7f};
    n = one(b, NPVDB_VALUE_DOUBLE, "d", nan, 8);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "field 0 'd': double is NaN");
    const uint8_t two = 2;
    n = one(b, NPVDB_VALUE_BOOL, "b", &two, 1);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "bool must be 0 or 1");
    const uint8_t badstr[6] = {2, 0, 0, 0, 0xc3, 0x28};
    n = one(b, NPVDB_VALUE_STRING, "s", badstr, 6);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "'s': string is not valid UTF-8");
    const uint8_t longstr[4] = {0, 0, 1, 0}; /* 65536 bytes */
    n = one(b, NPVDB_VALUE_STRING, "s", longstr, 4);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "longer than 65535");
    const uint8_t biglist[2] = {0x01, 0x04}; /* 1025 items */
    n = one(b, NPVDB_VALUE_STRINGS, "l", biglist, 2);
    expect(npvdb_payload_check(b, n, &err), NPVDB_EINVAL, &err,
           "list of 1025 strings");
    /* Two fields: out of order, then repeated. */
    uint8_t t[32] = {2,   0, NPVDB_VALUE_BOOL, 1, 'b', 0, NPVDB_VALUE_BOOL, 1,
                     'a', 1};
    expect(npvdb_payload_check(t, 10, &err), NPVDB_EINVAL, &err,
           "field 1 'a' is repeated or out of order");
    t[8] = 'b';
    expect(npvdb_payload_check(t, 10, &err), NPVDB_EINVAL, &err, "repeated");
    /* A prefix sorts first: "b" < "bb". */
    uint8_t u[] = {
        2, 0, NPVDB_VALUE_BOOL, 1, 'b', 0, NPVDB_VALUE_BOOL, 2, 'b', 'b', 1};
    assert_int_equal(npvdb_payload_check(u, sizeof u, &err), NPVDB_OK);
    expect(npvdb_payload_check(NULL, 3, &err), NPVDB_EINVAL, &err, "no data");
    expect(npvdb_payload_check(u, NPVDB_MAX_PAYLOAD + 1, &err), NPVDB_EINVAL,
           &err, "more than");
}

static void test_build_refusals(void **s)
{
    (void)s;
    npvdb_error err;
    npvdb_payload p;
    npvdb_field f[2] = {fint("x", 1), fint("x", 2)};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'x' is given twice");
    f[1] = (npvdb_field){
        .name = "d", .name_len = 1, .type = NPVDB_VALUE_DOUBLE, .d = INFINITY};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'d': double is NaN or Inf");
    f[1] = fstr("s", "\xed\xa0\x80"); /* a surrogate */
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'s': string is not valid UTF-8");
    f[1] = fint("", 1);
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "field 1: name must be");
    f[1] = (npvdb_field){
        .name = "b", .name_len = 1, .type = NPVDB_VALUE_BOOL, .b = 5};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'b': bool must be 0 or 1");
    f[1] =
        (npvdb_field){.name = "t", .name_len = 1, .type = (npvdb_value_type)9};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'t': unknown type");
    f[1] = (npvdb_field){.name = "l",
                         .name_len = 1,
                         .type = NPVDB_VALUE_STRINGS,
                         .n_items = NPVDB_MAX_LIST + 1,
                         .items = tags,
                         .item_lens = tag_lens};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'l': list of 1025");
    char *big = malloc(NPVDB_MAX_STRING + 1);
    memset(big, 'a', NPVDB_MAX_STRING + 1);
    f[1] = (npvdb_field){.name = "s",
                         .name_len = 1,
                         .type = NPVDB_VALUE_STRING,
                         .s = big,
                         .s_len = NPVDB_MAX_STRING + 1};
    expect(npvdb_payload_build(f, 2, &p, &err), NPVDB_EINVAL, &err,
           "'s': string of 65536 bytes");
    /* 20 fields of 64 KiB pass each limit but not the total. */
    npvdb_field many[20];
    char names[20][4];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "f%02d", i);
        many[i] = (npvdb_field){.name = names[i],
                                .name_len = 3,
                                .type = NPVDB_VALUE_STRING,
                                .s = big,
                                .s_len = NPVDB_MAX_STRING};
    }
    expect(npvdb_payload_build(many, 20, &p, &err), NPVDB_EINVAL, &err,
           "more than 1048576");
    assert_int_equal(npvdb_payload_build(many, 15, &p, &err), NPVDB_OK);
    assert_int_equal(npvdb_payload_check(p.data, p.len, &err), NPVDB_OK);
    free((void *)p.data);
    free(big);
    npvdb_field lots[NPVDB_MAX_FIELDS + 1];
    expect(npvdb_payload_build(lots, NPVDB_MAX_FIELDS + 1, &p, &err),
           NPVDB_EINVAL, &err, "65 fields");
}

static npvdb_payload tagged(int64_t v)
{
    npvdb_field f[2] = {fint("v", v), fstr("who", "me")};
    npvdb_payload p;
    assert_int_equal(npvdb_payload_build(f, 2, &p, NULL), NPVDB_OK);
    return p;
}

static int64_t payload_v(npvdb_collection *c, const char *key, int *has)
{
    npvdb_payload p;
    assert_int_equal(npvdb_get_payload(c, key, NULL, &p, NULL), NPVDB_OK);
    *has = p.len > 0;
    if (!p.len) return 0;
    assert_int_equal(npvdb_payload_check(p.data, p.len, NULL), NPVDB_OK);
    size_t pos = 0;
    npvdb_field f;
    npvdb_payload_next(&p, &pos, &f);
    int64_t v = f.i;
    free((void *)p.data);
    return v;
}

static void test_stored_payloads(void **s)
{
    (void)s;
    const uint32_t dim = 4;
    const size_t n = 600;
    npvdb_config cfg = {
        .dim = dim, .metric = NPVDB_METRIC_L2, .n_shards = 4, .n_workers = 2};
    npvdb_collection *c = npvdb_create(&cfg, NULL);
    float *x = random_rows(n, dim, 1);
    char **keys = make_keys(n, "k");
    npvdb_payload *pl = calloc(n, sizeof *pl);
    for (size_t i = 0; i < n; i++)
        if (i % 3) pl[i] = tagged((int64_t)i);
    npvdb_stats st0, st1;
    npvdb_stats_get(c, &st0, NULL);
    npvdb_error err;
    /* 600 > 4 * 64: trains and moves rows; payloads move with them. */
    assert_int_equal(
        npvdb_upsert(c, (const char *const *)keys, x, pl, n, NULL, &err),
        NPVDB_OK);
    npvdb_stats_get(c, &st1, NULL);
    assert_true(st1.trained);
    assert_true(st1.memory_bytes > st0.memory_bytes + 400 * pl[1].len);
    int has;
    float got[4];
    for (size_t i = 0; i < n; i++) {
        int64_t v = payload_v(c, keys[i], &has);
        assert_int_equal(has, i % 3 != 0);
        if (has) assert_int_equal(v, (int64_t)i);
    }
    npvdb_payload p;
    assert_int_equal(npvdb_get_payload(c, keys[1], got, &p, NULL), NPVDB_OK);
    assert_memory_equal(got, x + dim, sizeof got);
    assert_int_equal(p.len, pl[1].len);
    assert_memory_equal(p.data, pl[1].data, p.len);
    free((void *)p.data);
    /* Upsert replaces vector and payload together; no payload clears it. */
    npvdb_payload np[2] = {tagged(1000), {0}};
    const char *two[2] = {keys[1], keys[2]};
    assert_int_equal(npvdb_upsert(c, two, x + 10 * dim, np, 2, NULL, &err),
                     NPVDB_OK);
    assert_int_equal(payload_v(c, keys[1], &has), 1000);
    payload_v(c, keys[2], &has);
    assert_false(has);
    assert_int_equal(npvdb_insert(c, two, x, 1, NULL, &err), NPVDB_OK);
    payload_v(c, keys[1], &has);
    assert_false(has);
    /* A key repeated in a batch: the last row's payload wins. */
    npvdb_payload rep[2] = {tagged(7), tagged(8)};
    const char *same[2] = {keys[4], keys[4]};
    assert_int_equal(npvdb_upsert(c, same, x, rep, 2, NULL, &err), NPVDB_OK);
    assert_int_equal(payload_v(c, keys[4], &has), 8);
    /* A bad payload in row 1 refuses the batch whole. */
    uint8_t bad[3] = {1, 0, 9};
    npvdb_payload badp[2] = {tagged(5), {bad, 3}};
    const char *nk[2] = {"new1", "new2"};
    expect(npvdb_upsert(c, nk, x, badp, 2, NULL, &err), NPVDB_EINVAL, &err,
           "payload 1:");
    assert_int_equal(npvdb_get(c, "new1", got, &err), NPVDB_ENOTFOUND);
    npvdb_batch *b = (npvdb_batch *)&err;
    expect(npvdb_upsert_prepare(c, nk, x, badp, 2, &b, &err), NPVDB_EINVAL,
           &err, "payload 1: field 0");
    assert_null(b);
    /* A prepared batch applied twice lands its payloads both times. */
    assert_int_equal(npvdb_upsert_prepare(c, nk, x, badp, 1, &b, &err),
                     NPVDB_OK);
    assert_int_equal(npvdb_insert_prepared(c, b, NULL, &err), NPVDB_OK);
    assert_int_equal(npvdb_insert_prepared(c, b, NULL, &err), NPVDB_OK);
    npvdb_batch_free(b);
    assert_int_equal(payload_v(c, "new1", &has), 5);
    /* Delete frees it (ASan checks the leak side). */
    assert_int_equal(npvdb_delete(c, nk, 1, NULL, &err), NPVDB_OK);
    assert_int_equal(npvdb_get_payload(c, "new1", NULL, &p, &err),
                     NPVDB_ENOTFOUND);
    assert_int_equal(p.len, 0);
    npvdb_stats_free(&st0);
    npvdb_stats_free(&st1);
    for (size_t i = 0; i < n; i++)
        free((void *)pl[i].data);
    free((void *)np[0].data);
    free((void *)rep[0].data);
    free((void *)rep[1].data);
    free((void *)badp[0].data);
    free(pl);
    free(x);
    free_keys(keys, n);
    npvdb_free(c);
}

typedef struct copy {
    npvdb_collection *dst;
    size_t with_payload;
} copy;

static int on_index(void *ctx, const npvdb_stats *st, const float *cent)
{
    copy *cp = ctx;
    return st->trained ? npvdb_restore_index(cp->dst, cent, st->n_shards, NULL)
                       : 0;
}

static int on_shard(void *ctx, const npvdb_shard_view *v)
{
    copy *cp = ctx;
    for (size_t i = 0; i < v->n; i++) {
        if (!v->payloads[i].len) continue;
        cp->with_payload++;
        if (npvdb_payload_check(v->payloads[i].data, v->payloads[i].len, NULL))
            return 1;
    }
    return npvdb_restore_shard_payloads(cp->dst, v->shard, v->keys, v->rows,
                                        v->payloads, v->n, NULL);
}

static void test_export_restore_payloads(void **s)
{
    (void)s;
    const uint32_t dim = 6;
    const size_t n = 900;
    npvdb_config cfg = {.dim = dim, .n_shards = 8, .n_workers = 2};
    npvdb_collection *a = npvdb_create(&cfg, NULL),
                     *b = npvdb_create(&cfg, NULL);
    float *x = random_rows(n, dim, 2);
    char **keys = make_keys(n, "k");
    npvdb_payload *pl = calloc(n, sizeof *pl);
    for (size_t i = 0; i < n; i++)
        if (i % 2) pl[i] = tagged((int64_t)i * 3);
    assert_int_equal(
        npvdb_upsert(a, (const char *const *)keys, x, pl, n, NULL, NULL),
        NPVDB_OK);
    copy cp = {.dst = b};
    assert_int_equal(npvdb_export(a, on_index, on_shard, &cp, NULL), NPVDB_OK);
    assert_int_equal(cp.with_payload, n / 2);
    int has;
    for (size_t i = 0; i < n; i++) {
        int64_t v = payload_v(b, keys[i], &has);
        assert_int_equal(has, (int)(i % 2));
        if (has) assert_int_equal(v, (int64_t)i * 3);
    }
    npvdb_stats sa, sb;
    npvdb_stats_get(a, &sa, NULL);
    npvdb_stats_get(b, &sb, NULL);
    assert_int_equal(sa.n_vectors, sb.n_vectors);
    npvdb_stats_free(&sa);
    npvdb_stats_free(&sb);
    for (size_t i = 0; i < n; i++)
        free((void *)pl[i].data);
    free(pl);
    free(x);
    free_keys(keys, n);
    npvdb_free(a);
    npvdb_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_check_refusals),
        cmocka_unit_test(test_build_refusals),
        cmocka_unit_test(test_stored_payloads),
        cmocka_unit_test(test_export_restore_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
