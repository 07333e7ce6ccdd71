/*
 * it_cli.c -- the `npvdb` CLI against a real server, on a small
 * ann-benchmarks-style HDF5 file written here with libhdf5 (with payload
 * columns of every supported type for load --payload-column).
 */
#include "harness.h"

#include <hdf5.h>

#include <float.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef NPVDB_CLI_BIN
#error "NPVDB_CLI_BIN must name the npvdb binary"
#endif

#define DIM 8
#define NTRAIN 2000
#define NTEST 20
#define NNB 10

static void write_dataset(hid_t file, const char *name, hid_t type,
                          hsize_t rows, hsize_t cols, const void *data)
{
    hsize_t dims[2] = {rows, cols};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t file_type = type == H5T_NATIVE_FLOAT ? H5T_IEEE_F32LE : H5T_STD_I32LE;
    hid_t ds = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

/* Variable-length UTF-8, as h5py writes `f.attrs["distance"] = "..."`. */
static void write_metric(hid_t file, const char *metric)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, "distance", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, &metric) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* Exact L2 neighbours of each test row by brute force (the file's
 * `neighbors`), nearest first. */
static void exact_neighbors(const float *train, const float *test, int32_t *nb)
{
    for (int i = 0; i < NTEST; i++) {
        float best[NNB];
        for (int j = 0; j < NNB; j++) {
            best[j] = FLT_MAX;
            nb[i * NNB + j] = -1;
        }
        for (int r = 0; r < NTRAIN; r++) {
            float d = 0;
            for (int c = 0; c < DIM; c++) {
                float x = train[r * DIM + c] - test[i * DIM + c];
                d += x * x;
            }
            int j = NNB - 1;
            if (d >= best[j]) continue;
            while (j > 0 && best[j - 1] > d) {
                best[j] = best[j - 1];
                nb[i * NNB + j] = nb[i * NNB + j - 1];
                j--;
            }
            best[j] = d;
            nb[i * NNB + j] = r;
        }
    }
}

static void make_file(const char *path)
{
    it_data train, test;
    it_data_make(&train, NTRAIN, DIM, 51, "");
    it_data_make(&test, NTEST, DIM, 52, "");
    int32_t nb[NTEST * NNB];
    exact_neighbors(train.rows, test.rows, nb);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    write_dataset(f, "train", H5T_NATIVE_FLOAT, NTRAIN, DIM, train.rows);
    write_dataset(f, "test", H5T_NATIVE_FLOAT, NTEST, DIM, test.rows);
    write_dataset(f, "neighbors", H5T_NATIVE_INT32, NTEST, NNB, nb);
    write_metric(f, "euclidean");
    H5Fclose(f);
    it_data_free(&train);
    it_data_free(&test);
}

typedef struct fixture {
    it_server s;
    char file[400];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    it_server_init(&f->s);
    it_server_start(&f->s, NULL);
    snprintf(f->file, sizeof f->file, "%s/small.hdf5", f->s.root);
    make_file(f->file);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int status = it_server_stop(&f->s);
    it_server_destroy(&f->s);
    free(f);
    return status == 0 ? 0 : -1;
}

/* Runs `npvdb --server ADDR ARGS`, checks the exit code, returns output. */
static char *cli(const fixture *f, int want_rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *cli(const fixture *f, int want_rc, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s --server %s %s", NPVDB_CLI_BIN, f->s.addr,
             args);
    char *out = NULL;
    int rc = it_run(cmd, &out);
    if (rc != want_rc)
        fail_msg("`%s` exited %d (want %d):\n%s", cmd, rc, want_rc, out);
    return out;
}

static void expect_text(const char *out, const char *text)
{
    if (!strstr(out, text)) fail_msg("expected \"%s\" in:\n%s", text, out);
}

static int count_text(const char *out, const char *text)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, text)) != NULL; p++)
        n++;
    return n;
}

/* The bench row of `nprobe` has `fields` numbers: nprobe, recall 1 (an
 * exact search) and positive queries/s. */
