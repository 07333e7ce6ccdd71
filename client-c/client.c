/*
 * client.c -- npvdb_client.h on the gRPC C core and protobuf-c.
 *
 * Each RPC is one grpc_call with its own pluck completion queue, driven by
 * op batches from the calling thread (see shared/notes/grpc-core-in-c.md):
 *   unary:            one batch with every op;
 *   server-streaming: send + half-close, then one RECV_MESSAGE batch per
 *                     reply until the stream ends, then RECV_STATUS;
 *   client-streaming: RECV_STATUS (+ the reply) stays outstanding from the
 *                     start, so a server that ends the stream early (a bad
 *                     message) is noticed at the next send.
 * Outgoing messages are packed into malloc'ed memory handed to gRPC as a
 * slice (gRPC's own allocator aborts on failure; ours is checked).
 */
#include "npvdb_client.h"
#include "payload.h"
#include "reply.h"

#include "grpc/health/v1/health.pb-c.h"
#include "npvdb/v1/npvdb.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error                                                                         \
    "npvdb's wire format is little-endian float32; big-endian hosts unsupported"
#endif

#define DEFAULT_CALL_TIMEOUT_MS 60000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define INSERT_DEFAULT_BATCH 1024
/* Keeps one Insert message under the server's default 4 MiB receive limit. */
#define INSERT_MAX_MESSAGE_BYTES ((4u << 20) - 4096u)

struct npvdb_client {
    grpc_channel *channel;
    char *target;
    int timeout_ms;
    int grpc_started;     /* grpc_init was called: grpc_shutdown at close */
    char collection[256]; /* sent with every data call; "" = "default" */
    /* Sent with every call: `authorization: Bearer <token>` when a token
     * was given (n_md 1), nothing otherwise (n_md 0). The value's bytes are
     * the handle's (wiped when the slice is freed). */
    grpc_metadata md[1];
    size_t n_md;
};

/* ---- errors ---- */

static npvdb_status set_err(npvdb_client_error *err, npvdb_status code,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static npvdb_status set_err(npvdb_client_error *err, npvdb_status code,
                            const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void clear_err(npvdb_client_error *err)
{
    if (err) {
        err->code = NPVDB_STATUS_OK;
        err->msg[0] = '\0';
    }
}

const char *npvdb_status_name(npvdb_status code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof names / sizeof names[0]) return names[code];
    return "UNKNOWN_STATUS";
}

const char *npvdb_client_metric_name(npvdb_client_metric m)
{
    switch (m) {
    case NPVDB_CLIENT_COSINE:
        return "cosine";
    case NPVDB_CLIENT_L2:
        return "l2";
    case NPVDB_CLIENT_IP:
        return "ip";
    default:
        return "default";
    }
}

/* ---- one call ---- */

/* The receiving side of a call's status, kept alive until its batch ends. */
typedef struct status_ops {
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
} status_ops;

typedef struct call {
    grpc_call *call;
    grpc_completion_queue *cq;
} call;

static gpr_timespec deadline_in(int ms)
{
    if (ms <= 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static npvdb_status call_open(npvdb_client *c, const char *method,
                              int timeout_ms, call *k, npvdb_client_error *err)
{
    k->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!k->cq)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "cannot create a completion queue");
    k->call =
        grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                 k->cq, grpc_slice_from_static_string(method),
                                 NULL, deadline_in(timeout_ms), NULL);
    if (!k->call) {
        grpc_completion_queue_destroy(k->cq);
        k->cq = NULL;
        return set_err(err, NPVDB_STATUS_INTERNAL, "cannot create call %s",
                       method);
    }
    return NPVDB_STATUS_OK;
}

/* Fills op as the call's SEND_INITIAL_METADATA: the handle's metadata
 * (the token), which gRPC refs for as long as it needs it. */
static void send_metadata(const npvdb_client *c, grpc_op *op)
{
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = c->n_md;
    op->data.send_initial_metadata.metadata =
        c->n_md ? (grpc_metadata *)c->md : NULL;
}

/* Every batch started on the call must have been plucked before this. */
static void call_close(call *k)
{
    if (k->call) grpc_call_unref(k->call);
    if (k->cq) {
        grpc_completion_queue_shutdown(k->cq);
        grpc_completion_queue_destroy(k->cq);
    }
    k->call = NULL;
    k->cq = NULL;
}

