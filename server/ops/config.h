/*
 * config.h -- the server's configuration: every option once, in a table
 * (config.c), read from NPVDB_* environment variables and then from flags
 * (the flag wins). `--help` and `--print-config` are generated from the same
 * table, so a flag cannot lack its variable or its help line.
 */
#ifndef NPVDB_CONFIG_H
#define NPVDB_CONFIG_H

#include "storage.h"

#include <stdio.h>

typedef struct npvdb_options {
    const char *listen;
    const char *data_dir;
    const char *port_file;
    unsigned threads;
    unsigned call_threads;      /* 0: max(4, 2 * threads) */
    unsigned max_calls;         /* 0: the transport's default */
    unsigned max_calls_conn;    /* 0: the transport's default */
    unsigned receive_buffer_mb; /* 0: max_message_mb + 16 */
    unsigned stall_ms;          /* 0: the transport's default */
    npvdb_sync_mode sync;
    unsigned sync_interval_ms;
    unsigned keep_snapshots;
    unsigned max_message_mb;
    unsigned snapshot_every_mb;
    unsigned grace_ms;
    unsigned max_memory_mb; /* 0: no limit */
    int no_rebalance;       /* shards never split or merge */
    const char *token_file;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    int insecure;
    const char *metrics_listen; /* NULL: no /metrics */
    int log_json;
} npvdb_options;

/* The defaults (threads: all cores). */
void npvdb_options_init(npvdb_options *o);

/* Environment, then argv. 0: run; 1: exit 0 (--help, --version,
 * --print-config printed to `out`); -1: exit 2 (the message is on stderr).
 * Strings point into argv or the environment. */
int npvdb_options_parse(npvdb_options *o, int argc, char **argv, FILE *out);

#endif /* NPVDB_CONFIG_H */
