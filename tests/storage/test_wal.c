/*
 * test_wal.c -- the write-ahead log on its own: append and replay, torn tails
 * at every byte offset, flipped bits, huge lengths, empty files, segment
 * rolls and removal, write errors (file size limit), group commit, and the
 * record payload codecs.
 */
#include "crc32c.h"
#include "record.h"
#include "testutil.h"
#include "util.h"
#include "wal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>

#define DIM 4

/* What a replay saw. */
typedef struct seen {
    uint64_t seqs[4096];
    float first_val[4096]; /* rows[0] of each insert */
    size_t n;
} seen;

static npvdb_code collect(void *ctx, const wal_record *rec, npvdb_error *err)
{
    seen *s = ctx;
    rec_keys k;
    assert_int_equal(rec->type, REC_INSERT2);
    assert_int_equal(
        rec_decode_keys(rec->type, rec->payload, rec->len, &k, err), NPVDB_OK);
    assert_string_equal(k.name, "c");
    assert_true(s->n < 4096);
    s->seqs[s->n] = rec->seq;
    s->first_val[s->n] = k.rows[0];
    s->n++;
    rec_keys_free(&k);
    return NPVDB_OK;
}

static wal *open_log(const char *dir, uint64_t seg_bytes, seen *s,
                     npvdb_sync_mode mode)
{
    wal_options o = {.dir = dir, .segment_bytes = seg_bytes, .sync = mode};
    npvdb_error err = {0};
    memset(s, 0, sizeof *s);
    wal *w = wal_open(&o, 0, collect, s, &err);
    if (!w) fprintf(stderr, "wal_open: %s\n", err.msg);
    return w;
}

/* Appends an insert of n_keys keys whose rows are all `val`. */
static npvdb_code append_insert(wal *w, float val, size_t n_keys, uint64_t *seq,
                                npvdb_error *err)
{
    char names[64][24];
    const char *keys[64];
    float rows[64 * DIM];
    assert_true(n_keys <= 64);
    for (size_t i = 0; i < n_keys; i++) {
        snprintf(names[i], sizeof names[i], "k%zu", i);
        keys[i] = names[i];
        for (int d = 0; d < DIM; d++)
            rows[i * DIM + d] = val;
    }
    rec_buf b;
    npvdb_code rc =
        rec_encode_insert("c", keys, rows, NULL, n_keys, DIM, &b, err);
    if (rc != NPVDB_OK) return rc;
    rc = wal_append(w, b.type, &b, seq, err);
    free(b.buf);
    return rc;
}

static void test_crc32c_known(void **state)
{
    (void)state;
    assert_int_equal(npvdb_crc32c(0, "123456789", 9), 0xE3069283u);
    /* Continuation equals one pass. */
    uint32_t c = npvdb_crc32c(0, "1234", 4);
    assert_int_equal(npvdb_crc32c(c, "56789", 5), 0xE3069283u);
    assert_int_equal(npvdb_crc32c(0, "", 0), 0);
}

static void test_append_replay(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    assert_non_null(w);
    assert_int_equal(s.n, 0);
    npvdb_error err;
    for (int i = 1; i <= 10; i++) {
        uint64_t seq;
        assert_int_equal(append_insert(w, (float)i, 3, &seq, &err), NPVDB_OK);
        assert_int_equal(seq, i);
        assert_int_equal(wal_wait_durable(w, seq, &err), NPVDB_OK);
    }
    wal_close(w);
    w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    assert_non_null(w);
    assert_int_equal(s.n, 10);
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(s.seqs[i], i + 1);
        assert_true(s.first_val[i] == (float)(i + 1));
    }
    uint64_t seq;
    assert_int_equal(append_insert(w, 11, 1, &seq, &err), NPVDB_OK);
    assert_int_equal(seq, 11);
    wal_close(w);
    tu_rmtree(dir);
    free(dir);
}