static int pluck(call *k, void *tag)
{
    grpc_event ev = grpc_completion_queue_pluck(
        k->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Starts a batch; on success the tag must later be plucked. */
static npvdb_status start(call *k, const grpc_op *ops, size_t n, void *tag,
                          npvdb_client_error *err)
{
    grpc_call_error e = grpc_call_start_batch(k->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK)
        return set_err(err, NPVDB_STATUS_INTERNAL,
                       "grpc_call_start_batch failed (%d)", (int)e);
    return NPVDB_STATUS_OK;
}

static void status_init(status_ops *st)
{
    memset(st, 0, sizeof *st);
    grpc_metadata_array_init(&st->initial_md);
    grpc_metadata_array_init(&st->trailing_md);
    st->details = grpc_empty_slice();
}

static void status_fill_ops(status_ops *st, grpc_op *op)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &st->trailing_md;
    op->data.recv_status_on_client.status = &st->status;
    op->data.recv_status_on_client.status_details = &st->details;
    op->data.recv_status_on_client.error_string = &st->error_string;
}

/* Turns a received status into the return value and err (then frees it).
 * UNAVAILABLE gets the target in front so a user sees where it looked. */
static npvdb_status status_finish(npvdb_client *c, status_ops *st,
                                  npvdb_client_error *err)
{
    npvdb_status code = (npvdb_status)st->status;
    if (code != NPVDB_STATUS_OK) {
        size_t len = GRPC_SLICE_LENGTH(st->details);
        const char *msg = (const char *)GRPC_SLICE_START_PTR(st->details);
        if (len == 0 && st->error_string) {
            msg = st->error_string;
            len = strlen(msg);
        }
        if (len == 0) {
            msg = npvdb_status_name(code);
            len = strlen(msg);
        }
        if (code == NPVDB_STATUS_UNAVAILABLE)
            set_err(err, code, "cannot reach npvdb at %s: %.*s", c->target,
                    (int)len, msg);
        else
            set_err(err, code, "%.*s", (int)len, msg);
    }
    grpc_slice_unref(st->details);
    st->details = grpc_empty_slice();
    if (st->error_string) gpr_free((void *)st->error_string);
    st->error_string = NULL;
    grpc_metadata_array_destroy(&st->initial_md);
    grpc_metadata_array_destroy(&st->trailing_md);
    return code;
}

/* ---- messages ---- */

static void free_packed(void *p)
{
    free(p);
}

/* Hands len bytes of malloc'ed buf to a new byte buffer (buf is freed
 * with it). */
static grpc_byte_buffer *wrap_bytes(uint8_t *buf, size_t len)
{
    grpc_slice s = grpc_slice_new(buf, len, free_packed);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Packs m into a new byte buffer (caller destroys it), NULL when out of
 * memory. */
static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(m, buf);
    return wrap_bytes(buf, len);
}

/* Room for payload p as one repeated field (tag, length, message). */
static size_t payload_room(const npvdb_client_payload *p)
{
    return 16 + npvdb_payload_size(p);
}

/* Packs an InsertRequest and then its n payloads as field 4, by hand
 * (payload.c): fields may come in any order, and the hand encoder keeps
 * strings with NUL bytes whole. NULL when out of memory. */
static grpc_byte_buffer *pack_insert(const Npvdb__V1__InsertRequest *req,
                                     const npvdb_client_payload *const *pls,
                                     size_t n)
{
    size_t len = protobuf_c_message_get_packed_size(&req->base), room = len;
    for (size_t i = 0; pls && i < n; i++) {
        size_t more = payload_room(pls[i]);
        if (more > SIZE_MAX - room) return NULL;
        room += more;
    }
    uint8_t *buf = malloc(room ? room : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(&req->base, buf);
    uint8_t *o = buf + len;
    for (size_t i = 0; pls && i < n; i++)
        o = npvdb_payload_put(o, 4, pls[i]);
    return wrap_bytes(buf, (size_t)(o - buf));
}

/* Unpacks and destroys bb; NULL when it is not a valid message. */
static ProtobufCMessage *unpack_message(grpc_byte_buffer *bb,
                                        const ProtobufCMessageDescriptor *d)
{
    grpc_byte_buffer_reader r;
    ProtobufCMessage *m = NULL;
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        grpc_slice s = grpc_byte_buffer_reader_readall(&r);
        m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s),
                                      GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
        grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(bb);
    return m;
}

/* One unary call of `method`: *in gets the reply's bytes on success
 * (caller destroys the buffer). */
static npvdb_status unary_raw(npvdb_client *c, const char *method,
                              int timeout_ms, const ProtobufCMessage *req,
                              grpc_byte_buffer **in, npvdb_client_error *err)
{
    *in = NULL;
    grpc_byte_buffer *out = pack_message(req);
    if (!out)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory packing a %s request", method);
    call k;
    npvdb_status rc = call_open(c, method, timeout_ms, &k, err);
    if (rc != NPVDB_STATUS_OK) {
        grpc_byte_buffer_destroy(out);
        return rc;
    }
    status_ops st;
    status_init(&st);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    send_metadata(c, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = out;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &st.initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = in;
    status_fill_ops(&st, &ops[5]);
    rc = start(&k, ops, 6, &k, err);
    if (rc == NPVDB_STATUS_OK) pluck(&k, &k); /* failures show in the status */
    grpc_byte_buffer_destroy(out);
    if (rc == NPVDB_STATUS_OK)
        rc = status_finish(c, &st, err);
    else
        status_finish(c, &st, NULL);
    call_close(&k);
    if (rc == NPVDB_STATUS_OK && !*in)
        return set_err(err, NPVDB_STATUS_INTERNAL,
                       "%s: OK status without a reply", method);
    if (rc != NPVDB_STATUS_OK && *in) {
        grpc_byte_buffer_destroy(*in);
        *in = NULL;
    }
    return rc;
}

/* One unary call of `method`: *reply gets the unpacked reply on success
 * (caller frees with protobuf_c_message_free_unpacked). */
static npvdb_status unary(npvdb_client *c, const char *method, int timeout_ms,
                          const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *reply_desc,
                          ProtobufCMessage **reply, npvdb_client_error *err)
{
    *reply = NULL;
    grpc_byte_buffer *in;
    npvdb_status rc = unary_raw(c, method, timeout_ms, req, &in, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    *reply = unpack_message(in, reply_desc);
    if (!*reply)
        return set_err(err, NPVDB_STATUS_INTERNAL, "%s: malformed reply",
                       method);
    return NPVDB_STATUS_OK;
}

/* ---- connect / close ---- */

/* Largest TLS file read (a CA bundle is a few hundred KiB). */
#define PEM_MAX_BYTES (16u << 20)

/* Overwrites n bytes in a way the compiler keeps (key material, tokens). */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *b = p;
    while (n--)
        *b++ = 0;
}

/* Frees a buffer of key material or a token after wiping it. */
static void wipe_free(char *p)
{
    if (p) {
        wipe(p, strlen(p));
        free(p);
    }
}

/* The slice destructor of the token's metadata value. */
static void wipe_slice(void *p, size_t len)
{
    wipe(p, len);
    free(p);
}

/* Reads the PEM file `path` (what: "TLS CA file", ...) into *out, a
 * malloc'ed NUL-terminated string the caller frees. INVALID_ARGUMENT naming
 * the file when it cannot be read, is empty, too large or not PEM. */
static npvdb_status read_pem(const char *what, const char *path, char **out,
                             npvdb_client_error *err)
{
    *out = NULL;
    if (!*path)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT, "%s: empty path",
                       what);
    FILE *f = fopen(path, "rb");
    if (!f)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "cannot read %s %s: %s", what, path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    npvdb_status rc = NPVDB_STATUS_OK;
    while (buf) {
        if (cap - len < 2) {
            if (cap >= PEM_MAX_BYTES) {
                rc = set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                             "%s %s: larger than %u bytes", what, path,
                             PEM_MAX_BYTES);
                break;
            }
            char *b = malloc(cap * 2);
            if (b) memcpy(b, buf, len);
            wipe(buf, len);
            free(buf);
            buf = b;
            cap *= 2;
            continue;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                rc = set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                             "cannot read %s %s: %s", what, path,
                             strerror(errno ? errno : EIO));
            break;
        }
    }
    fclose(f);
    if (!buf)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory reading %s %s", what, path);
    buf[len] = '\0';
    if (rc == NPVDB_STATUS_OK && len == 0)
        rc = set_err(err, NPVDB_STATUS_INVALID_ARGUMENT, "%s %s is empty", what,
                     path);
    else if (rc == NPVDB_STATUS_OK &&
             (strlen(buf) != len || !strstr(buf, "-----BEGIN ")))
        rc = set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                     "%s %s is not PEM (no -----BEGIN line)", what, path);
    if (rc != NPVDB_STATUS_OK) {
        wipe(buf, len);
        free(buf);
        return rc;
    }
    *out = buf;
    return NPVDB_STATUS_OK;
}

/* Checks the token (printable ASCII without whitespace, as in the server's
 * token file) and makes the handle's authorization metadata. */
static npvdb_status set_token(npvdb_client *c, const char *token,
                              npvdb_client_error *err)
{
    size_t n = strlen(token);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] < '!' || (unsigned char)token[i] > '~')
            return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                           "token: byte %zu is not printable ASCII or is "
                           "whitespace (tokens are as in the server's token "
                           "file)",
                           i);
    static const char bearer[] = "Bearer ";
    size_t len = sizeof bearer - 1 + n;
    char *v = malloc(len + 1);
    if (!v)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(v, bearer, sizeof bearer - 1);
    memcpy(v + sizeof bearer - 1, token, n + 1);
    memset(c->md, 0, sizeof c->md);
    c->md[0].key = grpc_slice_from_static_string("authorization");
    c->md[0].value = grpc_slice_new_with_len(v, len, wipe_slice);
    c->n_md = 1;
    return NPVDB_STATUS_OK;
}

/* The channel credentials of opts: TLS when a TLS file is given, else
 * plaintext. NULL and err set on failure. */
static grpc_channel_credentials *make_creds(const npvdb_client_opts *o,
                                            npvdb_client_error *err)
{
    int tls = o && (o->tls_ca_file || o->tls_cert_file || o->tls_key_file);
    if (!tls) return grpc_insecure_credentials_create();
    if (!o->tls_cert_file != !o->tls_key_file) {
        set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                "tls_cert_file and tls_key_file go together (a client "
                "certificate and its key), got only %s",
                o->tls_cert_file ? "tls_cert_file" : "tls_key_file");
        return NULL;
    }
    char *ca = NULL, *cert = NULL, *key = NULL;
    grpc_channel_credentials *creds = NULL;
    if ((o->tls_ca_file &&
         read_pem("TLS CA file", o->tls_ca_file, &ca, err) != 0) ||
        (o->tls_cert_file &&
         read_pem("TLS certificate file", o->tls_cert_file, &cert, err) != 0) ||
        (o->tls_key_file &&
         read_pem("TLS key file", o->tls_key_file, &key, err) != 0))
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    /* gRPC copies the strings. */
    creds = grpc_ssl_credentials_create(ca, key ? &pair : NULL, NULL, NULL);
    if (!creds)
        set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                "gRPC refused the TLS credentials");
out:
    free(ca);
    free(cert);
    wipe_free(key);
    return creds;
}

