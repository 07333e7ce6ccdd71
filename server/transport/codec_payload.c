/*
 * codec_payload.c -- payloads between the wire and the canonical blob
 * (npvdb.h): InsertRequest.payloads -> blobs, and blob -> Payload message
 * bytes for every reply that carries payloads (Get, Scroll, Search,
 * GetClosest).
 *
 * The wire is read by hand rather than through protobuf-c: protobuf-c hands
 * strings over as C strings, which loses their length at an embedded NUL,
 * while a payload string may hold one. Every count and length is checked
 * before anything is allocated for it.
 */
#include "codec.h"
#include "codec_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers of the messages involved. */
enum { INSERT_PAYLOADS = 4 };
enum { PAYLOAD_FIELDS = 1 };
enum { ENTRY_KEY = 1, ENTRY_VALUE = 2 };
enum { V_STRING = 1, V_INT = 2, V_DOUBLE = 3, V_BOOL = 4, V_STRINGS = 5 };
enum { LIST_VALUES = 1 };

/* A field parsed from one map entry; a STRINGS list stays as its bytes
 * until the items have room. */
typedef struct parsed_field {
    npvdb_field f;
    const uint8_t *list;
    size_t list_len;
    int has_value;
} parsed_field;

static npvdb_code bad(npvdb_error *err, size_t i, const char *what)
{
    return npvdb_set_error(err, NPVDB_EINVAL, "payloads[%zu]: malformed %s", i,
                           what);
}

/* Counts the strings of a StringList message; -1 when malformed. */
static long count_list(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    long n = 0;
    wire_item it;
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return -1;
        if (it.field == LIST_VALUES) {
            if (it.wt != WT_LEN) return -1;
            n++;
        }
    }
    return n;
}

/* Reads a Value message into pf (the last kind given wins, as protobuf's
 * oneof does). */
static npvdb_code parse_value(const uint8_t *p, size_t len, size_t i,
                              parsed_field *pf, npvdb_error *err)
{
    size_t pos = 0;
    wire_item it;
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return bad(err, i, "Value");
        static const unsigned want[] = {0,      WT_LEN,    WT_VARINT,
                                        WT_I64, WT_VARINT, WT_LEN};
        if (it.field < V_STRING || it.field > V_STRINGS) continue;
        if (it.wt != want[it.field]) return bad(err, i, "Value");
        npvdb_field *f = &pf->f;
        pf->has_value = 1;
        switch (it.field) {
        case V_STRING:
            f->type = NPVDB_VALUE_STRING;
            if (it.len > NPVDB_MAX_STRING)
                return npvdb_set_error(
                    err, NPVDB_EINVAL,
                    "payloads[%zu] field '%.*s': string of %zu bytes is "
                    "longer than %d",
                    i, (int)f->name_len, f->name, it.len, NPVDB_MAX_STRING);
            f->s = (const char *)it.p;
            f->s_len = (uint32_t)it.len;
            break;
        case V_INT:
            f->type = NPVDB_VALUE_INT;
            f->i = (int64_t)it.v;
            break;
        case V_DOUBLE:
            f->type = NPVDB_VALUE_DOUBLE;
            memcpy(&f->d, &it.v, sizeof f->d);
            break;
        case V_BOOL:
            f->type = NPVDB_VALUE_BOOL;
            f->b = it.v != 0;
            break;
        case V_STRINGS: {
            long n = count_list(it.p, it.len);
            if (n < 0) return bad(err, i, "StringList");
            if (n > NPVDB_MAX_LIST)
                return npvdb_set_error(
                    err, NPVDB_EINVAL,
                    "payloads[%zu] field '%.*s': list of %ld strings is "
                    "longer than %d",
                    i, (int)f->name_len, f->name, n, NPVDB_MAX_LIST);
            f->type = NPVDB_VALUE_STRINGS;
            f->n_items = (uint32_t)n;
            pf->list = it.p;
            pf->list_len = it.len;
            break;
        }
        }
    }
    return NPVDB_OK;
}

/* Reads one map entry (key, Value). The key is read first wherever it
 * lies, so messages about the value can name it. */
