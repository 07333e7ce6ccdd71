/*
 * snapshot.c -- writes and reads the HDF5 snapshot (layout in snapshot.h).
 *
 * Writing walks each collection with npvdb_export: each shard's rows go
 * straight from the engine's memory into a hyperslab of the extendible
 * vectors dataset of the collection's group (no copy of the collection),
 * while CRCs are accumulated. Reading goes collection by collection (one
 * group open at a time, iterated in name order: linear in the number of
 * collections) and shard by shard in bounded batches into
 * npvdb_restore_shard, so a restart neither re-trains nor re-assigns, and
 * memory stays bounded.
 */
#include "snapshot.h"
#include "h5attr.h"
#include "crc32c.h"
#include "record.h"
#include "snapshot_payload.h"
#include "util.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Rows per read batch when restoring: bounds memory to ~32 MiB of rows. */
#define READ_BATCH_BYTES (32u << 20)

/* ---- writing ----------------------------------------------------------- */

typedef struct writer {
    hid_t loc, vectors, keys; /* loc: the collection's group */
    hid_t str_type;
    uint32_t dim, n_shards;
    int trained;
    npvdb_metric metric;
    uint64_t n;        /* rows written */
    uint64_t *offsets; /* n_shards + 1 */
    uint32_t shards_seen;
    uint32_t crc_vectors, crc_keys, crc_centroids;
    pcols *payloads; /* NULL until a row with a payload is seen */
    npvdb_error *err;
} writer;

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0) {
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
    }
    return t;
}

/* An extendible, chunked dataset of rows x cols (cols 0: one dimension). */
static hid_t create_growing(hid_t file, const char *name, hid_t type,
                            hsize_t cols, uint64_t expect)
{
    int rank = cols ? 2 : 1;
    hsize_t dims[2] = {0, cols}, max[2] = {H5S_UNLIMITED, cols};
    /* ~1 MiB chunks of rows: large sequential writes, cheap partial reads;
     * no larger than the rows expected, since a chunk takes its full size
     * on disk (1,000 small collections must not cost 1 GB). */
    hsize_t rows = cols ? (1u << 20) / (cols * 4) : 8192;
    if (rows > expect) rows = expect;
    hsize_t chunk[2] = {rows ? rows : 1, cols};
    hid_t sp = H5Screate_simple(rank, dims, max);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, rank, chunk);
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Pclose(pl);
    H5Sclose(sp);
    return d;
}

/* Appends n rows (cols wide, 0 = one dimension) of memory type mt. */
static int append_rows(hid_t d, hid_t mt, const void *buf, uint64_t at,
                       size_t n, hsize_t cols)
{
    int rank = cols ? 2 : 1;
    hsize_t size[2] = {at + n, cols};
    if (H5Dset_extent(d, size) < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {at, 0}, count[2] = {n, cols};
    hid_t ms = H5Screate_simple(rank, count, NULL);
    int ok = fs >= 0 && ms >= 0 &&
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count,
                                 NULL) >= 0 &&
             H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, buf) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return ok ? 0 : -1;
}

