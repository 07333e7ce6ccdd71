/*
 * trim.h -- gives the allocator's free memory back to the kernel now and
 * then, for the memory the server frees without a point to trim at.
 *
 * The catalog trims after large deletes and snapshots (catalog.c), but gRPC
 * frees what a connection held (read and write buffers, a flood of PING
 * acknowledgements never read) when the connection goes, and glibc keeps
 * those holes resident: four connections flooding PING frames left the
 * server at 247 MiB after they closed, 24 MiB after one malloc_trim. A
 * trimmer thread looks at the heaps' free bytes (mallinfo2) every
 * `period_ms` and calls malloc_trim(0) when they grew by NPVDB_TRIM_GROWTH
 * since their lowest point after the last trim: a connection's buffers
 * freed, not the steady churn of calls. A check costs about 0.5 ms (6 ms on
 * a heap with 1.5M keys' holes); a trim 1-8 ms on a small heap but
 * 46-160 ms on that large one (it madvises every free page), so it runs
 * only when there is something to give back.
 *
 * Not thread-safe between start and stop; call both from the main thread.
 */
#ifndef NPVDB_TRIM_H
#define NPVDB_TRIM_H

typedef struct npvdb_trimmer npvdb_trimmer;

/* Free heap bytes that appeared since the last trim and start one. */
#define NPVDB_TRIM_GROWTH ((size_t)16 << 20)

/* Starts the thread; NULL if it could not (the server runs on without
 * it). The caller owns the result (npvdb_trimmer_stop). */
npvdb_trimmer *npvdb_trimmer_start(unsigned period_ms);
/* Stops the thread and frees it. NULL is allowed. */
void npvdb_trimmer_stop(npvdb_trimmer *t);

#endif /* NPVDB_TRIM_H */
