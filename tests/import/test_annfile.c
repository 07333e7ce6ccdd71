/*
 * test_annfile.c -- the ann-benchmarks HDF5 reader against small files this
 * test writes itself: values read back exactly (in chunks, across types), the
 * metric attribute in each form h5py writes it, and every malformed layout or
 * bad request giving an error that names the problem rather than a crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "annfile.h"

#include <hdf5.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum attr_kind { ATTR_NONE, ATTR_VLEN, ATTR_FIXED, ATTR_INT };

/* What write_file puts into the file; zero rows means "no such dataset". */
typedef struct spec {
    size_t train_rows, test_rows, nb_rows;
    uint32_t dim, test_dim, nb_width;
    int train_rank;   /* 2 unless testing a bad rank */
    hid_t train_type; /* file type of train (float32 by default) */
    int32_t bad_id;   /* when nonzero, written at neighbors[1][2] */
    enum attr_kind attr;
    const char *distance;
} spec;

static char g_dir[64];
static char g_path[128];

/* Value of train row r, column c: distinct per element so that any row or
 * column mix-up shows. */
static float train_val(size_t r, uint32_t c)
{
    return (float)r * 1000.0f + (float)c + 0.25f;
}

static void write_2d(hid_t file, const char *name, hid_t ftype, hid_t mtype,
                     size_t rows, uint32_t cols, int rank, const void *data)
{
    hsize_t dims[2] = {rows, cols};
    if (rank == 1) dims[0] = rows * cols;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

static void write_attr(hid_t file, const spec *s)
{
    hid_t space = H5Screate(H5S_SCALAR), type, attr;
    if (s->attr == ATTR_INT) {
        int v = 7;
        attr = H5Acreate2(file, "distance", H5T_NATIVE_INT, space, H5P_DEFAULT,
                          H5P_DEFAULT);
        H5Awrite(attr, H5T_NATIVE_INT, &v);
    } else if (s->attr == ATTR_VLEN) {
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        H5Tset_cset(type, H5T_CSET_UTF8); /* as h5py writes a str */
        attr =
            H5Acreate2(file, "distance", type, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(attr, type, &s->distance);
        H5Tclose(type);
    } else {
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, strlen(s->distance));
        H5Tset_strpad(type, H5T_STR_NULLPAD); /* numpy bytes: no NUL */
        attr =
            H5Acreate2(file, "distance", type, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(attr, type, s->distance);
        H5Tclose(type);
    }
    H5Aclose(attr);
    H5Sclose(space);
}

static void write_train(hid_t file, const spec *s)
{
    float *train = malloc(s->train_rows * s->dim * sizeof *train);
    assert_non_null(train);
    for (size_t r = 0; r < s->train_rows; r++)
        for (uint32_t c = 0; c < s->dim; c++)
            train[r * s->dim + c] = train_val(r, c);
    write_2d(file, "train", s->train_type ? s->train_type : H5T_IEEE_F32LE,
             H5T_NATIVE_FLOAT, s->train_rows, s->dim,
             s->train_rank ? s->train_rank : 2, train);
    free(train);
}

static void write_test_and_neighbors(hid_t file, const spec *s)
{
    uint32_t tdim = s->test_dim ? s->test_dim : s->dim;
    if (s->test_rows) {
        float *test = malloc(s->test_rows * tdim * sizeof *test);
        assert_non_null(test);
        for (size_t i = 0; i < s->test_rows * tdim; i++)
            test[i] = -(float)i;
        write_2d(file, "test", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, s->test_rows,
                 tdim, 2, test);
        free(test);
    }
    if (s->nb_rows) {
        int32_t *nb = malloc(s->nb_rows * s->nb_width * sizeof *nb);
        assert_non_null(nb);
        for (size_t i = 0; i < s->nb_rows * s->nb_width; i++)
            nb[i] = s->train_rows ? (int32_t)(i % s->train_rows) : 0;
        if (s->bad_id) nb[1 * s->nb_width + 2] = s->bad_id;
        /* int64 on disk, as some writers use: read back as int32. */
        write_2d(file, "neighbors", H5T_STD_I64LE, H5T_NATIVE_INT32, s->nb_rows,
                 s->nb_width, 2, nb);
        free(nb);
    }
}

/* Writes g_path according to *s. */
static void write_file(const spec *s)
{
    hid_t file = H5Fcreate(g_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    if (s->train_rows) write_train(file, s);
    write_test_and_neighbors(file, s);
    if (s->attr != ATTR_NONE) write_attr(file, s);
    H5Fclose(file);
}

/* A well-formed file: 1000 x 12 train, 37 x 12 test, 37 x 10 neighbors. */
static spec good_spec(void)
{
    spec s = {.train_rows = 1000,
              .test_rows = 37,
              .nb_rows = 37,
              .dim = 12,
              .nb_width = 10,
              .attr = ATTR_VLEN,
              .distance = "angular"};
    return s;
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/npvdb-annfile-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_path, sizeof g_path, "%s/f.hdf5", g_dir);
    return 0;
}

static int teardown(void **state)
{
    unlink(g_path);
    rmdir(g_dir);
    return 0;
}

/* Opening `s` must fail with EINVAL and a message containing `needle`. */
static void expect_open_error(const spec *s, const char *needle)
{
    npvdb_error err = {0};
    write_file(s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_null(f);
    assert_int_equal(err.code, NPVDB_EINVAL);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_reads_good_file_in_chunks(void **state)
{
    spec s = good_spec();
    npvdb_error err = {0};
    write_file(&s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    assert_int_equal(npvdb_annfile_dim(f), 12);
    assert_int_equal(npvdb_annfile_train_rows(f), 1000);
    assert_int_equal(npvdb_annfile_test_rows(f), 37);
    assert_int_equal(npvdb_annfile_neighbors_width(f), 10);
    assert_int_equal(npvdb_annfile_metric(f), NPVDB_METRIC_COSINE);

    /* Chunks of 300 rows: the last one is partial (100 rows). */
    float *buf = malloc(300 * 12 * sizeof *buf);
    assert_non_null(buf);
    for (size_t first = 0; first < 1000; first += 300) {
        size_t n = first + 300 <= 1000 ? 300 : 1000 - first;
        assert_int_equal(npvdb_annfile_read(f, "train", first, n, buf, &err),
                         NPVDB_OK);
        for (size_t r = 0; r < n; r++)
            for (uint32_t c = 0; c < 12; c++)
                assert_true(buf[r * 12 + c] == train_val(first + r, c));
    }
    assert_int_equal(npvdb_annfile_read(f, "test", 36, 1, buf, &err), NPVDB_OK);
    assert_true(buf[0] == -(float)(36 * 12));
    assert_true(buf[11] == -(float)(36 * 12 + 11));

    int32_t nb[2 * 10];
    assert_int_equal(npvdb_annfile_read_neighbors(f, 5, 2, nb, &err), NPVDB_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(nb[i], 50 + i);
    /* A zero-row read is allowed and touches nothing. */
    assert_int_equal(npvdb_annfile_read(f, "train", 1000, 0, buf, &err),
                     NPVDB_OK);
    free(buf);
    npvdb_annfile_close(f);
}

static void test_float64_train_is_converted(void **state)
{
    spec s = good_spec();
    s.train_type = H5T_IEEE_F64LE;
    npvdb_error err = {0};
    write_file(&s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    float row[12];
    assert_int_equal(npvdb_annfile_read(f, "train", 999, 1, row, &err),
                     NPVDB_OK);
    assert_true(row[5] == train_val(999, 5));
    npvdb_annfile_close(f);
}

static npvdb_metric open_metric(const spec *s)
{
    npvdb_error err = {0};
    write_file(s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    if (!f) fail_msg("open failed: %s", err.msg);
    npvdb_metric m = npvdb_annfile_metric(f);
    npvdb_annfile_close(f);
    return m;
}

static void test_metric_attribute_forms(void **state)
{
    spec s = good_spec();
    s.distance = "euclidean";
    assert_int_equal(open_metric(&s), NPVDB_METRIC_L2);
    s.attr = ATTR_FIXED;
    s.distance = "angular";
    assert_int_equal(open_metric(&s), NPVDB_METRIC_COSINE);
    s.distance = "ip";
    assert_int_equal(open_metric(&s), NPVDB_METRIC_IP);
    s.attr = ATTR_NONE;
    assert_int_equal(open_metric(&s), NPVDB_METRIC_L2);

    s.attr = ATTR_VLEN;
    s.distance = "hamming";
    expect_open_error(&s, "'hamming' is not supported");
    s.attr = ATTR_INT;
    expect_open_error(&s, "not a single string");
}

static void test_optional_datasets_absent(void **state)
{
    spec s = good_spec();
    s.test_rows = s.nb_rows = 0;
    npvdb_error err = {0};
    write_file(&s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    assert_int_equal(npvdb_annfile_test_rows(f), 0);
    assert_int_equal(npvdb_annfile_neighbors_width(f), 0);
    float row[12];
    int32_t nb[10];
    assert_int_equal(npvdb_annfile_read(f, "test", 0, 1, row, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "no dataset 'test'"));
    assert_int_equal(npvdb_annfile_read_neighbors(f, 0, 1, nb, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "no dataset 'neighbors'"));
    npvdb_annfile_close(f);
}

static void test_out_of_range_requests(void **state)
{
    spec s = good_spec();
    npvdb_error err = {0};
    write_file(&s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    float *buf = malloc(2 * 12 * sizeof *buf);
    int32_t nb[2 * 10];
    assert_non_null(buf);
    assert_int_equal(npvdb_annfile_read(f, "train", 999, 2, buf, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "rows 999..1000 requested"));
    assert_int_equal(npvdb_annfile_read(f, "train", 1001, 0, buf, &err),
                     NPVDB_EINVAL);
    /* first + n overflowing size_t must not wrap into range. */
    assert_int_equal(npvdb_annfile_read(f, "train", 10, SIZE_MAX, buf, &err),
                     NPVDB_EINVAL);
    assert_int_equal(npvdb_annfile_read(f, "test", 36, 2, buf, &err),
                     NPVDB_EINVAL);
    assert_int_equal(npvdb_annfile_read_neighbors(f, 37, 1, nb, &err),
                     NPVDB_EINVAL);
    assert_int_equal(npvdb_annfile_read(f, "distances", 0, 1, buf, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "unknown dataset 'distances'"));
    assert_int_equal(npvdb_annfile_read(f, "train", 0, 1, NULL, &err),
                     NPVDB_EINVAL);
    assert_int_equal(npvdb_annfile_read(NULL, "train", 0, 1, buf, &err),
                     NPVDB_EINVAL);
    free(buf);
    npvdb_annfile_close(f);
}

static void test_bad_layouts(void **state)
{
    spec s = good_spec();
    s.train_rows = 0;
    expect_open_error(&s, "no dataset 'train'");

    s = good_spec();
    s.train_rank = 1;
    expect_open_error(&s, "'train' has rank 1");

    s = good_spec();
    s.train_type = H5T_STD_I32LE;
    expect_open_error(&s, "'train' holds integers, expected floats");

    s = good_spec();
    s.test_dim = 13;
    expect_open_error(&s, "'test' has 13 columns but 'train' has 12");

    s = good_spec();
    s.nb_rows = 36;
    expect_open_error(&s, "'neighbors' has 36 rows but 'test' has 37");

    s = good_spec();
    s.test_rows = 0;
    expect_open_error(&s, "'neighbors' present but no 'test'");
}

static void test_neighbor_id_out_of_range(void **state)
{
    spec s = good_spec();
    npvdb_error err = {0};
    int32_t nb[3 * 10];
    s.bad_id = 1000; /* == train rows: one past the end */
    write_file(&s);
    npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    assert_int_equal(npvdb_annfile_read_neighbors(f, 0, 3, nb, &err),
                     NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "neighbors[1][2] = 1000 is not a train"));
    /* Rows without the bad id still read. */
    assert_int_equal(npvdb_annfile_read_neighbors(f, 2, 1, nb, &err), NPVDB_OK);
    npvdb_annfile_close(f);

    s.bad_id = -1;
    write_file(&s);
    f = npvdb_annfile_open(g_path, &err);
    assert_non_null(f);
    assert_int_equal(npvdb_annfile_read_neighbors(f, 1, 1, nb, &err),
                     NPVDB_EINVAL);
    npvdb_annfile_close(f);
}

static void test_missing_and_foreign_files(void **state)
{
    npvdb_error err = {0};
    assert_null(npvdb_annfile_open("/nonexistent/x.hdf5", &err));
    assert_int_equal(err.code, NPVDB_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/x.hdf5"));
    assert_null(npvdb_annfile_open("", &err));
    assert_null(npvdb_annfile_open(NULL, &err));

    FILE *fp = fopen(g_path, "w");
    assert_non_null(fp);
    fputs("this is not HDF5\n", fp);
    fclose(fp);
    assert_null(npvdb_annfile_open(g_path, &err));
    if (!strstr(err.msg, "not an HDF5 file"))
        fail_msg("unexpected message: %s", err.msg);
    npvdb_annfile_close(NULL);
}

/* Truncates the good file at several lengths: each must give an error at
 * open or at read, never a crash or garbage accepted silently. */
static void test_truncated_file(void **state)
{
    spec s = good_spec();
    write_file(&s);
    FILE *fp = fopen(g_path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    assert_true(size > 4096);

    const long cuts[] = {size - 1, size / 2, 2048, 600, 100, 8};
    float *buf = malloc(1000 * 12 * sizeof *buf);
    int32_t *nb = malloc(37 * 10 * sizeof *nb);
    assert_non_null(buf);
    assert_non_null(nb);
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        npvdb_error err = {0};
        write_file(&s);
        assert_int_equal(truncate(g_path, cuts[i]), 0);
        npvdb_annfile *f = npvdb_annfile_open(g_path, &err);
        if (f) {
            /* HDF5 may open a file whose superblock survived; then a read
             * of the missing bytes must fail. */
            npvdb_code a = npvdb_annfile_read(f, "train", 0, 1000, buf, &err);
            npvdb_code b = npvdb_annfile_read_neighbors(f, 0, 37, nb, &err);
            assert_true(a != NPVDB_OK || b != NPVDB_OK);
            print_message("cut at %ld: opened, read failed: %s\n", cuts[i],
                          err.msg);
            npvdb_annfile_close(f);
        } else {
            assert_int_equal(err.code, NPVDB_EINVAL);
            assert_true(strlen(err.msg) > 0);
            print_message("cut at %ld: %s\n", cuts[i], err.msg);
        }
    }
    free(nb);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_good_file_in_chunks),
        cmocka_unit_test(test_float64_train_is_converted),
        cmocka_unit_test(test_metric_attribute_forms),
        cmocka_unit_test(test_optional_datasets_absent),
        cmocka_unit_test(test_out_of_range_requests),
        cmocka_unit_test(test_bad_layouts),
        cmocka_unit_test(test_neighbor_id_out_of_range),
        cmocka_unit_test(test_missing_and_foreign_files),
        cmocka_unit_test(test_truncated_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