static npvdb_code parse_entry(const uint8_t *p, size_t len, size_t i,
                              size_t index, parsed_field *pf, npvdb_error *err)
{
    size_t pos = 0;
    wire_item it, value = {0};
    int has_value = 0;
    memset(pf, 0, sizeof *pf);
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return bad(err, i, "map entry");
        if (it.field != ENTRY_KEY && it.field != ENTRY_VALUE) continue;
        if (it.wt != WT_LEN) return bad(err, i, "map entry");
        if (it.field == ENTRY_KEY) {
            pf->f.name = (const char *)it.p;
            pf->f.name_len =
                it.len > UINT32_MAX ? UINT32_MAX : (uint32_t)it.len;
        } else {
            value = it;
            has_value = 1;
        }
    }
    if (pf->f.name_len == 0 || pf->f.name_len > NPVDB_MAX_FIELD_NAME)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payloads[%zu]: field %zu has a name of %u "
                               "bytes: names are 1..%d bytes",
                               i, index, pf->f.name_len, NPVDB_MAX_FIELD_NAME);
    if (has_value) {
        npvdb_code rc = parse_value(value.p, value.len, i, pf, err);
        if (rc != NPVDB_OK) return rc;
    }
    if (!pf->has_value)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payloads[%zu] field '%.*s': value has nothing "
                               "set",
                               i, (int)pf->f.name_len, pf->f.name);
    return NPVDB_OK;
}

/* Points items[0..n) / lens at the strings of pf's list. */
static void fill_items(parsed_field *pf, const char **items, uint32_t *lens)
{
    size_t pos = 0, j = 0;
    wire_item it;
    while (pos < pf->list_len && !wire_next(pf->list, pf->list_len, &pos, &it))
        if (it.field == LIST_VALUES) {
            items[j] = (const char *)it.p;
            lens[j++] = (uint32_t)it.len;
        }
    pf->f.items = items;
    pf->f.item_lens = lens;
}

/* Builds the blob of the Payload message p[0..len), payload i. */
static npvdb_code build_one(const uint8_t *p, size_t len, size_t i,
                            npvdb_payload *out, npvdb_error *err)
{
    size_t pos = 0, n = 0, n_items = 0;
    wire_item it;
    parsed_field pf[NPVDB_MAX_FIELDS];
    while (pos < len) {
        if (wire_next(p, len, &pos, &it)) return bad(err, i, "Payload");
        if (it.field != PAYLOAD_FIELDS) continue;
        if (it.wt != WT_LEN) return bad(err, i, "Payload");
        if (n == NPVDB_MAX_FIELDS)
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "payloads[%zu]: more than %d fields", i,
                                   NPVDB_MAX_FIELDS);
        npvdb_code rc = parse_entry(it.p, it.len, i, n, &pf[n], err);
        if (rc != NPVDB_OK) return rc;
        if (pf[n].f.type == NPVDB_VALUE_STRINGS) n_items += pf[n].f.n_items;
        n++;
    }
    const char **items = NULL;
    uint32_t *lens = NULL;
    if (n_items) {
        items = malloc(n_items * sizeof *items);
        lens = malloc(n_items * sizeof *lens);
        if (!items || !lens) {
            free(items);
            free(lens);
            return npvdb_set_error(err, NPVDB_ENOMEM,
                                   "out of memory for payloads[%zu]", i);
        }
    }
    npvdb_field fields[NPVDB_MAX_FIELDS];
    for (size_t j = 0, at = 0; j < n; j++) {
        if (pf[j].f.type == NPVDB_VALUE_STRINGS && pf[j].f.n_items) {
            fill_items(&pf[j], items + at, lens + at);
            at += pf[j].f.n_items;
        }
        fields[j] = pf[j].f;
    }
    npvdb_error e = {0};
    npvdb_code rc = npvdb_payload_build(fields, n, out, &e);
    if (rc != NPVDB_OK) npvdb_set_error(err, rc, "payloads[%zu]: %s", i, e.msg);
    free(items);
    free(lens);
    return rc;
}

npvdb_code codec_decode_payloads(const uint8_t *buf, size_t len, size_t n_keys,
                                 npvdb_payload **out, npvdb_error *err)
{
    *out = NULL;
    size_t pos = 0, n = 0;
    wire_item it;
    while (pos < len) {
        if (wire_next(buf, len, &pos, &it))
            return npvdb_set_error(err, NPVDB_EINVAL,
                                   "malformed InsertRequest (%zu bytes)", len);
        if (it.field == INSERT_PAYLOADS) n++;
    }
    if (n == 0) return NPVDB_OK;
    if (n != n_keys)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "payloads has %zu entries for %zu keys: send "
                               "one per key, or none",
                               n, n_keys);
    npvdb_payload *p = calloc(n, sizeof *p);
    if (!p)
        return npvdb_set_error(err, NPVDB_ENOMEM,
                               "out of memory for %zu payloads", n);
    pos = 0;
    for (size_t i = 0; pos < len;) {
        wire_next(buf, len, &pos, &it); /* well-formed: walked above */
        if (it.field != INSERT_PAYLOADS) continue;
        if (it.wt != WT_LEN) {
            codec_payloads_free(p, n);
            return bad(err, i, "Payload");
        }
        npvdb_code rc = build_one(it.p, it.len, i, &p[i], err);
        if (rc != NPVDB_OK) {
            codec_payloads_free(p, n);
            return rc;
        }
        i++;
    }
    *out = p;
    return NPVDB_OK;
}

