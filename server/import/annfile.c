/*
 * annfile.c -- the ann-benchmarks HDF5 reader behind annfile.h.
 *
 * Everything in the file is distrusted: each dataset's class, rank and
 * extents are checked at open, every read request is bounds-checked against
 * them, and neighbour ids are checked against the train row count, so a caller
 * can index train rows with them without checking again.
 *
 * libhdf5 prints its error stack to stderr by default. A library must not
 * write to stderr behind its caller's back, so each public call silences the
 * automatic printing for its duration and instead copies the innermost HDF5
 * message (usually the real cause, e.g. "truncated file: eof = ...") into the
 * npvdb_error.
 */
#include "annfile.h"

#include <hdf5.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct npvdb_annfile {
    hid_t file;
    hid_t train;     /* always open */
    hid_t test;      /* H5I_INVALID_HID when absent */
    hid_t neighbors; /* H5I_INVALID_HID when absent */
    size_t train_rows;
    size_t test_rows;
    uint32_t dim;
    uint32_t nb_width;
    npvdb_metric metric;
    char path[256]; /* for messages only; truncated if longer */
};

/* ---- errors -------------------------------------------------------------- */

/* Keeps the description of the innermost (first, walking upward) entry of the
 * HDF5 error stack: the lowest layer says what actually went wrong. */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *ctx)
{
    char *out = ctx;
    if (n == 0 && e->desc) snprintf(out, 128, "%s", e->desc);
    return 0;
}

/* The current thread's HDF5 error cause, or "" when HDF5 recorded none. */
static const char *h5_cause(char buf[128])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, buf);
    return buf;
}

/* Saves and silences HDF5's automatic stderr printing for one public call. */
typedef struct quiet {
    H5E_auto2_t func;
    void *data;
} quiet;

static quiet quiet_begin(void)
{
    quiet q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void quiet_end(quiet q)
{
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

/* ---- open: layout checks ------------------------------------------------- */

/* Reads a dataset's 2-D extents; fails on any other rank. */
static npvdb_code dataset_shape(const npvdb_annfile *f, hid_t ds,
                                const char *name, hsize_t dims[2],
                                npvdb_error *err)
{
    char cause[128];
    hid_t space = H5Dget_space(ds);
    if (space < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: cannot read the shape of '%s': %s", f->path,
                               name, h5_cause(cause));
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank == 2) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if (rank != 2)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: dataset '%s' has rank %d, expected 2 (rows x columns)",
            f->path, name, rank);
    return NPVDB_OK;
}

/* Checks that a dataset's elements are of `want` class (float or integer);
 * HDF5 converts widths (float64 -> float32, int64 -> int32) on read. */
static npvdb_code dataset_class(const npvdb_annfile *f, hid_t ds,
                                const char *name, H5T_class_t want,
                                npvdb_error *err)
{
    hid_t type = H5Dget_type(ds);
    H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    if (type >= 0) H5Tclose(type);
    if (cls != want)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: dataset '%s' holds %s, expected %s",
                               f->path, name,
                               cls == H5T_FLOAT     ? "floats"
                               : cls == H5T_INTEGER ? "integers"
                               : cls == H5T_STRING  ? "strings"
                                                    : "an unsupported type",
                               want == H5T_FLOAT ? "floats" : "integers");
    return NPVDB_OK;
}

/* Opens dataset `name`: *out stays H5I_INVALID_HID when the file has no such
 * link and `required` is 0. */
static npvdb_code open_dataset(npvdb_annfile *f, const char *name, int required,
                               hid_t *out, npvdb_error *err)
{
    char cause[128];
    *out = H5I_INVALID_HID;
    htri_t exists = H5Lexists(f->file, name, H5P_DEFAULT);
    if (exists < 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: cannot look up '%s': %s",
                               f->path, name, h5_cause(cause));
    if (exists == 0) {
        if (!required) return NPVDB_OK;
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: no dataset '%s' (not an ann-benchmarks file?)", f->path, name);
    }
    *out = H5Dopen2(f->file, name, H5P_DEFAULT);
    if (*out < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: '%s' is not a readable dataset: %s",
                               f->path, name, h5_cause(cause));
    return NPVDB_OK;
}

