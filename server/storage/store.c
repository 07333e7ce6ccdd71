/*
 * store.c -- the storage.h API: a data directory holding snapshots
 * (snap-<seq>.h5) and the write-ahead log (wal-<seq>.log), guarded by a LOCK
 * file so that two servers never share it.
 *
 * Open = restore the newest snapshot that verifies (every collection in
 * it), then replay the log records after the sequence it covers, each on
 * its collection: INIT creates or replaces, DROP removes, INSERT and DELETE
 * apply; a record naming a collection that does not exist at that point is
 * skipped, as the live server refused it too. The restored collections
 * wait in a name-sorted array until the catalog takes them. Snapshot = write to
 * a temporary name, fsync, rename, fsync the directory, then apply retention:
 * keep the newest keep_snapshots files, and remove log segments covered by the
 * OLDEST kept snapshot, so that falling back to an older snapshot (when the
 * newest is found corrupt) still has every log record it needs.
 */
#include "storage.h"
#include "record.h"
#include "snapshot.h"
#include "util.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Collections by name, sorted: restore and replay look names up in
 * O(log n); creates and drops (rare) move the tail. */
typedef struct coll_table {
    npvdb_store_coll *v;
    size_t n, cap;
} coll_table;

struct npvdb_store {
    char *dir;
    npvdb_store_config cfg;
    int lock_fd;
    wal *wal;
    coll_table restored;     /* until npvdb_store_take_restored */
    pthread_mutex_t snap_mu; /* one snapshot at a time */
    /* Log bytes appended since open, and that count when the last
     * snapshot started: their difference is what a restart would replay. */
    _Atomic uint64_t log_bytes, snap_base;
};

/* ---- directory --------------------------------------------------------- */

/* mkdir -p: creates each missing component. */
static int make_dirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755);
    free(p);
    return rc != 0 && errno != EEXIST ? -1 : 0;
}

static npvdb_code lock_dir(npvdb_store *s, npvdb_error *err)
{
    if (make_dirs(s->dir) != 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "cannot create data directory %s: %s", s->dir,
                               strerror(errno));
    char *path = st_path(s->dir, "LOCK");
    if (!path)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int e = errno;
    free(path);
    if (s->lock_fd < 0)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "data directory %s is not usable: %s", s->dir,
                               strerror(e));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return npvdb_set_error(err, NPVDB_ESTATE,
                               "data directory %s is in use by another process",
                               s->dir);
    return NPVDB_OK;
}

/* Snapshot names sort by their zero-padded sequence number. */
static void snap_name(char *buf, size_t size, uint64_t seq)
{
    snprintf(buf, size, "snap-%020" PRIu64 ".h5", seq);
}

static int parse_snap_name(const char *name, uint64_t *seq)
{
    if (strlen(name) != 28 || strncmp(name, "snap-", 5) != 0 ||
        strcmp(name + 25, ".h5") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 5; i < 25; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x > y ? -1 : x < y;
}

/* Lists snapshot sequence numbers, newest first (caller frees *out), and
 * removes temporary files a crash left behind when clean_tmp is set. */
static npvdb_code list_snaps(const char *dir, int clean_tmp, uint64_t **out,
                             size_t *n, npvdb_error *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return npvdb_set_error(err, NPVDB_EINVAL, "cannot list %s: %s", dir,
                               strerror(errno));
    size_t cap = 0;
    npvdb_code rc = NPVDB_OK;
    struct dirent *e;
    while (rc == NPVDB_OK && (e = readdir(d)) != NULL) {
        uint64_t seq;
        size_t len = strlen(e->d_name);
        if (clean_tmp && strncmp(e->d_name, "snap-", 5) == 0 && len > 4 &&
            strcmp(e->d_name + len - 4, ".tmp") == 0) {
            char *p = st_path(dir, e->d_name);
            if (p && unlink(p) == 0)
                st_log("removed %s, left by an interrupted snapshot", p);
            free(p);
            continue;
        }
        if (!parse_snap_name(e->d_name, &seq)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory");
                break;
            }
            *out = p;
        }
        (*out)[(*n)++] = seq;
    }
    closedir(d);
    if (rc == NPVDB_OK && *n > 1) qsort(*out, *n, sizeof **out, cmp_desc);
    return rc;
}

/* ---- the collection table ---------------------------------------------- */