static int on_index(void *ctx, const npvdb_stats *st, const float *centroids)
{
    writer *w = ctx;
    w->dim = st->dim;
    w->metric = st->metric;
    w->trained = st->trained && centroids != NULL;
    w->n_shards = st->n_shards;
    w->offsets = calloc((size_t)w->n_shards + 1, sizeof *w->offsets);
    if (!w->offsets) {
        npvdb_set_error(w->err, NPVDB_ENOMEM, "no memory for shard offsets");
        return -1;
    }
    hsize_t dims[2] = {w->trained ? w->n_shards : 0, w->dim};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(w->loc, "centroids", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0;
    if (ok && w->trained) {
        size_t bytes = (size_t)w->n_shards * w->dim * sizeof(float);
        w->crc_centroids = npvdb_crc32c(0, centroids, bytes);
        ok = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                      centroids) >= 0;
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    /* A little headroom over the count now: the export may see inserts. */
    uint64_t expect = st->n_vectors + st->n_vectors / 8 + 1;
    w->vectors =
        create_growing(w->loc, "vectors", H5T_IEEE_F32LE, w->dim, expect);
    w->keys = create_growing(w->loc, "keys", w->str_type, 0, expect);
    if (!ok || w->vectors < 0 || w->keys < 0) {
        npvdb_set_error(w->err, NPVDB_EINTERNAL,
                        "cannot create snapshot datasets");
        return -1;
    }
    return 0;
}

/* Collects the shard's payloads into columns (rows numbered from w->n). */
static int add_payloads(writer *w, const npvdb_shard_view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        if (!v->payloads[i].len) continue;
        if (!w->payloads && !(w->payloads = pcols_new())) {
            npvdb_set_error(w->err, NPVDB_ENOMEM, "no memory for payloads");
            return -1;
        }
        if (pcols_add(w->payloads, w->n + i, &v->payloads[i], w->err) !=
            NPVDB_OK)
            return -1;
    }
    return 0;
}

static int on_shard(void *ctx, const npvdb_shard_view *v)
{
    writer *w = ctx;
    if (v->shard >= w->n_shards || v->shard < w->shards_seen) {
        npvdb_set_error(w->err, NPVDB_EINTERNAL,
                        "export gave shard %u out of order", v->shard);
        return -1;
    }
    /* Shards the walk skipped are empty. */
    for (uint32_t s = w->shards_seen; s <= v->shard; s++)
        w->offsets[s] = w->n;
    w->shards_seen = v->shard + 1;
    if (v->n > 0) {
        if (append_rows(w->vectors, H5T_NATIVE_FLOAT, v->rows, w->n, v->n,
                        w->dim) < 0 ||
            append_rows(w->keys, w->str_type, v->keys, w->n, v->n, 0) < 0) {
            npvdb_set_error(w->err, NPVDB_EINTERNAL,
                            "cannot write shard %u to the snapshot", v->shard);
            return -1;
        }
        w->crc_vectors = npvdb_crc32c(w->crc_vectors, v->rows,
                                      v->n * w->dim * sizeof(float));
        for (size_t i = 0; i < v->n; i++)
            w->crc_keys =
                npvdb_crc32c(w->crc_keys, v->keys[i], strlen(v->keys[i]) + 1);
    }
    if (v->payloads && add_payloads(w, v) < 0) return -1;
    w->n += v->n;
    return 0;
}

static int write_offsets(writer *w, uint32_t *crc)
{
    for (uint32_t s = w->shards_seen; s <= w->n_shards; s++)
        w->offsets[s] = w->n;
    hsize_t dims[1] = {(hsize_t)w->n_shards + 1};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(w->loc, "shard_offsets", H5T_STD_U64LE, sp,
                         H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL,
                                H5P_DEFAULT, w->offsets) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    *crc = npvdb_crc32c(0, w->offsets, dims[0] * sizeof(uint64_t));
    return ok ? 0 : -1;
}

