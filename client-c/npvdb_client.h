/*
 * npvdb_client.h -- the C client of an npvdb server (protos/npvdb/v1).
 *
 * A small blocking API over gRPC: one opaque handle per server, one function
 * per RPC. Every function that can fail returns an npvdb_status (the gRPC
 * status code, NPVDB_STATUS_OK = 0) and, when `err` is not NULL, copies the
 * code and the server's message into it. Errors found before anything is
 * sent (bad arguments, out of memory) use the same codes (INVALID_ARGUMENT,
 * RESOURCE_EXHAUSTED); a reply that does not follow the contract is INTERNAL.
 *
 * Ownership: pointers passed in are borrowed for the duration of the call.
 * Structs filled by the library own their arrays; each has a _free function
 * that releases the arrays (not the struct itself) and is safe on a zeroed or
 * already freed struct.
 *
 * Threads: a handle may be used by any number of threads at once (each call
 * has its own completion queue). An insert stream belongs to one thread at a
 * time. npvdb_client_close must not race with other calls on the handle.
 *
 * Vectors are float32, row-major, host order; the host must be little-endian
 * (the wire format is the memory of a C float array on x86/ARM).
 */
#ifndef NPVDB_CLIENT_H
#define NPVDB_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPVDB_CLIENT_ERRMSG_LEN 512
#define NPVDB_CLIENT_DEFAULT_TARGET "127.0.0.1:50051"

/* Values are the gRPC status codes, so they can be compared with any gRPC
 * client's. */
typedef enum npvdb_status {
    NPVDB_STATUS_OK = 0,
    NPVDB_STATUS_CANCELLED = 1,
    NPVDB_STATUS_UNKNOWN = 2,
    NPVDB_STATUS_INVALID_ARGUMENT = 3,
    NPVDB_STATUS_DEADLINE_EXCEEDED = 4,
    NPVDB_STATUS_NOT_FOUND = 5,
    NPVDB_STATUS_ALREADY_EXISTS = 6,
    NPVDB_STATUS_PERMISSION_DENIED = 7,
    NPVDB_STATUS_RESOURCE_EXHAUSTED = 8,
    NPVDB_STATUS_FAILED_PRECONDITION = 9,
    NPVDB_STATUS_ABORTED = 10,
    NPVDB_STATUS_OUT_OF_RANGE = 11,
    NPVDB_STATUS_UNIMPLEMENTED = 12,
    NPVDB_STATUS_INTERNAL = 13,
    NPVDB_STATUS_UNAVAILABLE = 14,
    NPVDB_STATUS_DATA_LOSS = 15,
    NPVDB_STATUS_UNAUTHENTICATED = 16,
} npvdb_status;

typedef struct npvdb_client_error {
    npvdb_status code;
    char msg[NPVDB_CLIENT_ERRMSG_LEN];
} npvdb_client_error;

/* Values are those of the .proto's Metric enum. */
typedef enum npvdb_client_metric {
    NPVDB_CLIENT_METRIC_DEFAULT = 0, /* the server's default (cosine) */
    NPVDB_CLIENT_COSINE = 1,         /* 1 - cos(q, x) */
    NPVDB_CLIENT_L2 = 2,             /* Euclidean, not squared */
    NPVDB_CLIENT_IP = 3,             /* -dot(q, x) */
} npvdb_client_metric;

typedef struct npvdb_client npvdb_client;

/* Opens a channel to `target` ("host:port") and checks within `timeout_ms`
 * that a server answers there (0 = 10 s). Returns NULL and fills err with
 * UNAVAILABLE ("cannot reach npvdb at TARGET: ...") or DEADLINE_EXCEEDED when
 * nobody answers. The caller owns the result (npvdb_client_close). Calls made
 * afterwards get a deadline of 60 s each (npvdb_client_set_timeout). */
npvdb_client *npvdb_client_connect(const char *target, int timeout_ms,
                                   npvdb_client_error *err);

