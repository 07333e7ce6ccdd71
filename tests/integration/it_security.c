/*
 * it_security.c -- the C client and the CLI against a real server with TLS,
 * mutual TLS and tokens (issue 10): npvdb_client_connect_opts, the
 * `authorization: Bearer` metadata on every call (insert streams included),
 * and the CLI's --tls-ca/--tls-cert/--tls-key/--token, NPVDB_TOKEN and
 * NPVDB_ADDRESS.
 *
 * Each test makes a throwaway PKI with openssl (make_pki.sh) in its
 * server's temporary directory: nothing is committed. Without openssl the
 * tests skip.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef NPVDB_MAKE_PKI
#error "NPVDB_MAKE_PKI must name make_pki.sh"
#endif

#define DIM 8
/* Distinctive tokens: neither the server's log nor the CLI's output may
 * contain them. */
#define WRITE_TOKEN "w-Q7vJ2kq0ZmX4rT9sLb"
#define READ_TOKEN "r-H3nC8pW1dYf6uE5aGk"
#define UNKNOWN_TOKEN "u-K9xV4mB2tN7qR1sZc"

typedef struct pki {
    char dir[400];
    char ca[450], other_ca[450];
    char server_cert[450], server_key[450];
    char client_cert[450], client_key[450];
    char stranger_cert[450], stranger_key[450];
    char tokens[450];
} pki;

/* Makes the PKI and a token file under s->root; skips without openssl. */
static void pki_make(const it_server *s, pki *p)
{
    char *out = NULL;
    if (it_run("command -v openssl", &out) != 0) {
        free(out);
        skip(); /* scripts/install-deps.sh installs openssl */
    }
    free(out);
    snprintf(p->dir, sizeof p->dir, "%s/pki", s->root);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "sh '%s' '%s'", NPVDB_MAKE_PKI, p->dir);
    int rc = it_run(cmd, &out);
    if (rc != 0) fail_msg("make_pki.sh failed (%d): %s", rc, out);
    free(out);
#define PKI_PATH(field, name)                                                  \
    snprintf(p->field, sizeof p->field, "%s/%s", p->dir, name)
    PKI_PATH(ca, "ca.pem");
    PKI_PATH(other_ca, "other-ca.pem");
    PKI_PATH(server_cert, "server.pem");
    PKI_PATH(server_key, "server.key");
    PKI_PATH(client_cert, "client.pem");
    PKI_PATH(client_key, "client.key");
    PKI_PATH(stranger_cert, "stranger.pem");
    PKI_PATH(stranger_key, "stranger.key");
    PKI_PATH(tokens, "tokens");
#undef PKI_PATH
    FILE *f = fopen(p->tokens, "w");
    assert_non_null(f);
    fputs("# tokens of it_security\n" WRITE_TOKEN " write\n" READ_TOKEN
          " read\n",
          f);
    assert_int_equal(fclose(f), 0);
}

static void expect_text(const char *text, const char *want)
{
    if (!strstr(text, want)) fail_msg("expected \"%s\" in:\n%s", want, text);
}

static void expect_no_tokens(const char *text)
{
    if (strstr(text, WRITE_TOKEN) || strstr(text, READ_TOKEN) ||
        strstr(text, UNKNOWN_TOKEN))
        fail_msg("a token was printed:\n%s", text);
}

static void assert_log_has_no_tokens(const it_server *s)
{
    char *log = it_server_log(s);
    expect_no_tokens(log);
    free(log);
}

/* A connect that must fail before any call: returns its error. */
static npvdb_client_error connect_fails(const char *target,
                                        const npvdb_client_opts *o)
{
    npvdb_client_error err;
    memset(&err, 0, sizeof err);
    npvdb_client *c = npvdb_client_connect_opts(target, o, 10000, &err);
    if (c) {
        npvdb_client_close(c);
        fail_msg("connect to %s succeeded", target);
    }
    return err;
}

/* A client the server must refuse at the handshake: UNAVAILABLE at the
 * connect's Health call, or (TLS 1.3 checks the client certificate after
 * the client has finished its handshake) at the first call after it. */
