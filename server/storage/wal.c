/*
 * wal.c -- write-ahead log segments: append, group commit, recovery scan,
 * repair of a torn tail and removal of covered segments. Format in wal.h.
 */
#include "wal.h"
#include "clock.h"
#include "crc32c.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char seg_magic[8] = {'N', 'P', 'V', 'D', 'B', 'W', 'A', 'L'};

struct wal {
    char *dir;
    uint64_t seg_bytes;
    npvdb_sync_mode mode;
    unsigned interval_ms;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* a sync finished, or the syncer left */
    int fd;             /* active segment (last of segs) */
    uint64_t off;       /* its size: where the next record goes */
    uint64_t last_seq;  /* last appended record */
    uint64_t durable_seq;
    uint64_t active_last;  /* recovery: last record of the active segment */
    int syncing;           /* a leader is in fdatasync(fd) without the lock */
    uint64_t n_fsyncs;     /* for tests: group commit makes it < records */
    npvdb_hist fsync_time; /* every fdatasync of a group commit */
    int broken; /* a failed fsync: nothing may be acknowledged any more */
    char broken_msg[160];
    uint64_t *segs; /* first seq of each segment file, ascending */
    size_t n_segs, cap_segs;

    pthread_t ticker; /* NPVDB_SYNC_INTERVAL only */
    int ticker_running;
    int stop;
    pthread_cond_t tick_cv;
};

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static void seg_name(char *buf, size_t size, uint64_t first)
{
    snprintf(buf, size, "wal-%020" PRIu64 ".log", first);
}