/* Security options of npvdb_client_connect_opts (a zeroed struct = none:
 * plaintext, no token, as npvdb_client_connect). Every member is borrowed
 * for the duration of the connect call only: the files are read, and the
 * token copied, before it returns. */
typedef struct npvdb_client_opts {
    /* TLS. Any of the three files turns TLS on. tls_ca_file: PEM CA
     * certificate(s) that signed the server's certificate (NULL with TLS:
     * gRPC's default roots). tls_cert_file + tls_key_file: this client's
     * PEM certificate chain and private key, for a server with
     * --tls-client-ca (mutual TLS); they go together. The server's
     * certificate must name the host of `target` (subjectAltName). */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    /* Sent as `authorization: Bearer <token>` metadata with every call of
     * the handle (insert streams included; also with Health, which needs
     * none). Printable ASCII without whitespace; NULL or "" = no token.
     * Over plaintext anyone on the path can read it: use TLS off loopback. */
    const char *token;
} npvdb_client_opts;

/* npvdb_client_connect with TLS and/or a token (opts NULL = none). Errors:
 * INVALID_ARGUMENT naming the file when a TLS file cannot be read, is empty
 * or is not PEM, when tls_cert_file and tls_key_file do not come together,
 * or when the token holds whitespace or non-ASCII bytes; UNAVAILABLE when
 * the TLS handshake fails (a plaintext server, a CA that did not sign the
 * server's certificate, a name not in it, or a mutual-TLS server that
 * refuses the client's certificate); the rest as npvdb_client_connect.
 * The caller owns the result (npvdb_client_close), which keeps a copy of
 * the token (wiped at close) and nothing of the key. A wrong or missing
 * token is not noticed here (the check is a Health call, which needs no
 * token): the first other call answers UNAUTHENTICATED, and a read token
 * on a write call PERMISSION_DENIED. */
npvdb_client *npvdb_client_connect_opts(const char *target,
                                        const npvdb_client_opts *opts,
                                        int timeout_ms,
                                        npvdb_client_error *err);

/* Closes the channel and frees the handle. NULL is allowed. */
void npvdb_client_close(npvdb_client *c);

/* Deadline of each later call in milliseconds; 0 = none. For an insert
 * stream the deadline covers the whole stream. */
void npvdb_client_set_timeout(npvdb_client *c, int timeout_ms);

/* The target string given to connect (owned by the handle). */
const char *npvdb_client_target(const npvdb_client *c);

/* ---- Collections ---- */

/* Every later data call on the handle (init, insert, search, get, delete,
 * info, snapshot, count, scroll) names the collection `name`: 1..255 bytes of
 * [A-Za-z0-9_.-]; NULL or "" = "default", what a fresh handle means. The
 * name is copied. Must not race with other calls on the handle; use one
 * handle per collection for concurrent work. INVALID_ARGUMENT for a bad
 * name (the handle keeps its previous one). */
npvdb_status npvdb_client_use(npvdb_client *c, const char *name,
                              npvdb_client_error *err);

/* The collection the handle names ("" = "default"; owned by the handle). */
const char *npvdb_client_collection(const npvdb_client *c);

typedef struct npvdb_client_collection_info {
    char name[256];
    uint32_t dim;
    npvdb_client_metric metric;
    uint64_t vectors;
} npvdb_client_collection_info;

/* Every collection, sorted by name: *out gets a malloc'ed array of *n
 * entries (NULL when none), which the caller frees with free(). */
npvdb_status npvdb_client_list_collections(npvdb_client *c,
                                           npvdb_client_collection_info **out,
                                           size_t *n, npvdb_client_error *err);

/* Drops the collection `name` (NULL = the handle's); *vectors (may be NULL)
 * gets how many it held. NOT_FOUND if there is none. */
npvdb_status npvdb_client_drop_collection(npvdb_client *c, const char *name,
                                          uint64_t *vectors,
                                          npvdb_client_error *err);