npvdb_client *npvdb_client_connect(const char *target, int timeout_ms,
                                   npvdb_client_error *err)
{
    return npvdb_client_connect_opts(target, NULL, timeout_ms, err);
}

npvdb_client *npvdb_client_connect_opts(const char *target,
                                        const npvdb_client_opts *opts,
                                        int timeout_ms, npvdb_client_error *err)
{
    clear_err(err);
    if (!target || !*target) {
        set_err(err, NPVDB_STATUS_INVALID_ARGUMENT, "empty server address");
        return NULL;
    }
    npvdb_client *c = calloc(1, sizeof *c);
    if (!c || !(c->target = strdup(target))) {
        free(c);
        set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    c->timeout_ms = DEFAULT_CALL_TIMEOUT_MS;
    grpc_init();
    c->grpc_started = 1;
    if (opts && opts->token && *opts->token &&
        set_token(c, opts->token, err) != NPVDB_STATUS_OK) {
        npvdb_client_close(c);
        return NULL;
    }
    grpc_channel_credentials *creds = make_creds(opts, err);
    if (!creds) {
        npvdb_client_close(c);
        return NULL;
    }
    int tls = opts &&
              (opts->tls_ca_file || opts->tls_cert_file || opts->tls_key_file);
    /* Replies (Get of many keys, big k) may exceed gRPC's 4 MiB default. */
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = -1;
    grpc_channel_args cargs = {1, args};
    c->channel = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!c->channel) {
        set_err(err, NPVDB_STATUS_INVALID_ARGUMENT, "bad server address %s",
                target);
        npvdb_client_close(c);
        return NULL;
    }
    /* A health check proves someone answers: gRPC connects lazily and
     * would otherwise report a dead server only at the first real call. */
    int ms = timeout_ms > 0 ? timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    npvdb_client_error e;
    npvdb_status rc =
        unary(c, "/grpc.health.v1.Health/Check", ms, &req.base,
              &grpc__health__v1__health_check_response__descriptor, &reply, &e);
    if (reply) protobuf_c_message_free_unpacked(reply, NULL);
    if (rc == NPVDB_STATUS_UNAVAILABLE ||
        rc == NPVDB_STATUS_DEADLINE_EXCEEDED) {
        if (rc == NPVDB_STATUS_DEADLINE_EXCEEDED)
            set_err(err, rc, "cannot reach npvdb at %s: no answer within %d ms",
                    target, ms);
        else if (err)
            *err = e;
        /* gRPC's reason (e.g. "certificate verify failed") may not say
         * which setting to look at. */
        if (err && tls) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l,
                     " (TLS: check that the server serves TLS, that the CA "
                     "signed its certificate and that it names this "
                     "address%s)",
                     opts->tls_cert_file ? ", and that the server accepts "
                                           "this client certificate"
                                         : "");
        }
        npvdb_client_close(c);
        return NULL;
    }
    /* Any other status (even UNIMPLEMENTED) came from a live server. */
    return c;
}

void npvdb_client_close(npvdb_client *c)
{
    if (!c) return;
    if (c->channel) {
        grpc_channel_destroy(c->channel);
    }
    for (size_t i = 0; i < c->n_md; i++) {
        grpc_slice_unref(c->md[i].key);
        grpc_slice_unref(c->md[i].value);
    }
    if (c->grpc_started) grpc_shutdown();
    free(c->target);
    free(c);
}

void npvdb_client_set_timeout(npvdb_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

const char *npvdb_client_target(const npvdb_client *c)
{
    return c->target;
}

/* ---- Init ---- */

npvdb_status npvdb_client_init(npvdb_client *c,
                               const npvdb_client_init_params *p, int *trained,
                               int *replaced, npvdb_client_error *err)
{
    clear_err(err);
    if (!p || (p->n_train && !p->train))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "init: missing parameters");
    if (p->dim && p->n_train > SIZE_MAX / 4 / p->dim)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "init: training sample too large");
    Npvdb__V1__InitRequest req = NPVDB__V1__INIT_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.dim = p->dim;
    req.metric = (Npvdb__V1__Metric)p->metric;
    req.n_shards = p->n_shards;
    req.replace = p->replace != 0;
    req.default_nprobe = p->default_nprobe;
    req.train_vectors.len = p->n_train * p->dim * sizeof(float);
    req.train_vectors.data = (uint8_t *)p->train; /* only read by pack */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/Init", c->timeout_ms, &req.base,
              &npvdb__v1__init_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    Npvdb__V1__InitReply *r = (Npvdb__V1__InitReply *)m;
    if (trained) *trained = r->trained;
    if (replaced) *replaced = r->replaced;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

/* ---- Insert stream ---- */

struct npvdb_client_stream {
    npvdb_client *c;
    call k;
    uint32_t dim;
    char collection[256]; /* the handle's when the stream began */
    uint64_t sent_messages;
    grpc_byte_buffer *pending; /* the SEND_MESSAGE in flight, or NULL */
    int status_done;           /* the status batch has been plucked */
    status_ops st;
    npvdb_status final_rc;        /* why the stream ended early */
    npvdb_client_error final_err; /* ... repeated by _finish */
    grpc_byte_buffer *reply;
    /* Distinct addresses serve as the batch tags. */
    char tag_send, tag_status, tag_close;
};

static void stream_free(npvdb_client_stream *s)
{
    if (s->pending) grpc_byte_buffer_destroy(s->pending);
    if (s->reply) grpc_byte_buffer_destroy(s->reply);
    call_close(&s->k);
    free(s);
}

/* Waits for the status batch (the call is over or about to be) and returns
 * the server's status; an OK status here without half-close is an error. */
static npvdb_status stream_status(npvdb_client_stream *s,
                                  npvdb_client_error *err)
{
    if (!s->status_done) {
        pluck(&s->k, &s->tag_status);
        s->status_done = 1;
    }
    return status_finish(s->c, &s->st, err);
}

/* Ends the in-flight send, if any; 0 when it failed (the call is dead). */
static int stream_wait_send(npvdb_client_stream *s)
{
    if (!s->pending) return 1;
    int ok = pluck(&s->k, &s->tag_send);
    grpc_byte_buffer_destroy(s->pending);
    s->pending = NULL;
    return ok;
}

/* Cancels and drains every outstanding batch so the stream can be freed. */
static void stream_abort(npvdb_client_stream *s)
{
    grpc_call_cancel(s->k.call, NULL);
    stream_wait_send(s);
    if (!s->status_done) {
        pluck(&s->k, &s->tag_status);
        s->status_done = 1;
        status_finish(s->c, &s->st, NULL);
    }
}