/* Writes 3 records; returns the segment path and the last record's span. */
static char *three_records(const char *dir, long long *last_start,
                           long long *end)
{
    seen s;
    wal *w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
    assert_non_null(w);
    npvdb_error err;
    uint64_t seq;
    char *seg = tu_find(dir, "wal-", ".log", 1);
    for (int i = 1; i <= 3; i++) {
        if (i == 3) *last_start = tu_size(seg);
        assert_int_equal(append_insert(w, (float)i, 2, &seq, &err), NPVDB_OK);
    }
    wal_close(w);
    *end = tu_size(seg);
    return seg;
}

static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    long long start, end;
    char *seg = three_records(dir, &start, &end);
    char *pristine = tu_join(dir, "pristine");
    assert_int_equal(tu_copy(seg, pristine), 0);
    for (long long cut = start; cut < end; cut++) {
        assert_int_equal(tu_copy(pristine, seg), 0);
        assert_int_equal(tu_truncate(seg, cut), 0);
        seen s;
        wal *w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_non_null(w);
        assert_int_equal(s.n, 2); /* everything before the torn record */
        assert_int_equal(tu_size(seg), start); /* cut back to the good end */
        npvdb_error err;
        uint64_t seq;
        assert_int_equal(append_insert(w, 33, 1, &seq, &err), NPVDB_OK);
        assert_int_equal(seq, 3);
        wal_close(w);
        w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_non_null(w);
        assert_int_equal(s.n, 3);
        assert_true(s.first_val[2] == 33.0f);
        wal_close(w);
    }
    free(pristine);
    free(seg);
    tu_rmtree(dir);
    free(dir);
}

static void test_flipped_bits(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    long long start, end;
    char *seg = three_records(dir, &start, &end);
    char *pristine = tu_join(dir, "pristine");
    assert_int_equal(tu_copy(seg, pristine), 0);
    long long size2 = end - start; /* records are equally long */
    long long rec2 = start - size2;
    /* Every byte of record 2 except its zero padding, every bit position
     * cycling: replay keeps record 1 only and drops the rest. */
    for (long long off = rec2; off < start; off++) {
        assert_int_equal(tu_copy(pristine, seg), 0);
        assert_int_equal(tu_flip(seg, off, (uint8_t)(1u << (off % 8))), 0);
        seen s;
        wal *w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_non_null(w);
        /* Padding bytes are not covered; a flip there is harmless. */
        assert_true(s.n == 1 || s.n == 3);
        if (s.n == 1) assert_int_equal(tu_size(seg), rec2);
        wal_close(w);
    }
    free(pristine);
    free(seg);
    tu_rmtree(dir);
    free(dir);
}

static void test_huge_length(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    long long start, end;
    char *seg = three_records(dir, &start, &end);
    const uint32_t lens[] = {0xFFFFFFFFu, 0x7FFFFFFFu, REC_MAX_PAYLOAD,
                             1u << 20};
    char *pristine = tu_join(dir, "pristine");
    assert_int_equal(tu_copy(seg, pristine), 0);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        assert_int_equal(tu_copy(pristine, seg), 0);
        for (int b = 0; b < 4; b++) {
            uint8_t want = (uint8_t)(lens[i] >> (8 * b));
            FILE *f = fopen(seg, "r+b");
            assert_non_null(f);
            fseek(f, start + 8 + b, SEEK_SET);
            fputc(want, f);
            fclose(f);
        }
        seen s;
        wal *w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_non_null(w);
        assert_int_equal(s.n, 2);
        wal_close(w);
    }
    free(pristine);
    free(seg);
    tu_rmtree(dir);
    free(dir);
}

static void test_empty_and_short_files(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
    assert_non_null(w);
    wal_close(w);
    char *seg = tu_find(dir, "wal-", ".log", 1);
    assert_non_null(seg);
    for (long long size = 0; size <= 16; size++) {
        assert_int_equal(tu_truncate(seg, size), 0);
        w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_non_null(w);
        assert_int_equal(s.n, 0);
        npvdb_error err;
        uint64_t seq;
        assert_int_equal(append_insert(w, 1, 1, &seq, &err), NPVDB_OK);
        assert_int_equal(seq, 1);
        wal_close(w);
        w = open_log(dir, 0, &s, NPVDB_SYNC_NONE);
        assert_int_equal(s.n, 1);
        wal_close(w);
        assert_int_equal(tu_truncate(seg, 16), 0);
    }
    free(seg);
    tu_rmtree(dir);
    free(dir);
}

