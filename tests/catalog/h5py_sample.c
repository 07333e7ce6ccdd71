/*
 * h5py_sample.c -- writes a small data directory with a snapshot holding
 * payloads, for h5py_check.py to read as a user would: keys k0..k9 (dim 2)
 * in collection "docs", payload {tenant: i} plus {name: "n<i>"} for even i
 * and {tags: ["a", "b<i>"]} for i % 3 == 0; and an empty collection "e".
 */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const npvdb_error *e)
{
    fprintf(stderr, "%s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    npvdb_store_config sc = {.data_dir = argv[1], .n_workers = 1};
    npvdb_error err = {0};
    npvdb_store *s = npvdb_store_open(&sc, NULL, &err);
    if (!s) return fail("open", &err);
    catalog_config cc = {.store = s};
    npvdb_catalog *cat = catalog_open(&cc, &err);
    npvdb_config cfg = {.dim = 2, .metric = NPVDB_METRIC_L2};
    if (!cat ||
        catalog_create(cat, "docs", &cfg, NULL, 0, 0, NULL, NULL, &err) ||
        catalog_create(cat, "e", &cfg, NULL, 0, 0, NULL, NULL, &err))
        return fail("create", &err);
    char kb[10][8], nb[10][8], tb[10][8];
    const char *keys[10];
    float rows[20];
    npvdb_payload pl[10];
    for (int i = 0; i < 10; i++) {
        snprintf(kb[i], sizeof kb[i], "k%d", i);
        snprintf(nb[i], sizeof nb[i], "n%d", i);
        snprintf(tb[i], sizeof tb[i], "b%d", i);
        keys[i] = kb[i];
        rows[2 * i] = (float)i;
        rows[2 * i + 1] = -(float)i;
        const char *items[2] = {"a", tb[i]};
        uint32_t lens[2] = {1, (uint32_t)strlen(tb[i])};
        npvdb_field f[3] = {
            {.name = "tenant", .name_len = 6, .type = NPVDB_VALUE_INT, .i = i}};
        size_t n = 1;
        if (i % 2 == 0)
            f[n++] = (npvdb_field){.name = "name",
                                   .name_len = 4,
                                   .type = NPVDB_VALUE_STRING,
                                   .s = nb[i],
                                   .s_len = (uint32_t)strlen(nb[i])};
        if (i % 3 == 0)
            f[n++] = (npvdb_field){.name = "tags",
                                   .name_len = 4,
                                   .type = NPVDB_VALUE_STRINGS,
                                   .n_items = 2,
                                   .items = items,
                                   .item_lens = lens};
        if (npvdb_payload_build(f, n, &pl[i], &err)) return fail("build", &err);
    }
    catalog_ref ref;
    npvdb_batch *b = NULL;
    uint64_t seq;
    npvdb_snapshot_info info;
    if (catalog_acquire(cat, "docs", &ref, &err) ||
        npvdb_upsert_prepare(ref.coll, keys, rows, pl, 10, &b, &err) ||
        catalog_insert(cat, &ref, b, keys, rows, pl, 10, NULL, &seq, &err) ||
        catalog_wait_durable(cat, seq, &err))
        return fail("insert", &err);
    npvdb_batch_free(b);
    catalog_release(cat, &ref);
    if (catalog_snapshot(cat, &info, &err)) return fail("snapshot", &err);
    printf("%s\n", info.path);
    for (int i = 0; i < 10; i++)
        free((void *)pl[i].data);
    catalog_close(cat);
    npvdb_store_close(s);
    return 0;
}