static int write_attrs(writer *w, const char *name, const npvdb_config *cfg,
                       uint32_t crc_offsets, uint64_t n_cols)
{
    /* The creation config is only meaningful for the same collection. */
    npvdb_config k = *cfg;
    if (k.dim != w->dim || k.metric != w->metric) memset(&k, 0, sizeof k);
    hid_t f = w->loc;
    int bad = 0;
    bad |= h5attr_put_str(f, "name", name, strlen(name));
    const char *metric = npvdb_metric_name(w->metric);
    bad |= h5attr_put_str(f, "metric", metric, strlen(metric));
    bad |= h5attr_put_u64(f, "metric_id", (uint64_t)w->metric);
    bad |= h5attr_put_u64(f, "dim", w->dim);
    bad |= h5attr_put_u64(f, "n_shards", w->n_shards);
    bad |= h5attr_put_u64(f, "trained", (uint64_t)w->trained);
    bad |= h5attr_put_u64(f, "n_vectors", w->n);
    bad |= h5attr_put_u64(f, "n_payload_columns", n_cols);
    bad |= h5attr_put_u64(f, "config_n_shards", k.n_shards);
    bad |= h5attr_put_u64(f, "train_per_shard", k.train_per_shard);
    bad |= h5attr_put_u64(f, "kmeans_iters", k.kmeans_iters);
    bad |= h5attr_put_u64(f, "default_nprobe", k.default_nprobe);
    bad |= h5attr_put_u64(f, "seed", k.seed);
    bad |= h5attr_put_u64(f, "crc32c_centroids", w->crc_centroids);
    bad |= h5attr_put_u64(f, "crc32c_vectors", w->crc_vectors);
    bad |= h5attr_put_u64(f, "crc32c_keys", w->crc_keys);
    bad |= h5attr_put_u64(f, "crc32c_shard_offsets", crc_offsets);
    return bad ? -1 : 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* After a failed write, HDF5 1.10 cannot close a file whose flush fails (the
 * handle stays half-closed and crashes the library at exit). So the failed
 * file's descriptor is pointed at an anonymous memory file: the remaining
 * flushes succeed there, the handle closes cleanly, and the disk space of
 * the (unlinked) temporary file is released. */
static void discard_file(hid_t file)
{
    int *fdp = NULL;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&fdp) < 0 || !fdp) return;
    int mfd = memfd_create("npvdb-discarded-snapshot", MFD_CLOEXEC);
    if (mfd < 0) return;
    dup2(mfd, *fdp);
    close(mfd);
}

/* Refuses a snapshot that cannot fit: free space of the file system and the
 * process file size limit, against a generous estimate. Failing here, before
 * HDF5 writes anything, is far cleaner than failing in the middle. */
