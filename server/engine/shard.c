/*
 * shard.c -- the rows of one Voronoi cell: vectors contiguous and 64-byte
 * aligned for sgemm, their squared norms, and the entry of each row.
 *
 * Growth is by 1/8 (at least 16 rows), not doubling: the memory budget is
 * 1.3x the raw vectors, and a doubling shard would waste up to half of it.
 * The amortised copy cost stays O(1) per row.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static void *aligned_copy(const void *old, size_t old_bytes, size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    if (old_bytes) memcpy(p, old, old_bytes);
    return p;
}

int shard_reserve(npvdb_shard *s, size_t extra, uint32_t dim)
{
    size_t want = s->n + extra;
    if (want <= s->cap) return 0;
    size_t cap = s->cap + s->cap / 8;
    if (cap < s->cap + 16) cap = s->cap + 16;
    if (cap < want) cap = want;
    size_t rb = (size_t)dim * sizeof(float);
    float *rows = aligned_copy(s->rows, s->n * rb, cap * rb);
    float *norms = realloc(s->sqnorms, cap * sizeof *norms);
    if (norms) s->sqnorms = norms;
    npvdb_entry **ents = realloc(s->entries, cap * sizeof *ents);
    if (ents) s->entries = ents;
    if (!rows || !norms || !ents) {
        free(rows); /* the old arrays stay valid at the old capacity */
        return -1;
    }
    free(s->rows);
    s->rows = rows;
    s->cap = cap;
    return 0;
}

void shard_free(npvdb_shard *s)
{
    free(s->rows);
    free(s->sqnorms);
    free(s->entries);
    memset(s, 0, sizeof *s);
}

void shard_set(npvdb_shard *s, uint32_t dim, size_t row, const float *v)
{
    float *dst = s->rows + row * dim;
    memcpy(dst, v, dim * sizeof *dst);
    rows_sqnorms(dst, 1, dim, &s->sqnorms[row]);
}

void shard_push(npvdb_shard *s, uint32_t dim, npvdb_entry *e, const float *row)
{
    size_t r = s->n++;
    shard_set(s, dim, r, row);
    s->entries[r] = e;
}

void shard_append(npvdb_shard *s, uint32_t id, uint32_t dim, npvdb_entry *e,
                  const float *row)
{
    shard_push(s, dim, e, row);
    e->shard = id;
    e->row = (uint32_t)(s->n - 1);
}

void shard_remove(npvdb_shard *s, uint32_t dim, size_t row)
{
    size_t last = --s->n;
    if (row != last) {
        memcpy(s->rows + row * dim, s->rows + last * dim, dim * sizeof(float));
        s->sqnorms[row] = s->sqnorms[last];
        s->entries[row] = s->entries[last];
        s->entries[row]->row = (uint32_t)row;
    }
}

size_t shard_memory(const npvdb_shard *s, uint32_t dim)
{
    return s->cap * ((size_t)dim * sizeof(float) + sizeof(float) +
                     sizeof(npvdb_entry *));
}