static void test_segments_roll_and_remove(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 1024, &s, NPVDB_SYNC_ALWAYS);
    assert_non_null(w);
    npvdb_error err;
    uint64_t seq;
    for (int i = 1; i <= 100; i++)
        assert_int_equal(append_insert(w, (float)i, 2, &seq, &err), NPVDB_OK);
    int nseg = tu_count(dir, "wal-");
    assert_true(nseg > 5);
    wal_close(w);
    w = open_log(dir, 1024, &s, NPVDB_SYNC_ALWAYS);
    assert_int_equal(s.n, 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(s.seqs[i], i + 1);
    /* Removing up to 50 keeps every segment holding a record > 50. */
    assert_int_equal(wal_remove_upto(w, 50, &err), NPVDB_OK);
    assert_true(tu_count(dir, "wal-") < nseg);
    wal_close(w);
    /* Replaying after 50 finds 51..100 and no gap. */
    wal_options o = {.dir = dir, .segment_bytes = 1024};
    memset(&s, 0, sizeof s);
    w = wal_open(&o, 50, collect, &s, &err);
    assert_non_null(w);
    assert_int_equal(s.n, 50);
    assert_int_equal(s.seqs[0], 51);
    /* Fully covered: roll then remove leaves only the fresh segment. */
    assert_int_equal(wal_roll_if_covered(w, 100, &err), NPVDB_OK);
    assert_int_equal(wal_remove_upto(w, 100, &err), NPVDB_OK);
    assert_int_equal(tu_count(dir, "wal-"), 1);
    wal_close(w);
    /* A replay that needs records before the oldest kept one refuses. */
    memset(&s, 0, sizeof s);
    w = wal_open(&o, 10, collect, &s, &err);
    assert_null(w);
    assert_int_equal(err.code, NPVDB_ESTATE);
    /* The fresh segment continues at 101. */
    w = wal_open(&o, 100, collect, &s, &err);
    assert_non_null(w);
    assert_int_equal(append_insert(w, 1, 1, &seq, &err), NPVDB_OK);
    assert_int_equal(seq, 101);
    wal_close(w);
    tu_rmtree(dir);
    free(dir);
}

/* A corrupt record in a middle segment: the later segments are set aside
 * and new records follow the last good one. */
static void test_corrupt_middle_segment(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 1024, &s, NPVDB_SYNC_NONE);
    npvdb_error err;
    uint64_t seq;
    for (int i = 1; i <= 60; i++)
        assert_int_equal(append_insert(w, (float)i, 2, &seq, &err), NPVDB_OK);
    wal_close(w);
    char *first = tu_find(dir, "wal-", ".log", 0);
    assert_int_equal(tu_flip(first, 16 + 30, 0x10), 0); /* record 1 */
    w = open_log(dir, 1024, &s, NPVDB_SYNC_NONE);
    assert_non_null(w);
    assert_int_equal(s.n, 0);
    assert_true(tu_count(dir, "wal-") > 1); /* *.corrupt kept */
    assert_int_equal(append_insert(w, 7, 1, &seq, &err), NPVDB_OK);
    assert_int_equal(seq, 1);
    wal_close(w);
    w = open_log(dir, 1024, &s, NPVDB_SYNC_NONE);
    assert_int_equal(s.n, 1);
    wal_close(w);
    free(first);
    tu_rmtree(dir);
    free(dir);
}

