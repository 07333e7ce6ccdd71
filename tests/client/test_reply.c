/*
 * test_reply.c -- the client's reply decoders (client-c/reply.h): what
 * protobuf-c packs decodes to exactly the values sent; other conforming
 * encodings (fields out of order, unknown fields, unpacked repeated numbers,
 * counts split in runs) decode the same; every broken reply is INTERNAL with
 * a message saying what broke, and leaves the results zeroed.
 */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_good),
        cmocka_unit_test(test_search_other_encodings),
        cmocka_unit_test(test_search_contract),
        cmocka_unit_test(test_search_malformed),
        cmocka_unit_test(test_closest_good),
        cmocka_unit_test(test_closest_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