static void table_free(coll_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        npvdb_free(t->v[i].coll);
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* Index of name, or where it would go (with *found 0). */
static size_t table_find(const coll_table *t, const char *name, int *found)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->v[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static npvdb_collection *table_get(const coll_table *t, const char *name)
{
    int found;
    size_t i = table_find(t, name, &found);
    return found ? t->v[i].coll : NULL;
}

/* Installs c under name, freeing a collection it replaces. Takes c even
 * on failure. */
static npvdb_code table_put(coll_table *t, const char *name,
                            npvdb_collection *c, const npvdb_config *cfg,
                            npvdb_error *err)
{
    int found;
    size_t i = table_find(t, name, &found);
    if (!found) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 8;
            npvdb_store_coll *v = realloc(t->v, cap * sizeof *v);
            if (!v) {
                npvdb_free(c);
                return npvdb_set_error(err, NPVDB_ENOMEM,
                                       "no memory for %zu collections", cap);
            }
            t->v = v;
            t->cap = cap;
        }
        memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof *t->v);
        t->n++;
        snprintf(t->v[i].name, sizeof t->v[i].name, "%s", name);
    } else {
        npvdb_free(t->v[i].coll);
    }
    t->v[i].coll = c;
    t->v[i].cfg = *cfg;
    t->v[i].cfg.n_workers = 0;
    t->v[i].cfg.workers = NULL;
    return NPVDB_OK;
}

static int table_remove(coll_table *t, const char *name)
{
    int found;
    size_t i = table_find(t, name, &found);
    if (!found) return 0;
    npvdb_free(t->v[i].coll);
    memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof *t->v);
    t->n--;
    return 1;
}

/* ---- recovery ---------------------------------------------------------- */

typedef struct replay_ctx {
    npvdb_store *s;
    uint64_t applied, skipped;
} replay_ctx;

/* A record the live server could not apply either (bad for the collection
 * of the moment, or for one that did not exist) is skipped, which
 * reproduces the live state; anything else (no memory) stops the recovery. */
static npvdb_code replay_outcome(replay_ctx *r, const wal_record *rec,
                                 npvdb_code rc, const char *msg,
                                 npvdb_error *err)
{
    if (rc == NPVDB_OK) {
        r->applied++;
        return NPVDB_OK;
    }
    if (rc == NPVDB_EINVAL || rc == NPVDB_ESTATE || rc == NPVDB_ENOTFOUND ||
        rc == NPVDB_ELIMIT) {
        st_log("log record %" PRIu64 " skipped on replay: %s", rec->seq, msg);
        r->skipped++;
        return NPVDB_OK;
    }
    return npvdb_set_error(err, rc, "replaying log record %" PRIu64 ": %s",
                           rec->seq, msg);
}

static npvdb_code replay_init(replay_ctx *r, const wal_record *rec,
                              npvdb_error *err)
{
    rec_init in;
    npvdb_error e = {0};
    npvdb_code rc = rec_decode_init(rec->payload, rec->len, &in, &e);
    npvdb_collection *c = NULL;
    if (rc == NPVDB_OK) {
        npvdb_config cfg = in.cfg;
        cfg.n_workers = r->s->cfg.n_workers;
        cfg.workers = r->s->cfg.workers;
        c = npvdb_create(&cfg, &e);
        rc = c ? NPVDB_OK : e.code;
    }
    /* Version 3 logged the sample's centroids: no k-means on replay. */
    if (rc == NPVDB_OK && in.has_index)
        rc = npvdb_index_install(c, &in.index, &e);
    else if (rc == NPVDB_OK && in.n_train > 0)
        rc = npvdb_train(c, in.train, in.n_train, &e);
    if (rc == NPVDB_OK) {
        npvdb_defer_training(c, 1); /* until the log is replayed */
        rc = table_put(&r->s->restored, in.name, c, &in.cfg, &e);
        c = NULL;
    }
    npvdb_free(c);
    rec_init_free(&in);
    return replay_outcome(r, rec, rc, e.msg, err);
}

static npvdb_code apply_keys(npvdb_collection *c, uint8_t type,
                             const rec_keys *k, npvdb_error *e)
{
    if (type == REC_DELETE || type == REC_DELETE2)
        return npvdb_delete(c, k->keys, k->n, NULL, e);
    if (k->dim != npvdb_dim(c))
        return npvdb_set_error(e, NPVDB_EINVAL,
                               "dim %u is not the collection's", k->dim);
    return npvdb_upsert(c, k->keys, k->rows, k->payloads, k->n, NULL, e);
}

