/*
 * test_auth.c -- the token table (auth.c): token files parse into exactly
 * the tokens and roles written, every malformed file is refused with the
 * line that is wrong (and never quotes the token), lookups find exactly the
 * stored tokens (constant-time comparison is checked for correctness, not
 * timing), reload swaps the table or keeps the old one, and the method and
 * loopback rules.
 */
#include "auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static npvdb_tokens *parse_ok(const char *text)
{
    npvdb_tokens *t = NULL;
    npvdb_error err = {0};
    npvdb_code rc = npvdb_tokens_parse(text, strlen(text), "f", &t, &err);
    if (rc != NPVDB_OK) fail_msg("parse failed: %s", err.msg);
    assert_non_null(t);
    return t;
}

/* Parses text[0..len) expecting an error whose message starts with
 * `prefix`. */
static void parse_bad_n(const char *text, size_t len, const char *prefix)
{
    npvdb_tokens *t = (npvdb_tokens *)1;
    npvdb_error err = {0};
    npvdb_code rc = npvdb_tokens_parse(text, len, "f", &t, &err);
    assert_int_equal(rc, NPVDB_EINVAL);
    assert_null(t);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
        fail_msg("message '%s' does not start with '%s'", err.msg, prefix);
}

static void parse_bad(const char *text, const char *prefix)
{
    parse_bad_n(text, strlen(text), prefix);
}

static npvdb_role role_of(const npvdb_tokens *t, const char *tok)
{
    return npvdb_tokens_lookup(t, tok, strlen(tok));
}

static void test_parse_roles_comments_blanks(void **state)
{
    npvdb_tokens *t = parse_ok("# the readers\n"
                               "\n"
                               "r3ad-only_T0K3N read\n"
                               "   \t  \n"
                               "  # indented comment\n"
                               "\tw.TOKEN/+= \t write  \r\n"
                               "last write"); /* no final newline */
    assert_int_equal(npvdb_tokens_count(t), 3);
    assert_int_equal(role_of(t, "r3ad-only_T0K3N"), NPVDB_ROLE_READ);
    assert_int_equal(role_of(t, "w.TOKEN/+="), NPVDB_ROLE_WRITE);
    assert_int_equal(role_of(t, "last"), NPVDB_ROLE_WRITE);
    /* Not tokens: prefixes, extensions, other case, the role, a comment. */
    assert_int_equal(role_of(t, "r3ad-only_T0K3"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "r3ad-only_T0K3NN"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "R3AD-ONLY_T0K3N"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "read"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "#"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, ""), NPVDB_ROLE_NONE);
    assert_int_equal(npvdb_tokens_lookup(t, "lastX", 4), NPVDB_ROLE_WRITE);
    npvdb_tokens_free(t);
}

static void test_malformed_lines_name_the_line(void **state)
{
    parse_bad("ok read\nlonely\n", "f:2: expected 'TOKEN ROLE'");
    parse_bad("ok read\n\n# c\nwith space read\n",
              "f:4: expected 'TOKEN ROLE' (2 words), found 3 words");
    parse_bad("tok admin\n", "f:1: the role (second word) must be 'read' or "
                             "'write'");
    parse_bad("tok Read\n", "f:1: the role");
    parse_bad("tok write\nother read\ntok read\n",
              "f:3: the same token as on line 1");
    parse_bad("a read\nt\x01k read\n", "f:2: the token holds byte 0x01");
    parse_bad("t\xc3\xa9 read\n", "f:1: the token holds byte 0xc3");
    parse_bad_n("ok read\ntok\0en read\n", 20,
                "f:2: the token holds byte 0x00");
    parse_bad("", "f: no token");
    parse_bad("# only comments\n\n", "f: no token");
    char big[NPVDB_TOKEN_MAX + 32];
    memset(big, 'x', NPVDB_TOKEN_MAX + 1);
    strcpy(big + NPVDB_TOKEN_MAX + 1, " read\n");
    parse_bad(big, "f:1: token of 4097 bytes");
    big[NPVDB_TOKEN_MAX] = ' ';
    strcpy(big + NPVDB_TOKEN_MAX + 1, "read\n");
    npvdb_tokens_free(parse_ok(big)); /* exactly the maximum */
}

