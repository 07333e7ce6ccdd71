/*
 * fields.c -- stored payloads and the collection's field names.
 *
 * A row's payload is kept as a pstore: the canonical blob behind a small
 * table of (field id, value offset, type), one slot per field. Field ids
 * come from the collection's field map, which interns every field name a
 * payload ever carried; a filter is compiled to ids once per call, so
 * evaluating it on a row compares integers, never names. A name no stored
 * payload has gets no id, and conditions on it are false without a look.
 *
 * The map only grows (ids stay valid for pstores already stored). Writers
 * intern under the exclusive lock; searches look names up under the shared
 * one.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define NO_ID UINT32_MAX

/* ---- the field map: open addressing over ids ---- */

static uint32_t name_hash(const char *s, size_t n)
{
    return keymap_hash(s, n);
}

uint32_t fieldmap_find(const npvdb_fieldmap *m, const char *name, size_t len)
{
    if (!m->slots) return NO_ID;
    uint32_t h = name_hash(name, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t id = m->slots[i];
        if (id == NO_ID) return NO_ID;
        if (m->lens[id] == len && !memcmp(m->names[id], name, len)) return id;
    }
}

static int fieldmap_grow(npvdb_fieldmap *m)
{
    size_t nslots = m->slots ? (m->mask + 1) * 2 : 16;
    uint32_t cap = (uint32_t)(nslots / 2);
    uint32_t *slots = malloc(nslots * sizeof *slots);
    char **names = realloc(m->names, cap * sizeof *names);
    if (names) m->names = names;
    uint32_t *lens = realloc(m->lens, cap * sizeof *lens);
    if (lens) m->lens = lens;
    if (!slots || !names || !lens) {
        free(slots);
        return -1;
    }
    memset(slots, 0xff, nslots * sizeof *slots);
    for (uint32_t id = 0; id < m->n; id++) {
        size_t i = name_hash(m->names[id], m->lens[id]) & (nslots - 1);
        while (slots[i] != NO_ID)
            i = (i + 1) & (nslots - 1);
        slots[i] = id;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = nslots - 1;
    m->cap = cap;
    return 0;
}

/* The id of name, interned if new; NO_ID only when out of memory. */
static uint32_t fieldmap_intern(npvdb_fieldmap *m, const char *name, size_t len)
{
    uint32_t id = fieldmap_find(m, name, len);
    if (id != NO_ID) return id;
    if (m->n == m->cap && fieldmap_grow(m)) return NO_ID;
    char *copy = malloc(len ? len : 1);
    if (!copy) return NO_ID;
    memcpy(copy, name, len);
    id = m->n++;
    m->names[id] = copy;
    m->lens[id] = (uint32_t)len;
    size_t i = name_hash(name, len) & m->mask;
    while (m->slots[i] != NO_ID)
        i = (i + 1) & m->mask;
    m->slots[i] = id;
    return id;
}

void fieldmap_destroy(npvdb_fieldmap *m)
{
    for (uint32_t id = 0; id < m->n; id++)
        free(m->names[id]);
    free(m->names);
    free(m->lens);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

size_t fieldmap_memory(const npvdb_fieldmap *m)
{
    size_t b = m->slots ? (m->mask + 1) * sizeof *m->slots : 0;
    b += m->cap * (sizeof *m->names + sizeof *m->lens);
    for (uint32_t id = 0; id < m->n; id++)
        b += m->lens[id] + 16;
    return b;
}

/* ---- stored payloads ---- */

npvdb_pstore *pstore_new(const uint8_t *blob, uint32_t len, size_t row,
                         npvdb_error *err)
{
    uint32_t off[NPVDB_MAX_FIELDS];
    npvdb_error e;
    if (payload_scan(blob, len, off, &e)) {
        /* "payload: what" becomes "payload <row>: what". */
        const char *what = strncmp(e.msg, "payload: ", 9) ? e.msg : e.msg + 9;
        npvdb_set_error(err, e.code, "payload %zu: %s", row, what);
        return NULL;
    }
    uint32_t n = rd_u16(blob);
    npvdb_pstore *p = malloc(sizeof *p + n * sizeof p->slot[0] + len);
    if (!p) {
        npvdb_set_error(err, NPVDB_ENOMEM,
                        "out of memory for payload %zu (%u bytes)", row, len);
        return NULL;
    }
    p->len = len;
    p->n = (uint16_t)n;
    p->resolved = 0;
    uint8_t *b = (uint8_t *)(p->slot + n);
    memcpy(b, blob, len);
    for (uint32_t i = 0; i < n; i++) {
        /* Until resolved, fid holds the field's offset (its name). */
        p->slot[i].fid = off[i];
        p->slot[i].type = b[off[i]];
        p->slot[i].off = off[i] + 2 + b[off[i] + 1];
    }
    return p;
}

/* Interns the field names of p and replaces the offsets by ids; on failure
 * (memory) p is unchanged. `prev` (may be NULL) is the payload resolved
 * just before: batches mostly repeat one set of names, so its ids are
 * tried first by a compare, not a hash. */
int pstore_resolve(npvdb_pstore *p, npvdb_fieldmap *m, const npvdb_pstore *prev)
{
    if (p->resolved) return 0;
    const uint8_t *b = pstore_blob(p);
    uint32_t ids[NPVDB_MAX_FIELDS];
    for (uint32_t i = 0; i < p->n; i++) {
        uint32_t fo = p->slot[i].fid, nl = b[fo + 1];
        const char *name = (const char *)b + fo + 2;
        ids[i] = NO_ID;
        if (prev && i < prev->n) {
            uint32_t pid = prev->slot[i].fid;
            if (m->lens[pid] == nl && !memcmp(m->names[pid], name, nl))
                ids[i] = pid;
        }
        if (ids[i] == NO_ID) ids[i] = fieldmap_intern(m, name, nl);
        if (ids[i] == NO_ID) return -1;
    }
    for (uint32_t i = 0; i < p->n; i++)
        p->slot[i].fid = ids[i];
    p->resolved = 1;
    return 0;
}

size_t pstore_bytes(const npvdb_pstore *p)
{
    return p ? sizeof *p + p->n * sizeof p->slot[0] + p->len + 16 : 0;
}