static void expect_row(const char *out, unsigned nprobe, int fields)
{
    char head[32];
    snprintf(head, sizeof head, "\n%8u  ", nprobe);
    const char *row = strstr(out, head);
    if (!row) fail_msg("no row for nprobe %u in:\n%s", nprobe, out);
    double v[8];
    int n = sscanf(row, "%lf %lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    /* The row ends at its newline: sscanf would read on into the next. */
    const char *end = strchr(row + 1, '\n');
    int words = 0;
    for (const char *p = row + 1; p < (end ? end : row + strlen(row)); p++)
        if (*p != ' ' && (p == row + 1 || p[-1] == ' ')) words++;
    if (words != fields || n < fields || v[1] != 1.0)
        fail_msg("nprobe %u row: %d fields (want %d), recall %g:\n%s", nprobe,
                 words, fields, n >= 2 ? v[1] : -1.0, out);
    for (int i = 2; i < fields; i++)
        if (!(v[i] > 0))
            fail_msg("nprobe %u row: rate %d is %g", nprobe, i, v[i]);
}

static void test_load_query_bench_info(void **state)
{
    fixture *f = *state;
    char *out = cli(f, 0, "load %s --shards 4 --batch 300", f->file);
    expect_text(out, "loaded 2000 vectors");
    expect_text(out, "2000 new");
    free(out);

    out = cli(f, 0, "info");
    expect_text(out, "dim:         8");
    expect_text(out, "metric:      l2");
    expect_text(out, "vectors:     2000");
    /* Trained with 4; 2000 rows in batches of 300 split some. */
    const char *sh = strstr(out, "shards:");
    assert_non_null(sh);
    unsigned shards = (unsigned)atoi(sh + strlen("shards:"));
    assert_true(shards >= 4);
    const char *rb = strstr(out, "rebalanced:");
    assert_non_null(rb);
    unsigned splits = 0, merges = 0;
    assert_int_equal(
        sscanf(rb, "rebalanced: %u splits, %u merges", &splits, &merges), 2);
    assert_int_equal(shards, 4 + splits - merges);
    expect_text(out, "trained:     yes");
    free(out);

    /* nprobe past the shard count is exact: every answer matches `neighbors`.
     */
    out = cli(f, 0, "query %s --k 5 --n 3 --nprobe 64", f->file);
    expect_text(out, "query 0:");
    expect_text(out, "query 2:");
    assert_null(strstr(out, "query 3:"));
    assert_int_equal(count_text(out, "[recall@5 1.00]"), 3);
    free(out);

    /* The same answers through GetClosest. */
    out =
        cli(f, 0, "query %s --k 5 --n 3 --nprobe 64 --api getclosest", f->file);
    assert_int_equal(count_text(out, "[recall@5 1.00]"), 3);
    free(out);

    /* Both RPCs by default: batched and single-query columns for each. */
    out = cli(f, 0, "bench %s --nprobe 1,64 --k 10 --single 5", f->file);
    expect_text(out, "recall@k  batch GetClosest  batch Search  single "
                     "GetClosest  single Search");
    /* The nprobe 64 row: exact, so recall 1, and 4 positive rates. */
    expect_row(out, 64, 6);
    free(out);
    out = cli(f, 0, "bench %s --nprobe 64 --single 5 --api search", f->file);
    expect_text(out, "recall@k  batch Search  single Search");
    expect_row(out, 64, 4);
    free(out);
    out =
        cli(f, 0, "bench %s --nprobe 64 --single 5 --api getclosest", f->file);
    expect_row(out, 64, 4);
    assert_null(strstr(out, "Search"));
    free(out);
    out = cli(f, 2, "bench %s --api grpc", f->file);
    expect_text(out, "bad --api 'grpc'");
    free(out);
    /* --repeat: the batched pass runs N times, the row is the same shape. */
    out = cli(f, 0, "bench %s --nprobe 64 --single 2 --repeat 3", f->file);
    expect_text(out, "(fastest of 3)");
    expect_row(out, 64, 6);
    free(out);
    out = cli(f, 2, "bench %s --repeat 0", f->file);
    expect_text(out, "--repeat must be at least 1");
    free(out);

    out = cli(f, 0, "delete 1 2 no-such-key");
    expect_text(out, "deleted 2 of 3 keys");
    free(out);
    /* A key not stored: the others are printed, the missing one is an
     * error on stderr, and the exit status says so. */
    out = cli(f, 1, "get 3 1");
    expect_text(out, "3: ");
    expect_text(out, "npvdb: get: key '1' not found");
    free(out);
    out = cli(f, 0, "get 3");
    expect_text(out, "3: ");
    free(out);
    out = cli(f, 0, "--version");
    expect_text(out, "npvdb " NPVDB_VERSION "\n");
    free(out);
    out = cli(f, 0, "snapshot");
    expect_text(out, "1998 vectors");
    free(out);
    out = cli(f, 0, "health");
    expect_text(out, "SERVING");
    free(out);

    /* Loading again needs --replace. */
    out = cli(f, 1, "load %s", f->file);
    expect_text(out, "ALREADY_EXISTS");
    expect_text(out, "--replace");
    free(out);
    out = cli(f, 0, "load %s --replace --metric cosine", f->file);
    expect_text(out, "loaded 2000 vectors");
    free(out);
    out = cli(f, 0, "info");
    expect_text(out, "metric:      cosine");
    expect_text(out, "vectors:     2000");
    free(out);
}

static void test_clear_errors(void **state)
{
    fixture *f = *state;
    char *out = cli(f, 1, "load %s/missing.hdf5", f->s.root);
    expect_text(out, "cannot use");
    expect_text(out, "missing.hdf5");
    free(out);

    char junk[450];
    snprintf(junk, sizeof junk, "%s/junk.hdf5", f->s.root);
    FILE *j = fopen(junk, "w");
    assert_non_null(j);
    fputs("this is not an HDF5 file\n", j);
    fclose(j);
    out = cli(f, 1, "query %s", junk);
    expect_text(out, "cannot use");
    free(out);

    out = cli(f, 2, "frobnicate");
    expect_text(out, "unknown command");
    free(out);
    out = cli(f, 2, "query %s --k nine", f->file);
    expect_text(out, "--k");
    free(out);

    /* No server at the address: say so, with the address. */
    char cmd[600], *o = NULL;
    snprintf(cmd, sizeof cmd, "%s --server 127.0.0.1:1 info", NPVDB_CLI_BIN);
    assert_int_equal(it_run(cmd, &o), 1);
    expect_text(o, "cannot reach npvdb at 127.0.0.1:1");
    free(o);
}

/* ---- payloads: load --payload-column, --where, --with-payload, scroll ---- */

static void write_column(hid_t file, const char *name, hid_t mem, hid_t ftype,
                         const void *data)
{
    hsize_t n = NTRAIN;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

/* Columns of the train rows, as h5py writes them: tenant (int32, i % 5),
 * price (float32, i / 2), lang (variable-length UTF-8, "en" / "fr" by
 * parity), code (fixed 4 bytes, "c<i % 10>"), flag (h5py's bool enum,
 * i % 3 == 0), and wide (2 columns: not a payload column). */
static void add_columns(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    static int32_t tenant[NTRAIN];
    static float price[NTRAIN];
    static const char *lang[NTRAIN];
    static char code[NTRAIN][4];
    static int8_t flag[NTRAIN];
    static float wide[NTRAIN * 2];
    for (int i = 0; i < NTRAIN; i++) {
        tenant[i] = i % 5;
        price[i] = (float)i / 2;
        lang[i] = i % 2 ? "fr" : "en";
        memset(code[i], 0, 4);
        snprintf(code[i], 4, "c%d", i % 10);
        flag[i] = i % 3 == 0;
    }
    write_column(f, "tenant", H5T_NATIVE_INT32, H5T_STD_I32LE, tenant);
    write_column(f, "price", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, price);
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    H5Tset_cset(vs, H5T_CSET_UTF8);
    write_column(f, "lang", vs, vs, lang);
    H5Tclose(vs);
    hid_t fs = H5Tcopy(H5T_C_S1);
    H5Tset_size(fs, 4);
    H5Tset_strpad(fs, H5T_STR_NULLPAD);
    write_column(f, "code", fs, fs, code);
    H5Tclose(fs);
    hid_t b = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t no = 0, yes = 1;
    H5Tenum_insert(b, "FALSE", &no);
    H5Tenum_insert(b, "TRUE", &yes);
    write_column(f, "flag", b, b, flag);
    H5Tclose(b);
    write_dataset(f, "wide", H5T_NATIVE_FLOAT, NTRAIN, 2, wide);
    H5Fclose(f);
}

static int lines_of(const char *out, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

static int key_order(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void test_payload_columns_where_scroll(void **state)
{
    fixture *f = *state;
    add_columns(f->file);
    char *out = cli(f, 1, "load %s --payload-column nope", f->file);
    expect_text(out, "--payload-column nope: no such dataset");
    free(out);
    out = cli(f, 1, "load %s --payload-column wide", f->file);
    expect_text(out, "--payload-column wide: want one value per train row");
    free(out);
    out = cli(f, 0,
              "load %s --shards 4 --batch 300 --payload-column tenant "
              "--payload-column price --payload-column lang "
              "--payload-column code --payload-column flag",
              f->file);
    expect_text(out, "loaded 2000 vectors");
    free(out);

    out = cli(f, 0, "count --where tenant=2");
    expect_text(out, "400\n");
    free(out);
    out = cli(f, 0,
              "count --where lang=fr --where 'price>=500' --where "
              "flag=true --where code=c3");
    /* odd, i >= 1000, i % 3 == 0, i % 10 == 3: i = 1023 + 30 m < 2000. */
    expect_text(out, "33\n");
    free(out);
    out = cli(f, 0, "get 7 12 --with-payload");
    expect_text(out, " {\"code\": \"c7\", \"flag\": false, \"lang\": \"fr\", "
                     "\"price\": 3.5, \"tenant\": 2}\n");
    expect_text(out, " {\"code\": \"c2\", \"flag\": true, \"lang\": \"en\", "
                     "\"price\": 6.0, \"tenant\": 2}\n");
    free(out);

    /* search --where: the 5 nearest among tenant = 2, by brute force. */
    it_data train, test;
    it_data_make(&train, NTRAIN, DIM, 51, "");
    it_data_make(&test, NTEST, DIM, 52, "");
    char vec[512];
    size_t at = 0;
    for (int j = 0; j < DIM; j++)
        at += (size_t)snprintf(vec + at, sizeof vec - at, "%s%.9g",
                               j ? "," : "", (double)test.rows[j]);
    double best[NTRAIN / 5][2];
    size_t nb = 0;
    for (int i = 2; i < NTRAIN; i += 5) {
        double d = 0;
        for (int j = 0; j < DIM; j++) {
            double x = (double)train.rows[i * DIM + j] - test.rows[j];
            d += x * x;
        }
        best[nb][0] = d;
        best[nb++][1] = i;
    }
    qsort(best, nb, sizeof best[0], key_order);
    out = cli(f, 0,
              "search %s --k 5 --nprobe 4 --where tenant=2 "
              "--with-payload",
              vec);
    assert_int_equal(lines_of(out, ""), 5);
    const char *line = out;
    for (int h = 0; h < 5; h++) {
        char want[32];
        snprintf(want, sizeof want, "%d\t", (int)best[h][1]);
        if (strncmp(line, want, strlen(want)))
            fail_msg("hit %d: want key %d first in:\n%s", h, (int)best[h][1],
                     out);
        line = strchr(line, '\n') + 1;
    }
    assert_int_equal(count_text(out, "\"tenant\": 2}"), 5);
    free(out);
    out = cli(f, 0,
              "search %s --k 5 --nprobe 4 --api getclosest --where "
              "tenant=2",
              vec);
    char want0[32];
    snprintf(want0, sizeof want0, "%d\t", (int)best[0][1]);
    assert_int_equal(strncmp(out, want0, strlen(want0)), 0);
    assert_null(strchr(out, '{'));
    free(out);
    it_data_free(&train);
    it_data_free(&test);

    /* query --where: every hit passes; no recall against `neighbors`. */
    out = cli(f, 0,
              "query %s --k 4 --n 3 --nprobe 4 --where lang=en --where "
              "has:flag --with-payload",
              f->file);
    assert_int_equal(count_text(out, "\"lang\": \"en\""), 12);
    assert_null(strstr(out, "recall"));
    free(out);
    out = cli(f, 2, "query %s --where 'price<cheap'", f->file);
    expect_text(out, "is not a number");
    free(out);

    /* scroll / export: every key once, as JSON lines. */
    out = cli(f, 0, "scroll --limit 300 --with-payload");
    assert_int_equal(lines_of(out, "{\"key\": \""), 2000);
    for (int i = 0; i < NTRAIN; i += 199) {
        char k[32];
        snprintf(k, sizeof k, "{\"key\": \"%d\", ", i);
        assert_int_equal(count_text(out, k), 1);
    }
    expect_text(out, "{\"key\": \"7\", \"payload\": {\"code\": \"c7\", "
                     "\"flag\": false, \"lang\": \"fr\", \"price\": 3.5, "
                     "\"tenant\": 2}}\n");
    free(out);
    out = cli(f, 0, "export --where lang=fr --where tenant=0 --with-vectors");
    assert_int_equal(lines_of(out, "{\"key\": \""), 200);
    expect_text(out, "{\"key\": \"5\", \"vector\": [");
    assert_null(strstr(out, "payload"));
    free(out);
}

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_query_bench_info, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clear_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_columns_where_scroll,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