static npvdb_code check_train(npvdb_annfile *f, npvdb_error *err)
{
    hsize_t dims[2];
    npvdb_code rc = open_dataset(f, "train", 1, &f->train, err);
    if (rc == NPVDB_OK)
        rc = dataset_class(f, f->train, "train", H5T_FLOAT, err);
    if (rc == NPVDB_OK) rc = dataset_shape(f, f->train, "train", dims, err);
    if (rc != NPVDB_OK) return rc;
    if (dims[1] < 1 || dims[1] > NPVDB_MAX_DIM)
        return npvdb_set_error(
            err, NPVDB_EINVAL, "%s: 'train' has %llu columns, expected 1..%d",
            f->path, (unsigned long long)dims[1], NPVDB_MAX_DIM);
    if ((unsigned long long)dims[0] > SIZE_MAX / dims[1])
        return npvdb_set_error(err, NPVDB_ELIMIT,
                               "%s: 'train' is too large (%llu rows)", f->path,
                               (unsigned long long)dims[0]);
    f->dim = (uint32_t)dims[1];
    f->train_rows = (size_t)dims[0];
    return NPVDB_OK;
}

static npvdb_code check_test(npvdb_annfile *f, npvdb_error *err)
{
    hsize_t dims[2];
    npvdb_code rc = open_dataset(f, "test", 0, &f->test, err);
    if (rc != NPVDB_OK || f->test < 0) return rc;
    rc = dataset_class(f, f->test, "test", H5T_FLOAT, err);
    if (rc == NPVDB_OK) rc = dataset_shape(f, f->test, "test", dims, err);
    if (rc != NPVDB_OK) return rc;
    if (dims[1] != f->dim)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: 'test' has %llu columns but 'train' has %u",
                               f->path, (unsigned long long)dims[1], f->dim);
    f->test_rows = (size_t)dims[0];
    return NPVDB_OK;
}

static npvdb_code check_neighbors(npvdb_annfile *f, npvdb_error *err)
{
    hsize_t dims[2];
    npvdb_code rc = open_dataset(f, "neighbors", 0, &f->neighbors, err);
    if (rc != NPVDB_OK || f->neighbors < 0) return rc;
    rc = dataset_class(f, f->neighbors, "neighbors", H5T_INTEGER, err);
    if (rc == NPVDB_OK)
        rc = dataset_shape(f, f->neighbors, "neighbors", dims, err);
    if (rc != NPVDB_OK) return rc;
    if (f->test < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: 'neighbors' present but no 'test' dataset",
                               f->path);
    if (dims[0] != f->test_rows)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: 'neighbors' has %llu rows but 'test' has %zu", f->path,
            (unsigned long long)dims[0], f->test_rows);
    if (dims[1] < 1 || dims[1] > NPVDB_MAX_K)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: 'neighbors' has %llu columns, expected 1..%d", f->path,
            (unsigned long long)dims[1], NPVDB_MAX_K);
    f->nb_width = (uint32_t)dims[1];
    return NPVDB_OK;
}

static npvdb_code metric_from_name(npvdb_annfile *f, const char *name,
                                   npvdb_error *err)
{
    static const struct {
        const char *name;
        npvdb_metric metric;
    } names[] = {
        {"angular", NPVDB_METRIC_COSINE},
        {"cosine", NPVDB_METRIC_COSINE},
        {"euclidean", NPVDB_METRIC_L2},
        {"l2", NPVDB_METRIC_L2},
        {"ip", NPVDB_METRIC_IP},
        {"dot", NPVDB_METRIC_IP},
        {"inner_product", NPVDB_METRIC_IP},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            f->metric = names[i].metric;
            return NPVDB_OK;
        }
    }
    return npvdb_set_error(
        err, NPVDB_EINVAL,
        "%s: distance '%.64s' is not supported (angular, euclidean, "
        "ip)",
        f->path, name);
}

/* Reads the string attribute into buf (NUL-terminated, truncated to len-1);
 * handles both variable-length strings (what h5py writes for a str) and
 * fixed-length ones (numpy bytes). */
