/*
 * auth.h -- who may call what: the token table (a `--token-file`), the role
 * each method needs, and whether a listen address is loopback.
 *
 * Token file: one `TOKEN ROLE` per line, ROLE `read` or `write`; blank lines
 * and lines whose first non-blank character is `#` are ignored. A token is
 * 1..NPVDB_TOKEN_MAX printable ASCII characters without whitespace, each
 * token appears once. Anything else is an error naming the line.
 *
 * This part needs no gRPC (unit-tested alone); auth_check.c applies it to
 * calls and tls.c makes the TLS credentials.
 */
#ifndef NPVDB_AUTH_H
#define NPVDB_AUTH_H

#include "npvdb.h"

#include <stddef.h>

#define NPVDB_TOKEN_MAX 4096

/* Roles are ordered: write includes read. */
typedef enum npvdb_role {
    NPVDB_ROLE_NONE = 0, /* no (valid) token; also: a method needing none */
    NPVDB_ROLE_READ = 1,
    NPVDB_ROLE_WRITE = 2,
} npvdb_role;

const char *npvdb_role_name(npvdb_role r);

/* ---- a parsed token table (immutable once made) ---- */
typedef struct npvdb_tokens npvdb_tokens;

/* Parses `text[0..len)` (need not be NUL-terminated) into *out, owned by the
 * caller (npvdb_tokens_free). `source` names it in messages ("tokens.txt").
 * NPVDB_EINVAL with "source:LINE: why" for a malformed line, a duplicate
 * token or a file without any token; NPVDB_ENOMEM. *out is NULL on error. */
npvdb_code npvdb_tokens_parse(const char *text, size_t len, const char *source,
                              npvdb_tokens **out, npvdb_error *err);
/* Reads and parses the file at `path` (as npvdb_tokens_parse); an
 * unreadable file is NPVDB_EINVAL naming the path and errno's reason. */
npvdb_code npvdb_tokens_load(const char *path, npvdb_tokens **out,
                             npvdb_error *err);
void npvdb_tokens_free(npvdb_tokens *t);
size_t npvdb_tokens_count(const npvdb_tokens *t);
/* The role of `tok[0..len)`, NPVDB_ROLE_NONE if no token matches. Every
 * stored token is compared, each in time that depends on `len` only. */
npvdb_role npvdb_tokens_lookup(const npvdb_tokens *t, const char *tok,
                               size_t len);

/* 1 if a[0..alen) equals b[0..blen), else 0, in time depending on alen only
 * (b must hold at least one byte when blen > 0; blen 0 never equals a
 * non-empty a). */
int npvdb_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* ---- the live table: a file, re-read on demand ---- */
/* Holds the current table behind a lock; a reload swaps it while calls
 * keep checking against whichever table they took. Thread-safe. */
typedef struct npvdb_auth npvdb_auth;

/* Loads `path` (copied); NULL with err on a bad file or no memory. */
npvdb_auth *npvdb_auth_open(const char *path, npvdb_error *err);
/* Re-reads the file. On error the current table stays and err says why. */
npvdb_code npvdb_auth_reload(npvdb_auth *a, npvdb_error *err);
/* Tokens in the current table. */
size_t npvdb_auth_count(npvdb_auth *a);
const char *npvdb_auth_path(const npvdb_auth *a);
/* The role of the token, as npvdb_tokens_lookup on the current table. */
npvdb_role npvdb_auth_role(npvdb_auth *a, const char *tok, size_t len);
/* Frees the holder and its table; no call may be checking. NULL allowed. */
void npvdb_auth_free(npvdb_auth *a);

/* ---- methods and addresses ---- */
/* The role a call of the registered method `path`
 * ("/npvdb.v1.VectorDB/Search") needs: NONE for grpc.health.v1.Health, READ
 * for the read-only methods (GetClosest, Search, Get, Info, Count, Scroll,
 * ListCollections), WRITE for every other path, so that a method added later
 * is writers-only until it is listed here. (Calls of methods nobody
 * registered need READ: auth_check.c.) */
npvdb_role npvdb_method_role(const char *path);

/* 1 if `listen` ("host:port", "[v6]:port", "unix:...") can only be reached
 * from this machine: 127.0.0.0/8, ::1, localhost or a unix socket. */
int npvdb_listen_is_loopback(const char *listen);

#endif /* NPVDB_AUTH_H */