static void test_write_error_file_limit(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    npvdb_error err;
    uint64_t seq;
    for (int i = 1; i <= 5; i++)
        assert_int_equal(append_insert(w, (float)i, 4, &seq, &err), NPVDB_OK);
    assert_int_equal(wal_wait_durable(w, seq, &err), NPVDB_OK);
    char *seg = tu_find(dir, "wal-", ".log", 1);
    long long good = tu_size(seg);
    /* A disk that fills up: the file may not grow past `good + 100`. */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)good + 100;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    npvdb_code rc = append_insert(w, 99, 40, &seq, &err); /* ~900 bytes */
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, NPVDB_ELIMIT);
    assert_non_null(strstr(err.msg, "log"));
    assert_int_equal(tu_size(seg), good); /* no half record left */
    /* The log goes on after the disk has room again. */
    assert_int_equal(append_insert(w, 6, 1, &seq, &err), NPVDB_OK);
    assert_int_equal(seq, 6);
    assert_int_equal(wal_wait_durable(w, seq, &err), NPVDB_OK);
    wal_close(w);
    w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    assert_int_equal(s.n, 6);
    assert_true(s.first_val[5] == 6.0f);
    wal_close(w);
    free(seg);
    tu_rmtree(dir);
    free(dir);
}

typedef struct gc_arg {
    wal *w;
    int n;
    int failures;
} gc_arg;

static void *gc_writer(void *p)
{
    gc_arg *a = p;
    npvdb_error err;
    for (int i = 0; i < a->n; i++) {
        uint64_t seq;
        if (append_insert(a->w, 1, 1, &seq, &err) != NPVDB_OK ||
            wal_wait_durable(a->w, seq, &err) != NPVDB_OK)
            a->failures++;
    }
    return NULL;
}

static void test_group_commit(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal *w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    enum { T = 8, N = 50 };
    pthread_t th[T];
    gc_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (gc_arg){.w = w, .n = N};
        pthread_create(&th[t], NULL, gc_writer, &args[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].failures, 0);
    }
    assert_int_equal(wal_last_seq(w), T * N);
    uint64_t syncs = wal_fsyncs(w);
    /* Concurrent waiters share fsyncs: far fewer than one per record. */
    assert_true(syncs < (uint64_t)T * N);
    wal_close(w);
    w = open_log(dir, 0, &s, NPVDB_SYNC_ALWAYS);
    assert_int_equal(s.n, T * N);
    wal_close(w);
    tu_rmtree(dir);
    free(dir);
}

