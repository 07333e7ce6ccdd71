/*
 * test_reply.c -- the client's reply decoders (client-c/reply.h): what
 * protobuf-c packs decodes to exactly the values sent; other conforming
 * encodings (fields out of order, unknown fields, unpacked repeated numbers,
 * counts split in runs) decode the same; every broken reply is INTERNAL with
 * a message saying what broke, and leaves the results zeroed. Payloads:
 * decoded from protobuf-c's bytes and from hand-made ones (NUL inside a
 * string, unknown fields, last kind wins), the builder and the hand encoder
 * round trip, one payload per hit or INTERNAL, and malformed payload bytes
 * are INTERNAL, never a crash or an overread.
 */
#include "payload.h"
#include "reply.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void assert_msg_has(const npvdb_client_error *err, const char *needle)
{
    if (!strstr(err->msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* Packs m into buf (cap bytes); returns the length. */
static size_t pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    assert_true(n <= cap);
    return protobuf_c_message_pack(m, buf);
}

/* ---- SearchReply ---- */

/* 3 queries, k 2: counts 2, 0, 1. */
typedef struct canned {
    uint32_t k;
    uint32_t counts[4];
    size_t n_counts;
    char *keys[8];
    size_t n_keys;
    float dist[8];
    size_t dist_bytes;
} canned;

static void canned_good(canned *c)
{
    static char k0[] = "first", k1[] = "second", k2[] = "third";
    memset(c, 0, sizeof *c);
    c->k = 2;
    c->counts[0] = 2;
    c->counts[1] = 0;
    c->counts[2] = 1;
    c->n_counts = 3;
    c->keys[0] = k0;
    c->keys[1] = k1;
    c->keys[2] = k2;
    c->n_keys = 3;
    c->dist[0] = 0.5f;
    c->dist[1] = 0.75f;
    c->dist[2] = INFINITY;
    c->dist[3] = INFINITY;
    c->dist[4] = 0.125f;
    c->dist[5] = INFINITY;
    c->dist_bytes = 6 * sizeof(float);
}

static size_t canned_pack(const canned *c, uint8_t *buf, size_t cap)
{
    Npvdb__V1__SearchReply m = NPVDB__V1__SEARCH_REPLY__INIT;
    m.k = c->k;
    m.n_counts = c->n_counts;
    m.counts = (uint32_t *)c->counts;
    m.n_keys = c->n_keys;
    m.keys = (char **)c->keys;
    m.distances.data = (uint8_t *)c->dist;
    m.distances.len = c->dist_bytes;
    return pack(&m.base, buf, cap);
}

static void expect_good(const uint8_t *buf, size_t len)
{
    npvdb_client_results r;
    npvdb_client_error err = {0};
    if (npvdb_reply_search(buf, len, 3, 2, &r, &err) != NPVDB_STATUS_OK)
        fail_msg("good reply: %s", err.msg);
    assert_int_equal(r.nq, 3);
    assert_int_equal(r.k, 2);
    assert_int_equal(r.counts[0], 2);
    assert_int_equal(r.counts[1], 0);
    assert_int_equal(r.counts[2], 1);
    assert_string_equal(r.keys[0], "first");
    assert_string_equal(r.keys[1], "second");
    assert_null(r.keys[2]);
    assert_null(r.keys[3]);
    assert_string_equal(r.keys[4], "third");
    assert_null(r.keys[5]);
    /* The +inf padding becomes get_closest's zeros. */
    const float want[6] = {0.5f, 0.75f, 0, 0, 0.125f, 0};
    assert_memory_equal(r.distances, want, sizeof want);
    npvdb_client_results_free(&r);
}

static void test_search_good(void **state)
{
    (void)state;
    canned c;
    canned_good(&c);
    uint8_t buf[256];
    expect_good(buf, canned_pack(&c, buf, sizeof buf));
}

/* The same reply, hand-encoded: distances first, an unknown varint and an
 * unknown fixed64 field, counts unpacked and then packed (two runs), k
 * last. */
static void test_search_other_encodings(void **state)
{
    (void)state;
    canned c;
    canned_good(&c);
    uint8_t buf[256];
    size_t n = 0;
    buf[n++] = 0x22; /* distances */
    buf[n++] = 24;
    memcpy(buf + n, c.dist, 24);
    n += 24;
    buf[n++] = 0x48; /* field 9 varint: unknown */
    buf[n++] = 0x96;
    buf[n++] = 0x01;
    buf[n++] = 0x10; /* counts[0] unpacked */
    buf[n++] = 2;
    buf[n++] = 0x1a; /* key "first" */
    buf[n++] = 5;
    memcpy(buf + n, "first", 5);
    n += 5;
    buf[n++] = 0x51; /* field 10 fixed64: unknown */
    memset(buf + n, 0xab, 8);
    n += 8;
    buf[n++] = 0x12; /* counts[1..2] packed */
    buf[n++] = 2;
    buf[n++] = 0;
    buf[n++] = 1;
    buf[n++] = 0x1a;
    buf[n++] = 6;
    memcpy(buf + n, "second", 6);
    n += 6;
    buf[n++] = 0x1a;
    buf[n++] = 5;
    memcpy(buf + n, "third", 5);
    n += 5;
    buf[n++] = 0x08; /* k */
    buf[n++] = 2;
    expect_good(buf, n);
}

static void expect_search_internal(const uint8_t *buf, size_t len,
                                   const char *what, const char *needle)
{
    npvdb_client_results r;
    npvdb_client_error err = {0};
    npvdb_status rc = npvdb_reply_search(buf, len, 3, 2, &r, &err);
    if (rc != NPVDB_STATUS_INTERNAL)
        fail_msg("%s: got %d (%s), want INTERNAL", what, (int)rc, err.msg);
    assert_int_equal(err.code, NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, needle);
    assert_null(r.counts);
    assert_null(r.keys);
    assert_null(r.distances);
    assert_int_equal(r.nq, 0);
}

static void expect_canned_internal(const canned *c, const char *what,
                                   const char *needle)
{
    uint8_t buf[256];
    size_t n = canned_pack(c, buf, sizeof buf);
    expect_search_internal(buf, n, what, needle);
}

static void test_search_contract(void **state)
{
    (void)state;
    static char extra[] = "extra";
    canned c;
    canned_good(&c);
    c.k = 3;
    expect_canned_internal(&c, "k", "reply has k 3, the request 2");
    canned_good(&c);
    c.n_counts = 4;
    expect_canned_internal(&c, "too many counts", "4 counts for 3 queries");
    canned_good(&c);
    c.n_counts = 2;
    expect_canned_internal(&c, "too few counts", "2 counts for 3 queries");
    canned_good(&c);
    c.counts[1] = 3;
    expect_canned_internal(&c, "count above k", "more than k 2");
    canned_good(&c);
    c.counts[1] = 1;
    expect_canned_internal(&c, "counts vs keys", "add up to 4");
    canned_good(&c);
    c.keys[3] = extra;
    c.n_keys = 4;
    expect_canned_internal(&c, "keys vs counts", "reply has 4 keys");
    /* More keys than nq * k could hold are counted, never stored. */
    canned_good(&c);
    for (size_t i = 3; i < 8; i++)
        c.keys[i] = extra;
    c.n_keys = 8;
    expect_canned_internal(&c, "keys past nq*k", "reply has 8 keys");
    canned_good(&c);
    c.dist_bytes = 5 * sizeof(float);
    expect_canned_internal(&c, "distances short", "bytes of distances");
    canned_good(&c);
    c.dist[3] = 0;
    expect_canned_internal(&c, "pad not +inf", "not +inf");
}

static void test_search_malformed(void **state)
{
    (void)state;
    canned c;
    canned_good(&c);
    uint8_t buf[256];
    size_t n = canned_pack(&c, buf, sizeof buf);
    /* Cut anywhere inside a field: malformed or a contract error, never a
     * success and never a read past the end (ASan watches). */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        npvdb_client_results r;
        npvdb_client_error err = {0};
        assert_int_equal(npvdb_reply_search(copy, cut, 3, 2, &r, &err),
                         NPVDB_STATUS_INTERNAL);
        free(copy);
    }
    const uint8_t junk[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f};
    expect_search_internal(junk, sizeof junk, "junk", "malformed reply");
    const uint8_t wrong_type[] = {0x0d, 2, 0, 0, 0}; /* k as fixed32 */
    expect_search_internal(wrong_type, sizeof wrong_type, "k fixed32",
                           "malformed reply");
    const uint8_t group[] = {0x33}; /* field 6, start group */
    expect_search_internal(group, sizeof group, "group", "malformed reply");
    const uint8_t field0[] = {0x00, 0x01};
    expect_search_internal(field0, sizeof field0, "field 0", "malformed reply");
}

/* ---- GetClosestReply ---- */

static size_t closest_pack(uint32_t index, char **keys, const float *dist,
                           size_t n_keys, size_t n_dist, uint8_t *buf,
                           size_t cap)
{
    Npvdb__V1__GetClosestReply m = NPVDB__V1__GET_CLOSEST_REPLY__INIT;
    m.query_index = index;
    m.n_keys = n_keys;
    m.keys = keys;
    m.n_distances = n_dist;
    m.distances = (float *)dist;
    return pack(&m.base, buf, cap);
}

static void test_closest_good(void **state)
{
    (void)state;
    static char a[] = "a", b[] = "bee", c[] = "sea";
    char *keys[3] = {a, b, c};
    const float dist[3] = {0.1f, 0.2f, 0.3f};
    npvdb_client_results r;
    npvdb_reply_collector col;
    npvdb_client_error err = {0};
    assert_int_equal(npvdb_reply_collector_init(&col, &r, 3, 2), 0);
    uint8_t buf[128];
    size_t n = closest_pack(0, keys, dist, 2, 2, buf, sizeof buf);
    assert_int_equal(npvdb_reply_get_closest(&col, 0, buf, n, &err),
                     NPVDB_STATUS_OK);
    n = closest_pack(1, NULL, NULL, 0, 0, buf, sizeof buf);
    assert_int_equal(npvdb_reply_get_closest(&col, 1, buf, n, &err),
                     NPVDB_STATUS_OK);
    /* Query 2 by hand: distances unpacked (fixed32), before the key. */
    n = 0;
    buf[n++] = 0x08;
    buf[n++] = 2;
    buf[n++] = 0x1d;
    memcpy(buf + n, &dist[2], 4);
    n += 4;
    buf[n++] = 0x12;
    buf[n++] = 3;
    memcpy(buf + n, "sea", 3);
    n += 3;
    assert_int_equal(npvdb_reply_get_closest(&col, 2, buf, n, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(npvdb_reply_collector_finish(&col), 0);
    npvdb_reply_collector_free(&col);
    assert_int_equal(r.counts[0], 2);
    assert_int_equal(r.counts[1], 0);
    assert_int_equal(r.counts[2], 1);
    assert_string_equal(r.keys[0], "a");
    assert_string_equal(r.keys[1], "bee");
    assert_null(r.keys[2]);
    assert_null(r.keys[3]);
    assert_string_equal(r.keys[4], "sea");
    assert_null(r.keys[5]);
    const float want[6] = {0.1f, 0.2f, 0, 0, 0.3f, 0};
    assert_memory_equal(r.distances, want, sizeof want);
    npvdb_client_results_free(&r);
}

static void expect_closest_internal(size_t i, const uint8_t *buf, size_t len,
                                    const char *needle)
{
    npvdb_client_results r;
    npvdb_reply_collector col;
    npvdb_client_error err = {0};
    assert_int_equal(npvdb_reply_collector_init(&col, &r, 2, 2), 0);
    assert_int_equal(npvdb_reply_get_closest(&col, i, buf, len, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, needle);
    npvdb_reply_collector_free(&col);
    npvdb_client_results_free(&r);
}

static void test_closest_contract(void **state)
{
    (void)state;
    static char a[] = "a";
    char *keys[3] = {a, a, a};
    const float dist[3] = {1, 2, 3};
    uint8_t buf[128];
    size_t n = closest_pack(1, keys, dist, 1, 1, buf, sizeof buf);
    expect_closest_internal(0, buf, n, "reply 0 has query_index 1");
    expect_closest_internal(2, buf, n, "more than 2 replies");
    n = closest_pack(0, keys, dist, 3, 3, buf, sizeof buf);
    expect_closest_internal(0, buf, n, "more than k 2 hits");
    n = closest_pack(0, keys, dist, 2, 1, buf, sizeof buf);
    expect_closest_internal(0, buf, n, "2 keys, 1 distances");
    n = closest_pack(0, keys, dist, 1, 2, buf, sizeof buf);
    expect_closest_internal(0, buf, n, "1 keys, 2 distances");
    const uint8_t odd[] = {0x1a, 3, 0, 0, 0}; /* distances of 3 bytes */
    expect_closest_internal(0, odd, sizeof odd, "malformed reply 0");
    const uint8_t cut[] = {0x12, 5, 'a'};
    expect_closest_internal(0, cut, sizeof cut, "malformed reply 0");
}

/* ---- payloads ---- */

/* A Payload as protobuf-c packs it: tenant 42, price 5.5, tag "x", ok
 * true, tags ["a", "bb"], neg -7, in an order that is not the names'. */
static size_t payload_pack(uint8_t *buf, size_t cap)
{
    static char s_x[] = "x", s_a[] = "a", s_bb[] = "bb";
    static char n_tenant[] = "tenant", n_price[] = "price", n_tag[] = "tag",
                n_ok[] = "ok", n_tags[] = "tags", n_neg[] = "neg";
    static char *list[] = {s_a, s_bb};
    Npvdb__V1__StringList sl = NPVDB__V1__STRING_LIST__INIT;
    sl.n_values = 2;
    sl.values = list;
    Npvdb__V1__Value v[6];
    Npvdb__V1__Payload__FieldsEntry e[6], *ep[6];
    char *names[6] = {n_tenant, n_price, n_tag, n_ok, n_tags, n_neg};
    for (int i = 0; i < 6; i++) {
        npvdb__v1__value__init(&v[i]);
        npvdb__v1__payload__fields_entry__init(&e[i]);
        e[i].key = names[i];
        e[i].value = &v[i];
        ep[i] = &e[i];
    }
    v[0].kind_case = NPVDB__V1__VALUE__KIND_INT_VALUE;
    v[0].int_value = 42;
    v[1].kind_case = NPVDB__V1__VALUE__KIND_DOUBLE_VALUE;
    v[1].double_value = 5.5;
    v[2].kind_case = NPVDB__V1__VALUE__KIND_STRING_VALUE;
    v[2].string_value = s_x;
    v[3].kind_case = NPVDB__V1__VALUE__KIND_BOOL_VALUE;
    v[3].bool_value = 1;
    v[4].kind_case = NPVDB__V1__VALUE__KIND_STRINGS_VALUE;
    v[4].strings_value = &sl;
    v[5].kind_case = NPVDB__V1__VALUE__KIND_INT_VALUE;
    v[5].int_value = -7;
    Npvdb__V1__Payload p = NPVDB__V1__PAYLOAD__INIT;
    p.n_fields = 6;
    p.fields = ep;
    return pack(&p.base, buf, cap);
}

/* The payload of payload_pack, whatever encoded it. */
static void expect_payload(const npvdb_client_payload *p)
{
    assert_int_equal(npvdb_client_payload_len(p), 6);
    /* Name order: neg ok price tag tags tenant. */
    const char *order[] = {"neg", "ok", "price", "tag", "tags", "tenant"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(npvdb_client_payload_field(p, i)->name, order[i]);
    assert_null(npvdb_client_payload_field(p, 6));
    const npvdb_client_field *f = npvdb_client_payload_find(p, "tenant");
    assert_non_null(f);
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_INT);
    assert_int_equal(f->i, 42);
    assert_int_equal(f->name_len, 6);
    f = npvdb_client_payload_find(p, "neg");
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_INT);
    assert_true(f->i == -7);
    f = npvdb_client_payload_find(p, "price");
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_DOUBLE);
    assert_true(f->d == 5.5);
    f = npvdb_client_payload_find(p, "tag");
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_STRING);
    assert_string_equal(f->str, "x");
    assert_int_equal(f->str_len, 1);
    f = npvdb_client_payload_find(p, "ok");
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_BOOL);
    assert_int_equal(f->b, 1);
    f = npvdb_client_payload_find(p, "tags");
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_STRINGS);
    assert_int_equal(f->n_strs, 2);
    assert_string_equal(f->strs[0], "a");
    assert_string_equal(f->strs[1], "bb");
    assert_int_equal(f->str_lens[1], 2);
    assert_null(npvdb_client_payload_find(p, "missing"));
    assert_null(npvdb_client_payload_find(p, "ta"));
}