static void assert_refused(const char *target, const npvdb_client_opts *o)
{
    npvdb_client_error err;
    npvdb_client *c = npvdb_client_connect_opts(target, o, 10000, &err);
    if (c) {
        npvdb_client_info info;
        npvdb_status rc = npvdb_client_info_get(c, &info, &err);
        if (rc == NPVDB_STATUS_OK) npvdb_client_info_free(&info);
        npvdb_client_close(c);
        if (rc != NPVDB_STATUS_UNAVAILABLE)
            fail_msg("expected UNAVAILABLE, got %s: %s", npvdb_status_name(rc),
                     err.msg);
    } else if (err.code != NPVDB_STATUS_UNAVAILABLE) {
        fail_msg("expected UNAVAILABLE, got %s: %s",
                 npvdb_status_name(err.code), err.msg);
    }
}

/* Init (L2), an insert stream of three messages, a search that finds the
 * keys, Info: the whole path works over this handle. */
static void exercise(npvdb_client *c)
{
    npvdb_client_error err;
    npvdb_client_init_params p = {
        .dim = DIM, .metric = NPVDB_CLIENT_L2, .n_shards = 2, .replace = 1};
    assert_int_equal(npvdb_client_init(c, &p, NULL, NULL, &err),
                     NPVDB_STATUS_OK);
    it_data d;
    it_data_make(&d, 90, DIM, 7, "k");
    npvdb_client_stream *s = npvdb_client_insert_begin(c, DIM, &err);
    if (!s) fail_msg("insert_begin: %s", err.msg);
    for (size_t i = 0; i < 3; i++)
        if (npvdb_client_stream_send(s, (const char *const *)d.keys + 30 * i,
                                     d.rows + 30 * i * DIM, 30,
                                     &err) != NPVDB_STATUS_OK)
            fail_msg("stream_send %zu: %s", i, err.msg);
    npvdb_client_insert_reply r;
    if (npvdb_client_stream_finish(s, &r, &err) != NPVDB_STATUS_OK)
        fail_msg("stream_finish: %s", err.msg);
    assert_int_equal(r.inserted + r.replaced, 90);
    assert_int_equal(r.messages, 3);
    npvdb_client_results res;
    if (npvdb_client_search(c, d.rows + 41 * DIM, 1, DIM, 1, 2, &res, &err))
        fail_msg("search: %s", err.msg);
    assert_int_equal(res.counts[0], 1);
    assert_string_equal(res.keys[0], "k41");
    npvdb_client_results_free(&res);
    npvdb_client_info info;
    assert_int_equal(npvdb_client_info_get(c, &info, &err), NPVDB_STATUS_OK);
    assert_int_equal(info.vectors, 90);
    npvdb_client_info_free(&info);
    it_data_free(&d);
}

static void stop_clean(it_server *s)
{
    assert_log_has_no_tokens(s);
    assert_int_equal(it_server_stop(s), 0);
    it_server_destroy(s);
}

/* ---- TLS ---- */

static void test_tls(void **state)
{
    (void)state;
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    npvdb_client_opts tls = {.tls_ca_file = p.ca, .token = WRITE_TOKEN};
    s.client_opts = &tls;
    it_server_start(&s, "--tls-cert", p.server_cert, "--tls-key", p.server_key,
                    "--token-file", p.tokens, NULL);
    exercise(s.client);

    /* The certificate names localhost too. */
    char local[64];
    snprintf(local, sizeof local, "localhost:%s", strrchr(s.addr, ':') + 1);
    npvdb_client_error err;
    npvdb_client *c = npvdb_client_connect_opts(local, &tls, 10000, &err);
    if (!c) fail_msg("connect %s: %s", local, err.msg);
    uint64_t n = 0;
    assert_int_equal(npvdb_client_count(c, NULL, &n, &err), NPVDB_STATUS_OK);
    assert_int_equal(n, 90);
    npvdb_client_close(c);

    /* A plaintext client: the handshake fails, at connect. */
    err = connect_fails(s.addr, NULL);
    assert_int_equal(err.code, NPVDB_STATUS_UNAVAILABLE);
    expect_text(err.msg, "cannot reach npvdb at");
    npvdb_client_opts plain_token = {.token = WRITE_TOKEN};
    err = connect_fails(s.addr, &plain_token);
    assert_int_equal(err.code, NPVDB_STATUS_UNAVAILABLE);

    /* A client trusting another CA. */
    npvdb_client_opts other = {.tls_ca_file = p.other_ca, .token = WRITE_TOKEN};
    err = connect_fails(s.addr, &other);
    assert_int_equal(err.code, NPVDB_STATUS_UNAVAILABLE);
    expect_text(err.msg, "TLS: check");
    expect_no_tokens(err.msg);

    /* TLS without a token still meets the token check. */
    npvdb_client_opts no_token = {.tls_ca_file = p.ca};
    c = npvdb_client_connect_opts(s.addr, &no_token, 10000, &err);
    if (!c) fail_msg("connect: %s", err.msg);
    assert_int_equal(npvdb_client_count(c, NULL, &n, &err),
                     NPVDB_STATUS_UNAUTHENTICATED);
    npvdb_client_close(c);
    stop_clean(&s);
}