static void test_messages_never_quote_a_token(void **state)
{
    static const char *const files[] = {
        "SECRET1\n",       "SECRET1 read extra\n",
        "SECRET1 owner\n", "SECRET1 read\nSECRET1 write\n",
        "read SECRET1\n",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        npvdb_tokens *t = NULL;
        npvdb_error err = {0};
        assert_int_equal(
            npvdb_tokens_parse(files[i], strlen(files[i]), "f", &t, &err),
            NPVDB_EINVAL);
        assert_null(strstr(err.msg, "SECRET1"));
        assert_null(strstr(err.msg, "ECRET"));
    }
}

static void test_constant_time_compare_is_equality(void **state)
{
    const char *a = "abcdef";
    assert_true(npvdb_ct_equal(a, 6, "abcdef", 6));
    assert_false(npvdb_ct_equal(a, 6, "abcdeg", 6));
    assert_false(npvdb_ct_equal(a, 6, "Abcdef", 6));
    assert_false(npvdb_ct_equal(a, 5, "abcdef", 6)); /* a is a prefix */
    assert_false(npvdb_ct_equal(a, 6, "abcde", 5));  /* b is a prefix */
    assert_false(npvdb_ct_equal("", 0, "a", 1));
    assert_true(npvdb_ct_equal("", 0, "", 0));
    assert_false(npvdb_ct_equal("a", 1, "", 0));
    /* Past b's end, a is compared with b[0]: "aaaa" vs "a" must differ. */
    assert_false(npvdb_ct_equal("aaaa", 4, "a", 1));
    assert_false(npvdb_ct_equal("a", 1, "aaaa", 4));
    /* Bytes with the high bit, and every single-bit difference. */
    unsigned char x[64], y[64];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = y[i] = (unsigned char)(0x80 + 7 * i);
    assert_true(npvdb_ct_equal(x, sizeof x, y, sizeof y));
    for (size_t i = 0; i < sizeof x; i++) {
        for (int bit = 0; bit < 8; bit++) {
            y[i] ^= (unsigned char)(1 << bit);
            assert_false(npvdb_ct_equal(x, sizeof x, y, sizeof y));
            y[i] ^= (unsigned char)(1 << bit);
        }
    }
    /* Length differences that are multiples of 256 are not lost. */
    char *long_a = calloc(1, 257), *long_b = calloc(1, 257);
    assert_non_null(long_a);
    assert_non_null(long_b);
    assert_false(npvdb_ct_equal(long_a, 257, long_b, 1));
    assert_true(npvdb_ct_equal(long_a, 257, long_b, 257));
    free(long_a);
    free(long_b);
}

static void test_lookup_checks_every_token(void **state)
{
    /* Tokens sharing prefixes and lengths: each finds exactly its role. */
    npvdb_tokens *t = parse_ok("aaaa read\naaab write\naaa read\naaaaa "
                               "write\nb read\n");
    assert_int_equal(role_of(t, "aaaa"), NPVDB_ROLE_READ);
    assert_int_equal(role_of(t, "aaab"), NPVDB_ROLE_WRITE);
    assert_int_equal(role_of(t, "aaa"), NPVDB_ROLE_READ);
    assert_int_equal(role_of(t, "aaaaa"), NPVDB_ROLE_WRITE);
    assert_int_equal(role_of(t, "b"), NPVDB_ROLE_READ);
    assert_int_equal(role_of(t, "aa"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "aaac"), NPVDB_ROLE_NONE);
    assert_int_equal(role_of(t, "bb"), NPVDB_ROLE_NONE);
    assert_int_equal(npvdb_tokens_lookup(NULL, "b", 1), NPVDB_ROLE_NONE);
    npvdb_tokens_free(t);
}