static npvdb_code replay_keys(replay_ctx *r, const wal_record *rec,
                              npvdb_error *err)
{
    rec_keys k;
    npvdb_error e = {0};
    npvdb_code rc = rec_decode_keys(rec->type, rec->payload, rec->len, &k, &e);
    npvdb_collection *c = NULL;
    if (rc == NPVDB_OK && !(c = table_get(&r->s->restored, k.name)))
        rc = npvdb_set_error(&e, NPVDB_ENOTFOUND,
                             "collection '%s' does not exist", k.name);
    if (rc == NPVDB_OK) rc = apply_keys(c, rec->type, &k, &e);
    rec_keys_free(&k);
    return replay_outcome(r, rec, rc, e.msg, err);
}

/* The index a collection trained at this point of its writes: installed in
 * place of the automatic training the insert before it left pending. */
static npvdb_code replay_train(replay_ctx *r, const wal_record *rec,
                               npvdb_error *err)
{
    rec_train t;
    npvdb_error e = {0};
    npvdb_code rc = rec_decode_train(rec->payload, rec->len, &t, &e);
    npvdb_collection *c = NULL;
    if (rc == NPVDB_OK && !(c = table_get(&r->s->restored, t.name)))
        rc = npvdb_set_error(&e, NPVDB_ENOTFOUND,
                             "collection '%s' does not exist", t.name);
    if (rc == NPVDB_OK) rc = npvdb_index_install(c, &t.index, &e);
    rec_train_free(&t);
    return replay_outcome(r, rec, rc, e.msg, err);
}

/* A split or merge the collection made at this point of its writes. */
static npvdb_code replay_reshard(replay_ctx *r, const wal_record *rec,
                                 npvdb_error *err)
{
    rec_reshard t;
    npvdb_error e = {0};
    npvdb_code rc = rec_decode_reshard(rec->payload, rec->len, &t, &e);
    npvdb_collection *c = NULL;
    if (rc == NPVDB_OK && !(c = table_get(&r->s->restored, t.name)))
        rc = npvdb_set_error(&e, NPVDB_ENOTFOUND,
                             "collection '%s' does not exist", t.name);
    if (rc == NPVDB_OK) rc = npvdb_reshard_apply(c, &t.op, &e);
    rec_reshard_free(&t);
    return replay_outcome(r, rec, rc, e.msg, err);
}

static npvdb_code replay_drop(replay_ctx *r, const wal_record *rec,
                              npvdb_error *err)
{
    char name[REC_MAX_NAME + 1];
    npvdb_error e = {0};
    npvdb_code rc = rec_decode_drop(rec->payload, rec->len, name, &e);
    if (rc == NPVDB_OK && !table_remove(&r->s->restored, name))
        rc = npvdb_set_error(&e, NPVDB_ENOTFOUND,
                             "collection '%s' does not exist", name);
    return replay_outcome(r, rec, rc, e.msg, err);
}

static npvdb_code replay_apply(void *ctx, const wal_record *rec,
                               npvdb_error *err)
{
    replay_ctx *r = ctx;
    switch (rec->type) {
    case REC_INIT:
        return replay_init(r, rec, err);
    case REC_DROP:
        return replay_drop(r, rec, err);
    case REC_TRAIN:
        return replay_train(r, rec, err);
    case REC_RESHARD:
        return replay_reshard(r, rec, err);
    case REC_INSERT:
    case REC_INSERT2:
    case REC_DELETE:
    case REC_DELETE2:
        return replay_keys(r, rec, err);
    default:
        return replay_outcome(r, rec, NPVDB_EINVAL, "unknown record type", err);
    }
}

static npvdb_code restore_one(void *ctx, const char *name, npvdb_collection *c,
                              const npvdb_config *cfg, npvdb_error *err)
{
    npvdb_store *s = ctx;
    int found;
    table_find(&s->restored, name, &found);
    if (found) {
        npvdb_free(c);
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "collection '%s' appears twice", name);
    }
    npvdb_defer_training(c, 1); /* until the log is replayed */
    return table_put(&s->restored, name, c, cfg, err);
}

