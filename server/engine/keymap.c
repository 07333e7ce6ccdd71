/*
 * keymap.c -- key -> entry, a chained hash table in the style of Redis's
 * dict.c but without incremental rehash: it only grows during an insert,
 * before the apply step, so the stall lands on a writer, never on a search.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define KEYMAP_MIN_BUCKETS 64

int keymap_init(npvdb_keymap *m)
{
    m->buckets = calloc(KEYMAP_MIN_BUCKETS, sizeof *m->buckets);
    if (!m->buckets) return -1;
    m->mask = KEYMAP_MIN_BUCKETS - 1;
    m->count = 0;
    m->entry_bytes = 0;
    return 0;
}

void keymap_destroy(npvdb_keymap *m)
{
    if (!m->buckets) return;
    for (size_t b = 0; b <= m->mask; b++) {
        npvdb_entry *e = m->buckets[b];
        while (e) {
            npvdb_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->count = 0;
    m->entry_bytes = 0;
}

/* FNV-1a: keys are short strings; good enough spread, no seed needed since
 * chains only cost time, never correctness. */
uint32_t keymap_hash(const char *key, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 16777619u;
    }
    return h;
}

npvdb_entry *keymap_find(const npvdb_keymap *m, const char *key, size_t len,
                         uint32_t hash)
{
    for (npvdb_entry *e = m->buckets[hash & m->mask]; e; e = e->next)
        if (e->hash == hash && e->len == len && !memcmp(e->key, key, len))
            return e;
    return NULL;
}

static void rehash(npvdb_keymap *m, npvdb_entry **nb, size_t nmask)
{
    for (size_t b = 0; b <= m->mask; b++) {
        npvdb_entry *e = m->buckets[b];
        while (e) {
            npvdb_entry *next = e->next;
            e->next = nb[e->hash & nmask];
            nb[e->hash & nmask] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = nb;
    m->mask = nmask;
}

int keymap_reserve(npvdb_keymap *m, size_t extra)
{
    size_t want = m->count + extra, nbuckets = m->mask + 1;
    if (want <= nbuckets) return 0;
    while (nbuckets < want)
        nbuckets *= 2;
    npvdb_entry **nb = calloc(nbuckets, sizeof *nb);
    if (!nb) return -1;
    rehash(m, nb, nbuckets - 1);
    return 0;
}

void keymap_shrink(npvdb_keymap *m)
{
    size_t nbuckets = m->mask + 1;
    if (nbuckets <= KEYMAP_MIN_BUCKETS || m->count >= nbuckets / 8) return;
    while (nbuckets > KEYMAP_MIN_BUCKETS && nbuckets / 2 >= 2 * m->count)
        nbuckets /= 2;
    npvdb_entry **nb = calloc(nbuckets, sizeof *nb);
    if (nb) rehash(m, nb, nbuckets - 1); /* else keep the larger table */
}

void keymap_add(npvdb_keymap *m, npvdb_entry *e)
{
    size_t b = e->hash & m->mask;
    e->next = m->buckets[b];
    m->buckets[b] = e;
    m->count++;
    m->entry_bytes += ENTRY_BYTES(e->len);
}

void keymap_unlink(npvdb_keymap *m, npvdb_entry *e)
{
    npvdb_entry **p = &m->buckets[e->hash & m->mask];
    while (*p && *p != e)
        p = &(*p)->next;
    if (*p) {
        *p = e->next;
        m->count--;
        m->entry_bytes -= ENTRY_BYTES(e->len);
    }
}

npvdb_entry *entry_new(const char *key, size_t len, uint32_t hash)
{
    npvdb_entry *e = malloc(sizeof *e + len + 1);
    if (!e) return NULL;
    e->next = NULL;
    e->hash = hash;
    e->shard = 0;
    e->row = 0;
    e->len = (uint32_t)len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    return e;
}

/* An estimate: malloc adds about 16 bytes per block. */
size_t keymap_memory(const npvdb_keymap *m)
{
    return (m->mask + 1) * sizeof *m->buckets + m->entry_bytes;
}