/* ---- Payloads (attributes stored beside each vector) ----
 *
 * A payload maps field names (1..255 bytes) to values of five types; the
 * server allows at most 64 fields and 1 MiB per payload. One opaque type
 * serves both directions:
 *   - built by the caller (npvdb_client_payload_new + _set_*) to send with
 *     an insert; the caller owns it and frees it with
 *     npvdb_client_payload_free once the insert call returned;
 *   - read from a reply (npvdb_client_results_payload,
 *     npvdb_client_vectors_payload, npvdb_client_page_payload): owned by
 *     the results it came from, valid until their _free; never free it
 *     yourself, and never _set_* it.
 * A payload from a reply may be sent again as is (export / re-index).
 * Every read accessor takes NULL as an empty payload (no fields). */

/* Values are the field numbers of the .proto's Value oneof. */
typedef enum npvdb_client_value_type {
    NPVDB_CLIENT_VALUE_STRING = 1,  /* str, str_len */
    NPVDB_CLIENT_VALUE_INT = 2,     /* i */
    NPVDB_CLIENT_VALUE_DOUBLE = 3,  /* d */
    NPVDB_CLIENT_VALUE_BOOL = 4,    /* b: 0 or 1 */
    NPVDB_CLIENT_VALUE_STRINGS = 5, /* n_strs, strs, str_lens */
} npvdb_client_value_type;

/* One field, read-only, owned by its payload. Strings are NUL-terminated
 * and also carry their byte length, since a payload string (a value, not a
 * name) may hold a NUL byte. Members of the other types are 0 / NULL. */
typedef struct npvdb_client_field {
    const char *name;
    size_t name_len;
    npvdb_client_value_type type;
    const char *str;
    size_t str_len;
    int64_t i;
    double d;
    int b;
    size_t n_strs;
    const char *const *strs;
    const size_t *str_lens;
} npvdb_client_field;

typedef struct npvdb_client_payload npvdb_client_payload;

/* A new empty payload; NULL when out of memory. The caller owns it. */
npvdb_client_payload *npvdb_client_payload_new(void);
/* Frees a payload made by _new (NULL allowed). */
void npvdb_client_payload_free(npvdb_client_payload *p);

/* Each sets field `name` (replacing a field of that name) and returns 0,
 * or -1 (p unchanged) when out of memory, an argument is NULL, the name is
 * empty or longer than 255 bytes, a double is not finite, or p came from a
 * reply. Names and strings are copied. */
int npvdb_client_payload_set_str(npvdb_client_payload *p, const char *name,
                                 const char *value);
/* A string of `len` bytes that may hold NULs. */
int npvdb_client_payload_set_strn(npvdb_client_payload *p, const char *name,
                                  const char *value, size_t len);
int npvdb_client_payload_set_int(npvdb_client_payload *p, const char *name,
                                 int64_t value);
int npvdb_client_payload_set_double(npvdb_client_payload *p, const char *name,
                                    double value);
int npvdb_client_payload_set_bool(npvdb_client_payload *p, const char *name,
                                  int value);
/* A list of n strings (n may be 0; values may then be NULL). */
int npvdb_client_payload_set_strings(npvdb_client_payload *p, const char *name,
                                     const char *const *values, size_t n);
/* Removes field `name`; 0 when it was there, -1 when not. */
int npvdb_client_payload_remove(npvdb_client_payload *p, const char *name);

/* How many fields p has (0 for NULL). */
size_t npvdb_client_payload_len(const npvdb_client_payload *p);
/* Field i (0 <= i < len), fields in byte order of their names; NULL past
 * the end. */
const npvdb_client_field *
npvdb_client_payload_field(const npvdb_client_payload *p, size_t i);
/* The field called `name`, or NULL. */
const npvdb_client_field *
npvdb_client_payload_find(const npvdb_client_payload *p, const char *name);

/* ---- Filters (a small builder of npvdb.v1.Filter) ---- */

/* A vector passes when every MUST condition holds, at least one SHOULD
 * condition (if any) holds and no MUST_NOT condition holds. */
