/*
 * shard.c -- the rows of one Voronoi cell: vectors contiguous and 64-byte
 * aligned for sgemm, their squared norms, and the entry of each row.
 *
 * Growth is by 1/16 (at least 16 rows) on malloc, not doubling: the memory
 * budget is 1.3x the raw vectors, and a doubling shard would waste up to half
 * of it. A mapped shard doubles instead: its untouched pages are never made
 * resident, so the reserve costs address space only, and each mremap step is
 * a system call plus page-table moves (with 1/16 steps, a bulk load spent a
 * tenth of its time in mremap).
 *
 * Rows of 16 KiB and up live in their own anonymous mapping grown with
 * mremap: with thousands of shards growing in turn, malloc'ed blocks that
 * only ever get bigger leave freed holes nothing else fits into (measured:
 * resident size 2.5x the data). Pages move instead of bytes, and a grown
 * shard leaves no hole behind. Small shards stay on malloc so that 65536
 * tiny shards do not exhaust the process's mapping count; if a mapping
 * fails anyway, malloc takes over.
 *
 * Shrinking: a shard that deletes leave under a quarter full gives the
 * rest back (shard_shrink, after a delete batch): a mapping is cut with
 * mremap (its tail pages go back to the kernel at once, resident or not),
 * a malloc'ed block is copied into a smaller one, and an empty shard frees
 * everything. Shrinking to an eighth above the rows left, and only below a
 * quarter, keeps a shard that shrinks and grows again from copying on
 * every batch.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAP_MIN_BYTES (16u << 10)
#define MAP_FIRST_BYTES (64u << 10)

static void *aligned_copy(const void *old, size_t old_bytes, size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    if (old_bytes) memcpy(p, old, old_bytes);
    return p;
}

static void rows_release(float *rows, size_t bytes, bool mapped)
{
    if (mapped)
        munmap(rows, bytes);
    else
        free(rows);
}

/* New row storage of at least `bytes` holding the old rows; *bytes and
 * *mapped describe it. NULL on failure, the old storage untouched. */
static float *rows_resize(npvdb_shard *s, size_t used, size_t *bytes,
                          bool *mapped)
{
    if (*bytes >= MAP_MIN_BYTES) {
        size_t want = *bytes;
        void *p = s->mapped
                      ? mremap(s->rows, s->rows_bytes, want, MREMAP_MAYMOVE)
                      : mmap(NULL, want, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            if (!s->mapped && used) memcpy(p, s->rows, used);
            if (!s->mapped) free(s->rows);
            *bytes = want;
            *mapped = true;
            return p;
        }
    }
    float *p = aligned_copy(s->rows, used, *bytes);
    if (p) {
        rows_release(s->rows, s->rows_bytes, s->mapped);
        *mapped = false;
    }
    return p;
}

int shard_reserve(npvdb_shard *s, size_t extra, uint32_t dim)
{
    size_t want = s->n + extra;
    if (want <= s->cap) return 0;
    size_t rb = (size_t)dim * sizeof(float);
    size_t cap = s->mapped ? s->cap * 2 : s->cap + s->cap / 16;
    if (cap < s->cap + 16) cap = s->cap + 16;
    if (cap < want) cap = want;
    size_t bytes = cap * rb;
    /* A new mapping reserves room to grow (address space only, see top). */
    if (bytes >= MAP_MIN_BYTES && !s->mapped && bytes < MAP_FIRST_BYTES) {
        bytes = MAP_FIRST_BYTES;
        cap = bytes / rb;
    }
    if (bytes >= MAP_MIN_BYTES) { /* a mapping's last page holds more rows */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        bytes = (bytes + page - 1) / page * page;
        cap = bytes / rb;
    }
    /* Index arrays first: if they fail, the shard keeps its capacity. */
    float *norms = realloc(s->sqnorms, cap * sizeof *norms);
    if (!norms) return -1;
    s->sqnorms = norms;
    npvdb_entry **ents = realloc(s->entries, cap * sizeof *ents);
    if (!ents) return -1;
    s->entries = ents;
    npvdb_pstore **pay = realloc(s->pay, cap * sizeof *pay);
    if (!pay) return -1;
    s->pay = pay;
    bool mapped = false;
    float *rows = rows_resize(s, s->n * rb, &bytes, &mapped);
    if (!rows) return -1;
    s->rows = rows;
    s->rows_bytes = bytes;
    s->mapped = mapped;
    s->cap = cap;
    return 0;
}

