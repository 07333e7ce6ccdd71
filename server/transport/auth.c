/*
 * auth.c -- the token table: parsing a token file, looking a token up in
 * constant time, the live table that SIGHUP swaps, the role each method
 * needs, and the loopback test of a listen address. No gRPC here.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A token file larger than this is refused (it is a list of secrets). */
#define TOKEN_FILE_MAX (16u << 20)

typedef struct token_entry {
    char *tok; /* owned, NUL-terminated, len bytes */
    size_t len;
    npvdb_role role;
    unsigned line; /* where it was defined, for duplicate messages */
} token_entry;

struct npvdb_tokens {
    atomic_long refs; /* npvdb_tokens_free drops one; 0 frees */
    token_entry *e;
    size_t n, cap;
};

const char *npvdb_role_name(npvdb_role r)
{
    switch (r) {
    case NPVDB_ROLE_READ:
        return "read";
    case NPVDB_ROLE_WRITE:
        return "write";
    default:
        return "none";
    }
}

/* ---- constant-time comparison ---- */

int npvdb_ct_equal(const void *a_, size_t alen, const void *b_, size_t blen)
{
    const unsigned char *a = a_, *b = b_;
    if (blen == 0) return alen == 0; /* nothing secret to leak */
    size_t diff = alen ^ blen;
    unsigned acc = 0;
    /* Every byte of a is compared with b's byte at the same place, or with
     * b[0] past b's end: no branch and no early exit on what b holds. */
    for (size_t i = 0; i < alen; i++) {
        size_t inside = (size_t)0 - (size_t)(i < blen);
        acc |= (unsigned)(a[i] ^ b[i & inside]);
    }
    return (diff | (size_t)acc) == 0;
}

/* ---- the table ---- */

static npvdb_tokens *tokens_new(void)
{
    npvdb_tokens *t = calloc(1, sizeof *t);
    if (t) atomic_init(&t->refs, 1);
    return t;
}

void npvdb_tokens_free(npvdb_tokens *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    for (size_t i = 0; i < t->n; i++) {
        /* Secrets: do not leave them in freed memory. */
        explicit_bzero(t->e[i].tok, t->e[i].len);
        free(t->e[i].tok);
    }
    free(t->e);
    free(t);
}

size_t npvdb_tokens_count(const npvdb_tokens *t)
{
    return t ? t->n : 0;
}

npvdb_role npvdb_tokens_lookup(const npvdb_tokens *t, const char *tok,
                               size_t len)
{
    unsigned role = NPVDB_ROLE_NONE;
    if (!t) return NPVDB_ROLE_NONE;
    for (size_t i = 0; i < t->n; i++) {
        unsigned eq =
            (unsigned)npvdb_ct_equal(tok, len, t->e[i].tok, t->e[i].len);
        role |= (0u - eq) & (unsigned)t->e[i].role;
    }
    return (npvdb_role)role; /* tokens are unique: at most one matched */
}

/* ---- parsing ---- */

static int is_blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* A line split into words at blanks. Only the first three are kept: a
 * third one is already an error. */
typedef struct words {
    const char *w[3];
    size_t len[3];
    size_t n;
} words;

static void split(const char *line, size_t len, words *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len) {
        while (i < len && is_blank((unsigned char)line[i]))
            i++;
        if (i == len) break;
        size_t start = i;
        while (i < len && !is_blank((unsigned char)line[i]))
            i++;
        if (out->n < 3) {
            out->w[out->n] = line + start;
            out->len[out->n] = i - start;
        }
        out->n++;
    }
}

static int word_is(const words *w, size_t i, const char *s)
{
    return w->len[i] == strlen(s) && memcmp(w->w[i], s, w->len[i]) == 0;
}

/* Checks the token's characters; 0 if fine, else the offending byte + 1. */
static int bad_token_char(const char *tok, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)tok[i];
        if (ch < 0x21 || ch > 0x7e) return ch + 1;
    }
    return 0;
}

static npvdb_code add_entry(npvdb_tokens *t, const char *tok, size_t len,
                            npvdb_role role, unsigned line)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        token_entry *e = realloc(t->e, cap * sizeof *e);
        if (!e) return NPVDB_ENOMEM;
        t->e = e;
        t->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NPVDB_ENOMEM;
    memcpy(copy, tok, len);
    copy[len] = 0;
    t->e[t->n++] = (token_entry){copy, len, role, line};
    return NPVDB_OK;
}