/* A TLS client to a plaintext server fails the handshake too. */
static void test_tls_client_to_plaintext_server(void **state)
{
    (void)state;
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    it_server_start(&s, NULL);
    npvdb_client_opts tls = {.tls_ca_file = p.ca};
    npvdb_client_error err = connect_fails(s.addr, &tls);
    assert_int_equal(err.code, NPVDB_STATUS_UNAVAILABLE);
    expect_text(err.msg, "TLS: check");
    stop_clean(&s);
}

static void test_mutual_tls(void **state)
{
    (void)state;
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    npvdb_client_opts mtls = {.tls_ca_file = p.ca,
                              .tls_cert_file = p.client_cert,
                              .tls_key_file = p.client_key};
    s.client_opts = &mtls;
    it_server_start(&s, "--tls-cert", p.server_cert, "--tls-key", p.server_key,
                    "--tls-client-ca", p.ca, NULL);
    exercise(s.client); /* mutual TLS alone: no token needed */

    /* Without a client certificate, and with one of another CA. */
    npvdb_client_opts no_cert = {.tls_ca_file = p.ca};
    assert_refused(s.addr, &no_cert);
    npvdb_client_opts stranger = {.tls_ca_file = p.ca,
                                  .tls_cert_file = p.stranger_cert,
                                  .tls_key_file = p.stranger_key};
    assert_refused(s.addr, &stranger);
    assert_refused(s.addr, NULL);
    stop_clean(&s);
}

/* Bad options are refused before anything is sent, naming the culprit. */
static void test_bad_options(void **state)
{
    (void)state;
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    const char *target = "127.0.0.1:1"; /* nobody is asked */
    char missing[500], empty[500], notpem[500];
    snprintf(missing, sizeof missing, "%s/absent.pem", p.dir);
    snprintf(empty, sizeof empty, "%s/empty.pem", p.dir);
    snprintf(notpem, sizeof notpem, "%s/ca.srl", p.dir); /* a hex serial */
    FILE *f = fopen(empty, "w");
    assert_non_null(f);
    fclose(f);

    npvdb_client_opts o = {.tls_ca_file = missing};
    npvdb_client_error err = connect_fails(target, &o);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
    expect_text(err.msg, "TLS CA file");
    expect_text(err.msg, missing);
    expect_text(err.msg, "No such file");

    o.tls_ca_file = empty;
    err = connect_fails(target, &o);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
    expect_text(err.msg, empty);
    expect_text(err.msg, "is empty");

    o.tls_ca_file = notpem;
    err = connect_fails(target, &o);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
    expect_text(err.msg, "not PEM");

    o.tls_ca_file = p.dir; /* a directory */
    err = connect_fails(target, &o);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
    expect_text(err.msg, p.dir);

    /* An unreadable key (unless root, who reads everything). */
    if (geteuid() != 0) {
        char locked[500];
        snprintf(locked, sizeof locked, "%s/locked.key", p.dir);
        f = fopen(locked, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(chmod(locked, 0), 0);
        npvdb_client_opts k = {.tls_ca_file = p.ca,
                               .tls_cert_file = p.client_cert,
                               .tls_key_file = locked};
        err = connect_fails(target, &k);
        assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
        expect_text(err.msg, "TLS key file");
        expect_text(err.msg, locked);
        expect_text(err.msg, "Permission denied");
    }

    npvdb_client_opts half = {.tls_ca_file = p.ca,
                              .tls_cert_file = p.client_cert};
    err = connect_fails(target, &half);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
    expect_text(err.msg, "go together");
    npvdb_client_opts key_only = {.tls_key_file = p.client_key};
    err = connect_fails(target, &key_only);
    assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);

    const char *bad_tokens[] = {"two words", "tab\tbed", "new\nline",
                                "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_tokens / sizeof bad_tokens[0]; i++) {
        npvdb_client_opts t = {.token = bad_tokens[i]};
        err = connect_fails(target, &t);
        assert_int_equal(err.code, NPVDB_STATUS_INVALID_ARGUMENT);
        expect_text(err.msg, "token");
        if (strstr(err.msg, bad_tokens[i])) fail_msg("token in: %s", err.msg);
    }
    it_server_destroy(&s);
}

