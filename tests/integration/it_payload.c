/*
 * it_payload.c -- payloads, filters and Scroll through the C client against
 * a real server: payloads inserted come back from Get exactly (a NUL inside
 * a string, negative ints, lists, keys without one, upserts that drop one);
 * filtered Search and GetClosest with nprobe = shards equal brute force
 * over the filtered set, for every metric, with the hits' payloads; Count
 * agrees; Scroll visits every key exactly once, with its vector and
 * payload, and with a filter exactly the keys passing it.
 */
#include "harness.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DIM 8
#define N 400
#define SHARDS 4

/* ---- data ---- */

/* The payload of row i: tenant i % 5, price i / 2.0, tag "t<i % 3>", even
 * (bool), tags ["a", "b<i % 4>"]; every 7th row has none, every 11th only a
 * string holding a NUL and a negative int. Caller frees. */
static npvdb_client_payload *payload_of(size_t i)
{
    if (i % 7 == 0) return NULL;
    npvdb_client_payload *p = npvdb_client_payload_new();
    assert_non_null(p);
    if (i % 11 == 0) {
        assert_int_equal(npvdb_client_payload_set_strn(p, "bin", "x\0y", 3), 0);
        assert_int_equal(npvdb_client_payload_set_int(p, "neg", -(int64_t)i),
                         0);
        return p;
    }
    char tag[8], b[8];
    snprintf(tag, sizeof tag, "t%zu", i % 3);
    snprintf(b, sizeof b, "b%zu", i % 4);
    const char *tags[] = {"a", b};
    assert_int_equal(
        npvdb_client_payload_set_int(p, "tenant", (int64_t)(i % 5)), 0);
    assert_int_equal(npvdb_client_payload_set_double(p, "price", i / 2.0), 0);
    assert_int_equal(npvdb_client_payload_set_str(p, "tag", tag), 0);
    assert_int_equal(npvdb_client_payload_set_bool(p, "even", i % 2 == 0), 0);
    assert_int_equal(npvdb_client_payload_set_strings(p, "tags", tags, 2), 0);
    return p;
}