/* Never quotes a word of the line: it may be a secret. */
static npvdb_code parse_line(npvdb_tokens *t, const char *line, size_t len,
                             const char *src, unsigned no, npvdb_error *err)
{
    words w;
    split(line, len, &w);
    if (w.n == 0 || w.w[0][0] == '#') return NPVDB_OK;
    if (w.n != 2)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s:%u: expected 'TOKEN ROLE' (2 words), found %zu "
            "word%s (a token holds no whitespace)",
            src, no, w.n, w.n == 1 ? "" : "s");
    npvdb_role role = word_is(&w, 1, "read")    ? NPVDB_ROLE_READ
                      : word_is(&w, 1, "write") ? NPVDB_ROLE_WRITE
                                                : NPVDB_ROLE_NONE;
    if (role == NPVDB_ROLE_NONE)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s:%u: the role (second word) must be 'read' or 'write'", src, no);
    if (w.len[0] > NPVDB_TOKEN_MAX)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s:%u: token of %zu bytes, at most %d allowed",
                               src, no, w.len[0], NPVDB_TOKEN_MAX);
    int bad = bad_token_char(w.w[0], w.len[0]);
    if (bad)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s:%u: the token holds byte 0x%02x; tokens are "
                               "printable ASCII",
                               src, no, (unsigned)(bad - 1));
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].len == w.len[0] &&
            memcmp(t->e[i].tok, w.w[0], w.len[0]) == 0)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "%s:%u: the same token as on line %u", src,
                                   no, t->e[i].line);
    if (add_entry(t, w.w[0], w.len[0], role, no) != NPVDB_OK)
        return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory reading %s",
                               src);
    return NPVDB_OK;
}

npvdb_code npvdb_tokens_parse(const char *text, size_t len, const char *source,
                              npvdb_tokens **out, npvdb_error *err)
{
    const char *src = source ? source : "token file";
    *out = NULL;
    npvdb_tokens *t = tokens_new();
    if (!t)
        return npvdb_set_error(err, NPVDB_ENOMEM, "out of memory reading %s",
                               src);
    size_t at = 0;
    unsigned no = 0;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        no++;
        npvdb_code rc = parse_line(t, text + at, end - at, src, no, err);
        if (rc != NPVDB_OK) {
            npvdb_tokens_free(t);
            return rc;
        }
        at = end + 1;
    }
    if (t->n == 0) {
        npvdb_tokens_free(t);
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: no token (lines are 'TOKEN read' or 'TOKEN write')", src);
    }
    *out = t;
    return NPVDB_OK;
}

