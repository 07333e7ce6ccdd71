/*
 * fuzz_snapshot.c -- libFuzzer target for the snapshot reader (snap_read).
 *
 * Raw bytes would mostly fuzz libhdf5's own file parser, which is not ours
 * to fix. Instead the input drives a generator that writes a well-formed
 * HDF5 file whose CONTENT is hostile: attribute values, dataset shapes,
 * shard offsets, keys (any bytes), vectors (NaN, Inf), missing pieces, and
 * checksums that are either right (to get past them) or fuzzed. snap_read
 * must refuse or restore, never crash, leak or hand out a half collection.
 */
#include "crc32c.h"
#include "snapshot.h"

#include <hdf5.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct src {
    const uint8_t *p;
    size_t n;
} src;

static uint64_t take(src *s, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = v << 8 | (s->n ? *s->p : 0);
        if (s->n) {
            s->p++;
            s->n--;
        }
    }
    return v;
}

static void put_u64(hid_t f, const char *name, uint64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void put_ds(hid_t f, const char *name, hid_t ftype, hid_t mtype,
                   int rank, hsize_t r, hsize_t c, const void *buf)
{
    hsize_t dims[2] = {r, c};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d =
        H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (r && c) H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    H5Sclose(sp);
}

static void put_str_attr(hid_t loc, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* One payload column (flag 2097152) of a fuzzed type, rows, values and
 * strings, with the right checksum unless flag 4194304. */
static void put_payload(hid_t f, src *s, hid_t str_type, uint32_t n_rows,
                        uint64_t flags)
{
    static const char *const types[] = {
        "int", "double", "bool", "string", "strings", "string_bytes", "x"};
    const char *type = types[take(s, 1) % 7];
    uint32_t n = (uint32_t)take(s, 1) % 8;
    uint64_t rows[8], vals[8], off[9];
    char sbuf[16][4];
    const char *strs[16];
    uint32_t crc = 0;
    for (uint32_t i = 0; i < n; i++)
        rows[i] = (flags & 8388608) ? take(s, 1) % 16 : i;
    crc = npvdb_crc32c(0, rows, n * 8);
    for (uint32_t i = 0; i < n; i++)
        vals[i] = take(s, 8);
    int is_str = type[0] == 's';
    int is_list = strcmp(type, "strings") == 0;
    uint32_t n_str = n;
    off[0] = 0;
    for (uint32_t i = 0; is_list && i < n; i++)
        off[i + 1] = off[i] + take(s, 1) % 3;
    if (is_list) n_str = (uint32_t)off[n];
    for (uint32_t i = 0; is_str && i < n_str && i < 16; i++) {
        uint32_t l = (uint32_t)take(s, 1) % 4;
        for (uint32_t j = 0; j < l; j++)
            sbuf[i][j] = (char)(take(s, 1) | 1);
        sbuf[i][l < 3 ? l : 3] = 0;
        strs[i] = sbuf[i];
        crc = npvdb_crc32c(crc, sbuf[i], strlen(sbuf[i]) + 1);
    }
    if (n_str > 16) n_str = 16;
    if (is_list) crc = npvdb_crc32c(crc, off, (n + 1) * 8);
    if (!is_str) crc = npvdb_crc32c(crc, vals, n * 8);
    hid_t g = H5Gcreate2(f, "payload", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t c = H5Gcreate2(g, "0", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put_str_attr(c, "field", (flags & 16777216) ? "" : "fld");
    put_str_attr(c, "type", type);
    put_u64(c, "n", n);
    put_u64(c, "crc32c", (flags & 4194304) ? take(s, 4) : crc);
    put_ds(c, "rows", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, n, 1, rows);
    if (!is_str)
        put_ds(c, "values",
               type[0] == 'd'   ? H5T_IEEE_F64LE
               : type[0] == 'b' ? H5T_STD_U8LE
                                : H5T_STD_I64LE,
               type[0] == 'd'   ? H5T_NATIVE_DOUBLE
               : type[0] == 'b' ? H5T_NATIVE_UINT8
                                : H5T_NATIVE_INT64,
               1, n, 1, vals);
    else
        put_ds(c, "values", str_type, str_type, 1, n_str, 1, strs);
    if (is_list)
        put_ds(c, "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, n + 1, 1,
               off);
    H5Gclose(c);
    H5Gclose(g);
    put_u64(f, "n_payload_columns", (flags & 33554432) ? take(s, 1) % 3 : 1);
    (void)n_rows;
}

typedef struct got {
    uint32_t n;
    int colls;
} got;

/* Each restored collection: never more rows than the file holds. */
static npvdb_code on_coll(void *ctx, const char *name, npvdb_collection *c,
                          const npvdb_config *cfg, npvdb_error *err)
{
    got *g = ctx;
    (void)cfg;
    if (!name[0]) abort();
    npvdb_stats stats;
    if (npvdb_stats_get(c, &stats, err) == NPVDB_OK) {
        if (stats.n_vectors > g->n) abort();
        npvdb_stats_free(&stats);
    }
    g->colls++;
    npvdb_free(c);
    return NPVDB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    src s = {data, size};
    uint64_t flags = take(&s, 4);
    uint32_t dim = 1 + (uint32_t)take(&s, 1) % 4;
    uint32_t n_shards = 1 + (uint32_t)take(&s, 1) % 3;
    uint32_t n = (uint32_t)take(&s, 1) % 12;
    int trained = (int)(flags & 1);
    /* Offsets: valid split of n, or raw values. */
    uint64_t off[5] = {0};
    for (uint32_t i = 1; i <= n_shards; i++)
        off[i] = (flags & 2)
                     ? take(&s, 1) % 16
                     : (i == n_shards
                            ? n
                            : off[i - 1] + take(&s, 1) % (n + 1 - off[i - 1]));
    float vec[12 * 4], cent[3 * 4];
    memset(vec, 0, sizeof vec);
    memset(cent, 0, sizeof cent);
    for (uint32_t i = 0; i < n * dim; i++) {
        uint32_t bits = (uint32_t)take(&s, (flags & 4) ? 4 : 1);
        if (flags & 4)
            memcpy(&vec[i], &bits, 4); /* any bit pattern: NaN, Inf */
        else
            vec[i] = (float)bits / 7.0f;
    }
    for (uint32_t i = 0; i < n_shards * dim; i++)
        cent[i] = (float)take(&s, 1) / 3.0f;
    char keybuf[12][8];
    const char *keys[12];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kl = (uint32_t)take(&s, 1) % 7;
        for (uint32_t j = 0; j < kl; j++)
            keybuf[i][j] = (char)(take(&s, 1) | 1); /* no NUL inside */
        keybuf[i][kl] = 0;
        keys[i] = keybuf[i];
    }
    uint32_t crc_v = npvdb_crc32c(0, vec, (size_t)n * dim * 4), crc_k = 0;
    for (uint32_t i = 0; i < n; i++)
        crc_k = npvdb_crc32c(crc_k, keys[i], strlen(keys[i]) + 1);
    uint32_t crc_c = trained ? npvdb_crc32c(0, cent, n_shards * dim * 4) : 0;
    uint32_t crc_o = npvdb_crc32c(0, off, (n_shards + 1) * 8);

    char path[64];
    snprintf(path, sizeof path, "/tmp/npvdb-fuzz-snap-%d.h5", (int)getpid());
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    /* Each attribute is right unless its flag bit says fuzz it. */
    uint64_t raw = take(&s, 8);
    /* Version 2 (flag 65536): the collection in /collections/<name>, the
     * name attribute right, or fuzzed bytes, or missing. */
    int v2 = (flags & 65536) != 0;
    hid_t f = file, colls = -1;
    put_u64(file, "format_version", (flags & 8) ? raw % 4 : (v2 ? 2 : 1));
    put_u64(file, "sequence", raw);
    if (v2) {
        char name[8] = "c";
        if (flags & 131072) {
            for (int i = 0; i < 7; i++)
                name[i] = (char)(take(&s, 1) | 1);
            name[7] = 0;
        }
        put_u64(file, "n_collections", (flags & 262144) ? raw % 3 : 1);
        colls = H5Gcreate2(file, "collections", H5P_DEFAULT, H5P_DEFAULT,
                           H5P_DEFAULT);
        f = H5Gcreate2(colls, (flags & 524288) ? "other" : name, H5P_DEFAULT,
                       H5P_DEFAULT, H5P_DEFAULT);
        if (f < 0) { /* a name HDF5 itself refuses ("." or a slash) */
            H5Gclose(colls);
            H5Fclose(file);
            unlink(path);
            return 0;
        }
        if (!(flags & 1048576)) {
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, strlen(name) + 1);
            H5Tset_cset(t, H5T_CSET_UTF8);
            hid_t sp = H5Screate(H5S_SCALAR);
            hid_t a = H5Acreate2(f, "name", t, sp, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, t, name);
            H5Aclose(a);
            H5Sclose(sp);
            H5Tclose(t);
        }
    }
    put_u64(f, "metric_id", (flags & 16) ? raw % 5 : 1);
    put_u64(f, "dim", (flags & 32) ? raw % 6 : dim);
    put_u64(f, "n_shards", (flags & 64) ? raw % 5 : n_shards);
    put_u64(f, "trained", (flags & 128) ? raw % 3 : (uint64_t)trained);
    put_u64(f, "n_vectors", (flags & 256) ? raw % 16 : n);
    if (!(flags & 512)) {
        put_u64(f, "config_n_shards", n_shards);
        put_u64(f, "train_per_shard", raw >> 60);
        put_u64(f, "kmeans_iters", 1);
        put_u64(f, "default_nprobe", 0);
        put_u64(f, "seed", raw);
    }
    put_u64(f, "crc32c_centroids", (flags & 1024) ? raw : crc_c);
    put_u64(f, "crc32c_vectors", (flags & 2048) ? raw >> 8 : crc_v);
    put_u64(f, "crc32c_keys", (flags & 4096) ? raw >> 16 : crc_k);
    put_u64(f, "crc32c_shard_offsets", (flags & 8192) ? raw >> 24 : crc_o);
    uint32_t rows_c = trained ? n_shards : 0;
    if (flags & 16384) rows_c = (uint32_t)(raw % 4);
    put_ds(f, "centroids", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, rows_c, dim,
           cent);
    put_ds(f, "shard_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1,
           n_shards + 1, 1, off);
    uint32_t rows_v = (flags & 32768) ? (uint32_t)(raw % 13) : n;
    if (rows_v > 12) rows_v = 12;
    put_ds(f, "vectors", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, rows_v, dim, vec);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8); /* as the writer makes them */
    put_ds(f, "keys", st, st, 1, n, 1, keys);
    if (v2 && (flags & 2097152)) put_payload(f, &s, st, n, flags);
    H5Tclose(st);
    if (v2) {
        H5Gclose(f);
        H5Gclose(colls);
    }
    H5Fclose(file);

    uint64_t seq;
    npvdb_error err;
    got g = {.n = n};
    npvdb_code rc = snap_read(path, 1, NULL, on_coll, &g, &seq, &err);
    /* At most the one collection written (none when a fuzzed name put the
     * group outside /collections). */
    if (rc == NPVDB_OK && g.colls > 1) abort();
    unlink(path);
    return 0;
}