npvdb_client_stream *npvdb_client_insert_begin(npvdb_client *c, uint32_t dim,
                                               npvdb_client_error *err)
{
    clear_err(err);
    npvdb_client_stream *s = calloc(1, sizeof *s);
    if (!s) {
        set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    s->c = c;
    s->dim = dim;
    memcpy(s->collection, c->collection, sizeof s->collection);
    s->status_done = 1; /* nothing to pluck yet */
    if (call_open(c, "/npvdb.v1.VectorDB/Insert", c->timeout_ms, &s->k, err) !=
        NPVDB_STATUS_OK) {
        free(s);
        return NULL;
    }
    status_init(&s->st);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->st.initial_md;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &s->reply;
    status_fill_ops(&s->st, &ops[2]);
    if (start(&s->k, ops, 3, &s->tag_status, err) != NPVDB_STATUS_OK) {
        status_finish(c, &s->st, NULL);
        stream_free(s);
        return NULL;
    }
    s->status_done = 0;
    memset(ops, 0, sizeof ops);
    send_metadata(c, &ops[0]);
    if (start(&s->k, ops, 1, &s->tag_send, err) != NPVDB_STATUS_OK) {
        stream_abort(s);
        stream_free(s);
        return NULL;
    }
    if (!pluck(&s->k, &s->tag_send)) {
        /* The call failed at once (server down): its status says why. */
        if (stream_status(s, err) == NPVDB_STATUS_OK)
            set_err(err, NPVDB_STATUS_INTERNAL, "insert: call failed");
        stream_free(s);
        return NULL;
    }
    return s;
}

/* The server ended the call before the client half-closed: report why. */
static npvdb_status stream_ended_early(npvdb_client_stream *s,
                                       npvdb_client_error *err)
{
    stream_wait_send(s);
    npvdb_client_error *e = &s->final_err;
    npvdb_status rc = stream_status(s, e);
    if (rc == NPVDB_STATUS_OK)
        rc = set_err(e, NPVDB_STATUS_INTERNAL,
                     "insert: server ended the stream after %llu messages",
                     (unsigned long long)s->sent_messages);
    s->final_rc = rc;
    if (err) *err = *e;
    return rc;
}

npvdb_status npvdb_client_stream_send(npvdb_client_stream *s,
                                      const char *const *keys,
                                      const float *rows, size_t n,
                                      npvdb_client_error *err)
{
    return npvdb_client_stream_send_payloads(s, keys, rows, NULL, n, err);
}

npvdb_status
npvdb_client_stream_send_payloads(npvdb_client_stream *s,
                                  const char *const *keys, const float *rows,
                                  const npvdb_client_payload *const *payloads,
                                  size_t n, npvdb_client_error *err)
{
    clear_err(err);
    if (s->status_done) {
        if (err) *err = s->final_err;
        return s->final_rc;
    }
    if ((n && (!keys || !rows)) || (s->dim && n > SIZE_MAX / 4 / s->dim))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "insert: bad batch arguments");
    /* Cheap check (does not block) whether the server already gave up. */
    grpc_event ev = grpc_completion_queue_pluck(
        s->k.cq, &s->tag_status, gpr_inf_past(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
        s->status_done = 1;
        return stream_ended_early(s, err);
    }
    Npvdb__V1__InsertRequest req = NPVDB__V1__INSERT_REQUEST__INIT;
    req.collection = s->collection; /* only read by pack */
    req.n_keys = n;
    req.keys = (char **)keys; /* only read by pack */
    req.vectors.len = n * s->dim * sizeof(float);
    req.vectors.data = (uint8_t *)rows;
    grpc_byte_buffer *bb = pack_insert(&req, payloads, n);
    if (!bb)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "insert: out of memory packing a message");
    /* Only one send may be in flight: wait for the previous one. Packing
     * the next message first overlaps it with the transfer. */
    if (!stream_wait_send(s)) {
        grpc_byte_buffer_destroy(bb);
        return stream_ended_early(s, err);
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    npvdb_status rc = start(&s->k, &op, 1, &s->tag_send, err);
    if (rc != NPVDB_STATUS_OK) {
        grpc_byte_buffer_destroy(bb);
        return rc;
    }
    s->pending = bb;
    s->sent_messages++;
    return NPVDB_STATUS_OK;
}

npvdb_status npvdb_client_stream_finish(npvdb_client_stream *s,
                                        npvdb_client_insert_reply *reply,
                                        npvdb_client_error *err)
{
    clear_err(err);
    if (reply) memset(reply, 0, sizeof *reply);
    npvdb_status rc;
    if (s->status_done) {
        /* A send already got the server's status: repeat it. */
        rc = s->final_rc;
        if (err) *err = s->final_err;
        stream_free(s);
        return rc;
    }
    stream_wait_send(s); /* a failure shows in the status */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (start(&s->k, &op, 1, &s->tag_close, NULL) == NPVDB_STATUS_OK)
        pluck(&s->k, &s->tag_close);
    rc = stream_status(s, err);
    if (rc == NPVDB_STATUS_OK) {
        grpc_byte_buffer *bb = s->reply;
        s->reply = NULL;
        ProtobufCMessage *m =
            bb ? unpack_message(bb, &npvdb__v1__insert_reply__descriptor)
               : NULL;
        if (!m) {
            rc = set_err(err, NPVDB_STATUS_INTERNAL,
                         "insert: missing or malformed reply");
        } else {
            Npvdb__V1__InsertReply *r = (Npvdb__V1__InsertReply *)m;
            if (reply) {
                reply->inserted = r->inserted;
                reply->replaced = r->replaced;
                reply->messages = r->messages;
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    stream_free(s);
    return rc;
}

void npvdb_client_stream_cancel(npvdb_client_stream *s)
{
    if (!s) return;
    stream_abort(s);
    stream_free(s);
}

/* How many rows from `first` fit one message of at most `batch` rows and
 * INSERT_MAX_MESSAGE_BYTES bytes (always at least one). */
static size_t batch_rows(const char *const *keys,
                         const npvdb_client_payload *const *pls, size_t first,
                         size_t n, size_t batch, uint32_t dim)
{
    size_t bytes = 0, rows = 0;
    while (first + rows < n && rows < batch) {
        size_t row = (size_t)dim * 4 + strlen(keys[first + rows]) + 8;
        if (pls) row += payload_room(pls[first + rows]);
        if (rows && bytes + row > INSERT_MAX_MESSAGE_BYTES) break;
        bytes += row;
        rows++;
    }
    return rows;
}

npvdb_status npvdb_client_insert(npvdb_client *c, uint32_t dim,
                                 const char *const *keys, const float *rows,
                                 size_t n, size_t batch,
                                 npvdb_client_progress_cb progress, void *ctx,
                                 npvdb_client_insert_reply *reply,
                                 npvdb_client_error *err)
{
    return npvdb_client_insert_payloads(c, dim, keys, rows, NULL, n, batch,
                                        progress, ctx, reply, err);
}

npvdb_status npvdb_client_insert_payloads(
    npvdb_client *c, uint32_t dim, const char *const *keys, const float *rows,
    const npvdb_client_payload *const *payloads, size_t n, size_t batch,
    npvdb_client_progress_cb progress, void *ctx,
    npvdb_client_insert_reply *reply, npvdb_client_error *err)
{
    clear_err(err);
    if (reply) memset(reply, 0, sizeof *reply);
    if (n && (!keys || !rows))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "insert: missing keys or rows");
    if (!batch) batch = INSERT_DEFAULT_BATCH;
    npvdb_client_stream *s = npvdb_client_insert_begin(c, dim, err);
    if (!s) return err ? err->code : NPVDB_STATUS_INTERNAL;
    size_t done = 0;
    while (done < n) {
        size_t m = batch_rows(keys, payloads, done, n, batch, dim);
        npvdb_status rc = npvdb_client_stream_send_payloads(
            s, keys + done, rows + done * (size_t)dim,
            payloads ? payloads + done : NULL, m, err);
        if (rc != NPVDB_STATUS_OK) {
            npvdb_client_stream_cancel(s);
            return rc;
        }
        done += m;
        if (progress && progress(ctx, done, n)) {
            npvdb_client_stream_cancel(s);
            return set_err(err, NPVDB_STATUS_CANCELLED,
                           "insert: cancelled after %zu of %zu rows", done, n);
        }
    }
    return npvdb_client_stream_finish(s, reply, err);
}

/* ---- GetClosest ---- */

/* The bytes of a received message as one slice (caller unrefs): the
 * message's own slice when it came in one piece (no copy), else a copy. */
static grpc_slice message_bytes(grpc_byte_buffer *bb)
{
    if (bb->type == GRPC_BB_RAW &&
        bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1)
        return grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    grpc_byte_buffer_reader r;
    grpc_slice s = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&r, bb)) {
        s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
    }
    return s;
}

static int start_recv(call *k, grpc_byte_buffer **slot)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = slot;
    return start(k, &op, 1, k, NULL) == NPVDB_STATUS_OK;
}

