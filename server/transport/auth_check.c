/*
 * auth_check.c -- the door: before a call's handler runs, its bearer token
 * is looked up and the call refused (UNAUTHENTICATED, PERMISSION_DENIED)
 * unless its role covers the method; and the start-up rule that a server
 * reachable from other machines must authenticate its callers.
 *
 * Refusals are logged with the method, the role held and the peer, never
 * the token; at most LOG_PER_SECOND lines a second, the rest counted.
 */
#include "internal.h"

#include <grpc/support/alloc.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_PER_SECOND 20

static const char bearer[] = "bearer ";

typedef enum presented {
    TOKEN_MISSING,   /* no authorization metadata */
    TOKEN_MALFORMED, /* not "Bearer <token>" */
    TOKEN_GIVEN,
} presented;

static int slice_is(grpc_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return GRPC_SLICE_LENGTH(s) == n &&
           memcmp(GRPC_SLICE_START_PTR(s), lit, n) == 0;
}

/* Finds the first `authorization` entry; its token in *tok, *len. */
static presented find_token(const grpc_metadata_array *md, const char **tok,
                            size_t *len)
{
    for (size_t i = 0; i < md->count; i++) {
        if (!slice_is(md->metadata[i].key, "authorization")) continue;
        grpc_slice v = md->metadata[i].value;
        const char *p = (const char *)GRPC_SLICE_START_PTR(v);
        size_t n = GRPC_SLICE_LENGTH(v);
        size_t b = sizeof bearer - 1;
        if (n <= b || strncasecmp(p, bearer, b) != 0) return TOKEN_MALFORMED;
        *tok = p + b;
        *len = n - b;
        return TOKEN_GIVEN;
    }
    return TOKEN_MISSING;
}

/* The role the call's method needs; `path` gets its name. */
static npvdb_role needed_role(nt_call *c, char *path, size_t cap)
{
    if (c->method != &nt_rpc_unknown) {
        snprintf(path, cap, "%s", c->method->path);
        return npvdb_method_role(path);
    }
    grpc_slice m = c->details.method;
    snprintf(path, cap, "%.*s", (int)GRPC_SLICE_LENGTH(m),
             (const char *)GRPC_SLICE_START_PTR(m));
    /* Health needs nothing; any other unknown method a token, so that only
     * callers who hold one learn that it is unknown. */
    return npvdb_method_role(path) == NPVDB_ROLE_NONE ? NPVDB_ROLE_NONE
                                                      : NPVDB_ROLE_READ;
}

/* 1 if this refusal may be logged; counts the others. */
static int log_budget(long *suppressed)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static time_t window;
    static int used;
    static long dropped;
    time_t now = time(NULL);
    int ok;
    pthread_mutex_lock(&mu);
    *suppressed = 0;
    if (now != window) {
        window = now;
        used = 0;
        *suppressed = dropped;
        dropped = 0;
    }
    ok = used < LOG_PER_SECOND;
    if (ok)
        used++;
    else
        dropped++;
    pthread_mutex_unlock(&mu);
    return ok;
}

static void log_refusal(nt_call *c, const char *path, const char *why)
{
    long suppressed;
    if (!log_budget(&suppressed)) return;
    char *peer = grpc_call_get_peer(c->call);
    if (suppressed > 0)
        npvdb_log("auth: %ld more refusals not logged", suppressed);
    npvdb_log("auth: refused %s from %s: %s", path, peer ? peer : "?", why);
    gpr_free(peer);
}

static void refuse(nt_call *c, const char *path, presented how, npvdb_role have,
                   npvdb_role need)
{
    nt_result res = {0};
    char why[128];
    if (how == TOKEN_MISSING) {
        nt_result_fail(&res, GRPC_STATUS_UNAUTHENTICATED,
                       "no token: send metadata 'authorization: Bearer "
                       "<token>'");
        snprintf(why, sizeof why, "no token");
    } else if (how == TOKEN_MALFORMED) {
        nt_result_fail(&res, GRPC_STATUS_UNAUTHENTICATED,
                       "the authorization metadata must be 'Bearer <token>'");
        snprintf(why, sizeof why, "authorization is not 'Bearer <token>'");
    } else if (have == NPVDB_ROLE_NONE) {
        nt_result_fail(&res, GRPC_STATUS_UNAUTHENTICATED, "unknown token");
        snprintf(why, sizeof why, "unknown token");
    } else {
        nt_result_fail(&res, GRPC_STATUS_PERMISSION_DENIED,
                       "%s needs a %s token; this one is %s-only", path,
                       npvdb_role_name(need), npvdb_role_name(have));
        snprintf(why, sizeof why, "%s token, the method needs %s",
                 npvdb_role_name(have), npvdb_role_name(need));
    }
    log_refusal(c, path, why);
    nt_call_finish(c, &res);
}

int nt_auth_admit(nt_call *c)
{
    npvdb_auth *auth = c->srv->auth;
    if (!auth) return 1;
    char path[256];
    npvdb_role need = needed_role(c, path, sizeof path);
    if (need == NPVDB_ROLE_NONE) return 1;
    const char *tok = NULL;
    size_t len = 0;
    presented how = find_token(&c->md, &tok, &len);
    npvdb_role have =
        how == TOKEN_GIVEN ? npvdb_auth_role(auth, tok, len) : NPVDB_ROLE_NONE;
    if (have >= need) return 1;
    refuse(c, path, how, have, need);
    return 0;
}

/* NPVDB_OK, or NPVDB_EINVAL naming --insecure when cfg listens on a
 * non-loopback address without tokens, client certificates or insecure. */
static npvdb_code policy(const npvdb_server_config *cfg, npvdb_error *err)
{
    if (cfg->insecure || cfg->auth || cfg->tls_client_ca_file ||
        npvdb_listen_is_loopback(cfg->listen))
        return NPVDB_OK;
    if (err) {
        err->code = NPVDB_EINVAL;
        snprintf(err->msg, sizeof err->msg,
                 "%s is not a loopback address: refusing to serve it "
                 "without authentication. Use --token-file FILE (or "
                 "NPVDB_TOKEN_FILE) or --tls-client-ca FILE; --insecure "
                 "serves it to anyone who can reach it",
                 cfg->listen);
    }
    return NPVDB_EINVAL;
}

npvdb_code npvdb_server_check_config(const npvdb_server_config *cfg,
                                     npvdb_error *err)
{
    if (!cfg->listen) {
        if (err) {
            err->code = NPVDB_EINVAL;
            snprintf(err->msg, sizeof err->msg, "no listen address");
        }
        return NPVDB_EINVAL;
    }
    if (policy(cfg, err) != NPVDB_OK) return NPVDB_EINVAL;
    return nt_tls_check(cfg, err);
}
