/*
 * db.c -- the transport's access to the catalog: names checked and
 * resolved, collections held for a call, waiting for the log, and replies
 * that carry payloads. The write sequence itself lives in the catalog only.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(CODEC_MAX_NAME == CATALOG_MAX_NAME,
               "the codec bounds names as the catalog does");

int nt_check_name(const codec_name *name, nt_result *res)
{
    npvdb_error err = {0};
    if (catalog_check_name(name->s, name->len, &err) != NPVDB_OK) {
        nt_result_error(res, &err);
        return 0;
    }
    return 1;
}

const char *nt_name(const codec_name *name)
{
    return name->len ? name->s : CATALOG_DEFAULT;
}

int nt_acquire(npvdb_server *s, const codec_name *name, catalog_ref *ref,
               nt_result *res)
{
    npvdb_error err = {0};
    memset(ref, 0, sizeof *ref);
    if (!nt_check_name(name, res)) return 0;
    if (catalog_acquire(s->cat, nt_name(name), ref, &err) != NPVDB_OK) {
        memset(ref, 0, sizeof *ref);
        nt_result_error(res, &err); /* NOT_FOUND names the collection */
        return 0;
    }
    return 1;
}

void nt_release(npvdb_server *s, catalog_ref *ref)
{
    if (ref->coll) catalog_release(s->cat, ref);
    memset(ref, 0, sizeof *ref);
}

void nt_wait_durable(npvdb_server *s, uint64_t seq, nt_result *res)
{
    if (seq == 0) return;
    npvdb_error err = {0};
    if (catalog_wait_durable(s->cat, seq, &err) != NPVDB_OK)
        nt_result_fail(res, GRPC_STATUS_INTERNAL, "write-ahead log: %s",
                       err.msg);
}

int nt_metric_to_proto(npvdb_metric m)
{
    switch (m) {
    case NPVDB_METRIC_L2:
        return NPVDB__V1__METRIC__L2;
    case NPVDB_METRIC_IP:
        return NPVDB__V1__METRIC__INNER_PRODUCT;
    case NPVDB_METRIC_COSINE:
    default:
        return NPVDB__V1__METRIC__COSINE;
    }
}

void nt_result_pack_payloads(npvdb_server *s, nt_result *res,
                             const ProtobufCMessage *m,
                             const npvdb_payload *payloads, size_t n,
                             unsigned field)
{
    size_t head = protobuf_c_message_get_packed_size(m);
    size_t tail = payloads ? codec_payloads_field_size(payloads, n) : 0;
    if (head + tail > s->max_message) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "the reply would be %zu bytes, over the %zu-byte "
                       "message limit: ask for fewer keys per call",
                       head + tail, s->max_message);
        return;
    }
    uint8_t *buf = malloc(head + tail ? head + tail : 1);
    if (!buf) {
        nt_result_fail(res, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory for a reply of %zu bytes", head + tail);
        return;
    }
    protobuf_c_message_pack(m, buf);
    if (payloads) codec_payloads_field_put(payloads, n, field, buf + head);
    grpc_slice sl = grpc_slice_new(buf, head + tail, free);
    res->reply = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
}