typedef enum npvdb_client_clause {
    NPVDB_CLIENT_MUST = 0,
    NPVDB_CLIENT_SHOULD = 1,
    NPVDB_CLIENT_MUST_NOT = 2,
} npvdb_client_clause;

typedef struct npvdb_client_filter npvdb_client_filter;

/* A new empty filter (passes everything); NULL when out of memory. The
 * caller owns it: npvdb_client_filter_free (NULL allowed). */
npvdb_client_filter *npvdb_client_filter_new(void);
void npvdb_client_filter_free(npvdb_client_filter *f);

/* Each adds one condition to `clause` of f and returns 0, or -1 (f
 * unchanged) when out of memory or an argument is NULL or empty. Strings
 * are copied. */
int npvdb_client_filter_match_str(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key,
                                  const char *value);
int npvdb_client_filter_match_int(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key,
                                  int64_t value);
int npvdb_client_filter_match_bool(npvdb_client_filter *f,
                                   npvdb_client_clause clause, const char *key,
                                   int value);
/* A number within the bounds; NAN for an unset bound (one must be set).
 * lo_strict / hi_strict: gt / lt instead of gte / lte. */
int npvdb_client_filter_range(npvdb_client_filter *f,
                              npvdb_client_clause clause, const char *key,
                              double lo, int lo_strict, double hi,
                              int hi_strict);
int npvdb_client_filter_has_field(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key);
/* Adds `sub` as a nested condition; f takes ownership of sub on success
 * (do not free it then), the caller keeps it on failure. */
int npvdb_client_filter_nested(npvdb_client_filter *f,
                               npvdb_client_clause clause,
                               npvdb_client_filter *sub);

/* ---- Count ---- */

/* *count gets how many vectors of the handle's collection pass `filter`
 * (NULL: all of them). The filter is borrowed. */
npvdb_status npvdb_client_count(npvdb_client *c,
                                const npvdb_client_filter *filter,
                                uint64_t *count, npvdb_client_error *err);

/* ---- Init ---- */

typedef struct npvdb_client_init_params {
    uint32_t dim;               /* 1..4096 */
    npvdb_client_metric metric; /* 0 = server default */
    uint32_t n_shards;          /* 0 = automatic */
    const float *train;         /* optional n_train * dim training sample */
    size_t n_train;
    int replace;             /* drop an existing collection first */
    uint32_t default_nprobe; /* 0 = server default */
} npvdb_client_init_params;

/* Creates the collection. *trained and *replaced (each may be NULL) get the
 * reply's flags. */
npvdb_status npvdb_client_init(npvdb_client *c,
                               const npvdb_client_init_params *p, int *trained,
                               int *replaced, npvdb_client_error *err);

/* ---- Insert (one client-streaming call) ---- */

typedef struct npvdb_client_insert_reply {
    uint64_t inserted; /* keys that were new */
    uint64_t replaced; /* keys that existed */
    uint64_t messages; /* stream messages the server applied */
} npvdb_client_insert_reply;

typedef struct npvdb_client_stream npvdb_client_stream;

/* Opens an Insert stream for vectors of `dim` floats. Returns NULL and fills
 * err on failure. The caller owns the stream and must end it with
 * npvdb_client_stream_finish or npvdb_client_stream_cancel. */
npvdb_client_stream *npvdb_client_insert_begin(npvdb_client *c, uint32_t dim,
                                               npvdb_client_error *err);

/* Sends one message: n keys (NUL-terminated) and n*dim floats. The data is
 * copied before the call returns; the send itself goes on in the background
 * while the caller prepares the next batch. An error means the stream is
 * dead: the status is the server's (e.g. INVALID_ARGUMENT naming the bad
 * message and how many vectors were applied); still call _finish or _cancel
 * to free the stream. */
npvdb_status npvdb_client_stream_send(npvdb_client_stream *s,
                                      const char *const *keys,
                                      const float *rows, size_t n,
                                      npvdb_client_error *err);

/* Half-closes the stream, waits for the reply, and frees the stream (also on
 * error). `reply` may be NULL. */