static void test_interval_mode(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    seen s;
    wal_options o = {.dir = dir, .sync = NPVDB_SYNC_INTERVAL, .interval_ms = 5};
    npvdb_error err;
    wal *w = wal_open(&o, 0, collect, &s, &err);
    assert_non_null(w);
    uint64_t seq;
    assert_int_equal(append_insert(w, 1, 1, &seq, &err), NPVDB_OK);
    assert_int_equal(wal_wait_durable(w, seq, &err), NPVDB_OK);
    uint64_t before = wal_fsyncs(w);
    for (int i = 0; i < 200 && wal_fsyncs(w) == before; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    assert_true(wal_fsyncs(w) > before); /* the ticker synced it */
    wal_close(w);
    tu_rmtree(dir);
    free(dir);
}

static void test_record_codecs(void **state)
{
    (void)state;
    const char *keys[] = {"alpha", "b", "\xc3\xa9t\xc3\xa9"};
    float rows[3 * DIM];
    for (int i = 0; i < 3 * DIM; i++)
        rows[i] = (float)i * 0.5f;
    rec_buf b;
    npvdb_error err;
    assert_int_equal(
        rec_encode_insert("my.coll-1", keys, rows, NULL, 3, DIM, &b, &err),
        NPVDB_OK);
    assert_int_equal(b.type, REC_INSERT2);
    rec_keys k;
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_OK);
    assert_string_equal(k.name, "my.coll-1");
    assert_int_equal(k.n, 3);
    assert_int_equal(k.dim, DIM);
    assert_null(k.payloads);
    for (int i = 0; i < 3; i++)
        assert_string_equal(k.keys[i], keys[i]);
    assert_memory_equal(k.rows, rows, sizeof rows);
    /* Rows are 8-aligned in the record: used in place, not copied. */
    assert_null(k.owned_);
    rec_keys_free(&k);
    /* Every truncation of the payload is refused, never read past. */
    for (size_t cut = 0; cut < b.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.buf + REC_HEADROOM, cut);
        assert_int_equal(rec_decode_keys(b.type, copy, cut, &k, &err),
                         NPVDB_EINVAL);
        free(copy);
    }
    /* Unaligned payloads decode too (rows copied). */
    uint8_t *odd = malloc(b.len + 1);
    memcpy(odd + 1, b.buf + REC_HEADROOM, b.len);
    assert_int_equal(rec_decode_keys(b.type, odd + 1, b.len, &k, &err),
                     NPVDB_OK);
    assert_memory_equal(k.rows, rows, sizeof rows);
    rec_keys_free(&k);
    free(odd);
    /* A name byte outside the alphabet, or padding that is not zero. */
    b.buf[REC_HEADROOM + 16 + 2] = '/';
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_EINVAL);
    b.buf[REC_HEADROOM + 16 + 2] = '.';
    b.buf[REC_HEADROOM + 16 + 9] = 1;
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_EINVAL);
    free(b.buf);

    assert_int_equal(rec_encode_delete("d", keys, 3, &b, &err), NPVDB_OK);
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_OK);
    assert_int_equal(b.type, REC_DELETE2);
    assert_string_equal(k.name, "d");
    assert_int_equal(k.n, 3);
    assert_string_equal(k.keys[2], keys[2]);
    rec_keys_free(&k);
    free(b.buf);

    char name[REC_MAX_NAME + 1];
    assert_int_equal(rec_encode_drop("gone", &b, &err), NPVDB_OK);
    assert_int_equal(b.type, REC_DROP);
    assert_int_equal(rec_decode_drop(b.buf + REC_HEADROOM, b.len, name, &err),
                     NPVDB_OK);
    assert_string_equal(name, "gone");
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(rec_decode_drop(b.buf + REC_HEADROOM, cut, name, &err),
                         NPVDB_EINVAL);
    free(b.buf);

    npvdb_config cfg = {.dim = DIM,
                        .metric = NPVDB_METRIC_L2,
                        .n_shards = 7,
                        .train_per_shard = 3,
                        .kmeans_iters = 4,
                        .default_nprobe = 2,
                        .seed = 0x1234567890ull};
    assert_int_equal(rec_encode_init("abc", &cfg, rows, 3, &b, &err), NPVDB_OK);
    rec_init in;
    assert_int_equal(rec_decode_init(b.buf + REC_HEADROOM, b.len, &in, &err),
                     NPVDB_OK);
    assert_string_equal(in.name, "abc");
    assert_int_equal(in.cfg.n_shards, 7);
    assert_int_equal(in.cfg.seed, cfg.seed);
    assert_int_equal(in.cfg.metric, NPVDB_METRIC_L2);
    assert_int_equal(in.n_train, 3);
    assert_memory_equal(in.train, rows, sizeof rows);
    rec_init_free(&in);
    /* A huge training count is refused without allocating. */
    b.buf[REC_HEADROOM + 47] = 0x7f;
    assert_int_equal(rec_decode_init(b.buf + REC_HEADROOM, b.len, &in, &err),
                     NPVDB_EINVAL);
    free(b.buf);

    /* Bad names are refused by every encoder. */
    char long_name[REC_MAX_NAME + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    const char *bad[] = {"", "a b", "a/b", long_name, NULL};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rec_encode_drop(bad[i], &b, &err), NPVDB_EINVAL);
        assert_int_equal(rec_encode_init(bad[i], &cfg, NULL, 0, &b, &err),
                         NPVDB_EINVAL);
    }
    long_name[REC_MAX_NAME] = 0; /* exactly 255 bytes is fine */
    assert_int_equal(rec_encode_drop(long_name, &b, &err), NPVDB_OK);
    assert_int_equal(rec_decode_drop(b.buf + REC_HEADROOM, b.len, name, &err),
                     NPVDB_OK);
    assert_string_equal(name, long_name);
    free(b.buf);

    /* A key count far beyond the bytes: refused before allocating. */
    uint8_t evil[12] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(rec_decode_keys(REC_INSERT, evil, sizeof evil, &k, &err),
                     NPVDB_EINVAL);
    const char *big[] = {NULL};
    assert_int_equal(rec_encode_delete("x", big, 1, &b, &err), NPVDB_EINVAL);
}