/* Reads the whole file into *buf (caller frees, wiping it). */
static npvdb_code read_file(const char *path, char **buf, size_t *len,
                            npvdb_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "cannot read token file %s: %s", path,
                               strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    npvdb_code rc = b ? NPVDB_OK : NPVDB_ENOMEM;
    while (rc == NPVDB_OK) {
        if (n == cap) {
            char *nb = cap < TOKEN_FILE_MAX ? malloc(2 * cap) : NULL;
            if (!nb) {
                rc = cap < TOKEN_FILE_MAX ? NPVDB_ENOMEM : NPVDB_EINVAL;
                break;
            }
            memcpy(nb, b, n);
            explicit_bzero(b, n);
            free(b);
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int io = ferror(f);
    fclose(f);
    if (rc == NPVDB_OK && !io) {
        *buf = b;
        *len = n;
        return NPVDB_OK;
    }
    if (b) explicit_bzero(b, n);
    free(b);
    if (rc == NPVDB_ENOMEM)
        return npvdb_set_error(err, rc, "out of memory reading token file %s",
                               path);
    if (rc == NPVDB_EINVAL)
        return npvdb_set_error(err, rc, "token file %s is larger than %u MiB",
                               path, TOKEN_FILE_MAX >> 20);
    return npvdb_set_error(err, NPVDB_EINVAL,
                           "cannot read token file %s: read error", path);
}

npvdb_code npvdb_tokens_load(const char *path, npvdb_tokens **out,
                             npvdb_error *err)
{
    char *buf;
    size_t len;
    *out = NULL;
    npvdb_code rc = read_file(path, &buf, &len, err);
    if (rc != NPVDB_OK) return rc;
    rc = npvdb_tokens_parse(buf, len, path, out, err);
    explicit_bzero(buf, len);
    free(buf);
    return rc;
}

/* ---- the live table ---- */

struct npvdb_auth {
    pthread_mutex_t mu; /* guards cur (the pointer, not the table) */
    npvdb_tokens *cur;  /* one reference held here */
    char *path;
};

npvdb_auth *npvdb_auth_open(const char *path, npvdb_error *err)
{
    npvdb_auth *a = calloc(1, sizeof *a);
    char *p = strdup(path);
    if (!a || !p) {
        free(a);
        free(p);
        npvdb_set_error(err, NPVDB_ENOMEM, "out of memory");
        return NULL;
    }
    a->path = p;
    if (npvdb_tokens_load(path, &a->cur, err) != NPVDB_OK) {
        free(p);
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    return a;
}

/* The current table with a reference for the caller. */
static npvdb_tokens *acquire(npvdb_auth *a)
{
    pthread_mutex_lock(&a->mu);
    npvdb_tokens *t = a->cur;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&a->mu);
    return t;
}

npvdb_code npvdb_auth_reload(npvdb_auth *a, npvdb_error *err)
{
    npvdb_tokens *t;
    npvdb_code rc = npvdb_tokens_load(a->path, &t, err);
    if (rc != NPVDB_OK) return rc;
    pthread_mutex_lock(&a->mu);
    npvdb_tokens *old = a->cur;
    a->cur = t;
    pthread_mutex_unlock(&a->mu);
    npvdb_tokens_free(old); /* freed once the last check using it is done */
    return NPVDB_OK;
}

size_t npvdb_auth_count(npvdb_auth *a)
{
    npvdb_tokens *t = acquire(a);
    size_t n = t->n;
    npvdb_tokens_free(t);
    return n;
}

const char *npvdb_auth_path(const npvdb_auth *a)
{
    return a->path;
}

npvdb_role npvdb_auth_role(npvdb_auth *a, const char *tok, size_t len)
{
    npvdb_tokens *t = acquire(a);
    npvdb_role r = npvdb_tokens_lookup(t, tok, len);
    npvdb_tokens_free(t);
    return r;
}

void npvdb_auth_free(npvdb_auth *a)
{
    if (!a) return;
    npvdb_tokens_free(a->cur);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a);
}

/* ---- methods ---- */

npvdb_role npvdb_method_role(const char *path)
{
    static const char health[] = "/grpc.health.v1.Health/";
    static const char *const readers[] = {
        "/npvdb.v1.VectorDB/GetClosest",
        "/npvdb.v1.VectorDB/Search",
        "/npvdb.v1.VectorDB/Get",
        "/npvdb.v1.VectorDB/Info",
        "/npvdb.v1.VectorDB/Count",
        "/npvdb.v1.VectorDB/Scroll",
        "/npvdb.v1.VectorDB/ListCollections",
    };
    if (strncmp(path, health, sizeof health - 1) == 0) return NPVDB_ROLE_NONE;
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++)
        if (strcmp(path, readers[i]) == 0) return NPVDB_ROLE_READ;
    return NPVDB_ROLE_WRITE;
}

/* ---- addresses ---- */

static int host_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (strcasecmp(host, "localhost") == 0) return 1;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&v6)) return 1;
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return 0;
}

int npvdb_listen_is_loopback(const char *listen)
{
    char host[256];
    if (!listen) return 0;
    if (strncmp(listen, "unix:", 5) == 0 ||
        strncmp(listen, "unix-abstract:", 14) == 0)
        return 1;
    const char *start = listen, *end;
    if (listen[0] == '[') {
        start = listen + 1;
        end = strchr(start, ']');
        if (!end) return 0;
    } else {
        end = strrchr(listen, ':');
        if (!end) end = listen + strlen(listen);
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= sizeof host) return 0; /* ":50051": every address */
    memcpy(host, start, n);
    host[n] = 0;
    return host_is_loopback(host);
}