npvdb_status npvdb_client_stream_finish(npvdb_client_stream *s,
                                        npvdb_client_insert_reply *reply,
                                        npvdb_client_error *err);

/* Cancels the call (the server keeps the messages it already applied) and
 * frees the stream. NULL is allowed. */
void npvdb_client_stream_cancel(npvdb_client_stream *s);

/* Called after each message sent: `sent` of `total` rows. A non-zero return
 * cancels the insert (status CANCELLED). */
typedef int (*npvdb_client_progress_cb)(void *ctx, size_t sent, size_t total);

/* Inserts n vectors over one stream in messages of at most `batch` rows
 * (0 = 1024; also capped so one message stays under 4 MiB). `progress` may
 * be NULL. */
npvdb_status npvdb_client_insert(npvdb_client *c, uint32_t dim,
                                 const char *const *keys, const float *rows,
                                 size_t n, size_t batch,
                                 npvdb_client_progress_cb progress, void *ctx,
                                 npvdb_client_insert_reply *reply,
                                 npvdb_client_error *err);

/* npvdb_client_stream_send with payloads: payloads[i] (borrowed) goes with
 * keys[i]; a NULL entry sends the key without a payload, and a NULL array
 * sends none at all (as npvdb_client_stream_send). An upsert replaces the
 * payload with the vector. The payloads are encoded before the call
 * returns. INVALID_ARGUMENT from the server names a bad payload (limits of
 * fields, names, sizes). */
npvdb_status
npvdb_client_stream_send_payloads(npvdb_client_stream *s,
                                  const char *const *keys, const float *rows,
                                  const npvdb_client_payload *const *payloads,
                                  size_t n, npvdb_client_error *err);

/* npvdb_client_insert with payloads (one per key, or a NULL array for
 * none; borrowed): the messages are cut so that each stays under 4 MiB
 * with its payloads. */
npvdb_status npvdb_client_insert_payloads(
    npvdb_client *c, uint32_t dim, const char *const *keys, const float *rows,
    const npvdb_client_payload *const *payloads, size_t n, size_t batch,
    npvdb_client_progress_cb progress, void *ctx,
    npvdb_client_insert_reply *reply, npvdb_client_error *err);

/* ---- GetClosest ---- */

/* Results for nq queries: query i has counts[i] <= k hits, nearest first, in
 * keys[i*k + j] (NUL-terminated) and distances[i*k + j]; slots past counts[i]
 * are NULL / 0. Owned by the struct: npvdb_client_results_free. */
typedef struct npvdb_client_results {
    size_t nq;
    uint32_t k;
    uint32_t *counts;
    char **keys;
    float *distances;
    char *arena_; /* internal: the key bytes */
    /* internal: nq*k payloads (with_payload), NULL when none were asked
     * for; read them with npvdb_client_results_payload */
    npvdb_client_payload **payloads_;
} npvdb_client_results;

/* Searches the k nearest of nq queries (nq*dim floats) probing `nprobe`
 * shards each (0 = server default), over the server-streaming GetClosest RPC
 * (one reply message per query). `dim` is sent along: the server answers
 * INVALID_ARGUMENT when it is not the collection's (0 = unchecked). On
 * success *out owns its arrays; on error *out is zeroed. */
npvdb_status npvdb_client_get_closest(npvdb_client *c, const float *queries,
                                      size_t nq, uint32_t dim, uint32_t k,
                                      uint32_t nprobe,
                                      npvdb_client_results *out,
                                      npvdb_client_error *err);

/* The same search and the same results as npvdb_client_get_closest (callers
 * can switch), over the unary Search RPC: one request, one reply with packed
 * arrays. Cheaper per query for small batches and single queries; the whole
 * reply must fit the server's message limit (--max-message-mb, 64 MiB by
 * default; roughly nq * k * (key length + 6) bytes), else the server answers
 * RESOURCE_EXHAUSTED and the caller should send fewer queries per call (the
 * library does not split batches). Errors: INVALID_ARGUMENT (k 0 or too
 * large, NaN/Inf, dim not the collection's), FAILED_PRECONDITION (before
 * Init), INTERNAL when the reply breaks the contract (counts vs k, keys vs
 * counts, distances length, padding). On error *out is zeroed. */