/* Decodes reply number `i` (and destroys its buffer). */
static npvdb_status take_reply(npvdb_reply_collector *col, size_t i,
                               grpc_byte_buffer *in, npvdb_client_error *err)
{
    grpc_slice s = message_bytes(in);
    npvdb_status rc = npvdb_reply_get_closest(col, i, GRPC_SLICE_START_PTR(s),
                                              GRPC_SLICE_LENGTH(s), err);
    grpc_slice_unref(s);
    grpc_byte_buffer_destroy(in);
    return rc;
}

/* Reads replies until the stream ends; returns the first problem found.
 * The next RECV_MESSAGE is started before a reply is decoded, so the next
 * reply travels while this one is decoded (two slots, one in flight). */
static npvdb_status receive_replies(call *k, npvdb_reply_collector *col,
                                    size_t *got, npvdb_client_error *err)
{
    npvdb_status bad = NPVDB_STATUS_OK;
    grpc_byte_buffer *slot[2] = {NULL, NULL};
    int cur = 0, more = start_recv(k, &slot[0]);
    while (more) {
        int ok = pluck(k, k);
        grpc_byte_buffer *in = slot[cur];
        slot[cur] = NULL;
        if (!ok || !in) {
            if (in) grpc_byte_buffer_destroy(in);
            break;
        }
        cur ^= 1;
        more = start_recv(k, &slot[cur]);
        if (bad != NPVDB_STATUS_OK) {
            grpc_byte_buffer_destroy(in);
        } else {
            bad = take_reply(col, *got, in, err);
            if (bad != NPVDB_STATUS_OK) grpc_call_cancel(k->call, NULL);
        }
        (*got)++;
    }
    return bad;
}

/* Whether the sizes of a search fit memory: nq*dim floats to send, nq*k
 * key pointers to return (so nq*k floats fit too). */
static int query_args_ok(const float *queries, size_t nq, uint32_t dim,
                         uint32_t k)
{
    return !(nq && !queries) && !(dim && nq > SIZE_MAX / 4 / dim) &&
           !(k && nq > SIZE_MAX / sizeof(size_t) / k);
}

/* Sends the request, receives every reply, then the status. */
static npvdb_status stream_call(npvdb_client *c, grpc_byte_buffer *bb,
                                npvdb_reply_collector *col, size_t *got,
                                npvdb_client_error *err)
{
    call kc = {0};
    npvdb_status rc =
        call_open(c, "/npvdb.v1.VectorDB/GetClosest", c->timeout_ms, &kc, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    status_ops st;
    status_init(&st);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    send_metadata(c, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &st.initial_md;
    npvdb_status bad = NPVDB_STATUS_OK;
    if (start(&kc, ops, 4, &kc, NULL) == NPVDB_STATUS_OK) {
        pluck(&kc, &kc);
        bad = receive_replies(&kc, col, got, err);
    }
    memset(ops, 0, sizeof ops);
    status_fill_ops(&st, &ops[0]);
    if (start(&kc, ops, 1, &kc, NULL) == NPVDB_STATUS_OK) pluck(&kc, &kc);
    /* A broken contract outranks the status its cancel caused. */
    rc = status_finish(c, &st, bad == NPVDB_STATUS_OK ? err : NULL);
    call_close(&kc);
    return bad != NPVDB_STATUS_OK ? bad : rc;
}

npvdb_status npvdb_client_get_closest(npvdb_client *c, const float *queries,
                                      size_t nq, uint32_t dim, uint32_t k,
                                      uint32_t nprobe,
                                      npvdb_client_results *out,
                                      npvdb_client_error *err)
{
    return npvdb_client_get_closest_ex(c, queries, nq, dim, k, nprobe, NULL,
                                       out, err);
}

/* The filter's protobuf-c message (only read by pack), NULL for none. */
static Npvdb__V1__Filter *filter_msg(const npvdb_client_filter *f);

npvdb_status npvdb_client_get_closest_ex(npvdb_client *c, const float *queries,
                                         size_t nq, uint32_t dim, uint32_t k,
                                         uint32_t nprobe,
                                         const npvdb_client_search_opts *opts,
                                         npvdb_client_results *out,
                                         npvdb_client_error *err)
{
    clear_err(err);
    memset(out, 0, sizeof *out);
    if (!query_args_ok(queries, nq, dim, k))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "get_closest: bad arguments");
    Npvdb__V1__GetClosestRequest req = NPVDB__V1__GET_CLOSEST_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.queries.len = nq * dim * sizeof(float);
    req.queries.data = (uint8_t *)queries; /* only read by pack */
    req.k = k;
    req.nprobe = nprobe;
    req.dim = dim;
    int with_payload = opts && opts->with_payload;
    req.filter = filter_msg(opts ? opts->filter : NULL);
    req.with_payload = with_payload;
    npvdb_reply_collector col;
    grpc_byte_buffer *bb = NULL;
    npvdb_status rc;
    size_t got = 0;
    if (npvdb_reply_collector_init(&col, out, nq, k) ||
        (with_payload && npvdb_reply_collector_want_payloads(&col)) ||
        !(bb = pack_message(&req.base)))
        rc = set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                     "get_closest: out of memory for %zu x %u results", nq, k);
    else
        rc = stream_call(c, bb, &col, &got, err);
    if (bb) grpc_byte_buffer_destroy(bb);
    if (rc == NPVDB_STATUS_OK && got != nq)
        rc = set_err(err, NPVDB_STATUS_INTERNAL,
                     "get_closest: %zu replies for %zu queries", got, nq);
    else if (rc == NPVDB_STATUS_OK && npvdb_reply_collector_finish(&col))
        rc = set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                     "get_closest: out of memory");
    npvdb_reply_collector_free(&col);
    if (rc != NPVDB_STATUS_OK) npvdb_client_results_free(out);
    return rc;
}

/* ---- Search (unary, packed reply) ---- */

npvdb_status npvdb_client_search(npvdb_client *c, const float *queries,
                                 size_t nq, uint32_t dim, uint32_t k,
                                 uint32_t nprobe, npvdb_client_results *out,
                                 npvdb_client_error *err)
{
    return npvdb_client_search_ex(c, queries, nq, dim, k, nprobe, NULL, out,
                                  err);
}

npvdb_status npvdb_client_search_ex(npvdb_client *c, const float *queries,
                                    size_t nq, uint32_t dim, uint32_t k,
                                    uint32_t nprobe,
                                    const npvdb_client_search_opts *opts,
                                    npvdb_client_results *out,
                                    npvdb_client_error *err)
{
    clear_err(err);
    memset(out, 0, sizeof *out);
    if (!query_args_ok(queries, nq, dim, k))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "search: bad arguments");
    Npvdb__V1__SearchRequest req = NPVDB__V1__SEARCH_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.queries.len = nq * dim * sizeof(float);
    req.queries.data = (uint8_t *)queries; /* only read by pack */
    req.k = k;
    req.nprobe = nprobe;
    req.dim = dim;
    int with_payload = opts && opts->with_payload;
    req.filter = filter_msg(opts ? opts->filter : NULL);
    req.with_payload = with_payload;
    grpc_byte_buffer *in = NULL;
    npvdb_status rc = unary_raw(c, "/npvdb.v1.VectorDB/Search", c->timeout_ms,
                                &req.base, &in, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    grpc_slice s = message_bytes(in);
    grpc_byte_buffer_destroy(in);
    rc = npvdb_reply_search_ex(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
                               nq, k, with_payload, out, err);
    grpc_slice_unref(s);
    return rc;
}

/* ---- Snapshot, Delete, Info, Get, Health ---- */