/* Restores the newest snapshot that verifies; *seq 0 and no collection if
 * none. A refused file is logged and left in place for inspection. */
static npvdb_code restore_newest(npvdb_store *s, uint64_t *seq,
                                 npvdb_error *err)
{
    uint64_t *seqs;
    size_t n;
    *seq = 0;
    npvdb_code rc = list_snaps(s->dir, 1, &seqs, &n, err);
    for (size_t i = 0; rc == NPVDB_OK && i < n; i++) {
        char name[64];
        snap_name(name, sizeof name, seqs[i]);
        char *path = st_path(s->dir, name);
        if (!path) {
            rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
            break;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        npvdb_error e = {0};
        npvdb_code r = snap_read(path, s->cfg.n_workers, s->cfg.workers,
                                 restore_one, s, seq, &e);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r == NPVDB_OK) {
            st_log("restored snapshot %s (%zu collections, covers log record "
                   "%" PRIu64 ") in %.2f s",
                   path, s->restored.n, *seq,
                   (double)(t1.tv_sec - t0.tv_sec) +
                       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            free(path);
            break;
        }
        table_free(&s->restored); /* a file is taken whole or not at all */
        *seq = 0;
        if (r == NPVDB_ENOMEM)
            rc = npvdb_set_error(err, r, "restoring %s: %s", path, e.msg);
        else
            st_log("snapshot %s refused: %s; trying the one before it", path,
                   e.msg);
        free(path);
    }
    free(seqs);
    return rc;
}

int npvdb_store_name_valid(const char *name, size_t len)
{
    return rec_name_valid(name, len);
}

npvdb_store *npvdb_store_open(const npvdb_store_config *cfg,
                              npvdb_collection **out_coll, npvdb_error *err)
{
    if (out_coll) *out_coll = NULL;
    if (!cfg || !cfg->data_dir || !cfg->data_dir[0]) {
        npvdb_set_error(err, NPVDB_EINVAL, "no data directory given");
        return NULL;
    }
    npvdb_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(cfg->data_dir))) {
        free(s);
        npvdb_set_error(err, NPVDB_ENOMEM, "no memory for the store");
        return NULL;
    }
    s->cfg = *cfg;
    s->cfg.data_dir = s->dir;
    if (!s->cfg.keep_snapshots) s->cfg.keep_snapshots = 2;
    s->lock_fd = -1;
    pthread_mutex_init(&s->snap_mu, NULL);
    replay_ctx r = {.s = s};
    uint64_t snap_seq = 0;
    if (lock_dir(s, err) != NPVDB_OK ||
        restore_newest(s, &snap_seq, err) != NPVDB_OK)
        goto fail;
    wal_options wo = {
        .dir = s->dir, .sync = cfg->sync, .interval_ms = cfg->sync_interval_ms};
    s->wal = wal_open(&wo, snap_seq, replay_apply, &r, err);
    if (!s->wal) goto fail;
    /* A training an old log left pending (no TRAIN record) runs now. */
    for (size_t i = 0; i < s->restored.n; i++)
        npvdb_defer_training(s->restored.v[i].coll, 0);
    if (r.applied || r.skipped)
        st_log("replayed %" PRIu64 " log records after record %" PRIu64
               " (%" PRIu64 " skipped); next record is %" PRIu64,
               r.applied + r.skipped, snap_seq, r.skipped,
               wal_last_seq(s->wal) + 1);
    if (out_coll) {
        int found;
        size_t i = table_find(&s->restored, NPVDB_STORE_DEFAULT, &found);
        if (found) {
            *out_coll = s->restored.v[i].coll;
            s->restored.v[i].coll = NULL;
        }
        table_free(&s->restored);
    }
    return s;
fail:
    npvdb_store_close(s);
    return NULL;
}

void npvdb_store_take_restored(npvdb_store *s, npvdb_store_coll **out,
                               size_t *n)
{
    *out = s->restored.v;
    *n = s->restored.n;
    memset(&s->restored, 0, sizeof s->restored);
}

void npvdb_store_close(npvdb_store *s)
{
    if (!s) return;
    wal_close(s->wal);
    table_free(&s->restored);
    if (s->lock_fd >= 0) close(s->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&s->snap_mu);
    free(s->dir);
    free(s);
}

/* ---- logging ----------------------------------------------------------- */

struct npvdb_store_rec {
    rec_buf b;
};