typedef struct fixture {
    it_server s;
    it_data d;
    npvdb_client_payload *pl[N];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    it_server_init(&f->s);
    it_server_start(&f->s, NULL);
    it_data_make(&f->d, N, DIM, 91, "k");
    for (size_t i = 0; i < N; i++)
        f->pl[i] = payload_of(i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int status = it_server_stop(&f->s);
    it_server_destroy(&f->s);
    for (size_t i = 0; i < N; i++)
        npvdb_client_payload_free(f->pl[i]);
    it_data_free(&f->d);
    free(f);
    return status == 0 ? 0 : -1;
}

static void assert_field_equal(const npvdb_client_field *a,
                               const npvdb_client_field *b)
{
    assert_int_equal(a->name_len, b->name_len);
    assert_memory_equal(a->name, b->name, a->name_len);
    if (a->type != b->type)
        fail_msg("field %s: type %d, want %d", a->name, a->type, b->type);
    switch (a->type) {
    case NPVDB_CLIENT_VALUE_STRING:
        assert_int_equal(a->str_len, b->str_len);
        assert_memory_equal(a->str, b->str, a->str_len + 1);
        break;
    case NPVDB_CLIENT_VALUE_INT:
        assert_true(a->i == b->i);
        break;
    case NPVDB_CLIENT_VALUE_DOUBLE:
        assert_true(a->d == b->d);
        break;
    case NPVDB_CLIENT_VALUE_BOOL:
        assert_int_equal(a->b, b->b);
        break;
    case NPVDB_CLIENT_VALUE_STRINGS:
        assert_int_equal(a->n_strs, b->n_strs);
        for (size_t j = 0; j < a->n_strs; j++) {
            assert_int_equal(a->str_lens[j], b->str_lens[j]);
            assert_string_equal(a->strs[j], b->strs[j]);
        }
        break;
    }
}

/* Same fields with the same values (NULL = none). */
static void assert_payload_equal(const npvdb_client_payload *got,
                                 const npvdb_client_payload *want)
{
    size_t n = npvdb_client_payload_len(want);
    assert_int_equal(npvdb_client_payload_len(got), n);
    for (size_t i = 0; i < n; i++)
        assert_field_equal(npvdb_client_payload_field(got, i),
                           npvdb_client_payload_field(want, i));
}

/* Creates collection `name` and inserts the fixture's rows with their
 * payloads, in messages of 64 rows. */
static void load(fixture *f, const char *name, npvdb_client_metric m)
{
    npvdb_client *c = f->s.client;
    npvdb_client_error err;
    assert_int_equal(npvdb_client_use(c, name, &err), NPVDB_STATUS_OK);
    npvdb_client_init_params p = {.dim = DIM,
                                  .metric = m,
                                  .n_shards = SHARDS,
                                  .train = f->d.rows,
                                  .n_train = N};
    if (npvdb_client_init(c, &p, NULL, NULL, &err) != NPVDB_STATUS_OK)
        fail_msg("init: %s", err.msg);
    npvdb_client_insert_reply r;
    if (npvdb_client_insert_payloads(
            c, DIM, (const char *const *)f->d.keys, f->d.rows,
            (const npvdb_client_payload *const *)f->pl, N, 64, NULL, NULL, &r,
            &err) != NPVDB_STATUS_OK)
        fail_msg("insert: %s", err.msg);
    assert_int_equal(r.inserted, N);
    assert_int_equal(r.messages, (N + 63) / 64);
}

static size_t key_index(const char *key)
{
    assert_true(key[0] == 'k');
    return (size_t)strtoul(key + 1, NULL, 10);
}

/* ---- Get ---- */

static void test_insert_then_get_payloads(void **state)
{
    fixture *f = *state;
    npvdb_client *c = f->s.client;
    load(f, "docs", NPVDB_CLIENT_L2);
    const char *keys[N + 1];
    for (size_t i = 0; i < N; i++)
        keys[i] = f->d.keys[i];
    keys[N] = "nope";
    npvdb_client_vectors v;
    npvdb_client_error err;
    if (npvdb_client_get_ex(c, keys, N + 1, DIM, 1, &v, &err) !=
        NPVDB_STATUS_OK)
        fail_msg("get: %s", err.msg);
    assert_int_equal(v.n_found, N);
    assert_int_equal(v.n_missing, 1);
    for (size_t i = 0; i < N; i++) {
        assert_string_equal(v.keys[i], keys[i]);
        assert_memory_equal(v.vectors + i * DIM, f->d.rows + i * DIM,
                            DIM * sizeof(float));
        assert_payload_equal(npvdb_client_vectors_payload(&v, i), f->pl[i]);
    }
    assert_null(npvdb_client_vectors_payload(&v, N));
    npvdb_client_vectors_free(&v);
    /* Without with_payload: none, and the plain call is unchanged. */
    assert_int_equal(npvdb_client_get(c, keys, 3, DIM, &v, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(v.n_found, 3);
    assert_null(npvdb_client_vectors_payload(&v, 1));
    npvdb_client_vectors_free(&v);

    /* An upsert replaces the payload with the vector: k1 again without
     * one has none, k2 gets a new one. */
    npvdb_client_payload *np = npvdb_client_payload_new();
    assert_non_null(np);
    assert_int_equal(npvdb_client_payload_set_str(np, "tag", "new"), 0);
    const npvdb_client_payload *pls[2] = {NULL, np};
    npvdb_client_stream *s = npvdb_client_insert_begin(c, DIM, &err);
    assert_non_null(s);
    assert_int_equal(
        npvdb_client_stream_send_payloads(s, (const char *const *)f->d.keys + 1,
                                          f->d.rows + DIM, pls, 2, &err),
        NPVDB_STATUS_OK);
    npvdb_client_insert_reply r;
    assert_int_equal(npvdb_client_stream_finish(s, &r, &err), NPVDB_STATUS_OK);
    assert_int_equal(r.replaced, 2);
    assert_int_equal(npvdb_client_get_ex(c, keys + 1, 2, DIM, 1, &v, &err),
                     NPVDB_STATUS_OK);
    assert_null(npvdb_client_vectors_payload(&v, 0));
    assert_payload_equal(npvdb_client_vectors_payload(&v, 1), np);
    npvdb_client_vectors_free(&v);
    npvdb_client_payload_free(np);

    /* A payload read back can be sent again as is (re-index): into a
     * second collection, then read from there. */
    assert_int_equal(npvdb_client_get_ex(c, keys, 20, DIM, 1, &v, &err),
                     NPVDB_STATUS_OK);
    npvdb_client_init_params p = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    assert_int_equal(npvdb_client_use(c, "copy", &err), NPVDB_STATUS_OK);
    assert_int_equal(npvdb_client_init(c, &p, NULL, NULL, &err),
                     NPVDB_STATUS_OK);
    const npvdb_client_payload *back[20];
    for (size_t i = 0; i < 20; i++)
        back[i] = npvdb_client_vectors_payload(&v, i);
    assert_int_equal(npvdb_client_insert_payloads(
                         c, DIM, (const char *const *)v.keys, v.vectors, back,
                         v.n_found, 0, NULL, NULL, NULL, &err),
                     NPVDB_STATUS_OK);
    npvdb_client_vectors w;
    assert_int_equal(npvdb_client_get_ex(c, keys, 20, DIM, 1, &w, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(w.n_found, 20);
    for (size_t i = 0; i < 20; i++)
        assert_payload_equal(npvdb_client_vectors_payload(&w, i),
                             npvdb_client_vectors_payload(&v, i));
    npvdb_client_vectors_free(&w);
    npvdb_client_vectors_free(&v);

    /* A payload the server refuses (a list of 1025 strings) is
     * INVALID_ARGUMENT, and nothing of that message is applied. */
    npvdb_client_payload *big = npvdb_client_payload_new();
    const char *many[1025];
    for (size_t i = 0; i < 1025; i++)
        many[i] = "s";
    assert_int_equal(npvdb_client_payload_set_strings(big, "l", many, 1025), 0);
    const npvdb_client_payload *bigs[1] = {big};
    const char *nk[1] = {"fresh"};
    npvdb_status rc = npvdb_client_insert_payloads(
        c, DIM, nk, f->d.rows, bigs, 1, 0, NULL, NULL, NULL, &err);
    assert_int_equal(rc, NPVDB_STATUS_INVALID_ARGUMENT);
    npvdb_client_payload_free(big);
    uint64_t count = 0;
    assert_int_equal(npvdb_client_count(c, NULL, &count, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(count, 20);
}

/* ---- filtered search = brute force ---- */

static float distance(npvdb_client_metric m, const float *q, const float *x)
{
    double dot = 0, qq = 0, xx = 0, l2 = 0;
    for (int j = 0; j < DIM; j++) {
        dot += (double)q[j] * x[j];
        qq += (double)q[j] * q[j];
        xx += (double)x[j] * x[j];
        l2 += ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
    }
    if (m == NPVDB_CLIENT_L2) return (float)sqrt(l2);
    if (m == NPVDB_CLIENT_IP) return (float)-dot;
    return (float)(1.0 - dot / (sqrt(qq) * sqrt(xx)));
}

typedef struct cand {
    float d;
    size_t i;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->d < y->d ? -1 : x->d > y->d;
}

/* The filters, as predicates on the row index and as builders. */
enum { F_TENANT2, F_PRICE, F_NOT_T1_HAS_TAGS, F_SHOULD, F_LIST, F_NONE, NF };

static int passes(int filter, size_t i)
{
    int has = i % 7 != 0 && i % 11 != 0; /* the rows with the full payload */
    switch (filter) {
    case F_TENANT2:
        return has && i % 5 == 2;
    case F_PRICE: /* 20 <= price < 60.5 */
        return has && i / 2.0 >= 20 && i / 2.0 < 60.5;
    case F_NOT_T1_HAS_TAGS:
        return has && i % 3 != 1;
    case F_SHOULD: /* even or neg present */
        return (has && i % 2 == 0) || (i % 7 != 0 && i % 11 == 0);
    case F_LIST: /* tags contains "b3" */
        return has && i % 4 == 3;
    default: /* a field nobody has */
        return 0;
    }
}

static npvdb_client_filter *make_filter(int filter)
{
    npvdb_client_filter *f = npvdb_client_filter_new();
    assert_non_null(f);
    int rc = 0;
    switch (filter) {
    case F_TENANT2:
        rc = npvdb_client_filter_match_int(f, NPVDB_CLIENT_MUST, "tenant", 2);
        break;
    case F_PRICE:
        rc = npvdb_client_filter_range(f, NPVDB_CLIENT_MUST, "price", 20, 0,
                                       60.5, 1);
        break;
    case F_NOT_T1_HAS_TAGS:
        rc = npvdb_client_filter_match_str(f, NPVDB_CLIENT_MUST_NOT, "tag",
                                           "t1") |
             npvdb_client_filter_has_field(f, NPVDB_CLIENT_MUST, "tags");
        break;
    case F_SHOULD:
        rc = npvdb_client_filter_match_bool(f, NPVDB_CLIENT_SHOULD, "even", 1) |
             npvdb_client_filter_has_field(f, NPVDB_CLIENT_SHOULD, "neg");
        break;
    case F_LIST:
        rc = npvdb_client_filter_match_str(f, NPVDB_CLIENT_MUST, "tags", "b3");
        break;
    default:
        rc = npvdb_client_filter_has_field(f, NPVDB_CLIENT_MUST, "nobody");
    }
    assert_int_equal(rc, 0);
    return f;
}

/* Checks query qi's row of r against brute force over the rows passing
 * `filter`, payloads included. */
static void check_row(const fixture *f, npvdb_client_metric m, int filter,
                      const float *q, const npvdb_client_results *r, size_t qi,
                      uint32_t k)
{
    cand c[N];
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        if (passes(filter, i)) {
            c[n].d = distance(m, q, f->d.rows + i * DIM);
            c[n++].i = i;
        }
    qsort(c, n, sizeof *c, cand_cmp);
    size_t want = n < k ? n : k;
    if (r->counts[qi] != want)
        fail_msg("metric %d filter %d query %zu: %u hits, want %zu", m, filter,
                 qi, r->counts[qi], want);
    for (size_t j = 0; j < want; j++) {
        const char *key = r->keys[qi * k + j];
        size_t got = key_index(key);
        float d = r->distances[qi * k + j];
        if (fabsf(d - c[j].d) > 1e-4f * (1 + fabsf(c[j].d)))
            fail_msg("metric %d filter %d query %zu hit %zu: %s at %g, want "
                     "k%zu at %g",
                     m, filter, qi, j, key, (double)d, c[j].i, (double)c[j].d);
        /* Ties aside, the same key; a tie must still pass the filter. */
        assert_true(passes(filter, got));
        if (got != c[j].i && fabsf(c[j].d - d) > 1e-6f)
            fail_msg("filter %d: key %s, want k%zu", filter, key, c[j].i);
        assert_payload_equal(npvdb_client_results_payload(r, qi, (uint32_t)j),
                             f->pl[got]);
    }
}

static void filtered_metric(fixture *f, const char *name, npvdb_client_metric m)
{
    npvdb_client *c = f->s.client;
    load(f, name, m);
    enum { NQ = 6, K = 10 };
    it_data q;
    it_data_make(&q, NQ, DIM, 92, "q");
    for (int filter = 0; filter < NF; filter++) {
        npvdb_client_filter *flt = make_filter(filter);
        npvdb_client_search_opts o = {.filter = flt, .with_payload = 1};
        for (int rpc = 0; rpc < 2; rpc++) {
            npvdb_client_results r;
            npvdb_client_error err;
            npvdb_status rc =
                rpc ? npvdb_client_search_ex(c, q.rows, NQ, DIM, K, SHARDS, &o,
                                             &r, &err)
                    : npvdb_client_get_closest_ex(c, q.rows, NQ, DIM, K, SHARDS,
                                                  &o, &r, &err);
            if (rc != NPVDB_STATUS_OK)
                fail_msg("filter %d rpc %d: %s", filter, rpc, err.msg);
            for (size_t i = 0; i < NQ; i++)
                check_row(f, m, filter, q.rows + i * DIM, &r, i, K);
            npvdb_client_results_free(&r);
        }
        uint64_t count = 0, want = 0;
        npvdb_client_error err;
        assert_int_equal(npvdb_client_count(c, flt, &count, &err),
                         NPVDB_STATUS_OK);
        for (size_t i = 0; i < N; i++)
            want += (uint64_t)passes(filter, i);
        assert_int_equal(count, want);
        npvdb_client_filter_free(flt);
    }
    /* Without with_payload, no payloads; without a filter, all rows. */
    npvdb_client_results r;
    npvdb_client_error err;
    npvdb_client_search_opts o = {0};
    assert_int_equal(
        npvdb_client_search_ex(c, q.rows, 1, DIM, K, SHARDS, &o, &r, &err),
        NPVDB_STATUS_OK);
    assert_int_equal(r.counts[0], K);
    assert_null(npvdb_client_results_payload(&r, 0, 0));
    npvdb_client_results_free(&r);
    it_data_free(&q);
}

static void test_filtered_search_is_brute_force(void **state)
{
    filtered_metric(*state, "l2", NPVDB_CLIENT_L2);
    filtered_metric(*state, "cos", NPVDB_CLIENT_COSINE);
    filtered_metric(*state, "ip", NPVDB_CLIENT_IP);
}

/* ---- Scroll ---- */

static void scroll_all(fixture *f, const npvdb_client_scroll_params *p,
                       int filter, size_t *pages)
{
    int seen[N] = {0};
    npvdb_client_page pg = {0};
    npvdb_client_error err;
    *pages = 0;
    do {
        if (npvdb_client_scroll(f->s.client, p, &pg, &err) != NPVDB_STATUS_OK)
            fail_msg("scroll page %zu: %s", *pages, err.msg);
        assert_true(pg.n <= (p->limit ? p->limit : 256));
        for (size_t j = 0; j < pg.n; j++) {
            size_t i = key_index(pg.keys[j]);
            assert_true(i < N);
            if (seen[i]++) fail_msg("scroll: %s twice", pg.keys[j]);
            if (p->with_vectors) {
                assert_int_equal(pg.dim, DIM);
                assert_memory_equal(pg.vectors + j * DIM, f->d.rows + i * DIM,
                                    DIM * sizeof(float));
            } else {
                assert_null(pg.vectors);
            }
            if (p->with_payload)
                assert_payload_equal(npvdb_client_page_payload(&pg, j),
                                     f->pl[i]);
            else
                assert_null(npvdb_client_page_payload(&pg, j));
        }
        (*pages)++;
    } while (!pg.done);
    assert_null(pg.cursor);
    npvdb_client_page_free(&pg);
    for (size_t i = 0; i < N; i++)
        if (seen[i] != (filter < 0 ? 1 : passes(filter, i)))
            fail_msg("scroll (filter %d): k%zu seen %d times", filter, i,
                     seen[i]);
}

static void test_scroll_visits_every_key_once(void **state)
{
    fixture *f = *state;
    load(f, "docs", NPVDB_CLIENT_L2); /* cosine would store them normalised */
    size_t pages;
    npvdb_client_scroll_params p = {
        .limit = 37, .with_vectors = 1, .with_payload = 1};
    scroll_all(f, &p, -1, &pages);
    assert_true(pages >= (N + 36) / 37);
    /* dim given and checked; keys only; the server's default limit. */
    p = (npvdb_client_scroll_params){.with_vectors = 1, .dim = DIM};
    scroll_all(f, &p, -1, &pages);
    p = (npvdb_client_scroll_params){.limit = 1000};
    scroll_all(f, &p, -1, &pages);
    assert_int_equal(pages, 1);
    for (int filter = 0; filter < NF; filter++) {
        npvdb_client_filter *flt = make_filter(filter);
        p = (npvdb_client_scroll_params){
            .filter = flt, .limit = 16, .with_payload = 1};
        scroll_all(f, &p, filter, &pages);
        npvdb_client_filter_free(flt);
    }
    /* A wrong dim is the reply's fault to the client: INTERNAL, page
     * zeroed. */
    npvdb_client_page pg = {0};
    npvdb_client_error err;
    p = (npvdb_client_scroll_params){.with_vectors = 1, .dim = DIM + 1};
    assert_int_equal(npvdb_client_scroll(f->s.client, &p, &pg, &err),
                     NPVDB_STATUS_INTERNAL);
    assert_null(pg.keys);
    /* A missing collection is NOT_FOUND, naming it. */
    assert_int_equal(npvdb_client_use(f->s.client, "absent", &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(npvdb_client_scroll(f->s.client, &p, &pg, &err),
                     NPVDB_STATUS_NOT_FOUND);
    assert_non_null(strstr(err.msg, "absent"));
}

/* argv[1], if given, runs only the test of that name. */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_then_get_payloads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_filtered_search_is_brute_force,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_scroll_visits_every_key_once,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