npvdb_status npvdb_client_snapshot(npvdb_client *c,
                                   npvdb_client_snapshot_info *out,
                                   npvdb_client_error *err)
{
    clear_err(err);
    memset(out, 0, sizeof *out);
    Npvdb__V1__SnapshotRequest req = NPVDB__V1__SNAPSHOT_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/Snapshot", c->timeout_ms, &req.base,
              &npvdb__v1__snapshot_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    Npvdb__V1__SnapshotReply *r = (Npvdb__V1__SnapshotReply *)m;
    snprintf(out->path, sizeof out->path, "%s", r->path ? r->path : "");
    out->vectors = r->vectors;
    out->bytes = r->bytes;
    out->seconds = r->seconds;
    out->sequence = r->sequence;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

npvdb_status npvdb_client_delete(npvdb_client *c, const char *const *keys,
                                 size_t n, uint64_t *deleted,
                                 npvdb_client_error *err)
{
    clear_err(err);
    if (n && !keys)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "delete: missing keys");
    Npvdb__V1__DeleteRequest req = NPVDB__V1__DELETE_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.n_keys = n;
    req.keys = (char **)keys; /* only read by pack */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/Delete", c->timeout_ms, &req.base,
              &npvdb__v1__delete_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    if (deleted) *deleted = ((Npvdb__V1__DeleteReply *)m)->deleted;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

void npvdb_client_info_free(npvdb_client_info *info)
{
    if (!info) return;
    free(info->shard_sizes);
    info->shard_sizes = NULL;
    info->n_shard_sizes = 0;
}

npvdb_status npvdb_client_info_get(npvdb_client *c, npvdb_client_info *out,
                                   npvdb_client_error *err)
{
    clear_err(err);
    memset(out, 0, sizeof *out);
    Npvdb__V1__InfoRequest req = NPVDB__V1__INFO_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/Info", c->timeout_ms, &req.base,
              &npvdb__v1__info_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    Npvdb__V1__InfoReply *r = (Npvdb__V1__InfoReply *)m;
    out->initialized = r->initialized;
    out->dim = r->dim;
    out->metric = (npvdb_client_metric)r->metric;
    out->vectors = r->vectors;
    out->n_shards = r->n_shards;
    out->trained = r->trained;
    out->memory_bytes = r->memory_bytes;
    out->default_nprobe = r->default_nprobe;
    out->largest_shard = r->largest_shard;
    out->smallest_shard = r->smallest_shard;
    out->splits = r->splits;
    out->merges = r->merges;
    out->retrains = r->retrains;
    snprintf(out->server_version, sizeof out->server_version, "%s",
             r->server_version ? r->server_version : "");
    if (r->n_shard_sizes) {
        out->shard_sizes = malloc(r->n_shard_sizes * sizeof(uint64_t));
        if (!out->shard_sizes) {
            protobuf_c_message_free_unpacked(m, NULL);
            return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                           "info: out of memory");
        }
        memcpy(out->shard_sizes, r->shard_sizes,
               r->n_shard_sizes * sizeof(uint64_t));
        out->n_shard_sizes = r->n_shard_sizes;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

static void free_strings(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void npvdb_client_vectors_free(npvdb_client_vectors *v)
{
    if (!v) return;
    npvdb_payloads_release(v->payloads_, v->payloads_ ? v->n_found : 0);
    free_strings(v->keys, v->n_found);
    free_strings(v->missing, v->n_missing);
    free(v->vectors);
    memset(v, 0, sizeof *v);
}

const npvdb_client_payload *
npvdb_client_vectors_payload(const npvdb_client_vectors *v, size_t i)
{
    return v && v->payloads_ && i < v->n_found ? v->payloads_[i] : NULL;
}

/* Copies n strings; NULL when out of memory. */
static char **copy_strings(char *const *src, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = strdup(src[i]))) {
            free_strings(v, i);
            return NULL;
        }
    }
    return v;
}

static npvdb_status copy_get_reply(const Npvdb__V1__GetReply *r, uint32_t dim,
                                   npvdb_client_vectors *out,
                                   npvdb_client_error *err)
{
    if (r->vectors.len != r->n_keys * (size_t)dim * sizeof(float))
        return set_err(err, NPVDB_STATUS_INTERNAL,
                       "get: %zu bytes of vectors for %zu keys of dim %u",
                       r->vectors.len, r->n_keys, dim);
    out->dim = dim;
    out->keys = copy_strings(r->keys, r->n_keys);
    out->missing = copy_strings(r->missing, r->n_missing);
    out->vectors = malloc(r->vectors.len ? r->vectors.len : 1);
    if (out->keys) out->n_found = r->n_keys;
    if (out->missing) out->n_missing = r->n_missing;
    if (!out->keys || !out->missing || !out->vectors) {
        npvdb_client_vectors_free(out);
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "get: out of memory");
    }
    if (r->vectors.len) memcpy(out->vectors, r->vectors.data, r->vectors.len);
    return NPVDB_STATUS_OK;
}

npvdb_status npvdb_client_get(npvdb_client *c, const char *const *keys,
                              size_t n, uint32_t dim, npvdb_client_vectors *out,
                              npvdb_client_error *err)
{
    return npvdb_client_get_ex(c, keys, n, dim, 0, out, err);
}

/* One unary call whose reply is decoded twice: by protobuf-c into *reply
 * (caller frees) for its keys and numbers, and by reply.c for payloads
 * from the bytes in *bytes (caller unrefs; empty on error). */
static npvdb_status unary_keep_bytes(npvdb_client *c, const char *method,
                                     const ProtobufCMessage *req,
                                     const ProtobufCMessageDescriptor *d,
                                     ProtobufCMessage **reply,
                                     grpc_slice *bytes, npvdb_client_error *err)
{
    *reply = NULL;
    *bytes = grpc_empty_slice();
    grpc_byte_buffer *in = NULL;
    npvdb_status rc = unary_raw(c, method, c->timeout_ms, req, &in, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    *bytes = message_bytes(in);
    grpc_byte_buffer_destroy(in);
    *reply = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(*bytes),
                                       GRPC_SLICE_START_PTR(*bytes));
    if (*reply) return NPVDB_STATUS_OK;
    grpc_slice_unref(*bytes);
    *bytes = grpc_empty_slice();
    return set_err(err, NPVDB_STATUS_INTERNAL, "%s: malformed reply", method);
}

/* n payloads (repeated field `field`) of a reply's bytes into a new
 * *slots; exactly n or INTERNAL. */
static npvdb_status take_payloads(grpc_slice bytes, uint32_t field,
                                  const char *what, size_t n,
                                  npvdb_client_payload ***slots,
                                  npvdb_client_error *err)
{
    *slots = calloc(n ? n : 1, sizeof **slots);
    if (!*slots)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "%s: out of memory for %zu payloads", what, n);
    size_t found;
    npvdb_status rc = npvdb_reply_payloads(GRPC_SLICE_START_PTR(bytes),
                                           GRPC_SLICE_LENGTH(bytes), field,
                                           what, *slots, n, &found, err);
    if (rc == NPVDB_STATUS_OK && found != n)
        rc = set_err(err, NPVDB_STATUS_INTERNAL,
                     "%s: reply has %zu payloads for %zu keys", what, found, n);
    return rc;
}

npvdb_status npvdb_client_get_ex(npvdb_client *c, const char *const *keys,
                                 size_t n, uint32_t dim, int with_payload,
                                 npvdb_client_vectors *out,
                                 npvdb_client_error *err)
{
    clear_err(err);
    memset(out, 0, sizeof *out);
    if (n && !keys)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT, "get: missing keys");
    Npvdb__V1__GetRequest req = NPVDB__V1__GET_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.n_keys = n;
    req.keys = (char **)keys; /* only read by pack */
    req.with_payload = with_payload != 0;
    ProtobufCMessage *m = NULL;
    grpc_slice bytes;
    npvdb_status rc =
        unary_keep_bytes(c, "/npvdb.v1.VectorDB/Get", &req.base,
                         &npvdb__v1__get_reply__descriptor, &m, &bytes, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    rc = copy_get_reply((const Npvdb__V1__GetReply *)m, dim, out, err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc == NPVDB_STATUS_OK && with_payload)
        rc = take_payloads(bytes, 4, "get", out->n_found, &out->payloads_, err);
    grpc_slice_unref(bytes);
    if (rc != NPVDB_STATUS_OK) npvdb_client_vectors_free(out);
    return rc;
}