/* Below this capacity a shard that still holds rows is left alone: a few
 * KiB at most. */
#define SHRINK_MIN_CAP 64

/* Rows storage for the first `used` bytes in about `bytes`: the mapping cut
 * (or moved to malloc when that is small), or a smaller malloc'ed block.
 * 0 on success; on failure the shard keeps what it had. */
static int rows_shrink(npvdb_shard *s, size_t used, size_t bytes)
{
    if (s->mapped && bytes >= MAP_MIN_BYTES) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        bytes = (bytes + page - 1) / page * page;
        if (bytes >= s->rows_bytes) return 0;
        void *p = mremap(s->rows, s->rows_bytes, bytes, 0); /* in place */
        if (p == MAP_FAILED) return -1;
        s->rows_bytes = bytes;
        return 0;
    }
    float *p = aligned_copy(s->rows, used, bytes);
    if (!p) return -1;
    rows_release(s->rows, s->rows_bytes, s->mapped);
    s->rows = p;
    s->rows_bytes = bytes;
    s->mapped = false;
    return 0;
}

/* Shrinks one index array to cap entries of size sz; a failed realloc
 * keeps the larger block, which is as good. */
static void *array_shrink(void *p, size_t cap, size_t sz)
{
    void *q = realloc(p, cap * sz);
    return q ? q : p;
}

void shard_shrink(npvdb_shard *s, uint32_t dim)
{
    if (s->n == 0 && s->cap) {
        shard_free(s);
        return;
    }
    if (s->cap < SHRINK_MIN_CAP || s->n >= s->cap / 4) return;
    size_t cap = s->n + s->n / 8 + 16, rb = (size_t)dim * sizeof(float);
    if (rows_shrink(s, s->n * rb, cap * rb)) return;
    if (s->mapped && s->rows_bytes / rb < s->cap)
        cap = s->rows_bytes / rb; /* the last page's rows too */
    if (cap >= s->cap) return;
    s->sqnorms = array_shrink(s->sqnorms, cap, sizeof *s->sqnorms);
    s->entries = array_shrink(s->entries, cap, sizeof *s->entries);
    s->pay = array_shrink(s->pay, cap, sizeof *s->pay);
    s->cap = cap;
}

void shard_free(npvdb_shard *s)
{
    if (s->rows) rows_release(s->rows, s->rows_bytes, s->mapped);
    free(s->sqnorms);
    free(s->entries);
    free(s->pay);
    memset(s, 0, sizeof *s);
}

void shard_free_payloads(npvdb_shard *s)
{
    for (size_t r = 0; r < s->n; r++) {
        free(s->pay[r]);
        s->pay[r] = NULL;
    }
}

void shard_set(npvdb_shard *s, uint32_t dim, size_t row, const float *v,
               float sqnorm)
{
    memcpy(s->rows + row * dim, v, dim * sizeof(float));
    s->sqnorms[row] = sqnorm;
}

void shard_push(npvdb_shard *s, uint32_t dim, npvdb_entry *e, const float *row,
                float sqnorm, npvdb_pstore *pay)
{
    size_t r = s->n++;
    shard_set(s, dim, r, row, sqnorm);
    s->entries[r] = e;
    s->pay[r] = pay;
}

void shard_append(npvdb_shard *s, uint32_t id, uint32_t dim, npvdb_entry *e,
                  const float *row, float sqnorm, npvdb_pstore *pay)
{
    shard_push(s, dim, e, row, sqnorm, pay);
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
        s->pay[row] = s->pay[last];
        s->entries[row]->row = (uint32_t)row;
    }
}

/* A mapping counts by its touched pages, the part that is resident. */
size_t shard_memory(const npvdb_shard *s, uint32_t dim)
{
    size_t rows = s->rows_bytes;
    if (s->mapped) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        rows = (s->n * dim * sizeof(float) + page - 1) / page * page;
    }
    return rows + s->cap * (sizeof(float) + sizeof(npvdb_entry *) +
                            sizeof(npvdb_pstore *));
}
