/*
 * pool.c -- the worker threads. Each worker has its own FIFO, and task t of a
 * run always goes to worker t % n: a shard handed out as task
 * (shard % n_workers) is scanned by the same thread every time, which keeps
 * its rows warm in that core's cache (the seed design's "a worker owns its
 * shard"). Runs from concurrent searches interleave in the FIFOs.
 */
#include "internal.h"

#include <stdlib.h>

typedef struct run {
    pthread_mutex_t mu;
    pthread_cond_t done;
    uint32_t remaining;
    pool_fn fn;
    void *ctx;
} run;

typedef struct job {
    struct job *next;
    run *r;
    uint32_t task;
} job;

typedef struct worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    job *head, *tail;
    bool stop;
    bool started;
} worker;

struct npvdb_pool {
    uint32_t n;
    worker *w;
};

static void finish(run *r)
{
    pthread_mutex_lock(&r->mu);
    if (--r->remaining == 0) pthread_cond_signal(&r->done);
    pthread_mutex_unlock(&r->mu);
}

static job *next_job(worker *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->head && !w->stop)
        pthread_cond_wait(&w->wake, &w->mu);
    job *j = w->head;
    if (j) {
        w->head = j->next;
        if (!w->head) w->tail = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    return j;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    job *j;
    /* Drains its queue even when stopping, so no run waits forever. */
    while ((j = next_job(w)) != NULL) {
        run *r = j->r;
        r->fn(r->ctx, j->task);
        finish(r);
    }
    return NULL;
}

void pool_destroy(npvdb_pool *p)
{
    if (!p) return;
    for (uint32_t i = 0; i < p->n; i++) {
        worker *w = &p->w[i];
        if (!w->started) continue;
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    for (uint32_t i = 0; i < p->n; i++) {
        pthread_mutex_destroy(&p->w[i].mu);
        pthread_cond_destroy(&p->w[i].wake);
    }
    free(p->w);
    free(p);
}

npvdb_pool *pool_create(uint32_t n_workers)
{
    npvdb_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->w = calloc(n_workers, sizeof *p->w);
    if (!p->w) {
        free(p);
        return NULL;
    }
    p->n = n_workers;
    for (uint32_t i = 0; i < n_workers; i++) {
        pthread_mutex_init(&p->w[i].mu, NULL);
        pthread_cond_init(&p->w[i].wake, NULL);
    }
    for (uint32_t i = 0; i < n_workers; i++) {
        if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i])) {
            pool_destroy(p);
            return NULL;
        }
        p->w[i].started = true;
    }
    return p;
}

uint32_t pool_size(const npvdb_pool *p)
{
    return p->n;
}

static void enqueue(worker *w, job *j)
{
    pthread_mutex_lock(&w->mu);
    j->next = NULL;
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
}

int pool_run(npvdb_pool *p, uint32_t n_tasks, pool_fn fn, void *ctx)
{
    if (n_tasks == 0) return 0;
    job *jobs = malloc(n_tasks * sizeof *jobs);
    if (!jobs) return -1;
    run r = {.remaining = n_tasks, .fn = fn, .ctx = ctx};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.done, NULL);
    for (uint32_t t = 0; t < n_tasks; t++) {
        jobs[t].r = &r;
        jobs[t].task = t;
        enqueue(&p->w[t % p->n], &jobs[t]);
    }
    pthread_mutex_lock(&r.mu);
    while (r.remaining)
        pthread_cond_wait(&r.done, &r.mu);
    pthread_mutex_unlock(&r.mu);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.done);
    free(jobs);
    return 0;
}