static npvdb_code check_room(const char *tmp_path, npvdb_collection *c,
                             npvdb_error *err)
{
    npvdb_stats st;
    npvdb_error e;
    if (npvdb_stats_get(c, &st, &e) != NPVDB_OK)
        return npvdb_set_error(err, e.code, "%s", e.msg);
    uint64_t need = (uint64_t)st.n_vectors * (st.dim * 4u + 48u) +
                    (uint64_t)st.n_shards * (st.dim * 4u + 8u) + (4u << 20);
    /* Payloads are in memory_bytes (with vectors and keys): about what
     * the file takes too. */
    if ((uint64_t)st.memory_bytes + (4u << 20) > need)
        need = (uint64_t)st.memory_bytes + (4u << 20);
    npvdb_stats_free(&st);
    struct rlimit lim;
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (uint64_t)lim.rlim_cur < need)
        return npvdb_set_error(
            err, NPVDB_ELIMIT,
            "a snapshot needs about %llu bytes, over the file "
            "size limit of %llu",
            (unsigned long long)need, (unsigned long long)lim.rlim_cur);
    char *dir = strdup(tmp_path);
    if (!dir) return npvdb_set_error(err, NPVDB_ENOMEM, "no memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    struct statvfs vfs;
    int ok = statvfs(slash ? dir : ".", &vfs) == 0;
    free(dir);
    if (ok && (uint64_t)vfs.f_bavail * vfs.f_frsize < need)
        return npvdb_set_error(
            err, NPVDB_ELIMIT,
            "a snapshot needs about %llu bytes, the disk has %llu "
            "free",
            (unsigned long long)need,
            (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    return NPVDB_OK;
}

struct snap_writer {
    char *path;
    hid_t file, colls, str_type;
    uint64_t seq, n_colls, n_vectors;
};

void snap_abort(snap_writer *sw)
{
    if (!sw) return;
    if (sw->file >= 0) discard_file(sw->file);
    if (sw->colls >= 0) H5Gclose(sw->colls);
    if (sw->file >= 0) H5Fclose(sw->file);
    if (sw->str_type >= 0) H5Tclose(sw->str_type);
    free(sw->path);
    free(sw);
}

npvdb_code snap_begin(const char *tmp_path, uint64_t seq, snap_writer **out,
                      npvdb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are values, not spam */
    *out = NULL;
    snap_writer *sw = calloc(1, sizeof *sw);
    if (!sw || !(sw->path = strdup(tmp_path))) {
        free(sw);
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a snapshot");
    }
    sw->seq = seq;
    sw->colls = -1;
    sw->str_type = vlen_str_type();
    sw->file = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (sw->file >= 0)
        sw->colls = H5Gcreate2(sw->file, "collections", H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT);
    if (sw->file < 0 || sw->colls < 0 || sw->str_type < 0) {
        snap_abort(sw);
        return npvdb_set_error(err, NPVDB_EINTERNAL, "cannot create %s",
                               tmp_path);
    }
    *out = sw;
    return NPVDB_OK;
}

/* The group name of a collection: its name, but "." (which HDF5 reserves)
 * as "%2E" ('%' is never in a name). */
static const char *group_name(const char *name)
{
    return strcmp(name, ".") == 0 ? "%2E" : name;
}

/* Exports c into the open group w->loc. */
static npvdb_code write_collection(writer *w, const char *name,
                                   npvdb_collection *c, const npvdb_config *cfg,
                                   npvdb_error *err)
{
    npvdb_error eerr;
    npvdb_code rc = npvdb_export(c, on_index, on_shard, w, &eerr);
    if (rc != NPVDB_OK) {
        if (w->err->code == NPVDB_OK) /* the engine failed, not a callback */
            npvdb_set_error(w->err, rc, "%s", eerr.msg);
        return w->err->code;
    }
    uint64_t n_cols = 0;
    if (w->payloads) {
        rc = pcols_write(w->payloads, w->loc, &n_cols, err);
        if (rc != NPVDB_OK) return rc;
    }
    uint32_t crc_offsets;
    if (!w->offsets || write_offsets(w, &crc_offsets) < 0 ||
        write_attrs(w, name, cfg, crc_offsets, n_cols) < 0)
        return npvdb_set_error(err, NPVDB_EINTERNAL,
                               "cannot write the metadata of collection '%s'",
                               name);
    return NPVDB_OK;
}

npvdb_code snap_add(snap_writer *sw, const char *name, npvdb_collection *c,
                    const npvdb_config *cfg, npvdb_error *err)
{
    npvdb_error xerr = {0};
    writer w = {.loc = -1,
                .vectors = -1,
                .keys = -1,
                .err = err ? err : &xerr,
                .str_type = sw->str_type};
    w.err->code = NPVDB_OK;
    npvdb_code rc = check_room(sw->path, c, err);
    if (rc != NPVDB_OK) return rc;
    w.loc = H5Gcreate2(sw->colls, group_name(name), H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
    if (w.loc < 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL,
                             "cannot create the group of collection '%s' "
                             "(added twice?)",
                             name);
    else
        rc = write_collection(&w, name, c, cfg, err);
    if (w.vectors >= 0) H5Dclose(w.vectors);
    if (w.keys >= 0) H5Dclose(w.keys);
    if (w.loc >= 0) H5Gclose(w.loc);
    free(w.offsets);
    pcols_free(w.payloads);
    if (rc == NPVDB_OK) {
        sw->n_colls++;
        sw->n_vectors += w.n;
    }
    return rc;
}

npvdb_code snap_finish(snap_writer *sw, npvdb_snapshot_info *info,
                       npvdb_error *err)
{
    npvdb_code rc = NPVDB_OK;
    hid_t f = sw->file;
    if (h5attr_put_u64(f, "format_version", SNAP_FORMAT_VERSION) < 0 ||
        h5attr_put_u64(f, "sequence", sw->seq) < 0 ||
        h5attr_put_u64(f, "n_collections", sw->n_colls) < 0 ||
        h5attr_put_u64(f, "n_vectors", sw->n_vectors) < 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL,
                             "cannot write snapshot metadata");
    if (rc == NPVDB_OK && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot flush %s", sw->path);
    if (rc != NPVDB_OK) {
        snap_abort(sw);
        return rc;
    }
    H5Gclose(sw->colls);
    sw->colls = -1;
    if (H5Fclose(f) < 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL,
                             "cannot close %s (disk full?)", sw->path);
    sw->file = -1;
    if (rc == NPVDB_OK && fsync_path(sw->path) != 0)
        rc = npvdb_set_error(err, st_errno_code(errno), "cannot fsync %s: %s",
                             sw->path, strerror(errno));
    if (rc == NPVDB_OK && info) {
        struct stat st;
        info->vectors = sw->n_vectors;
        info->collections = sw->n_colls;
        info->bytes = stat(sw->path, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    snap_abort(sw); /* frees what is left */
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

typedef struct reader {
    hid_t loc, vectors, keys, str_type; /* loc: root (v1) or a group */
    uint64_t dim, n_shards, trained, n;
    npvdb_config cfg;
    uint64_t *offsets;
    float *centroids;
    uint64_t crc[4];      /* centroids, vectors, keys, shard_offsets */
    uint64_t n_cols;      /* payload columns (0 in version 1) */
    prows *payloads;      /* NULL: no row has one */
    npvdb_payload *blobs; /* one batch's rebuilt payloads */
} reader;

/* Checks a dataset's shape: rank 2 with (rows, cols), or rank 1 (cols 0). */
static int check_shape(hid_t d, uint64_t rows, uint64_t cols)
{
    hid_t sp = H5Dget_space(d);
    if (sp < 0) return -1;
    hsize_t dims[2] = {0, 0};
    int rank = H5Sget_simple_extent_ndims(sp);
    int ok = rank == (cols ? 2 : 1) &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == rank &&
             dims[0] == rows && (!cols || dims[1] == cols);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static npvdb_code read_attrs(reader *r, npvdb_error *err)
{
    uint64_t metric, v[5];
    hid_t f = r->loc;
    if (h5attr_get_u64(f, "metric_id", &metric) < 0 ||
        h5attr_get_u64(f, "dim", &r->dim) < 0 ||
        h5attr_get_u64(f, "n_shards", &r->n_shards) < 0 ||
        h5attr_get_u64(f, "trained", &r->trained) < 0 ||
        h5attr_get_u64(f, "n_vectors", &r->n) < 0 ||
        h5attr_get_u64(f, "config_n_shards", &v[0]) < 0 ||
        h5attr_get_u64(f, "train_per_shard", &v[1]) < 0 ||
        h5attr_get_u64(f, "kmeans_iters", &v[2]) < 0 ||
        h5attr_get_u64(f, "default_nprobe", &v[3]) < 0 ||
        h5attr_get_u64(f, "seed", &v[4]) < 0 ||
        h5attr_get_u64(f, "crc32c_centroids", &r->crc[0]) < 0 ||
        h5attr_get_u64(f, "crc32c_vectors", &r->crc[1]) < 0 ||
        h5attr_get_u64(f, "crc32c_keys", &r->crc[2]) < 0 ||
        h5attr_get_u64(f, "crc32c_shard_offsets", &r->crc[3]) < 0 ||
        (H5Aexists(f, "n_payload_columns") > 0 &&
         h5attr_get_u64(f, "n_payload_columns", &r->n_cols) < 0))
        return npvdb_set_error(err, NPVDB_EINVAL, "missing attributes");
    if (metric > NPVDB_METRIC_IP || r->dim == 0 || r->dim > NPVDB_MAX_DIM ||
        r->n_shards == 0 || r->n_shards > NPVDB_MAX_SHARDS || r->trained > 1 ||
        v[0] > UINT32_MAX || v[1] > UINT32_MAX || v[2] > UINT32_MAX ||
        v[3] > UINT32_MAX)
        return npvdb_set_error(err, NPVDB_EINVAL, "attributes out of range");
    r->cfg.dim = (uint32_t)r->dim;
    r->cfg.metric = (npvdb_metric)metric;
    r->cfg.n_shards = (uint32_t)v[0];
    r->cfg.train_per_shard = (uint32_t)v[1];
    r->cfg.kmeans_iters = (uint32_t)v[2];
    r->cfg.default_nprobe = (uint32_t)v[3];
    r->cfg.seed = v[4];
    return NPVDB_OK;
}

static npvdb_code read_small(reader *r, npvdb_error *err)
{
    hid_t d = H5Dopen2(r->loc, "shard_offsets", H5P_DEFAULT);
    size_t nb = ((size_t)r->n_shards + 1) * sizeof(uint64_t);
    r->offsets = malloc(nb);
    int ok = d >= 0 && r->offsets && check_shape(d, r->n_shards + 1, 0) == 0 &&
             H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     r->offsets) >= 0;
    if (d >= 0) H5Dclose(d);
    if (!ok)
        return npvdb_set_error(err, NPVDB_EINVAL, "cannot read shard_offsets");
    if (npvdb_crc32c(0, r->offsets, nb) != r->crc[3])
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "shard_offsets checksum mismatch");
    if (r->offsets[0] != 0 || r->offsets[r->n_shards] != r->n)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "shard_offsets do not add up");
    for (uint64_t s = 0; s < r->n_shards; s++)
        if (r->offsets[s] > r->offsets[s + 1])
            return npvdb_set_error(err, NPVDB_EINVAL, "shard_offsets decrease");
    d = H5Dopen2(r->loc, "centroids", H5P_DEFAULT);
    uint64_t rows = r->trained ? r->n_shards : 0;
    ok = d >= 0 && check_shape(d, rows, r->dim) == 0;
    if (ok && rows) {
        size_t cb = (size_t)rows * r->dim * sizeof(float);
        r->centroids = malloc(cb);
        ok = r->centroids &&
             H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     r->centroids) >= 0 &&
             npvdb_crc32c(0, r->centroids, cb) == r->crc[0];
    }
    if (d >= 0) H5Dclose(d);
    if (!ok)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "centroids unreadable or checksum "
                               "mismatch");
    r->vectors = H5Dopen2(r->loc, "vectors", H5P_DEFAULT);
    r->keys = H5Dopen2(r->loc, "keys", H5P_DEFAULT);
    if (r->vectors < 0 || r->keys < 0 ||
        check_shape(r->vectors, r->n, r->dim) < 0 ||
        check_shape(r->keys, r->n, 0) < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "vectors or keys missing or of the "
                               "wrong shape");
    return NPVDB_OK;
}

/* Reads rows [at, at+n) of a dataset (cols 0: one dimension) into buf. */
static int read_rows(hid_t d, hid_t mt, void *buf, uint64_t at, size_t n,
                     hsize_t cols)
{
    int rank = cols ? 2 : 1;
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {at, 0}, count[2] = {n, cols};
    hid_t ms = H5Screate_simple(rank, count, NULL);
    int ok = fs >= 0 && ms >= 0 &&
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count,
                                 NULL) >= 0 &&
             H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return ok ? 0 : -1;
}

/* One batch: read rows and keys [at, at+n), checksum, restore into shard. */
static npvdb_code restore_batch(reader *r, npvdb_collection *c, uint32_t shard,
                                uint64_t at, size_t n, float *rows, char **keys,
                                uint32_t *crc_v, uint32_t *crc_k,
                                npvdb_error *err)
{
    memset(keys, 0, n * sizeof *keys);
    if (read_rows(r->vectors, H5T_NATIVE_FLOAT, rows, at, n, r->dim) < 0 ||
        read_rows(r->keys, r->str_type, keys, at, n, 0) < 0) {
        return npvdb_set_error(err, NPVDB_EINVAL, "cannot read rows %llu..%llu",
                               (unsigned long long)at,
                               (unsigned long long)(at + n));
    }
    npvdb_code rc = NPVDB_OK;
    *crc_v = npvdb_crc32c(*crc_v, rows, n * r->dim * sizeof(float));
    for (size_t i = 0; i < n && rc == NPVDB_OK; i++) {
        if (!keys[i])
            rc = npvdb_set_error(err, NPVDB_EINVAL, "key %llu is missing",
                                 (unsigned long long)(at + i));
        else
            *crc_k = npvdb_crc32c(*crc_k, keys[i], strlen(keys[i]) + 1);
    }
    if (rc == NPVDB_OK && r->payloads)
        rc = prows_build(r->payloads, at, n, r->blobs, err);
    if (rc == NPVDB_OK)
        rc = npvdb_restore_shard_payloads(c, shard, (const char *const *)keys,
                                          rows, r->payloads ? r->blobs : NULL,
                                          n, err);
    for (size_t i = 0; r->payloads && i < n; i++) {
        free((void *)r->blobs[i].data);
        r->blobs[i].data = NULL;
    }
    /* Frees the strings HDF5 allocated for the variable-length keys. */
    hsize_t cnt = n;
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    H5Dvlen_reclaim(r->str_type, ms, H5P_DEFAULT, keys);
    H5Sclose(ms);
    return rc;
}

static npvdb_code restore_all(reader *r, npvdb_collection *c, npvdb_error *err)
{
    size_t batch = READ_BATCH_BYTES / (r->dim * sizeof(float));
    float *rows = malloc(batch * r->dim * sizeof(float));
    char **keys = malloc(batch * sizeof *keys);
    npvdb_code rc = NPVDB_OK;
    if (r->payloads) r->blobs = calloc(batch, sizeof *r->blobs);
    if (!rows || !keys || (r->payloads && !r->blobs))
        rc =
            npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a restore batch");
    uint32_t crc_v = 0, crc_k = 0;
    for (uint64_t s = 0; s < r->n_shards && rc == NPVDB_OK; s++) {
        for (uint64_t at = r->offsets[s];
             at < r->offsets[s + 1] && rc == NPVDB_OK; at += batch) {
            uint64_t left = r->offsets[s + 1] - at;
            size_t n = left < batch ? (size_t)left : batch;
            rc = restore_batch(r, c, (uint32_t)s, at, n, rows, keys, &crc_v,
                               &crc_k, err);
        }
    }
    free(rows);
    free(keys);
    free(r->blobs);
    r->blobs = NULL;
    if (rc == NPVDB_OK && (crc_v != r->crc[1] || crc_k != r->crc[2]))
        rc = npvdb_set_error(err, NPVDB_EINVAL, "%s checksum mismatch",
                             crc_v != r->crc[1] ? "vectors" : "keys");
    return rc;
}

/* Reads one collection at r->loc (attributes, then every row); on success
 * *out owns it. */
static npvdb_code read_collection(reader *r, uint32_t n_workers,
                                  npvdb_workers *workers,
                                  npvdb_collection **out, npvdb_error *err)
{
    npvdb_collection *c = NULL;
    npvdb_code rc = read_attrs(r, err);
    if (rc == NPVDB_OK) rc = read_small(r, err);
    if (rc == NPVDB_OK)
        rc = prows_read(r->loc, r->n, r->n_cols, &r->payloads, err);
    if (rc == NPVDB_OK) {
        npvdb_config k = r->cfg;
        k.n_workers = n_workers;
        k.workers = workers;
        c = npvdb_create(&k, err);
        if (!c) rc = err ? err->code : NPVDB_EINTERNAL;
    }
    if (rc == NPVDB_OK && r->trained)
        rc = npvdb_restore_index(c, r->centroids, (uint32_t)r->n_shards, err);
    if (rc == NPVDB_OK) rc = restore_all(r, c, err);
    if (r->vectors >= 0) H5Dclose(r->vectors);
    if (r->keys >= 0) H5Dclose(r->keys);
    r->vectors = r->keys = -1;
    free(r->offsets);
    free(r->centroids);
    prows_free(r->payloads);
    r->offsets = NULL;
    r->centroids = NULL;
    r->payloads = NULL;
    r->n_cols = 0;
    if (rc != NPVDB_OK) {
        npvdb_free(c); /* never hand out a half-read collection */
        return rc;
    }
    *out = c;
    return NPVDB_OK;
}

typedef struct read_ctx {
    reader *r;
    uint32_t n_workers;
    npvdb_workers *workers;
    snap_coll_fn fn;
    void *ctx;
    uint64_t n_colls;
    npvdb_error *err;
    npvdb_code rc;
} read_ctx;

/* One /collections member: checks its name, reads it, hands it over. */
static herr_t read_member(hid_t g, const char *link, const H5L_info_t *info,
                          void *arg)
{
    (void)info;
    read_ctx *x = arg;
    char name[NPVDB_STORE_MAX_NAME + 2];
    x->r->loc = H5Gopen2(g, link, H5P_DEFAULT);
    if (x->r->loc < 0 ||
        h5attr_get_str(x->r->loc, "name", name, sizeof name) < 0 ||
        !rec_name_valid(name, strlen(name)) ||
        strcmp(group_name(name), link) != 0) {
        x->rc = npvdb_set_error(x->err, NPVDB_EINVAL,
                                "collection group '%.64s' is not a collection "
                                "or misnamed",
                                link);
    } else {
        npvdb_collection *c = NULL;
        x->rc = read_collection(x->r, x->n_workers, x->workers, &c, x->err);
        if (x->rc == NPVDB_OK) {
            x->n_colls++;
            x->rc = x->fn(x->ctx, name, c, &x->r->cfg, x->err);
        } else if (x->err) {
            char why[NPVDB_ERRMSG_LEN];
            snprintf(why, sizeof why, "%s", x->err->msg);
            npvdb_set_error(x->err, x->rc, "collection '%s': %s", name, why);
        }
    }
    if (x->r->loc >= 0) H5Gclose(x->r->loc);
    x->r->loc = -1;
    return x->rc == NPVDB_OK ? 0 : 1;
}

static npvdb_code read_v2(hid_t file, read_ctx *x, npvdb_error *err)
{
    uint64_t n_colls;
    if (h5attr_get_u64(file, "n_collections", &n_colls) < 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "missing n_collections");
    hid_t g = H5Gopen2(file, "collections", H5P_DEFAULT);
    if (g < 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "no /collections group");
    hsize_t idx = 0;
    herr_t h = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, read_member, x);
    H5Gclose(g);
    if (x->rc != NPVDB_OK) return x->rc;
    if (h < 0)
        return npvdb_set_error(err, NPVDB_EINVAL, "cannot list /collections");
    if (x->n_colls != n_colls)
        return npvdb_set_error(
            err, NPVDB_EINVAL, "%llu collections, n_collections says %llu",
            (unsigned long long)x->n_colls, (unsigned long long)n_colls);
    return NPVDB_OK;
}

npvdb_code snap_read(const char *path, uint32_t n_workers,
                     npvdb_workers *workers, snap_coll_fn fn, void *ctx,
                     uint64_t *seq, npvdb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    reader r = {.loc = -1, .vectors = -1, .keys = -1};
    read_ctx x = {.r = &r,
                  .n_workers = n_workers,
                  .workers = workers,
                  .fn = fn,
                  .ctx = ctx,
                  .err = err};
    r.str_type = vlen_str_type();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    npvdb_code rc = NPVDB_OK;
    uint64_t ver = 0;
    if (file < 0 || r.str_type < 0)
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "not a readable HDF5 file (truncated?)");
    else if (h5attr_get_u64(file, "format_version", &ver) < 0 ||
             (ver != 1 && ver != 2) ||
             h5attr_get_u64(file, "sequence", seq) < 0)
        rc = npvdb_set_error(err, NPVDB_EINVAL,
                             "missing or unknown format_version or sequence");
    if (rc == NPVDB_OK && ver == 2) rc = read_v2(file, &x, err);
    if (rc == NPVDB_OK && ver == 1) {
        npvdb_collection *c = NULL;
        r.loc = file;
        rc = read_collection(&r, n_workers, workers, &c, err);
        if (rc == NPVDB_OK) rc = fn(ctx, NPVDB_STORE_DEFAULT, c, &r.cfg, err);
    }
    if (file >= 0) H5Fclose(file);
    if (r.str_type >= 0) H5Tclose(r.str_type);
    return rc;
}