static npvdb_code read_string_attr(npvdb_annfile *f, hid_t attr, char *buf,
                                   size_t len, npvdb_error *err)
{
    char cause[128];
    npvdb_code rc = NPVDB_OK;
    hid_t ftype = H5Aget_type(attr);
    hid_t space = H5Aget_space(attr);
    hid_t mtype = H5I_INVALID_HID;
    hssize_t npoints = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    buf[0] = '\0';
    if (ftype < 0 || H5Tget_class(ftype) != H5T_STRING || npoints != 1) {
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "%s: attribute 'distance' is not a single string",
                             f->path);
        goto done;
    }
    if (H5Tis_variable_str(ftype) > 0) {
        char *s = NULL;
        mtype = H5Tcopy(H5T_C_S1);
        /* The memory type must carry the file's charset (h5py writes
         * UTF-8), or HDF5 finds no conversion path. */
        if (mtype < 0 || H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
            H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0 ||
            H5Aread(attr, mtype, &s) < 0) {
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "%s: cannot read attribute 'distance': %s",
                                 f->path, h5_cause(cause));
            goto done;
        }
        snprintf(buf, len, "%s", s ? s : "");
        /* vlen strings are allocated by libhdf5 and freed by it. */
        H5free_memory(s);
    } else {
        size_t size = H5Tget_size(ftype);
        char *tmp = calloc(1, size + 1);
        if (!tmp) {
            rc = npvdb_set_error(err, NPVDB_ENOMEM,
                                 "out of memory reading 'distance'");
            goto done;
        }
        mtype = H5Tcopy(ftype);
        if (mtype < 0 || H5Aread(attr, mtype, tmp) < 0) {
            free(tmp);
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "%s: cannot read attribute 'distance': %s",
                                 f->path, h5_cause(cause));
            goto done;
        }
        snprintf(buf, len, "%s", tmp);
        free(tmp);
    }
done:
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    if (ftype >= 0) H5Tclose(ftype);
    return rc;
}

static npvdb_code check_metric(npvdb_annfile *f, npvdb_error *err)
{
    char cause[128], name[80];
    f->metric = NPVDB_METRIC_L2;
    htri_t has = H5Aexists(f->file, "distance");
    if (has < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: cannot look up attribute "
                               "'distance': %s",
                               f->path, h5_cause(cause));
    if (has == 0) return NPVDB_OK;
    hid_t attr = H5Aopen(f->file, "distance", H5P_DEFAULT);
    if (attr < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "%s: cannot open attribute "
                               "'distance': %s",
                               f->path, h5_cause(cause));
    npvdb_code rc = read_string_attr(f, attr, name, sizeof name, err);
    H5Aclose(attr);
    return rc != NPVDB_OK ? rc : metric_from_name(f, name, err);
}

/* ---- public API ---------------------------------------------------------- */

void npvdb_annfile_close(npvdb_annfile *f)
{
    if (!f) return;
    quiet q = quiet_begin();
    if (f->neighbors >= 0) H5Dclose(f->neighbors);
    if (f->test >= 0) H5Dclose(f->test);
    if (f->train >= 0) H5Dclose(f->train);
    if (f->file >= 0) H5Fclose(f->file);
    quiet_end(q);
    free(f);
}

npvdb_annfile *npvdb_annfile_open(const char *path, npvdb_error *err)
{
    char cause[128];
    if (!path || !*path) {
        npvdb_set_error(err, NPVDB_EINVAL, "no HDF5 file path given");
        return NULL;
    }
    npvdb_annfile *f = calloc(1, sizeof *f);
    if (!f) {
        npvdb_set_error(err, NPVDB_ENOMEM, "out of memory opening %s", path);
        return NULL;
    }
    f->file = f->train = f->test = f->neighbors = H5I_INVALID_HID;
    snprintf(f->path, sizeof f->path, "%s", path);

    quiet q = quiet_begin();
    npvdb_code rc = NPVDB_OK;
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0) {
        rc = npvdb_set_error(err, NPVDB_EINVAL, "%s: %s", path,
                             is_h5 == 0
                                 ? "not an HDF5 file"
                                 : "cannot open (missing or unreadable?)");
    } else {
        f->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f->file < 0)
            rc = npvdb_set_error(err, NPVDB_EINVAL,
                                 "%s: cannot open HDF5 file: %s", path,
                                 h5_cause(cause));
    }
    if (rc == NPVDB_OK) rc = check_train(f, err);
    if (rc == NPVDB_OK) rc = check_test(f, err);
    if (rc == NPVDB_OK) rc = check_neighbors(f, err);
    if (rc == NPVDB_OK) rc = check_metric(f, err);
    quiet_end(q);
    if (rc != NPVDB_OK) {
        npvdb_annfile_close(f);
        return NULL;
    }
    return f;
}

uint32_t npvdb_annfile_dim(const npvdb_annfile *f)
{
    return f ? f->dim : 0;
}

npvdb_metric npvdb_annfile_metric(const npvdb_annfile *f)
{
    return f ? f->metric : NPVDB_METRIC_L2;
}