npvdb_status npvdb_client_health(npvdb_client *c, const char *service,
                                 int *serving, npvdb_client_error *err)
{
    clear_err(err);
    if (serving) *serving = 0;
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : ""); /* only read by pack */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/grpc.health.v1.Health/Check", c->timeout_ms, &req.base,
              &grpc__health__v1__health_check_response__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    if (serving)
        *serving =
            ((Grpc__Health__V1__HealthCheckResponse *)m)->status ==
            GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

/* ---- Collections ---- */

static int name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

npvdb_status npvdb_client_use(npvdb_client *c, const char *name,
                              npvdb_client_error *err)
{
    clear_err(err);
    if (!name || !*name || !strcmp(name, "default")) {
        c->collection[0] = '\0';
        return NPVDB_STATUS_OK;
    }
    if (!name_ok(name))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "collection name '%.64s%s': use 1..255 bytes of "
                       "[A-Za-z0-9_.-]",
                       name, strlen(name) > 64 ? "..." : "");
    snprintf(c->collection, sizeof c->collection, "%s", name);
    return NPVDB_STATUS_OK;
}

const char *npvdb_client_collection(const npvdb_client *c)
{
    return c->collection;
}

npvdb_status npvdb_client_list_collections(npvdb_client *c,
                                           npvdb_client_collection_info **out,
                                           size_t *n, npvdb_client_error *err)
{
    clear_err(err);
    *out = NULL;
    *n = 0;
    Npvdb__V1__ListCollectionsRequest req =
        NPVDB__V1__LIST_COLLECTIONS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/ListCollections", c->timeout_ms, &req.base,
              &npvdb__v1__list_collections_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    Npvdb__V1__ListCollectionsReply *r = (Npvdb__V1__ListCollectionsReply *)m;
    if (r->n_collections) {
        *out = calloc(r->n_collections, sizeof **out);
        if (!*out) {
            protobuf_c_message_free_unpacked(m, NULL);
            return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                           "list_collections: out of memory");
        }
    }
    for (size_t i = 0; i < r->n_collections; i++) {
        const Npvdb__V1__CollectionInfo *ci = r->collections[i];
        snprintf((*out)[i].name, sizeof(*out)[i].name, "%s",
                 ci->name ? ci->name : "");
        (*out)[i].dim = ci->dim;
        (*out)[i].metric = (npvdb_client_metric)ci->metric;
        (*out)[i].vectors = ci->vectors;
    }
    *n = r->n_collections;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

npvdb_status npvdb_client_drop_collection(npvdb_client *c, const char *name,
                                          uint64_t *vectors,
                                          npvdb_client_error *err)
{
    clear_err(err);
    if (vectors) *vectors = 0;
    if (name && *name && strcmp(name, "default") && !name_ok(name))
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "drop: bad collection name '%.64s'", name);
    Npvdb__V1__DropCollectionRequest req =
        NPVDB__V1__DROP_COLLECTION_REQUEST__INIT;
    req.collection = (char *)(name ? name : c->collection); /* only read */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/DropCollection", c->timeout_ms, &req.base,
              &npvdb__v1__drop_collection_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    if (vectors) *vectors = ((Npvdb__V1__DropCollectionReply *)m)->vectors;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

/* ---- Filters ----
 * The builder is an Npvdb__V1__Filter whose every pointer is malloc'ed, so
 * protobuf_c_message_free_unpacked (with the default allocator, free)
 * releases the whole tree, nested filters included. */

struct npvdb_client_filter {
    Npvdb__V1__Filter f;
};

static Npvdb__V1__Filter *filter_msg(const npvdb_client_filter *f)
{
    return f ? (Npvdb__V1__Filter *)&f->f : NULL;
}

npvdb_client_filter *npvdb_client_filter_new(void)
{
    npvdb_client_filter *f = malloc(sizeof *f);
    if (f) npvdb__v1__filter__init(&f->f);
    return f;
}

void npvdb_client_filter_free(npvdb_client_filter *f)
{
    if (f) protobuf_c_message_free_unpacked(&f->f.base, NULL);
}

/* Appends cond to the clause's array; 0 on success. */
static int filter_add(npvdb_client_filter *f, npvdb_client_clause clause,
                      Npvdb__V1__Condition *cond)
{
    Npvdb__V1__Condition ***arr;
    size_t *n;
    switch (clause) {
    case NPVDB_CLIENT_MUST:
        arr = &f->f.must, n = &f->f.n_must;
        break;
    case NPVDB_CLIENT_SHOULD:
        arr = &f->f.should, n = &f->f.n_should;
        break;
    case NPVDB_CLIENT_MUST_NOT:
        arr = &f->f.must_not, n = &f->f.n_must_not;
        break;
    default:
        return -1;
    }
    Npvdb__V1__Condition **grown = realloc(*arr, (*n + 1) * sizeof *grown);
    if (!grown) return -1;
    grown[(*n)++] = cond;
    *arr = grown;
    return 0;
}

/* A new condition on `key` (NULL: none); NULL when out of memory. */
static Npvdb__V1__Condition *cond_new(const char *key)
{
    Npvdb__V1__Condition *c = malloc(sizeof *c);
    if (!c) return NULL;
    npvdb__v1__condition__init(c);
    if (key && !(c->key = strdup(key))) {
        free(c);
        return NULL;
    }
    return c;
}

/* Adds cond (freeing it on failure); 0 on success. */
static int cond_add(npvdb_client_filter *f, npvdb_client_clause clause,
                    Npvdb__V1__Condition *cond)
{
    if (!cond) return -1;
    if (filter_add(f, clause, cond)) {
        protobuf_c_message_free_unpacked(&cond->base, NULL);
        return -1;
    }
    return 0;
}

/* A condition matching key against a Match filled by the caller. */
static Npvdb__V1__Condition *match_cond(const char *key, Npvdb__V1__Match **m)
{
    Npvdb__V1__Condition *c = cond_new(key);
    if (!c) return NULL;
    *m = malloc(sizeof **m);
    if (!*m) {
        protobuf_c_message_free_unpacked(&c->base, NULL);
        return NULL;
    }
    npvdb__v1__match__init(*m);
    c->condition_case = NPVDB__V1__CONDITION__CONDITION_MATCH;
    c->match = *m;
    return c;
}

int npvdb_client_filter_match_str(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key,
                                  const char *value)
{
    if (!f || !key || !*key || !value) return -1;
    Npvdb__V1__Match *m;
    Npvdb__V1__Condition *c = match_cond(key, &m);
    if (c && !(m->keyword = strdup(value))) {
        protobuf_c_message_free_unpacked(&c->base, NULL);
        return -1;
    }
    if (c) m->kind_case = NPVDB__V1__MATCH__KIND_KEYWORD;
    return cond_add(f, clause, c);
}

int npvdb_client_filter_match_int(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key,
                                  int64_t value)
{
    if (!f || !key || !*key) return -1;
    Npvdb__V1__Match *m;
    Npvdb__V1__Condition *c = match_cond(key, &m);
    if (c) {
        m->kind_case = NPVDB__V1__MATCH__KIND_INTEGER;
        m->integer = value;
    }
    return cond_add(f, clause, c);
}

int npvdb_client_filter_match_bool(npvdb_client_filter *f,
                                   npvdb_client_clause clause, const char *key,
                                   int value)
{
    if (!f || !key || !*key) return -1;
    Npvdb__V1__Match *m;
    Npvdb__V1__Condition *c = match_cond(key, &m);
    if (c) {
        m->kind_case = NPVDB__V1__MATCH__KIND_BOOLEAN;
        m->boolean = value != 0;
    }
    return cond_add(f, clause, c);
}