/* Wraps an encoder's outcome into a heap record. */
static npvdb_code wrap_rec(npvdb_code enc, rec_buf *b, npvdb_store_rec **out,
                           npvdb_error *err)
{
    *out = NULL;
    if (enc != NPVDB_OK) return enc;
    npvdb_store_rec *r = malloc(sizeof *r);
    if (!r) {
        free(b->buf);
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a record");
    }
    r->b = *b;
    *out = r;
    return NPVDB_OK;
}

npvdb_code npvdb_store_encode_init(const char *name, const npvdb_config *cfg,
                                   const float *train, size_t n_train,
                                   npvdb_store_rec **out, npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_init(name, cfg, train, n_train, &b, err), &b,
                    out, err);
}

npvdb_code npvdb_store_encode_init_index(const char *name,
                                         const npvdb_config *cfg,
                                         const npvdb_index *ix,
                                         npvdb_store_rec **out,
                                         npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_init_index(name, cfg, ix, &b, err), &b, out,
                    err);
}

npvdb_code npvdb_store_encode_train(const char *name, const npvdb_index *ix,
                                    npvdb_store_rec **out, npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_train(name, ix, &b, err), &b, out, err);
}

npvdb_code npvdb_store_encode_reshard(const char *name, const npvdb_reshard *op,
                                      npvdb_store_rec **out, npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_reshard(name, op, &b, err), &b, out, err);
}

npvdb_code npvdb_store_encode_insert(const char *name, const char *const *keys,
                                     const float *rows,
                                     const npvdb_payload *payloads, size_t n,
                                     uint32_t dim, npvdb_store_rec **out,
                                     npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(
        rec_encode_insert(name, keys, rows, payloads, n, dim, &b, err), &b, out,
        err);
}

npvdb_code npvdb_store_encode_delete(const char *name, const char *const *keys,
                                     size_t n, npvdb_store_rec **out,
                                     npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_delete(name, keys, n, &b, err), &b, out, err);
}

npvdb_code npvdb_store_encode_drop(const char *name, npvdb_store_rec **out,
                                   npvdb_error *err)
{
    rec_buf b = {0};
    return wrap_rec(rec_encode_drop(name, &b, err), &b, out, err);
}

void npvdb_store_rec_free(npvdb_store_rec *r)
{
    if (!r) return;
    free(r->b.buf);
    free(r);
}

npvdb_code npvdb_store_append(npvdb_store *s, npvdb_store_rec *r, uint64_t *seq,
                              npvdb_error *err)
{
    npvdb_code rc = wal_append(s->wal, r->b.type, &r->b, seq, err);
    if (rc == NPVDB_OK) atomic_fetch_add(&s->log_bytes, r->b.len);
    return rc;
}

npvdb_code npvdb_store_wait_durable(npvdb_store *s, uint64_t seq,
                                    npvdb_error *err)
{
    return wal_wait_durable(s->wal, seq, err);
}

uint64_t npvdb_store_last_seq(npvdb_store *s)
{
    return wal_last_seq(s->wal);
}

const npvdb_hist *npvdb_store_fsync_hist(npvdb_store *s)
{
    return wal_fsync_hist(s->wal);
}

uint64_t npvdb_store_log_bytes(npvdb_store *s)
{
    return atomic_load(&s->log_bytes) - atomic_load(&s->snap_base);
}

/* ---- snapshots --------------------------------------------------------- */

/* Removes snapshots beyond the newest keep_snapshots, then the log segments
 * the oldest kept one covers. */
static npvdb_code retain(npvdb_store *s, npvdb_error *err)
{
    uint64_t *seqs;
    size_t n;
    npvdb_code rc = list_snaps(s->dir, 0, &seqs, &n, err);
    if (rc != NPVDB_OK) return rc;
    size_t keep = s->cfg.keep_snapshots;
    for (size_t i = keep; i < n; i++) {
        char name[64];
        snap_name(name, sizeof name, seqs[i]);
        char *path = st_path(s->dir, name);
        if (path && unlink(path) != 0)
            st_log("cannot remove old snapshot %s: %s", path, strerror(errno));
        free(path);
    }
    uint64_t oldest = n ? seqs[(n < keep ? n : keep) - 1] : 0;
    free(seqs);
    if (n > keep && st_fsync_dir(s->dir) != 0)
        return npvdb_set_error(err, NPVDB_EINTERNAL, "cannot fsync %s: %s",
                               s->dir, strerror(errno));
    /* Start a new segment now, so that the current one (mostly covered by
     * this snapshot) can be removed once the oldest kept snapshot covers
     * it: the log stays about as long as the writes since that snapshot. */
    rc = wal_roll_if_covered(s->wal, UINT64_MAX, err);
    if (rc == NPVDB_OK) rc = wal_remove_upto(s->wal, oldest, err);
    return rc;
}

