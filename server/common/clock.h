/*
 * clock.h -- CLOCK_MONOTONIC in nanoseconds: the one clock that deadlines
 * (engine, transport), call latencies and fsync times are measured on.
 */
#ifndef NPVDB_CLOCK_H
#define NPVDB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t npvdb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif /* NPVDB_CLOCK_H */
