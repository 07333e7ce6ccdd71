/*
 * codec_wire.h -- protobuf wire-format primitives shared by the codec's
 * files (codec.c, codec_payload.c, codec_filter.c). Internal to the codec.
 */
#ifndef NPVDB_TRANSPORT_CODEC_WIRE_H
#define NPVDB_TRANSPORT_CODEC_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* protobuf's wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Reads a varint at buf[*pos..len); 0 on success, -1 if truncated/too long. */
static inline int read_varint(const uint8_t *buf, size_t len, size_t *pos,
                              uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Skips one field's payload of wire type `wt`; 0 on success. */
static inline int skip_field(const uint8_t *buf, size_t len, size_t *pos,
                             unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case WT_VARINT:
        return read_varint(buf, len, pos, &v);
    case WT_I64:
        if (len - *pos < 8) return -1;
        *pos += 8;
        return 0;
    case WT_I32:
        if (len - *pos < 4) return -1;
        *pos += 4;
        return 0;
    case WT_LEN:
        if (read_varint(buf, len, pos, &v) || v > len - *pos) return -1;
        *pos += (size_t)v;
        return 0;
    default: /* groups (3, 4) are not used by proto3 */
        return -1;
    }
}

/* One field as read by wire_next: number, wire type, and its value (v for
 * VARINT/I64/I32, p/len for LEN). */
typedef struct wire_item {
    uint64_t field;
    unsigned wt;
    uint64_t v;
    const uint8_t *p;
    size_t len;
} wire_item;

/* Reads the next field at buf[*pos..len) into *it; -1 when malformed. */
static inline int wire_next(const uint8_t *buf, size_t len, size_t *pos,
                            wire_item *it)
{
    uint64_t tag;
    if (read_varint(buf, len, pos, &tag) || (tag >> 3) == 0) return -1;
    it->field = tag >> 3;
    it->wt = (unsigned)(tag & 7);
    it->p = NULL;
    it->len = 0;
    it->v = 0;
    switch (it->wt) {
    case WT_VARINT:
        return read_varint(buf, len, pos, &it->v);
    case WT_I64:
        if (len - *pos < 8) return -1;
        memcpy(&it->v, buf + *pos, 8);
        *pos += 8;
        return 0;
    case WT_I32: {
        uint32_t u;
        if (len - *pos < 4) return -1;
        memcpy(&u, buf + *pos, 4);
        it->v = u;
        *pos += 4;
        return 0;
    }
    case WT_LEN: {
        uint64_t n;
        if (read_varint(buf, len, pos, &n) || n > len - *pos) return -1;
        it->p = buf + *pos;
        it->len = (size_t)n;
        *pos += (size_t)n;
        return 0;
    }
    default:
        return -1;
    }
}

static inline size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Tag byte of field f (< 16) with wire type wt. */
static inline uint8_t wire_tag(unsigned f, unsigned wt)
{
    return (uint8_t)(f << 3 | wt);
}

/* Bytes of a length-delimited field of field number < 16 holding n bytes. */
static inline size_t len_field_size(size_t n)
{
    return 1 + varint_size(n) + n;
}

#endif /* NPVDB_TRANSPORT_CODEC_WIRE_H */