int npvdb_client_filter_range(npvdb_client_filter *f,
                              npvdb_client_clause clause, const char *key,
                              double lo, int lo_strict, double hi,
                              int hi_strict)
{
    if (!f || !key || !*key || (isnan(lo) && isnan(hi))) return -1;
    Npvdb__V1__Condition *c = cond_new(key);
    Npvdb__V1__Range *r = c ? malloc(sizeof *r) : NULL;
    if (!r) {
        if (c) protobuf_c_message_free_unpacked(&c->base, NULL);
        return -1;
    }
    npvdb__v1__range__init(r);
    if (!isnan(lo)) {
        r->lower_case = lo_strict ? NPVDB__V1__RANGE__LOWER_GT
                                  : NPVDB__V1__RANGE__LOWER_GTE;
        if (lo_strict)
            r->gt = lo;
        else
            r->gte = lo;
    }
    if (!isnan(hi)) {
        r->upper_case = hi_strict ? NPVDB__V1__RANGE__UPPER_LT
                                  : NPVDB__V1__RANGE__UPPER_LTE;
        if (hi_strict)
            r->lt = hi;
        else
            r->lte = hi;
    }
    c->condition_case = NPVDB__V1__CONDITION__CONDITION_RANGE;
    c->range = r;
    return cond_add(f, clause, c);
}

int npvdb_client_filter_has_field(npvdb_client_filter *f,
                                  npvdb_client_clause clause, const char *key)
{
    if (!f || !key || !*key) return -1;
    Npvdb__V1__Condition *c = cond_new(NULL);
    if (c && !(c->has_field = strdup(key))) {
        protobuf_c_message_free_unpacked(&c->base, NULL);
        return -1;
    }
    if (c) c->condition_case = NPVDB__V1__CONDITION__CONDITION_HAS_FIELD;
    return cond_add(f, clause, c);
}

int npvdb_client_filter_nested(npvdb_client_filter *f,
                               npvdb_client_clause clause,
                               npvdb_client_filter *sub)
{
    if (!f || !sub || sub == f) return -1;
    Npvdb__V1__Condition *c = cond_new(NULL);
    if (!c) return -1;
    /* The Filter is the first member: the struct itself becomes the
     * nested message, freed with the tree. */
    c->condition_case = NPVDB__V1__CONDITION__CONDITION_FILTER;
    c->filter = &sub->f;
    if (filter_add(f, clause, c)) {
        c->filter = NULL;
        c->condition_case = NPVDB__V1__CONDITION__CONDITION__NOT_SET;
        protobuf_c_message_free_unpacked(&c->base, NULL);
        return -1;
    }
    return 0;
}

npvdb_status npvdb_client_count(npvdb_client *c,
                                const npvdb_client_filter *filter,
                                uint64_t *count, npvdb_client_error *err)
{
    clear_err(err);
    if (count) *count = 0;
    Npvdb__V1__CountRequest req = NPVDB__V1__COUNT_REQUEST__INIT;
    req.collection = c->collection; /* only read */
    req.filter = filter ? (Npvdb__V1__Filter *)&filter->f : NULL; /* idem */
    ProtobufCMessage *m = NULL;
    npvdb_status rc =
        unary(c, "/npvdb.v1.VectorDB/Count", c->timeout_ms, &req.base,
              &npvdb__v1__count_reply__descriptor, &m, err);
    if (rc != NPVDB_STATUS_OK) return rc;
    if (count) *count = ((Npvdb__V1__CountReply *)m)->count;
    protobuf_c_message_free_unpacked(m, NULL);
    return NPVDB_STATUS_OK;
}

/* ---- Scroll ---- */

void npvdb_client_page_free(npvdb_client_page *page)
{
    if (!page) return;
    npvdb_payloads_release(page->payloads_, page->payloads_ ? page->n : 0);
    free_strings(page->keys, page->n);
    free(page->vectors);
    free(page->cursor);
    memset(page, 0, sizeof *page);
}

const npvdb_client_payload *
npvdb_client_page_payload(const npvdb_client_page *page, size_t i)
{
    return page && page->payloads_ && i < page->n ? page->payloads_[i] : NULL;
}

/* The page's vectors: n * dim floats, dim as asked (0: from the page). */
static npvdb_status page_vectors(const ProtobufCBinaryData *v, size_t n,
                                 uint32_t dim, npvdb_client_page *out,
                                 npvdb_client_error *err)
{
    size_t row = n * sizeof(float);
    if (!dim && n && v->len % row == 0 && v->len / row <= UINT32_MAX)
        dim = (uint32_t)(v->len / row);
    if ((n && !dim) || v->len != n * (size_t)dim * sizeof(float))
        return set_err(err, NPVDB_STATUS_INTERNAL,
                       "scroll: %zu bytes of vectors for %zu keys of dim %u",
                       v->len, n, dim);
    out->dim = dim;
    out->vectors = malloc(v->len ? v->len : 1);
    if (!out->vectors)
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "scroll: out of memory for %zu vectors", n);
    if (v->len) memcpy(out->vectors, v->data, v->len);
    return NPVDB_STATUS_OK;
}

/* Copies a ScrollReply (and its payloads from `bytes`) into out. */
static npvdb_status copy_page(const Npvdb__V1__ScrollReply *r, grpc_slice bytes,
                              const npvdb_client_scroll_params *p,
                              npvdb_client_page *out, npvdb_client_error *err)
{
    if (!(out->keys = copy_strings(r->keys, r->n_keys)))
        return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                       "scroll: out of memory for %zu keys", r->n_keys);
    out->n = r->n_keys;
    out->done = r->next_cursor.len == 0;
    if (!out->done) {
        out->cursor = malloc(r->next_cursor.len);
        if (!out->cursor)
            return set_err(err, NPVDB_STATUS_RESOURCE_EXHAUSTED,
                           "scroll: out of memory");
        memcpy(out->cursor, r->next_cursor.data, r->next_cursor.len);
        out->cursor_len = r->next_cursor.len;
    }
    npvdb_status rc = NPVDB_STATUS_OK;
    if (p->with_vectors)
        rc = page_vectors(&r->vectors, r->n_keys, p->dim, out, err);
    if (rc == NPVDB_STATUS_OK && p->with_payload)
        rc = take_payloads(bytes, 3, "scroll", out->n, &out->payloads_, err);
    return rc;
}

npvdb_status npvdb_client_scroll(npvdb_client *c,
                                 const npvdb_client_scroll_params *p,
                                 npvdb_client_page *page,
                                 npvdb_client_error *err)
{
    clear_err(err);
    if (!p || !page)
        return set_err(err, NPVDB_STATUS_INVALID_ARGUMENT,
                       "scroll: missing arguments");
    /* The cursor of a page that is not the last goes on; the rest of the
     * page is freed before the call. */
    uint8_t *cursor = page->done ? NULL : page->cursor;
    size_t cursor_len = page->done ? 0 : page->cursor_len;
    if (cursor) page->cursor = NULL;
    npvdb_client_page_free(page);
    Npvdb__V1__ScrollRequest req = NPVDB__V1__SCROLL_REQUEST__INIT;
    req.collection = c->collection; /* only read by pack */
    req.filter = filter_msg(p->filter);
    req.limit = p->limit;
    req.cursor.data = cursor;
    req.cursor.len = cursor_len;
    req.with_vectors = p->with_vectors != 0;
    req.with_payload = p->with_payload != 0;
    ProtobufCMessage *m = NULL;
    grpc_slice bytes;
    npvdb_status rc =
        unary_keep_bytes(c, "/npvdb.v1.VectorDB/Scroll", &req.base,
                         &npvdb__v1__scroll_reply__descriptor, &m, &bytes, err);
    free(cursor);
    if (rc != NPVDB_STATUS_OK) return rc;
    rc = copy_page((const Npvdb__V1__ScrollReply *)m, bytes, p, page, err);
    protobuf_c_message_free_unpacked(m, NULL);
    grpc_slice_unref(bytes);
    if (rc != NPVDB_STATUS_OK) npvdb_client_page_free(page);
    return rc;
}
