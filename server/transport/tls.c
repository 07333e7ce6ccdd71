/*
 * tls.c -- the server credentials: plaintext, TLS (--tls-cert, --tls-key),
 * or mutual TLS (--tls-client-ca: a client must present a certificate that
 * the CA signed). The PEM files are read here so that a missing or
 * unreadable one stops the start with its name, instead of a failed bind.
 */
#include "internal.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PEM files larger than this are not certificates or keys. */
#define PEM_MAX (1u << 20)

static npvdb_code fail_file(npvdb_error *err, const char *what,
                            const char *path, const char *why)
{
    if (err) {
        err->code = NPVDB_EINVAL;
        snprintf(err->msg, sizeof err->msg, "cannot use %s %s: %s", what, path,
                 why);
    }
    return NPVDB_EINVAL;
}

/* Reads a PEM file into *out (NUL-terminated, caller frees, wiping a key);
 * it must be readable, at most PEM_MAX bytes and hold a PEM block. */
static npvdb_code read_pem(const char *what, const char *path, char **out,
                           size_t *len, npvdb_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail_file(err, what, path, strerror(errno));
    char *buf = malloc(PEM_MAX + 1);
    if (!buf) {
        fclose(f);
        return fail_file(err, what, path, "out of memory");
    }
    size_t n = fread(buf, 1, PEM_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    const char *why = NULL;
    if (bad)
        why = "read error";
    else if (n > PEM_MAX)
        why = "larger than 1 MiB";
    else if (n == 0)
        why = "empty file";
    if (!why) {
        buf[n] = 0;
        if (!strstr(buf, "-----BEGIN ")) why = "no PEM block (-----BEGIN ...)";
    }
    if (why) {
        explicit_bzero(buf, n);
        free(buf);
        return fail_file(err, what, path, why);
    }
    *out = buf;
    *len = n;
    return NPVDB_OK;
}

static void free_pem(char *p, size_t len)
{
    if (!p) return;
    explicit_bzero(p, len);
    free(p);
}

static grpc_server_credentials *tls_credentials(const npvdb_server_config *cfg,
                                                npvdb_error *err)
{
    char *cert = NULL, *key = NULL, *ca = NULL;
    size_t cert_len = 0, key_len = 0, ca_len = 0;
    grpc_server_credentials *creds = NULL;
    if (read_pem("--tls-cert", cfg->tls_cert_file, &cert, &cert_len, err) ||
        read_pem("--tls-key", cfg->tls_key_file, &key, &key_len, err) ||
        (cfg->tls_client_ca_file &&
         read_pem("--tls-client-ca", cfg->tls_client_ca_file, &ca, &ca_len,
                  err)))
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    /* gRPC copies the PEM strings. */
    grpc_ssl_server_certificate_config *conf =
        grpc_ssl_server_certificate_config_create(ca, &pair, 1);
    grpc_ssl_server_credentials_options *opts =
        conf
            ? grpc_ssl_server_credentials_create_options_using_config(
                  ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
                  conf) /* takes conf */
            : NULL;
    creds = opts ? grpc_ssl_server_credentials_create_with_options(opts) : NULL;
    /* create_with_options takes opts, also when it fails. */
    if (!creds && err) {
        err->code = NPVDB_EINVAL;
        snprintf(err->msg, sizeof err->msg,
                 "cannot make TLS credentials from %s and %s",
                 cfg->tls_cert_file, cfg->tls_key_file);
    }
out:
    free_pem(cert, cert_len);
    free_pem(key, key_len);
    free_pem(ca, ca_len);
    return creds;
}

/* 1 if cfg asks for TLS and names a complete set of files, 0 for
 * plaintext, -1 (err set) for an incomplete set. */
static int wants_tls(const npvdb_server_config *cfg, npvdb_error *err)
{
    if (!cfg->tls_cert_file && !cfg->tls_key_file && !cfg->tls_client_ca_file)
        return 0;
    if (!cfg->tls_cert_file || !cfg->tls_key_file) {
        if (err) {
            err->code = NPVDB_EINVAL;
            snprintf(err->msg, sizeof err->msg,
                     "TLS needs both --tls-cert and --tls-key%s",
                     cfg->tls_client_ca_file ? " (--tls-client-ca adds client "
                                               "certificates to them)"
                                             : "");
        }
        return -1;
    }
    return 1;
}

npvdb_code nt_tls_check(const npvdb_server_config *cfg, npvdb_error *err)
{
    static const char *const what[] = {"--tls-cert", "--tls-key",
                                       "--tls-client-ca"};
    const char *files[] = {cfg->tls_cert_file, cfg->tls_key_file,
                           cfg->tls_client_ca_file};
    int tls = wants_tls(cfg, err);
    if (tls <= 0) return tls == 0 ? NPVDB_OK : NPVDB_EINVAL;
    for (size_t i = 0; i < 3; i++) {
        char *pem;
        size_t len;
        if (!files[i]) continue;
        if (read_pem(what[i], files[i], &pem, &len, err) != NPVDB_OK)
            return NPVDB_EINVAL;
        free_pem(pem, len);
    }
    return NPVDB_OK;
}

grpc_server_credentials *nt_server_credentials(const npvdb_server_config *cfg,
                                               npvdb_error *err)
{
    int tls = wants_tls(cfg, err);
    if (tls < 0) return NULL;
    if (tls == 0) return grpc_insecure_server_credentials_create();
    return tls_credentials(cfg, err);
}
