/*
 * exec.c -- the engine pool: threads of the transport's own that run the
 * calls' heavy steps (searches, inserts, snapshots, Init), so the
 * completion-queue threads only move bytes and answer the cheap calls
 * (Health, Info, ListCollections) at once, however busy the engine is.
 *
 * A plain FIFO under one mutex: jobs are whole requests or stream messages,
 * thousands per second at most, so the lock is never the bottleneck. The
 * queue needs no bound of its own: every job belongs to a call, and the
 * server admits at most max_concurrent_calls of them (server.c).
 */
#include "internal.h"

#include <stdlib.h>

static void *exec_loop(void *arg)
{
    nt_exec *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->head && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        nt_job *j = e->head;
        if (!j) break; /* stopping and drained */
        e->head = j->next;
        if (!e->head) e->tail = NULL;
        e->queued--;
        e->busy++;
        pthread_mutex_unlock(&e->mu);
        j->run(j);
        pthread_mutex_lock(&e->mu);
        e->busy--;
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int nt_exec_start(nt_exec *e, unsigned n)
{
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->threads = calloc(n ? n : 1, sizeof *e->threads);
    if (!e->threads) return -1;
    for (e->n = 0; e->n < n; e->n++)
        if (pthread_create(&e->threads[e->n], NULL, exec_loop, e) != 0)
            return -1; /* the ones started are joined by nt_exec_stop */
    return 0;
}

void nt_exec_post(nt_exec *e, nt_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->tail)
        e->tail->next = j;
    else
        e->head = j;
    e->tail = j;
    e->queued++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void nt_exec_stop(nt_exec *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    for (unsigned i = 0; i < e->n; i++)
        pthread_join(e->threads[i], NULL);
    free(e->threads);
    e->threads = NULL;
    e->n = 0;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
}
