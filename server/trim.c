/* trim.c -- the trimmer thread (see trim.h). */
#include "trim.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#ifdef __GLIBC__ /* defined by the headers above */
#include <malloc.h>
#endif

struct npvdb_trimmer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int stop;          /* under mu */
    unsigned period_ms;
};

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

#ifdef __GLIBC__
/* Free bytes in the malloc heaps (not mmapped blocks: those go back on
 * free). mallinfo2 walks the free lists under each arena's lock: about
 * 0.5 ms, 6 ms on a heap of 1.5M keys' holes, where malloc_trim's madvise
 * of every free page took 46-160 ms. */
static size_t heap_free(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.fordblks;
}
#endif

static void *trim_loop(void *arg)
{
    npvdb_trimmer *t = arg;
#ifdef __GLIBC__
    size_t low = heap_free(); /* lowest free bytes since the last trim */
#endif
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec ts;
        deadline_after(&ts, t->period_ms);
        int rc = 0;
        while (!t->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&t->cv, &t->mu, &ts);
        if (t->stop) break;
        pthread_mutex_unlock(&t->mu);
#ifdef __GLIBC__
        size_t now = heap_free();
        if (now < low) low = now;
        if (now - low >= NPVDB_TRIM_GROWTH) {
            malloc_trim(0);
            low = heap_free();
        }
#endif
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

npvdb_trimmer *npvdb_trimmer_start(unsigned period_ms)
{
    npvdb_trimmer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->period_ms = period_ms ? period_ms : 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mu, NULL);
    if (pthread_create(&t->thread, NULL, trim_loop, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    return t;
}

void npvdb_trimmer_stop(npvdb_trimmer *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
