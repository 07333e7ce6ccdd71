/*
 * exec.c -- the engine pool: threads of the transport's own that run the
 * calls' heavy steps (searches, inserts, snapshots, Init), so the
 * completion-queue threads only move bytes and answer the cheap calls
 * (Health, Info, ListCollections) at once, however busy the engine is.
 *
 * Jobs wait in lanes, one per connection, and the lanes take turns (round
 * robin, a job at a time): a client that queued 64 heavy calls delays
 * another client's call by at most one job per turn, not by all 64. One
 * mutex guards everything: jobs are whole requests or stream messages,
 * thousands per second at most, so the lock is never the bottleneck. The
 * queue needs no bound of its own: every job belongs to a call, and the
 * server admits at most max_concurrent_calls of them (server.c).
 */
#include "internal.h"

#include <stdlib.h>

/* Appends a lane with jobs to the ring (e->mu held). */
static void ring_push(nt_exec *e, nt_lane *l)
{
    l->next = NULL;
    if (e->ring_tail)
        e->ring_tail->next = l;
    else
        e->ring_head = l;
    e->ring_tail = l;
}

/* The next job in turn, or NULL (e->mu held). The lane it came from goes
 * to the back of the ring if it has more. */
static nt_job *ring_pop(nt_exec *e)
{
    nt_lane *l = e->ring_head;
    if (!l) return NULL;
    e->ring_head = l->next;
    if (!e->ring_head) e->ring_tail = NULL;
    nt_job *j = l->head;
    l->head = j->next;
    if (!l->head)
        l->tail = NULL;
    else
        ring_push(e, l);
    return j;
}

static void *exec_loop(void *arg)
{
    nt_exec *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->ring_head && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        nt_job *j = ring_pop(e);
        if (!j) break; /* stopping and drained */
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

void nt_exec_post(nt_exec *e, nt_lane *lane, nt_job *j)
{
    nt_lane *l = lane ? lane : &e->anon;
    j->next = NULL;
    pthread_mutex_lock(&e->mu);
    if (l->tail) {
        l->tail->next = j; /* in the ring already */
    } else {
        l->head = j;
        ring_push(e, l);
    }
    l->tail = j;
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