/* INSERT2 with payload blobs: stored as is, used in place, each checked. */
static void test_record_payloads(void **state)
{
    (void)state;
    npvdb_field f = {
        .name = "n", .name_len = 1, .type = NPVDB_VALUE_INT, .i = 42};
    npvdb_payload blob;
    npvdb_error err;
    assert_int_equal(npvdb_payload_build(&f, 1, &blob, &err), NPVDB_OK);
    const char *keys[] = {"a", "b", "c"};
    float rows[3 * DIM] = {0};
    npvdb_payload pl[3] = {blob, {0}, blob};
    rec_buf b;
    assert_int_equal(rec_encode_insert("p", keys, rows, pl, 3, DIM, &b, &err),
                     NPVDB_OK);
    rec_keys k;
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_OK);
    assert_non_null(k.payloads);
    assert_int_equal(k.payloads[0].len, blob.len);
    assert_memory_equal(k.payloads[0].data, blob.data, blob.len);
    assert_int_equal(k.payloads[1].len, 0);
    assert_memory_equal(k.payloads[2].data, blob.data, blob.len);
    /* In place: the blobs point into the record. */
    assert_true(k.payloads[2].data > b.buf &&
                k.payloads[2].data < b.buf + REC_HEADROOM + b.len);
    rec_keys_free(&k);
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(
            rec_decode_keys(b.type, b.buf + REC_HEADROOM, cut, &k, &err),
            NPVDB_EINVAL);
    /* A blob that npvdb_payload_check refuses (an unknown value type in
     * the last blob) is refused. */
    uint8_t *last = b.buf + REC_HEADROOM + b.len - blob.len + 2;
    uint8_t saved = *last;
    *last = 9;
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "payload 2"));
    *last = saved;
    free(b.buf);
    /* No payloads at all (every len 0): no payload section. */
    npvdb_payload none[3] = {{0}, {0}, {0}};
    assert_int_equal(rec_encode_insert("p", keys, rows, none, 3, DIM, &b, &err),
                     NPVDB_OK);
    assert_int_equal(
        rec_decode_keys(b.type, b.buf + REC_HEADROOM, b.len, &k, &err),
        NPVDB_OK);
    assert_null(k.payloads);
    rec_keys_free(&k);
    free(b.buf);
    free((void *)blob.data);
}

/* Version 1 payloads (as cef0ef2 wrote them) decode as collection
 * "default". */
static void test_record_v1(void **state)
{
    (void)state;
    /* INSERT v1: dim 2, n 1, rows {1, 2}, key "k". */
    uint8_t ins[8 + 8 + 6] = {2, 0, 0, 0, 1, 0, 0, 0};
    float r[2] = {1.0f, 2.0f};
    memcpy(ins + 8, r, 8);
    uint8_t key[6] = {1, 0, 0, 0, 'k', 0};
    memcpy(ins + 16, key, 6);
    rec_keys k;
    npvdb_error err;
    assert_int_equal(rec_decode_keys(REC_INSERT, ins, sizeof ins, &k, &err),
                     NPVDB_OK);
    assert_string_equal(k.name, "default");
    assert_int_equal(k.n, 1);
    assert_string_equal(k.keys[0], "k");
    assert_memory_equal(k.rows, r, sizeof r);
    rec_keys_free(&k);
    /* DELETE v1: n 1, 0, key "k". */
    uint8_t del[8 + 6] = {1, 0, 0, 0, 0, 0, 0, 0};
    memcpy(del + 8, key, 6);
    assert_int_equal(rec_decode_keys(REC_DELETE, del, sizeof del, &k, &err),
                     NPVDB_OK);
    assert_string_equal(k.name, "default");
    assert_string_equal(k.keys[0], "k");
    rec_keys_free(&k);
    /* INIT v1: version 1, dim 2, L2, no training rows. */
    uint8_t init[48] = {1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3};
    rec_init in;
    assert_int_equal(rec_decode_init(init, sizeof init, &in, &err), NPVDB_OK);
    assert_string_equal(in.name, "default");
    assert_int_equal(in.cfg.dim, 2);
    assert_int_equal(in.cfg.n_shards, 3);
    rec_init_free(&in);
    init[0] = 4; /* unknown version */
    assert_int_equal(rec_decode_init(init, sizeof init, &in, &err),
                     NPVDB_EINVAL);
}