npvdb_status npvdb_client_search(npvdb_client *c, const float *queries,
                                 size_t nq, uint32_t dim, uint32_t k,
                                 uint32_t nprobe, npvdb_client_results *out,
                                 npvdb_client_error *err);

/* Filtered search and payloads in the results (both RPCs). */
typedef struct npvdb_client_search_opts {
    /* Only vectors passing it are candidates: the answer is the k nearest
     * among them (short rows when fewer pass). NULL = no filter. Borrowed
     * for the call. */
    const npvdb_client_filter *filter;
    int with_payload; /* the results carry each hit's payload */
} npvdb_client_search_opts;

/* npvdb_client_get_closest / npvdb_client_search with options (NULL opts
 * = none: the same as the calls without _ex). Errors as theirs; also
 * INVALID_ARGUMENT for a malformed filter, INTERNAL when with_payload was
 * asked and a reply does not carry one payload per hit or a payload is
 * malformed. */
npvdb_status npvdb_client_get_closest_ex(npvdb_client *c, const float *queries,
                                         size_t nq, uint32_t dim, uint32_t k,
                                         uint32_t nprobe,
                                         const npvdb_client_search_opts *opts,
                                         npvdb_client_results *out,
                                         npvdb_client_error *err);
npvdb_status npvdb_client_search_ex(npvdb_client *c, const float *queries,
                                    size_t nq, uint32_t dim, uint32_t k,
                                    uint32_t nprobe,
                                    const npvdb_client_search_opts *opts,
                                    npvdb_client_results *out,
                                    npvdb_client_error *err);

/* The payload of hit j of query i (owned by r, valid until
 * npvdb_client_results_free): NULL when the hit has none, j is past
 * counts[i], or the search did not ask with_payload. */
const npvdb_client_payload *
npvdb_client_results_payload(const npvdb_client_results *r, size_t i,
                             uint32_t j);

/* Frees the arrays of a get_closest or search result (not the struct). */
void npvdb_client_results_free(npvdb_client_results *r);

/* ---- Snapshot, Delete ---- */

typedef struct npvdb_client_snapshot_info {
    char path[4096];
    uint64_t vectors;
    uint64_t bytes;
    double seconds;
    uint64_t sequence;
} npvdb_client_snapshot_info;

npvdb_status npvdb_client_snapshot(npvdb_client *c,
                                   npvdb_client_snapshot_info *out,
                                   npvdb_client_error *err);

/* Deletes n keys; *deleted (may be NULL) gets how many existed. */
npvdb_status npvdb_client_delete(npvdb_client *c, const char *const *keys,
                                 size_t n, uint64_t *deleted,
                                 npvdb_client_error *err);

/* ---- Info ---- */

typedef struct npvdb_client_info {
    int initialized; /* 0 before the first Init: other fields are 0 */
    uint32_t dim;
    npvdb_client_metric metric;
    uint64_t vectors;
    uint32_t n_shards;
    size_t n_shard_sizes;
    uint64_t *shard_sizes; /* owned: npvdb_client_info_free */
    int trained;
    uint64_t memory_bytes;
    uint32_t default_nprobe;
    char server_version[64];
    /* The partition as it follows the data (splits as the collection grows,
     * merges after deletes; counts since the server loaded it). */
    uint64_t largest_shard, smallest_shard;
    uint64_t splits, merges, retrains;
} npvdb_client_info;

npvdb_status npvdb_client_info_get(npvdb_client *c, npvdb_client_info *out,
                                   npvdb_client_error *err);
void npvdb_client_info_free(npvdb_client_info *info);

/* ---- Get (stored vectors by key) ---- */

/* The keys found, in request order, with their vectors (n_found * dim
 * floats), and the keys not found. Owned: npvdb_client_vectors_free. */
