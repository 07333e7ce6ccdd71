/*
 * stall.c -- the stalled-reader watchdog. A reply waits in a call until the
 * client's HTTP/2 flow-control window lets gRPC send it: a client that asks
 * for a large GetClosest and never reads would pin the reply's memory (up
 * to a chunk, 4 MiB, per call) for as long as it keeps the connection. Once
 * a send of a call has made no progress for `stall_ms`, the call is
 * cancelled, its batches fail and the call is freed the usual way.
 *
 * Every counted call is on one list (linked at accept, unlinked when freed,
 * under stall_mu, so the watchdog never sees a freed call). A sweep once a
 * second is O(live calls) -- at most max_concurrent_calls -- which is
 * cheaper than a timer per send; a finer clock is not needed for a timeout
 * counted in seconds.
 */
#include "internal.h"

#include "clock.h"

#include <errno.h>
#include <time.h>

void nt_stall_link(nt_call *c)
{
    npvdb_server *s = c->srv;
    pthread_mutex_lock(&s->stall_mu);
    c->stall_prev = NULL;
    c->stall_next = s->stall_head;
    if (s->stall_head) s->stall_head->stall_prev = c;
    s->stall_head = c;
    c->stall_linked = 1;
    pthread_mutex_unlock(&s->stall_mu);
}

void nt_stall_unlink(nt_call *c)
{
    if (!c->stall_linked) return;
    npvdb_server *s = c->srv;
    pthread_mutex_lock(&s->stall_mu);
    if (c->stall_prev)
        c->stall_prev->stall_next = c->stall_next;
    else
        s->stall_head = c->stall_next;
    if (c->stall_next) c->stall_next->stall_prev = c->stall_prev;
    c->stall_linked = 0;
    pthread_mutex_unlock(&s->stall_mu);
}

void nt_stall_sending(nt_call *c, int sending)
{
    atomic_store(&c->send_since, sending ? npvdb_mono_ns() : 0);
}

/* Cancels the calls whose send started more than stall_ms ago. */
static void sweep(npvdb_server *s)
{
    int64_t limit = npvdb_mono_ns() - (int64_t)s->stall_ms * 1000000;
    pthread_mutex_lock(&s->stall_mu);
    for (nt_call *c = s->stall_head; c; c = c->stall_next) {
        int64_t since = atomic_load(&c->send_since);
        if (!since || since > limit || c->stall_cancelled) continue;
        c->stall_cancelled = 1;
        npvdb_log("%s: the client read nothing for %u ms: cancelling the "
                  "call",
                  c->method->path, s->stall_ms);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                     "the client stopped reading the reply",
                                     NULL);
    }
    pthread_mutex_unlock(&s->stall_mu);
}

static void *watchdog(void *arg)
{
    npvdb_server *s = arg;
    pthread_mutex_lock(&s->stall_mu);
    while (!s->stall_stop) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += 1;
        int rc = pthread_cond_timedwait(&s->stall_cv, &s->stall_mu, &at);
        if (rc == ETIMEDOUT && !s->stall_stop) {
            pthread_mutex_unlock(&s->stall_mu);
            sweep(s);
            pthread_mutex_lock(&s->stall_mu);
        }
    }
    pthread_mutex_unlock(&s->stall_mu);
    return NULL;
}

int nt_stall_start(npvdb_server *s)
{
    pthread_mutex_init(&s->stall_mu, NULL);
    pthread_cond_init(&s->stall_cv, NULL);
    s->stall_started = pthread_create(&s->stall_thread, NULL, watchdog, s) == 0;
    return s->stall_started ? 0 : -1;
}

void nt_stall_stop(npvdb_server *s)
{
    if (s->stall_started) {
        pthread_mutex_lock(&s->stall_mu);
        s->stall_stop = 1;
        pthread_cond_signal(&s->stall_cv);
        pthread_mutex_unlock(&s->stall_mu);
        pthread_join(s->stall_thread, NULL);
        s->stall_started = 0;
    }
    pthread_mutex_destroy(&s->stall_mu);
    pthread_cond_destroy(&s->stall_cv);
}