/* RESHARD (type 8): a split carries its two centroids, a merge none; both
 * round-trip, any cut, bad kind or trailing byte is refused. */
static void test_record_reshard(void **state)
{
    (void)state;
    enum { D = 3 };
    float cent[2 * D] = {1, 2, 3, -4, 5.5f, 0};
    npvdb_reshard op = {.kind = NPVDB_RESHARD_SPLIT,
                        .shard = 17,
                        .dim = D,
                        .centroids = cent,
                        .n_shards = 40};
    rec_buf b;
    npvdb_error err = {0};
    assert_int_equal(rec_encode_reshard("col.1", &op, &b, &err), NPVDB_OK);
    assert_int_equal(b.type, REC_RESHARD);
    rec_reshard t;
    assert_int_equal(rec_decode_reshard(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_OK);
    assert_string_equal(t.name, "col.1");
    assert_int_equal(t.op.kind, NPVDB_RESHARD_SPLIT);
    assert_int_equal(t.op.shard, 17);
    assert_int_equal(t.op.dim, D);
    assert_int_equal(t.op.n_shards, 40);
    assert_memory_equal(t.op.centroids, cent, sizeof cent);
    rec_reshard_free(&t);
    /* Version 1 (the first records of this type) had 0 where version 2
     * keeps the shard count: it still decodes, with the count unknown, and
     * anything else there is refused. */
    uint8_t *body = b.buf + REC_HEADROOM;
    size_t word = b.len - sizeof cent - 4; /* after u32 shard */
    st_put_u32(body, 1);
    assert_int_equal(rec_decode_reshard(body, b.len, &t, &err), NPVDB_EINVAL);
    st_put_u32(body + word, 0);
    assert_int_equal(rec_decode_reshard(body, b.len, &t, &err), NPVDB_OK);
    assert_int_equal(t.op.n_shards, 0);
    assert_memory_equal(t.op.centroids, cent, sizeof cent);
    rec_reshard_free(&t);
    st_put_u32(body, 2);
    st_put_u32(body + word, 40);
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(
            rec_decode_reshard(b.buf + REC_HEADROOM, cut, &t, &err),
            NPVDB_EINVAL);
    st_put_u32(b.buf + REC_HEADROOM + 12, 3); /* kind 3 does not exist */
    assert_int_equal(rec_decode_reshard(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_EINVAL);
    st_put_u32(b.buf + REC_HEADROOM + 12, NPVDB_RESHARD_MERGE);
    /* A merge of that length has 24 bytes too many. */
    assert_int_equal(rec_decode_reshard(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_EINVAL);
    free(b.buf);
    npvdb_reshard m = {.kind = NPVDB_RESHARD_MERGE, .shard = 4, .dim = D};
    assert_int_equal(rec_encode_reshard("c", &m, &b, &err), NPVDB_OK);
    assert_int_equal(rec_decode_reshard(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_OK);
    assert_int_equal(t.op.kind, NPVDB_RESHARD_MERGE);
    assert_int_equal(t.op.shard, 4);
    assert_null(t.op.centroids);
    rec_reshard_free(&t);
    free(b.buf);
    /* A split without centroids, or of dim 0, is not encoded. */
    op.centroids = NULL;
    assert_int_equal(rec_encode_reshard("c", &op, &b, &err), NPVDB_EINVAL);
    op.centroids = cent;
    op.dim = 0;
    assert_int_equal(rec_encode_reshard("c", &op, &b, &err), NPVDB_EINVAL);
}

/* TRAIN (type 7) and INIT version 3 carry an index: they round-trip, any
 * cut or bad group is refused, and v2 INIT records still decode. */
static void test_record_index(void **state)
{
    (void)state;
    enum { D = 3, NC = 5, G = 3 };
    float cent[NC * D], gc[G * D];
    uint32_t gof[NC] = {0, 1, 2, 1, 0};
    for (int i = 0; i < NC * D; i++)
        cent[i] = 0.5f * (float)i - 1.0f;
    for (int i = 0; i < G * D; i++)
        gc[i] = (float)i;
    npvdb_index ix = {.dim = D,
                      .n_shards = NC,
                      .n_groups = G,
                      .centroids = cent,
                      .group_centres = gc,
                      .group_of = gof};
    rec_buf b;
    npvdb_error err = {0};
    assert_int_equal(rec_encode_train("col.1", &ix, &b, &err), NPVDB_OK);
    assert_int_equal(b.type, REC_TRAIN);
    rec_train t;
    assert_int_equal(rec_decode_train(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_OK);
    assert_string_equal(t.name, "col.1");
    assert_int_equal(t.index.dim, D);
    assert_int_equal(t.index.n_shards, NC);
    assert_int_equal(t.index.n_groups, G);
    assert_memory_equal(t.index.centroids, cent, sizeof cent);
    assert_memory_equal(t.index.group_centres, gc, sizeof gc);
    assert_memory_equal(t.index.group_of, gof, sizeof gof);
    rec_train_free(&t);
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(rec_decode_train(b.buf + REC_HEADROOM, cut, &t, &err),
                         NPVDB_EINVAL);
    /* The last group_of entry is the last word: out of range is refused. */
    st_put_u32(b.buf + REC_HEADROOM + b.len - 4, G);
    assert_int_equal(rec_decode_train(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_EINVAL);
    free(b.buf);
    /* No router: no group section. */
    ix.n_groups = 0;
    assert_int_equal(rec_encode_train("c", &ix, &b, &err), NPVDB_OK);
    assert_int_equal(rec_decode_train(b.buf + REC_HEADROOM, b.len, &t, &err),
                     NPVDB_OK);
    assert_int_equal(t.index.n_groups, 0);
    assert_memory_equal(t.index.centroids, cent, sizeof cent);
    rec_train_free(&t);
    free(b.buf);
    /* INIT version 3: the config and the index, no sample. */
    npvdb_config cfg = {.dim = D,
                        .metric = NPVDB_METRIC_COSINE,
                        .n_shards = NC,
                        .kmeans_iters = 3,
                        .seed = 42};
    ix.n_groups = G;
    assert_int_equal(rec_encode_init_index("smp", &cfg, &ix, &b, &err),
                     NPVDB_OK);
    assert_int_equal(b.type, REC_INIT);
    assert_int_equal(st_get_u32(b.buf + REC_HEADROOM), 3);
    rec_init in;
    assert_int_equal(rec_decode_init(b.buf + REC_HEADROOM, b.len, &in, &err),
                     NPVDB_OK);
    assert_string_equal(in.name, "smp");
    assert_int_equal(in.cfg.seed, 42);
    assert_int_equal(in.cfg.metric, NPVDB_METRIC_COSINE);
    assert_int_equal(in.n_train, 0);
    assert_true(in.has_index);
    assert_memory_equal(in.index.centroids, cent, sizeof cent);
    assert_memory_equal(in.index.group_of, gof, sizeof gof);
    rec_init_free(&in);
    for (size_t cut = 0; cut < b.len; cut++)
        assert_int_equal(rec_decode_init(b.buf + REC_HEADROOM, cut, &in, &err),
                         NPVDB_EINVAL);
    free(b.buf);
    /* A dim that is not the config's is refused by the encoder. */
    cfg.dim = D + 1;
    assert_int_equal(rec_encode_init_index("smp", &cfg, &ix, &b, &err),
                     NPVDB_EINVAL);
    assert_null(b.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known),
        cmocka_unit_test(test_append_replay),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_flipped_bits),
        cmocka_unit_test(test_huge_length),
        cmocka_unit_test(test_empty_and_short_files),
        cmocka_unit_test(test_segments_roll_and_remove),
        cmocka_unit_test(test_corrupt_middle_segment),
        cmocka_unit_test(test_write_error_file_limit),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_interval_mode),
        cmocka_unit_test(test_record_codecs),
        cmocka_unit_test(test_record_v1),
        cmocka_unit_test(test_record_payloads),
        cmocka_unit_test(test_record_index),
        cmocka_unit_test(test_record_reshard),
    };
    /* TEST_FILTER=test_name (globs allowed) runs a subset. */
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