typedef struct npvdb_client_vectors {
    size_t n_found;
    char **keys;
    float *vectors;
    uint32_t dim;
    size_t n_missing;
    char **missing;
    /* internal: n_found payloads (npvdb_client_get_ex with_payload), NULL
     * otherwise; read them with npvdb_client_vectors_payload */
    npvdb_client_payload **payloads_;
} npvdb_client_vectors;

/* `dim` is the collection's dimension (checked against the reply). */
npvdb_status npvdb_client_get(npvdb_client *c, const char *const *keys,
                              size_t n, uint32_t dim, npvdb_client_vectors *out,
                              npvdb_client_error *err);
void npvdb_client_vectors_free(npvdb_client_vectors *v);

/* npvdb_client_get, and with `with_payload` the payloads of the keys found
 * too (npvdb_client_vectors_payload). */
npvdb_status npvdb_client_get_ex(npvdb_client *c, const char *const *keys,
                                 size_t n, uint32_t dim, int with_payload,
                                 npvdb_client_vectors *out,
                                 npvdb_client_error *err);
/* The payload of found key i (owned by v): NULL when it has none or
 * with_payload was not asked. */
const npvdb_client_payload *
npvdb_client_vectors_payload(const npvdb_client_vectors *v, size_t i);

/* ---- Scroll (every key of a collection, page by page) ---- */

typedef struct npvdb_client_scroll_params {
    const npvdb_client_filter *filter; /* NULL: every vector; borrowed */
    uint32_t limit;   /* keys per page: 0 = 256 (the server's), <= 16384 */
    int with_vectors; /* pages carry the vectors */
    int with_payload; /* pages carry the payloads */
    /* The collection's dim, checked against the vectors of each page; 0 =
     * taken from the page (its vector bytes / 4 / its keys). */
    uint32_t dim;
} npvdb_client_scroll_params;

/* One page: n keys, with n*dim vectors (with_vectors, else NULL) and
 * payloads (npvdb_client_page_payload). `done` is 1 on the last page. The
 * cursor is the server's, opaque. Owned: npvdb_client_page_free. */
typedef struct npvdb_client_page {
    size_t n;
    char **keys;
    float *vectors;
    uint32_t dim;
    int done;
    uint8_t *cursor; /* where the next page starts (NULL: the beginning) */
    size_t cursor_len;
    npvdb_client_payload **payloads_; /* internal */
} npvdb_client_page;

/* Fetches the page after `page` into it: a zeroed page (or one with done
 * set) starts from the beginning; its old arrays are freed first. Every
 * vector stored for the whole scroll is returned at least once. On error
 * the page is freed and zeroed. Usage:
 *
 *     npvdb_client_page pg = {0};
 *     do {
 *         if (npvdb_client_scroll(c, &params, &pg, &err)) break;
 *         for (size_t i = 0; i < pg.n; i++) use(pg.keys[i], ...);
 *     } while (!pg.done);
 *     npvdb_client_page_free(&pg);
 */
npvdb_status npvdb_client_scroll(npvdb_client *c,
                                 const npvdb_client_scroll_params *p,
                                 npvdb_client_page *page,
                                 npvdb_client_error *err);
/* Payload of key i of the page: NULL when it has none or with_payload was
 * not asked. Owned by the page. */
const npvdb_client_payload *
npvdb_client_page_payload(const npvdb_client_page *page, size_t i);
void npvdb_client_page_free(npvdb_client_page *page);

/* ---- Health (grpc.health.v1.Health/Check) ---- */

/* *serving gets 1 when the server reports SERVING for `service` ("" = the
 * whole server). */
npvdb_status npvdb_client_health(npvdb_client *c, const char *service,
                                 int *serving, npvdb_client_error *err);

/* "INVALID_ARGUMENT" etc.; never NULL. */
const char *npvdb_status_name(npvdb_status code);
/* "cosine", "l2", "ip", "default". */
const char *npvdb_client_metric_name(npvdb_client_metric m);

#ifdef __cplusplus
}
#endif
#endif /* NPVDB_CLIENT_H */
