/*
 * autosnapshot.c -- snapshots the server takes on its own once the log has
 * grown by `snapshot_every` bytes since the last one. A restart replays the
 * log after the newest snapshot, and replaying is slow (a log-only restart of
 * 1M vectors re-runs k-means and every insert: minutes, against seconds from
 * a snapshot), so this bounds restart time the way a checkpoint does. One
 * detached thread at a time; shutdown waits for it.
 */
#include "internal.h"

#include <stdlib.h>

static void *autosnapshot_main(void *arg)
{
    npvdb_server *s = arg;
    npvdb_error err = {0};
    npvdb_snapshot_info *info = calloc(1, sizeof *info);
    if (!info)
        npvdb_log("automatic snapshot: out of memory");
    else if (nt_snapshot_write(s, info, &err) != NPVDB_OK)
        npvdb_log("automatic snapshot failed: %s", err.msg);
    free(info);
    pthread_mutex_lock(&s->auto_mu);
    s->auto_running = 0;
    pthread_cond_broadcast(&s->auto_cv);
    pthread_mutex_unlock(&s->auto_mu);
    return NULL;
}

void nt_autosnapshot_maybe(npvdb_server *s)
{
    if (!s->store || !s->snapshot_every ||
        npvdb_store_log_bytes(s->store) < s->snapshot_every)
        return;
    pthread_mutex_lock(&s->auto_mu);
    if (!s->auto_running && !atomic_load(&s->stopping)) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, autosnapshot_main, s) == 0) {
            s->auto_running = 1;
            npvdb_log("automatic snapshot: the log grew by %llu bytes",
                      (unsigned long long)npvdb_store_log_bytes(s->store));
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&s->auto_mu);
}

void nt_autosnapshot_wait(npvdb_server *s)
{
    pthread_mutex_lock(&s->auto_mu);
    while (s->auto_running)
        pthread_cond_wait(&s->auto_cv, &s->auto_mu);
    pthread_mutex_unlock(&s->auto_mu);
}
