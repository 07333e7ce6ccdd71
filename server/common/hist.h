/*
 * hist.h -- a lock-free latency histogram with Prometheus's shape: fixed
 * upper bounds from 100 us to 10 s, a count and a sum. Writers (any thread)
 * add with relaxed atomics; a reader (the /metrics scrape) may see a sample
 * in `count` before its bucket, which Prometheus tolerates (each scrape is a
 * snapshot of monotonic counters).
 *
 * Shared by the layers that time things (storage: fsync; transport: calls)
 * and read by ops/, which depends on them and not the other way round.
 */
#ifndef NPVDB_HIST_H
#define NPVDB_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define NPVDB_HIST_BOUNDS 16

/* Upper bounds in seconds (the "le" labels); +Inf is the last bucket. */
static const double npvdb_hist_le[NPVDB_HIST_BOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

typedef struct npvdb_hist {
    atomic_ullong bucket[NPVDB_HIST_BOUNDS + 1]; /* not cumulative */
    atomic_ullong count;
    atomic_ullong sum_ns;
} npvdb_hist;

static inline void npvdb_hist_add(npvdb_hist *h, uint64_t ns)
{
    int i = 0;
    while (i < NPVDB_HIST_BOUNDS && (double)ns > npvdb_hist_le[i] * 1e9)
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

#endif /* NPVDB_HIST_H */
