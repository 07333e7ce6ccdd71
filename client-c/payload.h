/*
 * payload.h -- the representation of npvdb_client_payload shared by the
 * builder (payload.c), the reply decoder (reply.c) and the insert encoder
 * (client.c). Internal to the client library.
 *
 * Both kinds keep their fields sorted by name bytes (memcmp, then length),
 * so _find is a binary search and a name is there at most once:
 *   - builder payloads (npvdb_client_payload_new): fields[] grows; each
 *     field's name and strings live in blocks[i], one malloc per field;
 *   - reply payloads (npvdb_payload_block_new): the struct, its fields,
 *     list pointers, lengths and bytes are one malloc, freed with free().
 */
#ifndef NPVDB_CLIENT_PAYLOAD_H
#define NPVDB_CLIENT_PAYLOAD_H

#include "npvdb_client.h"

#include <stddef.h>
#include <stdint.h>

struct npvdb_client_payload {
    size_t n, cap;
    npvdb_client_field *fields;
    void **blocks; /* builder: one per field; NULL for a reply payload */
    int builder;
};

/* Bytes of the Payload message of p (NULL: an empty one). */
size_t npvdb_payload_size(const npvdb_client_payload *p);

/* Writes p as field `field` (tag, length, Payload message) at o, which has
 * room for 1 + 10 + npvdb_payload_size(p) bytes; returns the end. */
uint8_t *npvdb_payload_put(uint8_t *o, uint32_t field,
                           const npvdb_client_payload *p);

/* Bytes a varint of v takes. */
size_t npvdb_varint_size(uint64_t v);

/* Sorts p's fields by name; 0, or -1 when two fields share a name (the
 * index of the first of them in *dup). */
int npvdb_payload_sort(npvdb_client_payload *p, size_t *dup);

/* Frees a reply payload or a builder one (NULL allowed). */
void npvdb_payload_release(npvdb_client_payload *p);

/* Frees n payloads of an array and the array (NULL allowed). */
void npvdb_payloads_release(npvdb_client_payload **v, size_t n);

#endif /* NPVDB_CLIENT_PAYLOAD_H */
