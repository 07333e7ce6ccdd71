/*
 * fuzz_wal.c -- libFuzzer target for the log reader: any bytes, read as a
 * segment body, must give records or a clean stop, never a crash, an
 * over-read or a huge allocation; every record that passes the CRC is fed to
 * its payload decoder, and every payload decoder (v1 and named records, the
 * payload blobs inside inserts) also gets the raw input.
 */
#include "record.h"
#include "wal.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void decode(uint8_t type, const uint8_t *p, size_t len)
{
    npvdb_error err;
    if (type == REC_INIT) {
        rec_init in;
        if (rec_decode_init(p, len, &in, &err) == NPVDB_OK) {
            volatile float sink = 0;
            if (in.n_train) sink += in.train[in.n_train * in.cfg.dim - 1];
            sink += (float)strlen(in.name);
            (void)sink;
            rec_init_free(&in);
        }
        return;
    }
    if (type == REC_TRAIN) {
        rec_train t;
        if (rec_decode_train(p, len, &t, &err) == NPVDB_OK) {
            if (!rec_name_valid(t.name, strlen(t.name))) abort();
            volatile float sink =
                t.index.centroids[(size_t)t.index.n_shards * t.index.dim - 1];
            for (uint32_t j = 0; t.index.n_groups && j < t.index.n_shards; j++)
                if (t.index.group_of[j] >= t.index.n_groups) abort();
            (void)sink;
        }
        rec_train_free(&t);
        return;
    }
    if (type == REC_RESHARD) {
        rec_reshard t;
        if (rec_decode_reshard(p, len, &t, &err) == NPVDB_OK) {
            if (!rec_name_valid(t.name, strlen(t.name))) abort();
            if (t.op.kind == NPVDB_RESHARD_SPLIT) {
                volatile float sink = t.op.centroids[2 * t.op.dim - 1];
                (void)sink;
            } else if (t.op.centroids) {
                abort();
            }
        }
        rec_reshard_free(&t);
        return;
    }
    if (type == REC_DROP) {
        char name[REC_MAX_NAME + 1];
        if (rec_decode_drop(p, len, name, &err) == NPVDB_OK &&
            !rec_name_valid(name, strlen(name)))
            abort(); /* a decoded name is always valid */
        return;
    }
    rec_keys k;
    if (rec_decode_keys(type, p, len, &k, &err) != NPVDB_OK) return;
    if (!rec_name_valid(k.name, strlen(k.name))) abort();
    volatile size_t sink = 0;
    for (size_t i = 0; i < k.n; i++)
        sink += strlen(k.keys[i]);
    for (size_t i = 0; k.payloads && i < k.n; i++)
        if (k.payloads[i].len)
            sink += k.payloads[i].data[k.payloads[i].len - 1];
    if (k.rows && k.n) sink += (size_t)k.rows[k.n * k.dim - 1];
    (void)sink;
    rec_keys_free(&k);
}

static npvdb_code on_record(void *ctx, const wal_record *rec, npvdb_error *err)
{
    (void)ctx;
    (void)err;
    decode(rec->type, rec->payload, rec->len);
    return NPVDB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the sequence the scan expects (0 = any). */
    uint64_t expect = size ? data[0] % 4 : 0;
    wal_scan out;
    npvdb_error err;
    /* A copy at an 8-aligned address, as the mmap'ed segment would be. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    wal_scan_buffer(buf, size, expect, 0, on_record, NULL, &out, &err);
    if (out.good_end > size) abort();
    for (uint8_t t = REC_INIT; t <= REC_RESHARD; t++)
        decode(t, buf, size);
    /* And at an odd address: the decoders must copy unaligned rows. */
    if (size > 1) {
        decode(REC_INSERT, buf + 1, size - 1);
        decode(REC_INSERT2, buf + 1, size - 1);
    }
    free(buf);
    return 0;
}
