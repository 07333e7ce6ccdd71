/*
 * metrics.h -- the Prometheus endpoint: GET /metrics in the text format
 * (0.0.4), served by libmicrohttpd on a thread of its own.
 *
 * ops/ reads counters that the other layers keep (transport: calls by
 * method and status, latency; catalog: collections, memory, snapshots;
 * storage: log size, fsync time); nothing depends on ops. A scrape takes no
 * lock that a search or a write holds for long: each collection is read
 * under its read lock for one pass over its shard sizes (an integer per
 * shard), the counters are atomics.
 */
#ifndef NPVDB_METRICS_H
#define NPVDB_METRICS_H

#include "catalog.h"
#include "storage.h"
#include "transport.h"

#include <stddef.h>

/* What a scrape reads; all borrowed, and must outlive the endpoint. */
typedef struct npvdb_metrics_sources {
    npvdb_server *srv;  /* may be NULL: no call counters */
    npvdb_catalog *cat; /* may be NULL */
    npvdb_store *store; /* may be NULL */
} npvdb_metrics_sources;

typedef struct npvdb_metrics npvdb_metrics;

/* Serves /metrics on `listen` ("host:port", IPv4 or "[v6]:port"; port 0
 * picks one). *port (may be NULL) gets the bound port. NULL and err on
 * failure (address in use, bad address). Caller frees with
 * npvdb_metrics_stop. */
npvdb_metrics *npvdb_metrics_start(const char *listen,
                                   const npvdb_metrics_sources *src, int *port,
                                   npvdb_error *err);

/* Stops serving and frees. NULL is allowed. */
void npvdb_metrics_stop(npvdb_metrics *m);

/* The exposition text of one scrape: a malloc'ed NUL-terminated string the
 * caller frees, *len its length; NULL when out of memory. */
char *npvdb_metrics_render(const npvdb_metrics_sources *src, size_t *len);

#endif /* NPVDB_METRICS_H */