struct npvdb_snapshot {
    npvdb_store *s;
    snap_writer *w;
    char *path, *tmp;
    uint64_t seq, base;
    struct timespec t0;
};

npvdb_code npvdb_store_snapshot_begin(npvdb_store *s, uint64_t covered_seq,
                                      npvdb_snapshot **out, npvdb_error *err)
{
    *out = NULL;
    npvdb_snapshot *sn = calloc(1, sizeof *sn);
    if (!sn) return npvdb_set_error(err, NPVDB_ENOMEM, "no memory");
    clock_gettime(CLOCK_MONOTONIC, &sn->t0);
    pthread_mutex_lock(&s->snap_mu);
    sn->s = s;
    sn->seq = covered_seq;
    sn->base = atomic_load(&s->log_bytes);
    char name[64], tmp_name[80];
    snap_name(name, sizeof name, covered_seq);
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", name);
    sn->path = st_path(s->dir, name);
    sn->tmp = st_path(s->dir, tmp_name);
    npvdb_code rc = NPVDB_OK;
    if (!sn->path || !sn->tmp)
        rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
    if (rc == NPVDB_OK) rc = snap_begin(sn->tmp, covered_seq, &sn->w, err);
    if (rc != NPVDB_OK) {
        npvdb_store_snapshot_abort(sn);
        return rc;
    }
    *out = sn;
    return NPVDB_OK;
}

npvdb_code npvdb_store_snapshot_add(npvdb_snapshot *sn, const char *name,
                                    npvdb_collection *c,
                                    const npvdb_config *cfg, npvdb_error *err)
{
    if (!name || !rec_name_valid(name, strnlen(name, REC_MAX_NAME + 1)))
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "snapshot: bad collection name");
    if (!c || !cfg)
        return npvdb_set_error(err, NPVDB_EINVAL,
                               "snapshot: no collection '%s'", name);
    return snap_add(sn->w, name, c, cfg, err);
}

void npvdb_store_snapshot_abort(npvdb_snapshot *sn)
{
    if (!sn) return;
    if (sn->w) snap_abort(sn->w);
    if (sn->tmp) unlink(sn->tmp);
    pthread_mutex_unlock(&sn->s->snap_mu);
    free(sn->path);
    free(sn->tmp);
    free(sn);
}

npvdb_code npvdb_store_snapshot_commit(npvdb_snapshot *sn,
                                       npvdb_snapshot_info *info,
                                       npvdb_error *err)
{
    npvdb_store *s = sn->s;
    npvdb_snapshot_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    npvdb_code rc = snap_finish(sn->w, info, err);
    sn->w = NULL;
    /* rename is the commit point: before it, the old snapshots rule. */
    if (rc == NPVDB_OK && rename(sn->tmp, sn->path) != 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot rename %s: %s",
                             sn->tmp, strerror(errno));
    if (rc == NPVDB_OK && st_fsync_dir(s->dir) != 0)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot fsync %s: %s",
                             s->dir, strerror(errno));
    if (rc == NPVDB_OK) {
        snprintf(info->path, sizeof info->path, "%s", sn->path);
        info->sequence = sn->seq;
        atomic_store(&s->snap_base, sn->base);
        rc = retain(s, err);
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    info->seconds = (double)(t1.tv_sec - sn->t0.tv_sec) +
                    (double)(t1.tv_nsec - sn->t0.tv_nsec) / 1e9;
    if (rc == NPVDB_OK)
        st_log("snapshot %s: %" PRIu64 " collections, %" PRIu64
               " vectors, %" PRIu64 " bytes, covers log record %" PRIu64
               ", %.2f s",
               info->path, info->collections, info->vectors, info->bytes,
               sn->seq, info->seconds);
    npvdb_store_snapshot_abort(sn); /* unlinks tmp if the rename failed */
    return rc;
}