void codec_payloads_free(npvdb_payload *p, size_t n)
{
    if (!p) return;
    for (size_t i = 0; i < n; i++)
        free((void *)p[i].data);
    free(p);
}

/* ---- blob -> Payload message ---- */

/* Bytes of the StringList message of a STRINGS field. */
static size_t list_size(const npvdb_field *f)
{
    size_t n = 0;
    for (uint32_t j = 0; j < f->n_items; j++) {
        const char *s;
        uint32_t l;
        npvdb_payload_item(f, j, &s, &l);
        n += len_field_size(l);
    }
    return n;
}

/* Bytes of the Value message of field f. */
static size_t value_size(const npvdb_field *f)
{
    switch (f->type) {
    case NPVDB_VALUE_STRING:
        return len_field_size(f->s_len);
    case NPVDB_VALUE_INT:
        return 1 + varint_size((uint64_t)f->i);
    case NPVDB_VALUE_DOUBLE:
        return 1 + 8;
    case NPVDB_VALUE_BOOL:
        return 2;
    case NPVDB_VALUE_STRINGS:
        return len_field_size(list_size(f));
    }
    return 0;
}

static size_t entry_size(const npvdb_field *f)
{
    return len_field_size(f->name_len) + len_field_size(value_size(f));
}

size_t codec_payload_size(const npvdb_payload *p)
{
    size_t pos = 0, n = 0;
    npvdb_field f;
    while (npvdb_payload_next(p, &pos, &f))
        n += len_field_size(entry_size(&f));
    return n;
}

static uint8_t *put_bytes(uint8_t *o, unsigned field, const void *s, size_t n)
{
    *o++ = wire_tag(field, WT_LEN);
    o = put_varint(o, n);
    if (n) memcpy(o, s, n);
    return o + n;
}

static uint8_t *put_value(uint8_t *o, const npvdb_field *f)
{
    switch (f->type) {
    case NPVDB_VALUE_STRING:
        return put_bytes(o, V_STRING, f->s, f->s_len);
    case NPVDB_VALUE_INT:
        *o++ = wire_tag(V_INT, WT_VARINT);
        return put_varint(o, (uint64_t)f->i);
    case NPVDB_VALUE_DOUBLE:
        *o++ = wire_tag(V_DOUBLE, WT_I64);
        memcpy(o, &f->d, 8);
        return o + 8;
    case NPVDB_VALUE_BOOL:
        *o++ = wire_tag(V_BOOL, WT_VARINT);
        *o++ = (uint8_t)(f->b != 0);
        return o;
    case NPVDB_VALUE_STRINGS: {
        *o++ = wire_tag(V_STRINGS, WT_LEN);
        o = put_varint(o, list_size(f));
        for (uint32_t j = 0; j < f->n_items; j++) {
            const char *s;
            uint32_t l;
            npvdb_payload_item(f, j, &s, &l);
            o = put_bytes(o, LIST_VALUES, s, l);
        }
        return o;
    }
    }
    return o;
}

uint8_t *codec_payload_put(const npvdb_payload *p, uint8_t *o)
{
    size_t pos = 0;
    npvdb_field f;
    while (npvdb_payload_next(p, &pos, &f)) {
        *o++ = wire_tag(PAYLOAD_FIELDS, WT_LEN);
        o = put_varint(o, entry_size(&f));
        o = put_bytes(o, ENTRY_KEY, f.name, f.name_len);
        *o++ = wire_tag(ENTRY_VALUE, WT_LEN);
        o = put_varint(o, value_size(&f));
        o = put_value(o, &f);
    }
    return o;
}

size_t codec_payloads_field_size(const npvdb_payload *p, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += len_field_size(codec_payload_size(&p[i]));
    return total;
}

uint8_t *codec_payloads_field_put(const npvdb_payload *p, size_t n,
                                  unsigned field, uint8_t *o)
{
    for (size_t i = 0; i < n; i++) {
        *o++ = wire_tag(field, WT_LEN);
        o = put_varint(o, codec_payload_size(&p[i]));
        o = codec_payload_put(&p[i], o);
    }
    return o;
}