static void test_payload_decode(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = payload_pack(buf, sizeof buf);
    npvdb_client_payload *p = NULL;
    npvdb_client_error err = {0};
    if (npvdb_reply_payload(buf, n, &p, &err) != NPVDB_STATUS_OK)
        fail_msg("payload: %s", err.msg);
    expect_payload(p);
    npvdb_client_payload_free(p);
    /* An empty message is no payload. */
    assert_int_equal(npvdb_reply_payload(buf, 0, &p, &err), NPVDB_STATUS_OK);
    assert_null(p);
    assert_int_equal(npvdb_client_payload_len(NULL), 0);
    assert_null(npvdb_client_payload_find(NULL, "x"));
}

/* Hand-encoded: a string with a NUL byte keeps its length, an unknown
 * field is skipped at every level, the value comes before the key, the
 * last kind of a Value wins. */
static void test_payload_other_encodings(void **state)
{
    (void)state;
    const uint8_t buf[] = {
        0x0a, 18,                          /* entry, 18 bytes */
        0x12, 9,                           /* value, 9 bytes */
        0x10, 5,                           /* int 5 (overridden) */
        0x0a, 3,  'a',  0,   'b',          /* string "a\0b" */
        0x78, 1,                           /* Value field 15: unknown */
        0x18, 1,                           /* entry field 3: unknown */
        0x0a, 3,  'n',  'u', 'l',          /* key "nul" */
        0x50, 9,                           /* Payload field 10: unknown */
        0x0a, 5,  0x0a, 1,   'e', 0x12, 0, /* "e": an empty Value */
    };
    npvdb_client_payload *p = NULL;
    npvdb_client_error err = {0};
    /* "e" has a value message with nothing set: no value, INTERNAL. */
    assert_int_equal(npvdb_reply_payload(buf, sizeof buf, &p, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, "field 1 has no value");
    assert_null(p);
    if (npvdb_reply_payload(buf, sizeof buf - 9, &p, &err) != NPVDB_STATUS_OK)
        fail_msg("payload: %s", err.msg);
    assert_int_equal(npvdb_client_payload_len(p), 1);
    const npvdb_client_field *f = npvdb_client_payload_find(p, "nul");
    assert_non_null(f);
    assert_int_equal(f->type, NPVDB_CLIENT_VALUE_STRING);
    assert_int_equal(f->str_len, 3);
    assert_memory_equal(f->str, "a\0b", 4);
    npvdb_client_payload_free(p);
}

static void expect_payload_internal(const uint8_t *buf, size_t len,
                                    const char *needle)
{
    npvdb_client_payload *p = (npvdb_client_payload *)&p;
    npvdb_client_error err = {0};
    npvdb_status rc = npvdb_reply_payload(buf, len, &p, &err);
    if (rc != NPVDB_STATUS_INTERNAL)
        fail_msg("%s: got %d (%s), want INTERNAL", needle, (int)rc, err.msg);
    assert_msg_has(&err, needle);
    assert_null(p);
}

static void test_payload_malformed(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = payload_pack(buf, sizeof buf);
    /* Every cut: INTERNAL or a shorter valid payload, never a read past
     * the end (ASan watches) nor a leak. */
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        npvdb_client_payload *p = NULL;
        npvdb_client_error err = {0};
        npvdb_status rc = npvdb_reply_payload(copy, cut, &p, &err);
        assert_true(rc == NPVDB_STATUS_OK || rc == NPVDB_STATUS_INTERNAL);
        if (rc != NPVDB_STATUS_OK) assert_null(p);
        assert_true(npvdb_client_payload_len(p) < 6);
        npvdb_client_payload_free(p);
        free(copy);
    }
    const uint8_t key_varint[] = {0x0a, 4, 0x08, 1, 0x12, 0};
    expect_payload_internal(key_varint, sizeof key_varint, "malformed");
    const uint8_t entry_varint[] = {0x08, 1};
    expect_payload_internal(entry_varint, sizeof entry_varint, "malformed");
    const uint8_t no_value[] = {0x0a, 3, 0x0a, 1, 'k'};
    expect_payload_internal(no_value, sizeof no_value, "has no value");
    const uint8_t int_as_len[] = {0x0a, 7, 0x0a, 1, 'k', 0x12, 2, 0x12, 0};
    expect_payload_internal(int_as_len, sizeof int_as_len, "malformed");
    const uint8_t short_double[] = {0x0a, 9,    0x0a, 1, 'k', 0x12,
                                    4,    0x19, 1,    2, 3};
    expect_payload_internal(short_double, sizeof short_double, "malformed");
    const uint8_t list_varint[] = {0x0a, 9,    0x0a, 1,    'k', 0x12,
                                   4,    0x2a, 2,    0x08, 1};
    expect_payload_internal(list_varint, sizeof list_varint, "malformed");
    const uint8_t value_past_entry[] = {0x0a, 5, 0x0a, 1, 'k', 0x12, 9};
    expect_payload_internal(value_past_entry, sizeof value_past_entry,
                            "malformed");
    const uint8_t huge_len[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    expect_payload_internal(huge_len, sizeof huge_len, "malformed");
    const uint8_t twice[] = {0x0a, 7, 0x0a, 1, 'k', 0x12, 2, 0x20, 1,
                             0x0a, 7, 0x0a, 1, 'k', 0x12, 2, 0x10, 3};
    expect_payload_internal(twice, sizeof twice, "the field 'k' twice");
}

/* The builder, and the hand encoder read back by protobuf-c and by the
 * decoder. */
static void test_payload_builder_and_encoder(void **state)
{
    (void)state;
    npvdb_client_payload *p = npvdb_client_payload_new();
    assert_non_null(p);
    const char *tags[] = {"a", "bb"};
    assert_int_equal(npvdb_client_payload_set_int(p, "tenant", 1), 0);
    assert_int_equal(npvdb_client_payload_set_int(p, "tenant", 42), 0);
    assert_int_equal(npvdb_client_payload_set_double(p, "price", 5.5), 0);
    assert_int_equal(npvdb_client_payload_set_str(p, "tag", "x"), 0);
    assert_int_equal(npvdb_client_payload_set_bool(p, "ok", 7), 0);
    assert_int_equal(npvdb_client_payload_set_strings(p, "tags", tags, 2), 0);
    assert_int_equal(npvdb_client_payload_set_int(p, "neg", -7), 0);
    assert_int_equal(npvdb_client_payload_set_str(p, "gone", "y"), 0);
    assert_int_equal(npvdb_client_payload_remove(p, "gone"), 0);
    assert_int_equal(npvdb_client_payload_remove(p, "gone"), -1);
    /* Refused, p unchanged. */
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(npvdb_client_payload_set_int(p, long_name, 1), -1);
    assert_int_equal(npvdb_client_payload_set_int(p, "", 1), -1);
    assert_int_equal(npvdb_client_payload_set_double(p, "d", NAN), -1);
    assert_int_equal(npvdb_client_payload_set_double(p, "d", INFINITY), -1);
    assert_int_equal(npvdb_client_payload_set_str(p, "s", NULL), -1);
    assert_int_equal(npvdb_client_payload_set_strings(p, "l", NULL, 1), -1);
    assert_int_equal(npvdb_client_payload_set_int(NULL, "x", 1), -1);
    expect_payload(p);

    uint8_t buf[512];
    assert_true(16 + npvdb_payload_size(p) < sizeof buf);
    uint8_t *end = npvdb_payload_put(buf, 1, p);
    /* Field 1 of one byte's tag and one byte's length: the rest is the
     * Payload message. */
    size_t len = (size_t)(end - buf);
    assert_int_equal(buf[0], 0x0a);
    assert_int_equal(buf[1], len - 2);
    assert_int_equal(len - 2, npvdb_payload_size(p));
    Npvdb__V1__Payload *m = npvdb__v1__payload__unpack(NULL, len - 2, buf + 2);
    assert_non_null(m);
    assert_int_equal(m->n_fields, 6);
    npvdb__v1__payload__free_unpacked(m, NULL);
    npvdb_client_payload *back = NULL;
    npvdb_client_error err = {0};
    assert_int_equal(npvdb_reply_payload(buf + 2, len - 2, &back, &err),
                     NPVDB_STATUS_OK);
    expect_payload(back);
    /* A decoded payload is read-only; it encodes the same bytes again. */
    assert_int_equal(npvdb_client_payload_set_int(back, "x", 1), -1);
    uint8_t again[512];
    assert_int_equal(npvdb_payload_put(again, 1, back) - again, len);
    assert_memory_equal(again, buf, len);
    npvdb_client_payload_free(back);

    /* A NUL inside a string survives the round trip. */
    assert_int_equal(npvdb_client_payload_set_strn(p, "bin", "a\0b", 3), 0);
    end = npvdb_payload_put(buf, 1, p);
    assert_int_equal(
        npvdb_reply_payload(buf + 2, (size_t)(end - buf) - 2, &back, &err),
        NPVDB_STATUS_OK);
    const npvdb_client_field *f = npvdb_client_payload_find(back, "bin");
    assert_int_equal(f->str_len, 3);
    assert_memory_equal(f->str, "a\0b", 3);
    npvdb_client_payload_free(back);
    /* The empty payload is an empty message. */
    assert_int_equal(npvdb_payload_size(NULL), 0);
    end = npvdb_payload_put(buf, 4, NULL);
    assert_int_equal(end - buf, 2);
    assert_int_equal(buf[0], 0x22);
    assert_int_equal(buf[1], 0);
    npvdb_client_payload_free(p);
}

/* The canned SearchReply (3 queries, k 2, counts 2 0 1) with payloads:
 * the first key gets payload_pack's, the others none. */
static size_t search_with_payloads(uint8_t *buf, size_t cap, size_t n_pl)
{
    canned c;
    canned_good(&c);
    size_t n = canned_pack(&c, buf, cap);
    uint8_t pl[256];
    size_t pn = payload_pack(pl, sizeof pl);
    for (size_t i = 0; i < n_pl; i++) {
        assert_true(n + 3 + pn <= cap);
        buf[n++] = 0x2a; /* field 5 */
        size_t len = i == 0 ? pn : 0;
        buf[n++] = (uint8_t)(0x80 | (len & 0x7f));
        buf[n++] = (uint8_t)(len >> 7);
        if (len) memcpy(buf + n, pl, len);
        n += len;
    }
    return n;
}

static void test_search_payloads(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = search_with_payloads(buf, sizeof buf, 3);
    npvdb_client_results r;
    npvdb_client_error err = {0};
    if (npvdb_reply_search_ex(buf, n, 3, 2, 1, &r, &err) != NPVDB_STATUS_OK)
        fail_msg("search with payloads: %s", err.msg);
    assert_string_equal(r.keys[4], "third");
    expect_payload(npvdb_client_results_payload(&r, 0, 0));
    assert_null(npvdb_client_results_payload(&r, 0, 1));
    assert_null(npvdb_client_results_payload(&r, 1, 0)); /* past counts */
    assert_null(npvdb_client_results_payload(&r, 2, 0)); /* none */
    assert_null(npvdb_client_results_payload(&r, 3, 0)); /* past nq */
    npvdb_client_results_free(&r);
    /* Payloads not asked for are skipped. */
    assert_int_equal(npvdb_reply_search(buf, n, 3, 2, &r, &err),
                     NPVDB_STATUS_OK);
    assert_null(npvdb_client_results_payload(&r, 0, 0));
    npvdb_client_results_free(&r);

    /* One per key, or INTERNAL. */
    n = search_with_payloads(buf, sizeof buf, 2);
    assert_int_equal(npvdb_reply_search_ex(buf, n, 3, 2, 1, &r, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, "2 payloads for 3 keys");
    assert_null(r.payloads_);
    n = search_with_payloads(buf, sizeof buf, 4);
    assert_int_equal(npvdb_reply_search_ex(buf, n, 3, 2, 1, &r, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, "more payloads than its 3 keys");
    /* A broken payload in an otherwise good reply. */
    n = search_with_payloads(buf, sizeof buf, 3);
    buf[n++] = 0x2a;
    buf[n++] = 2;
    buf[n++] = 0x08; /* Payload field 1 as a varint */
    buf[n++] = 1;
    assert_int_equal(npvdb_reply_search_ex(buf, n, 3, 2, 1, &r, &err),
                     NPVDB_STATUS_INTERNAL);
    n = search_with_payloads(buf, sizeof buf, 3);
    buf[n - 1] = 0x2a; /* payload 3 no longer empty: cut short */
    buf[n++] = 5;
    assert_int_equal(npvdb_reply_search_ex(buf, n, 3, 2, 1, &r, &err),
                     NPVDB_STATUS_INTERNAL);
    /* Cut anywhere: never a success with the payloads missing, never an
     * overread or a leak. */
    n = search_with_payloads(buf, sizeof buf, 3);
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        npvdb_status rc = npvdb_reply_search_ex(copy, cut, 3, 2, 1, &r, &err);
        assert_true(rc == NPVDB_STATUS_INTERNAL || rc == NPVDB_STATUS_OK);
        if (rc == NPVDB_STATUS_OK) npvdb_client_results_free(&r);
        free(copy);
    }
}

static void test_closest_payloads(void **state)
{
    (void)state;
    static char a[] = "a", b[] = "bee";
    char *keys[2] = {a, b};
    const float dist[2] = {0.1f, 0.2f};
    npvdb_client_results r;
    npvdb_reply_collector col;
    npvdb_client_error err = {0};
    assert_int_equal(npvdb_reply_collector_init(&col, &r, 2, 2), 0);
    assert_int_equal(npvdb_reply_collector_want_payloads(&col), 0);
    uint8_t buf[512], pl[256];
    size_t pn = payload_pack(pl, sizeof pl);
    size_t n = closest_pack(0, keys, dist, 2, 2, buf, sizeof buf);
    buf[n++] = 0x22; /* field 4: none for "a" */
    buf[n++] = 0;
    buf[n++] = 0x22;
    buf[n++] = (uint8_t)pn;
    memcpy(buf + n, pl, pn);
    n += pn;
    assert_true(pn < 128);
    if (npvdb_reply_get_closest(&col, 0, buf, n, &err) != NPVDB_STATUS_OK)
        fail_msg("get_closest payloads: %s", err.msg);
    /* Reply 1 lacks its payload. */
    n = closest_pack(1, keys, dist, 1, 1, buf, sizeof buf);
    assert_int_equal(npvdb_reply_get_closest(&col, 1, buf, n, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_msg_has(&err, "reply 1 has 0 payloads for 1 keys");
    assert_int_equal(npvdb_reply_collector_finish(&col), 0);
    npvdb_reply_collector_free(&col);
    assert_null(npvdb_client_results_payload(&r, 0, 0));
    expect_payload(npvdb_client_results_payload(&r, 0, 1));
    npvdb_client_results_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_good),
        cmocka_unit_test(test_search_other_encodings),
        cmocka_unit_test(test_search_contract),
        cmocka_unit_test(test_search_malformed),
        cmocka_unit_test(test_closest_good),
        cmocka_unit_test(test_closest_contract),
        cmocka_unit_test(test_payload_decode),
        cmocka_unit_test(test_payload_other_encodings),
        cmocka_unit_test(test_payload_malformed),
        cmocka_unit_test(test_payload_builder_and_encoder),
        cmocka_unit_test(test_search_payloads),
        cmocka_unit_test(test_closest_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