/* Parses "wal-<20 digits>.log"; 0 if the name is something else. */
static int parse_seg_name(const char *name, uint64_t *first)
{
    if (strlen(name) != 28 || strncmp(name, "wal-", 4) != 0 ||
        strcmp(name + 24, ".log") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 24; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *first = v;
    return 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static npvdb_code segs_push(wal *w, uint64_t first, npvdb_error *err)
{
    if (w->n_segs == w->cap_segs) {
        size_t cap = w->cap_segs ? w->cap_segs * 2 : 16;
        uint64_t *p = realloc(w->segs, cap * sizeof *p);
        if (!p)
            return npvdb_set_error(err, NPVDB_ENOMEM,
                                   "no memory for the segment list");
        w->segs = p;
        w->cap_segs = cap;
    }
    w->segs[w->n_segs++] = first;
    return NPVDB_OK;
}

/* Fills w->segs with the segment files of w->dir, ascending. */
static npvdb_code list_segments(wal *w, npvdb_error *err)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return npvdb_set_error(err, NPVDB_EINTERNAL, "cannot list %s: %s",
                               w->dir, strerror(errno));
    struct dirent *e;
    npvdb_code rc = NPVDB_OK;
    while (rc == NPVDB_OK && (e = readdir(d)) != NULL) {
        uint64_t first;
        if (parse_seg_name(e->d_name, &first)) rc = segs_push(w, first, err);
    }
    closedir(d);
    if (rc == NPVDB_OK && w->n_segs > 1)
        qsort(w->segs, w->n_segs, sizeof *w->segs, cmp_u64);
    return rc;
}

npvdb_code wal_first_seq(const char *dir, uint64_t *first, npvdb_error *err)
{
    wal tmp = {.dir = (char *)dir};
    npvdb_code rc = list_segments(&tmp, err);
    *first = (rc == NPVDB_OK && tmp.n_segs) ? tmp.segs[0] : 0;
    free(tmp.segs);
    return rc;
}

/* ---- scanning ---------------------------------------------------------- */

/* Checks the record at buf[0..avail); returns NULL and its stride, or why it
 * is not a valid record. */
static const char *check_record(const uint8_t *buf, size_t avail,
                                uint64_t expect, wal_record *rec,
                                size_t *stride)
{
    if (avail < WAL_REC_HDR) return "record header cut off";
    if (st_get_u32(buf) != WAL_MAGIC) return "bad record magic";
    if (buf[5] || buf[6] || buf[7]) return "bad reserved bytes";
    uint32_t len = st_get_u32(buf + 8);
    if (len > REC_MAX_PAYLOAD) return "record length over the limit";
    size_t need = WAL_REC_HDR + align8(len);
    if (need > avail) return "record cut off";
    uint32_t crc = npvdb_crc32c(0, buf + WAL_REC_HDR, len);
    crc = npvdb_crc32c(crc, buf, 20);
    if (crc != st_get_u32(buf + 20)) return "CRC mismatch";
    uint8_t type = buf[4];
    if (type < REC_INIT || type > REC_RESHARD) return "unknown record type";
    uint64_t seq = st_get_u64(buf + 12);
    if (expect && seq != expect) return "sequence number out of order";
    if (seq == 0) return "sequence number 0";
    rec->type = type;
    rec->seq = seq;
    rec->payload = buf + WAL_REC_HDR;
    rec->len = len;
    *stride = need;
    return NULL;
}

npvdb_code wal_scan_buffer(const uint8_t *buf, size_t len, uint64_t expect_seq,
                           uint64_t after_seq, wal_apply_fn fn, void *ctx,
                           wal_scan *out, npvdb_error *err)
{
    memset(out, 0, sizeof *out);
    size_t pos = 0;
    uint64_t expect = expect_seq;
    while (pos < len) {
        wal_record rec;
        size_t stride;
        const char *why =
            check_record(buf + pos, len - pos, expect, &rec, &stride);
        if (why) {
            out->stop = why;
            break;
        }
        if (fn && rec.seq > after_seq) {
            npvdb_code rc = fn(ctx, &rec, err);
            if (rc != NPVDB_OK) return rc;
        }
        pos += stride;
        out->good_end = pos;
        out->last_seq = rec.seq;
        out->n_records++;
        expect = rec.seq + 1;
    }
    return NPVDB_OK;
}

/* ---- segment files ----------------------------------------------------- */

static char *seg_path(const wal *w, uint64_t first)
{
    char name[64];
    seg_name(name, sizeof name, first);
    return st_path(w->dir, name);
}

/* Creates segment `first` with its header, durable (file and directory
 * entry). Returns the fd or -1 with err filled. */
static int create_segment(wal *w, uint64_t first, npvdb_error *err)
{
    char *path = seg_path(w, first);
    if (!path) {
        npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t hdr[WAL_SEG_HDR] = {0};
    memcpy(hdr, seg_magic, 8);
    st_put_u32(hdr + 8, 1);
    if (fd < 0 || st_pwrite_all(fd, hdr, sizeof hdr, 0) != 0 ||
        fdatasync(fd) != 0 || st_fsync_dir(w->dir) != 0) {
        int e = errno;
        npvdb_set_error(err, st_errno_code(e),
                        "cannot create log segment %s: %s", path, strerror(e));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        free(path);
        return -1;
    }
    free(path);
    return fd;
}

/* Waits out a running leader: roll must not close the fd it syncs. */
static void wait_no_syncer(wal *w)
{
    while (w->syncing)
        pthread_cond_wait(&w->cv, &w->mu);
}

static void mark_broken(wal *w, const char *what, int e)
{
    w->broken = 1;
    snprintf(w->broken_msg, sizeof w->broken_msg, "%s failed: %s", what,
             strerror(e));
    st_log("log is unusable: %s", w->broken_msg);
    pthread_cond_broadcast(&w->cv);
}

static npvdb_code broken_error(const wal *w, npvdb_error *err)
{
    return npvdb_set_error(
        err, NPVDB_EINTERNAL,
        "write-ahead log is unusable after an earlier failure "
        "(%s); restart the server",
        w->broken_msg);
}

/* Starts a new segment after last_seq. The old one is fsynced first, so a
 * newer segment never exists next to a torn older one. Holds w->mu. */
static npvdb_code roll_locked(wal *w, npvdb_error *err)
{
    wait_no_syncer(w);
    if (w->broken) return broken_error(w, err);
    if (fdatasync(w->fd) != 0) {
        mark_broken(w, "fsync of the log", errno);
        return broken_error(w, err);
    }
    w->n_fsyncs++;
    w->durable_seq = w->last_seq;
    pthread_cond_broadcast(&w->cv);
    uint64_t first = w->last_seq + 1;
    npvdb_code rc = segs_push(w, first, err);
    if (rc != NPVDB_OK) return rc;
    int fd = create_segment(w, first, err);
    if (fd < 0) {
        w->n_segs--; /* the old segment stays active */
        return err ? err->code : NPVDB_EINTERNAL;
    }
    close(w->fd);
    w->fd = fd;
    w->off = WAL_SEG_HDR;
    return NPVDB_OK;
}

/* ---- recovery ---------------------------------------------------------- */

typedef struct seg_result {
    wal_scan scan;
    uint64_t size;     /* file size */
    uint64_t stop_off; /* file offset where valid data ends */
    const char *stop;  /* NULL if the whole file is valid */
} seg_result;

static npvdb_code replay_segment(wal *w, uint64_t first, uint64_t after_seq,
                                 wal_apply_fn fn, void *ctx, seg_result *res,
                                 npvdb_error *err)
{
    memset(res, 0, sizeof *res);
    char *path = seg_path(w, first);
    if (!path)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        npvdb_code rc = npvdb_set_error(
            err, NPVDB_EINTERNAL, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(path);
        return rc;
    }
    free(path);
    res->size = (uint64_t)st.st_size;
    if (res->size < WAL_SEG_HDR) {
        close(fd);
        res->stop = res->size ? "segment header cut off" : "empty segment";
        return NPVDB_OK;
    }
    /* mmap: the file's pages are the records, no copy, any size. */
    const uint8_t *map =
        mmap(NULL, (size_t)res->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return npvdb_set_error(err, NPVDB_EINTERNAL,
                               "cannot map log segment: %s", strerror(errno));
    npvdb_code rc = NPVDB_OK;
    if (memcmp(map, seg_magic, 8) != 0 || st_get_u32(map + 8) != 1) {
        res->stop = "bad segment header";
    } else {
        rc = wal_scan_buffer(map + WAL_SEG_HDR, (size_t)res->size - WAL_SEG_HDR,
                             first, after_seq, fn, ctx, &res->scan, err);
        res->stop = res->scan.stop;
        res->stop_off = WAL_SEG_HDR + res->scan.good_end;
    }
    munmap((void *)map, (size_t)res->size);
    return rc;
}

/* Cuts segment `first` back to `off` (rewriting the header when it was cut
 * inside it) and makes that durable. */
static npvdb_code truncate_segment(wal *w, uint64_t first, uint64_t off,
                                   npvdb_error *err)
{
    char *path = seg_path(w, first);
    if (!path)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
    int fd = open(path, O_RDWR | O_CLOEXEC);
    int ok = fd >= 0 && ftruncate(fd, (off_t)off) == 0;
    if (ok && off < WAL_SEG_HDR) {
        uint8_t hdr[WAL_SEG_HDR] = {0};
        memcpy(hdr, seg_magic, 8);
        st_put_u32(hdr + 8, 1);
        ok =
            ftruncate(fd, 0) == 0 && st_pwrite_all(fd, hdr, sizeof hdr, 0) == 0;
    }
    ok = ok && fdatasync(fd) == 0;
    npvdb_code rc = NPVDB_OK;
    if (!ok)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot repair %s: %s", path,
                             strerror(errno));
    if (fd >= 0) close(fd);
    free(path);
    return rc;
}

/* Renames segments i.. to *.corrupt: they follow a damaged record, so their
 * records cannot be applied, but they are kept for inspection. */
static npvdb_code set_aside(wal *w, size_t from, npvdb_error *err)
{
    for (size_t i = from; i < w->n_segs; i++) {
        char *path = seg_path(w, w->segs[i]);
        size_t pl = path ? strlen(path) : 0;
        char *to = path ? malloc(pl + 9) : NULL;
        if (!to) {
            free(path);
            return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
        }
        memcpy(to, path, pl);
        memcpy(to + pl, ".corrupt", 9);
        int rc = rename(path, to);
        int e = errno;
        if (rc == 0)
            st_log("log segment %s follows a damaged record: set aside as %s",
                   path, to);
        free(path);
        free(to);
        if (rc != 0)
            return npvdb_set_error(err, NPVDB_EINTERNAL,
                                   "cannot set aside a log segment: %s",
                                   strerror(e));
    }
    w->n_segs = from;
    return NPVDB_OK;
}

/* Replays all segments; leaves w->segs holding the surviving ones and
 * w->last_seq the last good record (or after_seq). */
static npvdb_code recover(wal *w, uint64_t after_seq, wal_apply_fn fn,
                          void *ctx, npvdb_error *err)
{
    if (w->segs[0] > after_seq + 1)
        return npvdb_set_error(err, NPVDB_ESTATE,
                               "the log starts at record %" PRIu64
                               " but the snapshot covers only up to %" PRIu64
                               ": records are missing, refusing to start",
                               w->segs[0], after_seq);
    uint64_t prev_last = 0;
    for (size_t i = 0; i < w->n_segs; i++) {
        uint64_t first = w->segs[i];
        uint64_t limit = (prev_last > after_seq ? prev_last : after_seq) + 1;
        if (i > 0 && (first < prev_last + 1 || first > limit)) {
            st_log("log segment %" PRIu64 " does not follow record %" PRIu64
                   ": replay stops there",
                   first, prev_last);
            w->active_last = prev_last;
            w->last_seq = prev_last > after_seq ? prev_last : after_seq;
            return set_aside(w, i, err);
        }
        seg_result res;
        npvdb_code rc = replay_segment(w, first, after_seq, fn, ctx, &res, err);
        if (rc != NPVDB_OK) return rc;
        prev_last = res.scan.n_records ? res.scan.last_seq : first - 1;
        if (!res.stop) continue;
        if (res.size > 0 || i + 1 < w->n_segs) {
            char name[64];
            seg_name(name, sizeof name, first);
            st_log("%s/%s: %s at offset %" PRIu64 " of %" PRIu64
                   " bytes; replay stops after record %" PRIu64 ", the %" PRIu64
                   " bytes after it are dropped",
                   w->dir, name, res.stop, res.stop_off, res.size, prev_last,
                   res.size - res.stop_off);
        }
        rc = truncate_segment(w, first, res.stop_off, err);
        if (rc == NPVDB_OK) rc = set_aside(w, i + 1, err);
        if (rc != NPVDB_OK) return rc;
        break;
    }
    w->active_last = prev_last;
    w->last_seq = prev_last > after_seq ? prev_last : after_seq;
    return NPVDB_OK;
}

/* Opens the last surviving segment for appending; starts a fresh one when
 * its records end before last_seq (a snapshot newer than the log's end). */
static npvdb_code open_active(wal *w, npvdb_error *err)
{
    uint64_t first = w->segs[w->n_segs - 1];
    char *path = seg_path(w, first);
    if (!path)
        return npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
    w->fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (w->fd < 0 || fstat(w->fd, &st) != 0) {
        npvdb_code rc = npvdb_set_error(
            err, NPVDB_EINTERNAL, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    free(path);
    w->off = (uint64_t)st.st_size;
    /* The replayed tail may still be only in the page cache (a process
     * crash): make it durable before anything new is acknowledged. */
    if (fdatasync(w->fd) != 0)
        return npvdb_set_error(err, NPVDB_EINTERNAL, "cannot fsync the log: %s",
                               strerror(errno));
    w->durable_seq = w->last_seq;
    return NPVDB_OK;
}

static void *ticker_main(void *arg);

static void wal_free(wal *w)
{
    if (w->fd >= 0) close(w->fd);
    pthread_cond_destroy(&w->tick_cv);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->segs);
    free(w->dir);
    free(w);
}

wal *wal_open(const wal_options *opt, uint64_t after_seq, wal_apply_fn fn,
              void *ctx, npvdb_error *err)
{
    wal *w = calloc(1, sizeof *w);
    if (!w) {
        npvdb_set_error(err, NPVDB_ENOMEM, "no memory for the log");
        return NULL;
    }
    w->fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->tick_cv, NULL);
    w->dir = strdup(opt->dir);
    w->seg_bytes =
        opt->segment_bytes ? opt->segment_bytes : WAL_DEFAULT_SEGMENT_BYTES;
    w->mode = opt->sync;
    w->interval_ms = opt->interval_ms ? opt->interval_ms : 100;
    if (!w->dir) {
        npvdb_set_error(err, NPVDB_ENOMEM, "no memory for the log");
        goto fail;
    }
    if (list_segments(w, err) != NPVDB_OK) goto fail;
    if (w->n_segs == 0) {
        w->last_seq = after_seq;
    } else {
        if (recover(w, after_seq, fn, ctx, err) != NPVDB_OK) goto fail;
    }
    if (w->n_segs > 0) {
        if (open_active(w, err) != NPVDB_OK) goto fail;
        /* The next record must be active_last + 1 in its segment; after a
         * snapshot newer than the log's end, start a segment that fits. */
        if (w->active_last != w->last_seq && roll_locked(w, err) != NPVDB_OK)
            goto fail;
    }
    if (w->n_segs == 0) {
        if (segs_push(w, w->last_seq + 1, err) != NPVDB_OK) goto fail;
        w->fd = create_segment(w, w->last_seq + 1, err);
        if (w->fd < 0) goto fail;
        w->off = WAL_SEG_HDR;
        w->durable_seq = w->last_seq;
    }
    if (w->mode == NPVDB_SYNC_INTERVAL) {
        if (pthread_create(&w->ticker, NULL, ticker_main, w) != 0) {
            npvdb_set_error(err, NPVDB_EINTERNAL,
                            "cannot start the log sync thread");
            goto fail;
        }
        w->ticker_running = 1;
    }
    return w;
fail:
    wal_free(w);
    return NULL;
}

/* ---- appending and group commit --------------------------------------- */

/* Makes everything appended so far durable: the caller becomes the leader,
 * syncs without the lock (appends go on meanwhile) and wakes the waiters.
 * Holds w->mu on entry and exit; the caller checked !w->syncing. */
static void lead_sync_locked(wal *w)
{
    w->syncing = 1;
    uint64_t target = w->last_seq;
    int fd = w->fd;
    pthread_mutex_unlock(&w->mu);
    int64_t t0 = npvdb_mono_ns();
    int rc = fdatasync(fd);
    int e = errno;
    npvdb_hist_add(&w->fsync_time, (uint64_t)(npvdb_mono_ns() - t0));
    pthread_mutex_lock(&w->mu);
    w->syncing = 0;
    w->n_fsyncs++;
    if (rc != 0)
        mark_broken(w, "fsync of the log", e);
    else if (target > w->durable_seq)
        w->durable_seq = target;
    pthread_cond_broadcast(&w->cv);
}

static npvdb_code sync_upto_locked(wal *w, uint64_t seq, npvdb_error *err)
{
    while (!w->broken && w->durable_seq < seq) {
        if (w->syncing)
            pthread_cond_wait(&w->cv, &w->mu);
        else
            lead_sync_locked(w);
    }
    return w->broken ? broken_error(w, err) : NPVDB_OK;
}

static void *ticker_main(void *arg)
{
    wal *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)w->interval_ms * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&w->tick_cv, &w->mu, &ts);
        if (!w->stop && !w->broken && !w->syncing &&
            w->durable_seq < w->last_seq)
            lead_sync_locked(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void wal_close(wal *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->tick_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->ticker_running) pthread_join(w->ticker, NULL);
    npvdb_error err;
    if (wal_sync(w, &err) != NPVDB_OK) st_log("closing the log: %s", err.msg);
    wal_free(w);
}

npvdb_code wal_append(wal *w, uint8_t type, rec_buf *r, uint64_t *seq,
                      npvdb_error *err)
{
    size_t stride = WAL_REC_HDR + align8(r->len);
    /* The payload CRC is the expensive part: computed outside the lock. */
    uint32_t crc = npvdb_crc32c(0, r->buf + WAL_REC_HDR, r->len);
    uint8_t *h = r->buf;
    pthread_mutex_lock(&w->mu);
    npvdb_code rc = NPVDB_OK;
    while (rc == NPVDB_OK && !w->broken && w->off > WAL_SEG_HDR &&
           w->off + stride > w->seg_bytes) {
        if (w->syncing)
            pthread_cond_wait(&w->cv, &w->mu); /* then look again */
        else
            rc = roll_locked(w, err);
    }
    if (rc == NPVDB_OK && w->broken) rc = broken_error(w, err);
    if (rc != NPVDB_OK) {
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    uint64_t s = w->last_seq + 1;
    st_put_u32(h, WAL_MAGIC);
    h[4] = type;
    h[5] = h[6] = h[7] = 0;
    st_put_u32(h + 8, (uint32_t)r->len);
    st_put_u64(h + 12, s);
    st_put_u32(h + 20, npvdb_crc32c(crc, h, 20));
    if (st_pwrite_all(w->fd, h, stride, w->off) != 0) {
        int e = errno;
        /* Cut off the partial record so that later appends follow the last
         * good one; if even that fails the log cannot be trusted. */
        if (ftruncate(w->fd, (off_t)w->off) != 0)
            mark_broken(w, "truncating a failed log write", errno);
        pthread_mutex_unlock(&w->mu);
        return npvdb_set_error(err, st_errno_code(e),
                               "cannot write to the log: %s", strerror(e));
    }
    w->off += stride;
    w->last_seq = s;
    pthread_mutex_unlock(&w->mu);
    *seq = s;
    return NPVDB_OK;
}

npvdb_code wal_wait_durable(wal *w, uint64_t seq, npvdb_error *err)
{
    pthread_mutex_lock(&w->mu);
    npvdb_code rc;
    if (w->mode == NPVDB_SYNC_ALWAYS)
        rc = sync_upto_locked(w, seq, err);
    else
        rc = w->broken ? broken_error(w, err) : NPVDB_OK;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

npvdb_code wal_sync(wal *w, npvdb_error *err)
{
    pthread_mutex_lock(&w->mu);
    npvdb_code rc = sync_upto_locked(w, w->last_seq, err);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

uint64_t wal_last_seq(wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t s = w->last_seq;
    pthread_mutex_unlock(&w->mu);
    return s;
}

const npvdb_hist *wal_fsync_hist(const wal *w)
{
    return &w->fsync_time;
}

uint64_t wal_fsyncs(wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->n_fsyncs;
    pthread_mutex_unlock(&w->mu);
    return n;
}

npvdb_code wal_roll_if_covered(wal *w, uint64_t seq, npvdb_error *err)
{
    pthread_mutex_lock(&w->mu);
    npvdb_code rc = NPVDB_OK;
    while (rc == NPVDB_OK && w->off > WAL_SEG_HDR && w->last_seq <= seq) {
        if (w->syncing) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        rc = roll_locked(w, err);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

npvdb_code wal_remove_upto(wal *w, uint64_t seq, npvdb_error *err)
{
    pthread_mutex_lock(&w->mu);
    size_t removed = 0;
    npvdb_code rc = NPVDB_OK;
    /* Segment i holds records segs[i] .. segs[i+1]-1; the last is active. */
    while (removed + 1 < w->n_segs && w->segs[removed + 1] - 1 <= seq) {
        char *path = seg_path(w, w->segs[removed]);
        if (!path) {
            rc = npvdb_set_error(err, NPVDB_ENOMEM, "no memory for a path");
            break;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot remove %s: %s",
                                 path, strerror(errno));
            free(path);
            break;
        }
        free(path);
        removed++;
    }
    memmove(w->segs, w->segs + removed,
            (w->n_segs - removed) * sizeof *w->segs);
    w->n_segs -= removed;
    pthread_mutex_unlock(&w->mu);
    if (removed && st_fsync_dir(w->dir) != 0 && rc == NPVDB_OK)
        rc = npvdb_set_error(err, NPVDB_EINTERNAL, "cannot fsync %s: %s",
                             w->dir, strerror(errno));
    return rc;
}
