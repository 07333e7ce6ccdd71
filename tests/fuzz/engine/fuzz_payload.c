/*
 * fuzz_payload.c -- libFuzzer target for npvdb_payload_check, the one
 * validator of payload blobs. Any bytes must be accepted or refused without
 * a crash or an over-read; a blob that is accepted must read back with
 * npvdb_payload_next/item and re-encode (npvdb_payload_build) to the very
 * same bytes, since the format is canonical.
 */
#include "npvdb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void round_trip(const uint8_t *data, size_t size)
{
    npvdb_payload p = {data, (uint32_t)size};
    npvdb_field f[NPVDB_MAX_FIELDS];
    const char **items[NPVDB_MAX_FIELDS] = {0};
    uint32_t *lens[NPVDB_MAX_FIELDS] = {0};
    size_t pos = 0, n = 0;
    while (n < NPVDB_MAX_FIELDS && npvdb_payload_next(&p, &pos, &f[n])) {
        if (f[n].type == NPVDB_VALUE_STRINGS && f[n].n_items) {
            items[n] = malloc(f[n].n_items * sizeof *items[n]);
            lens[n] = malloc(f[n].n_items * sizeof *lens[n]);
            if (!items[n] || !lens[n]) abort();
            for (uint32_t j = 0; j < f[n].n_items; j++)
                npvdb_payload_item(&f[n], j, &items[n][j], &lens[n][j]);
            f[n].items = items[n];
            f[n].item_lens = lens[n];
        }
        n++;
    }
    if (pos != size) abort(); /* the walk covers the blob exactly */
    npvdb_payload q;
    npvdb_error err;
    if (npvdb_payload_build(f, n, &q, &err) != NPVDB_OK) abort();
    if (q.len != size || memcmp(q.data, data, size)) abort();
    free((void *)q.data);
    for (size_t i = 0; i < n; i++) {
        free(items[i]);
        free(lens[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npvdb_error err;
    /* A copy of exactly `size` bytes, so ASan sees any over-read. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (size && npvdb_payload_check(copy, size, &err) == NPVDB_OK)
        round_trip(copy, size);
    free(copy);
    return 0;
}