/* A temporary file holding `text`; the path is written to `path`. */
static void write_file(char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void temp_path(char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/npvdb-test-auth-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void test_reload_swaps_or_keeps(void **state)
{
    char path[64];
    temp_path(path, sizeof path);
    write_file(path, "old write\n");
    npvdb_error err = {0};
    npvdb_auth *a = npvdb_auth_open(path, &err);
    assert_non_null(a);
    assert_int_equal(npvdb_auth_count(a), 1);
    assert_int_equal(npvdb_auth_role(a, "old", 3), NPVDB_ROLE_WRITE);

    write_file(path, "new read\nnewer write\n");
    assert_int_equal(npvdb_auth_reload(a, &err), NPVDB_OK);
    assert_int_equal(npvdb_auth_count(a), 2);
    assert_int_equal(npvdb_auth_role(a, "old", 3), NPVDB_ROLE_NONE);
    assert_int_equal(npvdb_auth_role(a, "new", 3), NPVDB_ROLE_READ);

    /* A bad file keeps the table in use and says which line. */
    write_file(path, "ok read\nbroken\n");
    assert_int_equal(npvdb_auth_reload(a, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, ":2: "));
    assert_int_equal(npvdb_auth_role(a, "new", 3), NPVDB_ROLE_READ);
    assert_int_equal(npvdb_auth_role(a, "ok", 2), NPVDB_ROLE_NONE);

    /* So does a file that is gone. */
    unlink(path);
    assert_int_equal(npvdb_auth_reload(a, &err), NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "cannot read token file"));
    assert_int_equal(npvdb_auth_role(a, "newer", 5), NPVDB_ROLE_WRITE);
    npvdb_auth_free(a);

    assert_null(npvdb_auth_open(path, &err));
    assert_non_null(strstr(err.msg, path));
}

static void test_load_names_file_and_line(void **state)
{
    char path[64];
    temp_path(path, sizeof path);
    write_file(path, "a read\n\nb write\nc reader\n");
    npvdb_tokens *t = NULL;
    npvdb_error err = {0};
    assert_int_equal(npvdb_tokens_load(path, &t, &err), NPVDB_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "%s:4: the role", path);
    assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);
    unlink(path);
}

static void test_method_roles(void **state)
{
    static const char *const reads[] = {"GetClosest",     "Search", "Get",
                                        "Info",           "Count",  "Scroll",
                                        "ListCollections"};
    static const char *const writes[] = {"Init", "Insert", "Snapshot", "Delete",
                                         "DropCollection"};
    char path[128];
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        snprintf(path, sizeof path, "/npvdb.v1.VectorDB/%s", reads[i]);
        assert_int_equal(npvdb_method_role(path), NPVDB_ROLE_READ);
    }
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        snprintf(path, sizeof path, "/npvdb.v1.VectorDB/%s", writes[i]);
        assert_int_equal(npvdb_method_role(path), NPVDB_ROLE_WRITE);
    }
    assert_int_equal(npvdb_method_role("/grpc.health.v1.Health/Check"),
                     NPVDB_ROLE_NONE);
    assert_int_equal(npvdb_method_role("/grpc.health.v1.Health/Watch"),
                     NPVDB_ROLE_NONE);
    /* Near misses of read methods need write (a method not listed is
     * writers-only). */
    assert_int_equal(npvdb_method_role("/npvdb.v1.VectorDB/GetX"),
                     NPVDB_ROLE_WRITE);
    assert_int_equal(npvdb_method_role("/npvdb.v1.VectorDB/get"),
                     NPVDB_ROLE_WRITE);
    assert_int_equal(npvdb_method_role("/x.VectorDB/Get"), NPVDB_ROLE_WRITE);
    assert_int_equal(npvdb_method_role("/grpc.health.v1.HealthX/Check"),
                     NPVDB_ROLE_WRITE);
}

static void test_loopback_addresses(void **state)
{
    static const char *const local[] = {
        "127.0.0.1:50051",      "127.0.0.1:0", "127.1.2.3:1",
        "localhost:50051",      "LOCALHOST:1", "[::1]:50051",
        "[::ffff:127.0.0.1]:5", "unix:/tmp/s", "unix-abstract:npvdb",
    };
    static const char *const open[] = {
        "0.0.0.0:50051",  "0.0.0.0:0",  "[::]:50051",
        ":50051",         "10.0.0.1:1", "128.0.0.1:1",
        "example.com:80", "[::2]:1",    "localhost.evil.com:1",
        "[::1:1",         "",
    };
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        if (!npvdb_listen_is_loopback(local[i]))
            fail_msg("%s should be loopback", local[i]);
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        if (npvdb_listen_is_loopback(open[i]))
            fail_msg("%s should not be loopback", open[i]);
    assert_false(npvdb_listen_is_loopback(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_roles_comments_blanks),
        cmocka_unit_test(test_malformed_lines_name_the_line),
        cmocka_unit_test(test_messages_never_quote_a_token),
        cmocka_unit_test(test_constant_time_compare_is_equality),
        cmocka_unit_test(test_lookup_checks_every_token),
        cmocka_unit_test(test_reload_swaps_or_keeps),
        cmocka_unit_test(test_load_names_file_and_line),
        cmocka_unit_test(test_method_roles),
        cmocka_unit_test(test_loopback_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
