/*
 * it_cli.c -- the `npvdb` CLI against a real server, on a small
 * ann-benchmarks-style HDF5 file written here with libhdf5.
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
    expect_text(out, "shards:      4");
    expect_text(out, "trained:     yes");
    free(out);

    /* nprobe = shards is exact: every answer matches `neighbors`. */
    out = cli(f, 0, "query %s --k 5 --n 3 --nprobe 4", f->file);
    expect_text(out, "query 0:");
    expect_text(out, "query 2:");
    assert_null(strstr(out, "query 3:"));
    assert_int_equal(count_text(out, "[recall@5 1.00]"), 3);
    free(out);

    /* The same answers through GetClosest. */
    out =
        cli(f, 0, "query %s --k 5 --n 3 --nprobe 4 --api getclosest", f->file);
    assert_int_equal(count_text(out, "[recall@5 1.00]"), 3);
    free(out);

    /* Both RPCs by default: batched and single-query columns for each. */
    out = cli(f, 0, "bench %s --nprobe 1,4 --k 10 --single 5", f->file);
    expect_text(out, "recall@k  batch GetClosest  batch Search  single "
                     "GetClosest  single Search");
    /* The nprobe 4 row: exact, so recall 1, and 4 positive rates. */
    expect_row(out, 4, 6);
    free(out);
    out = cli(f, 0, "bench %s --nprobe 4 --single 5 --api search", f->file);
    expect_text(out, "recall@k  batch Search  single Search");
    expect_row(out, 4, 4);
    free(out);
    out = cli(f, 0, "bench %s --nprobe 4 --single 5 --api getclosest", f->file);
    expect_row(out, 4, 4);
    assert_null(strstr(out, "Search"));
    free(out);
    out = cli(f, 2, "bench %s --api grpc", f->file);
    expect_text(out, "bad --api 'grpc'");
    free(out);
    /* --repeat: the batched pass runs N times, the row is the same shape. */
    out = cli(f, 0, "bench %s --nprobe 4 --single 2 --repeat 3", f->file);
    expect_text(out, "(fastest of 3)");
    expect_row(out, 4, 6);
    free(out);
    out = cli(f, 2, "bench %s --repeat 0", f->file);
    expect_text(out, "--repeat must be at least 1");
    free(out);

    out = cli(f, 0, "delete 1 2 no-such-key");
    expect_text(out, "deleted 2 of 3 keys");
    free(out);
    out = cli(f, 0, "get 3 1");
    expect_text(out, "3: ");
    expect_text(out, "1: not found");
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

/* argv[1], if given, runs only the test of that name (one CTest entry per
 * test, so a failure names its test and ctest -j spreads them). */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_query_bench_info, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_clear_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