size_t npvdb_annfile_train_rows(const npvdb_annfile *f)
{
    return f ? f->train_rows : 0;
}

size_t npvdb_annfile_test_rows(const npvdb_annfile *f)
{
    return f ? f->test_rows : 0;
}

uint32_t npvdb_annfile_neighbors_width(const npvdb_annfile *f)
{
    return f ? f->nb_width : 0;
}

/* Reads rows [first, first+n) x [0, cols) of ds as mtype into out, through a
 * hyperslab selection so only those rows leave the disk. */
static npvdb_code read_rows(npvdb_annfile *f, hid_t ds, const char *name,
                            hid_t mtype, size_t first, size_t n, uint32_t cols,
                            void *out, npvdb_error *err)
{
    char cause[128];
    hsize_t start[2] = {first, 0}, count[2] = {n, cols};
    npvdb_code rc = NPVDB_OK;
    hid_t fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(2, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) <
            0 ||
        H5Dread(ds, mtype, mspace, fspace, H5P_DEFAULT, out) < 0)
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "%s: reading rows %zu..%zu of '%s' "
                             "failed: %s",
                             f->path, first, first + n - 1, name,
                             h5_cause(cause));
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

static npvdb_code check_range(const npvdb_annfile *f, const char *name,
                              size_t first, size_t n, size_t rows, void *out,
                              npvdb_error *err)
{
    if (!out)
        return npvdb_set_error(err, NPVDB_EINVAL, "no output buffer for '%s'",
                               name);
    if (first > rows || n > rows - first)
        return npvdb_set_error(
            err, NPVDB_EINVAL,
            "%s: rows %zu..%zu requested but '%s' has %zu rows", f->path, first,
            first + n - 1, name, rows);
    return NPVDB_OK;
}

npvdb_code npvdb_annfile_read(npvdb_annfile *f, const char *dataset,
                              size_t first, size_t n, float *out,
                              npvdb_error *err)
{
    if (!f || !dataset)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "no file or dataset name given");
    hid_t ds;
    size_t rows;
    if (strcmp(dataset, "train") == 0) {
        ds = f->train;
        rows = f->train_rows;
    } else if (strcmp(dataset, "test") == 0) {
        ds = f->test;
        rows = f->test_rows;
        if (ds < 0)
            return npvdb_set_error(err, NPVDB_EINVAL, "%s: no dataset 'test'",
                                   f->path);
    } else {
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "unknown dataset '%.64s' (train or test)",
                               dataset);
    }
    npvdb_code rc = check_range(f, dataset, first, n, rows, out, err);
    if (rc != NPVDB_OK || n == 0) return rc;
    quiet q = quiet_begin();
    rc =
        read_rows(f, ds, dataset, H5T_NATIVE_FLOAT, first, n, f->dim, out, err);
    quiet_end(q);
    return rc;
}

/* Neighbour ids index train rows: an id outside [0, train_rows) would make a
 * caller read out of bounds, so a file holding one is refused here. */
static npvdb_code check_ids(const npvdb_annfile *f, size_t first, size_t n,
                            const int32_t *ids, npvdb_error *err)
{
    size_t total = n * f->nb_width;
    for (size_t i = 0; i < total; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= f->train_rows)
            return npvdb_set_error(
                err, NPVDB_EINVAL,
                "%s: neighbors[%zu][%zu] = %d is not a train row "
                "('train' has %zu rows)",
                f->path, first + i / f->nb_width, i % f->nb_width, ids[i],
                f->train_rows);
    }
    return NPVDB_OK;
}

npvdb_code npvdb_annfile_read_neighbors(npvdb_annfile *f, size_t first,
                                        size_t n, int32_t *out,
                                        npvdb_error *err)
{
    if (!f) return npvdb_set_error(err, NPVDB_EINVAL, "no file given");
    if (f->neighbors < 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "%s: no dataset 'neighbors'",
                               f->path);
    npvdb_code rc =
        check_range(f, "neighbors", first, n, f->test_rows, out, err);
    if (rc != NPVDB_OK || n == 0) return rc;
    quiet q = quiet_begin();
    rc = read_rows(f, f->neighbors, "neighbors", H5T_NATIVE_INT32, first, n,
                   f->nb_width, out, err);
    quiet_end(q);
    return rc == NPVDB_OK ? check_ids(f, first, n, out, err) : rc;
}