/* ---- tokens and roles ---- */

static void test_tokens_and_roles(void **state)
{
    (void)state;
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    it_server_start(&s, "--token-file", p.tokens, NULL);
    npvdb_client_error err;
    uint64_t n = 0;

    /* s.client has no token: Health (its connect) works, nothing else. */
    int serving = 0;
    assert_int_equal(npvdb_client_health(s.client, "", &serving, &err),
                     NPVDB_STATUS_OK);
    assert_true(serving);
    npvdb_client_info info;
    assert_int_equal(npvdb_client_info_get(s.client, &info, &err),
                     NPVDB_STATUS_UNAUTHENTICATED);
    npvdb_client_init_params ip = {.dim = DIM, .metric = NPVDB_CLIENT_L2};
    assert_int_equal(npvdb_client_init(s.client, &ip, NULL, NULL, &err),
                     NPVDB_STATUS_UNAUTHENTICATED);

    npvdb_client_opts unknown = {.token = UNKNOWN_TOKEN};
    npvdb_client *u = npvdb_client_connect_opts(s.addr, &unknown, 10000, &err);
    assert_non_null(u);
    assert_int_equal(npvdb_client_count(u, NULL, &n, &err),
                     NPVDB_STATUS_UNAUTHENTICATED);
    npvdb_client_close(u);

    /* The write token: everything, an insert stream included. */
    npvdb_client_opts wo = {.token = WRITE_TOKEN};
    npvdb_client *w = npvdb_client_connect_opts(s.addr, &wo, 10000, &err);
    assert_non_null(w);
    exercise(w);

    /* The read token: reads, and PERMISSION_DENIED on every write. */
    npvdb_client_opts ro = {.token = READ_TOKEN};
    npvdb_client *r = npvdb_client_connect_opts(s.addr, &ro, 10000, &err);
    assert_non_null(r);
    assert_int_equal(npvdb_client_count(r, NULL, &n, &err), NPVDB_STATUS_OK);
    assert_int_equal(n, 90);
    assert_int_equal(npvdb_client_info_get(r, &info, &err), NPVDB_STATUS_OK);
    npvdb_client_info_free(&info);
    it_data d;
    it_data_make(&d, 10, DIM, 99, "ro");
    npvdb_client_results res;
    assert_int_equal(
        npvdb_client_get_closest(r, d.rows, 1, DIM, 3, 2, &res, &err),
        NPVDB_STATUS_OK);
    assert_int_equal(res.counts[0], 3);
    npvdb_client_results_free(&res);

    ip.replace = 1;
    assert_int_equal(npvdb_client_init(r, &ip, NULL, NULL, &err),
                     NPVDB_STATUS_PERMISSION_DENIED);
    expect_text(err.msg, "write token");
    assert_int_equal(npvdb_client_insert(r, DIM, (const char *const *)d.keys,
                                         d.rows, d.n, 4, NULL, NULL, NULL,
                                         &err),
                     NPVDB_STATUS_PERMISSION_DENIED);
    /* A stream by hand: refused at the latest at its end. */
    npvdb_client_stream *st = npvdb_client_insert_begin(r, DIM, &err);
    if (!st) {
        assert_int_equal(err.code, NPVDB_STATUS_PERMISSION_DENIED);
    } else {
        npvdb_status sent = npvdb_client_stream_send(
            st, (const char *const *)d.keys, d.rows, d.n, &err);
        assert_true(sent == NPVDB_STATUS_OK ||
                    sent == NPVDB_STATUS_PERMISSION_DENIED);
        assert_int_equal(npvdb_client_stream_finish(st, NULL, &err),
                         NPVDB_STATUS_PERMISSION_DENIED);
    }
    const char *gone[] = {"k1"};
    assert_int_equal(npvdb_client_delete(r, gone, 1, NULL, &err),
                     NPVDB_STATUS_PERMISSION_DENIED);
    npvdb_client_snapshot_info snap;
    assert_int_equal(npvdb_client_snapshot(r, &snap, &err),
                     NPVDB_STATUS_PERMISSION_DENIED);
    assert_int_equal(npvdb_client_drop_collection(r, NULL, NULL, &err),
                     NPVDB_STATUS_PERMISSION_DENIED);

    /* Nothing the read token sent was applied. */
    assert_int_equal(npvdb_client_count(w, NULL, &n, &err), NPVDB_STATUS_OK);
    assert_int_equal(n, 90);
    uint64_t deleted = 0;
    assert_int_equal(npvdb_client_delete(w, gone, 1, &deleted, &err),
                     NPVDB_STATUS_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(npvdb_client_snapshot(w, &snap, &err), NPVDB_STATUS_OK);
    it_data_free(&d);
    npvdb_client_close(r);
    npvdb_client_close(w);
    stop_clean(&s);
}

/* ---- the CLI ---- */

#ifdef NPVDB_CLI_BIN
/* Runs `npvdb ARGS` with a clean environment of npvdb variables plus `env`
 * ("NAME=VALUE ..." or ""); returns the exit status, output in *out. */
static int cli(char **out, const char *env, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cli(char **out, const char *env, const char *fmt, ...)
{
    char args[2000], cmd[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd,
             "env -u NPVDB_TOKEN -u NPVDB_ADDRESS -u NPVDB_SERVER %s '%s' %s",
             env, NPVDB_CLI_BIN, args);
    int rc = it_run(cmd, out);
    expect_no_tokens(*out);
    return rc;
}
#endif

static void test_cli(void **state)
{
    (void)state;
#ifndef NPVDB_CLI_BIN
    skip();
#else
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    npvdb_client_opts tls = {.tls_ca_file = p.ca, .token = WRITE_TOKEN};
    s.client_opts = &tls;
    it_server_start(&s, "--tls-cert", p.server_cert, "--tls-key", p.server_key,
                    "--token-file", p.tokens, NULL);
    exercise(s.client);
    char *o = NULL;
    char env[600];

    /* --tls-ca and --token. */
    assert_int_equal(cli(&o, "", "--server %s --tls-ca '%s' --token %s info",
                         s.addr, p.ca, WRITE_TOKEN),
                     0);
    expect_text(o, "vectors:");
    free(o);

    /* NPVDB_TOKEN, and the flag winning over it. */
    assert_int_equal(cli(&o, "NPVDB_TOKEN=" READ_TOKEN,
                         "--server %s --tls-ca '%s' count", s.addr, p.ca),
                     0);
    expect_text(o, "90");
    free(o);
    assert_int_equal(cli(&o, "NPVDB_TOKEN=" READ_TOKEN,
                         "--server %s --tls-ca '%s' delete k2", s.addr, p.ca),
                     1);
    expect_text(o, "PERMISSION_DENIED");
    free(o);
    assert_int_equal(cli(&o, "NPVDB_TOKEN=" READ_TOKEN,
                         "--server %s --tls-ca '%s' --token %s delete k2",
                         s.addr, p.ca, WRITE_TOKEN),
                     0);
    free(o);

    /* A wrong token, and none. */
    assert_int_equal(cli(&o, "", "--server %s --tls-ca '%s' --token %s info",
                         s.addr, p.ca, UNKNOWN_TOKEN),
                     1);
    expect_text(o, "UNAUTHENTICATED");
    free(o);
    assert_int_equal(
        cli(&o, "", "--server %s --tls-ca '%s' info", s.addr, p.ca), 1);
    expect_text(o, "UNAUTHENTICATED");
    free(o);

    /* The address from NPVDB_ADDRESS (by name: the certificate has it),
     * which wins over the older NPVDB_SERVER; NPVDB_SERVER alone still
     * works. */
    const char *port = strrchr(s.addr, ':') + 1;
    snprintf(env, sizeof env,
             "NPVDB_ADDRESS=localhost:%s NPVDB_SERVER=127.0.0.1:1 "
             "NPVDB_TOKEN=" WRITE_TOKEN,
             port);
    assert_int_equal(cli(&o, env, "--tls-ca '%s' info", p.ca), 0);
    expect_text(o, "vectors:");
    free(o);
    snprintf(env, sizeof env, "NPVDB_SERVER=%s NPVDB_TOKEN=" WRITE_TOKEN,
             s.addr);
    assert_int_equal(cli(&o, env, "--tls-ca '%s' info", p.ca), 0);
    free(o);

    /* Plaintext to the TLS server, another CA, half a key pair. */
    assert_int_equal(
        cli(&o, "", "--server %s --token %s info", s.addr, WRITE_TOKEN), 1);
    expect_text(o, "UNAVAILABLE");
    free(o);
    assert_int_equal(cli(&o, "", "--server %s --tls-ca '%s' --token %s info",
                         s.addr, p.other_ca, WRITE_TOKEN),
                     1);
    expect_text(o, "UNAVAILABLE");
    free(o);
    assert_int_equal(cli(&o, "",
                         "--server %s --tls-ca '%s' --tls-cert '%s' info",
                         s.addr, p.ca, p.client_cert),
                     1);
    expect_text(o, "go together");
    free(o);
    assert_int_equal(
        cli(&o, "", "--server %s --tls-ca '%s/absent.pem' info", s.addr, p.dir),
        1);
    expect_text(o, "absent.pem");
    expect_text(o, "INVALID_ARGUMENT");
    free(o);
    stop_clean(&s);
#endif
}

/* The CLI with mutual TLS: --tls-cert and --tls-key. */
static void test_cli_mutual_tls(void **state)
{
    (void)state;
#ifndef NPVDB_CLI_BIN
    skip();
#else
    it_server s;
    it_server_init(&s);
    pki p;
    pki_make(&s, &p);
    npvdb_client_opts mtls = {.tls_ca_file = p.ca,
                              .tls_cert_file = p.client_cert,
                              .tls_key_file = p.client_key};
    s.client_opts = &mtls;
    it_server_start(&s, "--tls-cert", p.server_cert, "--tls-key", p.server_key,
                    "--tls-client-ca", p.ca, NULL);
    char *o = NULL;
    assert_int_equal(cli(&o, "",
                         "--server %s --tls-ca '%s' --tls-cert '%s' "
                         "--tls-key '%s' health",
                         s.addr, p.ca, p.client_cert, p.client_key),
                     0);
    free(o);
    assert_int_equal(cli(&o, "",
                         "--server %s --tls-ca '%s' --tls-cert '%s' "
                         "--tls-key '%s' collections",
                         s.addr, p.ca, p.client_cert, p.client_key),
                     0);
    free(o);
    /* Without the client certificate: refused (at connect or at the call). */
    assert_int_equal(
        cli(&o, "", "--server %s --tls-ca '%s' collections", s.addr, p.ca), 1);
    expect_text(o, "UNAVAILABLE");
    free(o);
    stop_clean(&s);
#endif
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_tls_client_to_plaintext_server),
        cmocka_unit_test(test_mutual_tls),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_tokens_and_roles),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_mutual_tls),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    /* The tests dial "localhost" (a name in the server's certificate):
     * gRPC's default c-ares resolver leaks a few bytes inside libcares on
     * that path, which the sanitizer build reports; the getaddrinfo
     * resolver does not. The CLI runs inherit it. */
    setenv("GRPC_DNS_RESOLVER", "native", 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
