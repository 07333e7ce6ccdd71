/*
 * trim.h -- gives the allocator's free memory back to the kernel now and
 * then, for the memory the server frees without a point to trim at.
 *
 * The catalog trims after large deletes and snapshots (catalog.c), but gRPC
 * frees what a connection held (read and write buffers, a flood of PING
 * acknowledgements never read) when the connection goes, and glibc keeps
 * those holes resident: four connections flooding PING frames left the
 * server at 247 MiB after they closed, 24 MiB after one malloc_trim. A
 * trimmer thread calls malloc_trim(0) every `period_ms`, so the resident
 * size follows such frees within one period. A trim walks the free blocks
 * of every arena (two: see main.c), which costs well under a millisecond
 * for a heap with few holes; once in seconds is nothing.
 *
 * Not thread-safe between start and stop; call both from the main thread.
 */
#ifndef NPVDB_TRIM_H
#define NPVDB_TRIM_H

typedef struct npvdb_trimmer npvdb_trimmer;

/* Starts the thread; NULL if it could not (the server runs on without
 * it). The caller owns the result (npvdb_trimmer_stop). */
npvdb_trimmer *npvdb_trimmer_start(unsigned period_ms);
/* Stops the thread and frees it. NULL is allowed. */
void npvdb_trimmer_stop(npvdb_trimmer *t);

#endif /* NPVDB_TRIM_H */
