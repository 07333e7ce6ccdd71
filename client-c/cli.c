/*
 * cli.c -- `npvdb`, the command line client of an npvdb server.
 *
 *   npvdb [--server ADDR] [--timeout SECONDS] [--tls-ca FILE]
 *         [--tls-cert FILE --tls-key FILE] [--token TOKEN] COMMAND [ARGS]
 *
 * load/query/bench read ann-benchmarks HDF5 files (datasets train, test,
 * neighbors) through the import library. The key of train row i is the
 * decimal string of i, so results compare with `neighbors` directly.
 * load --payload-column reads further datasets of the file with libhdf5
 * (one value per train row) into the payloads. Payloads are printed as
 * JSON objects; scroll prints one JSON object per line (an export).
 */
#include "annfile.h"
#include "npvdb_client.h"

#include <hdf5.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAX 24 /* decimal size_t + NUL */
/* Init carries the training sample in one message: stay well under the
 * server's default 64 MiB limit. */
#define MAX_SAMPLE_BYTES (48u << 20)
#define SAMPLE_CHUNK 16384

/* ---- options ---- */

typedef struct opts {
    const char *server;
    int timeout_s;
    npvdb_client_opts sec; /* --tls-ca, --tls-cert, --tls-key, --token */
    const char *pos[64];   /* positional arguments after the command */
    int npos;
    size_t batch;
    int metric; /* -1: from the file */
    long shards;
    long train_sample; /* -1: automatic */
    int replace;
    uint32_t k;
    uint32_t nprobe;
    const char *nprobe_list;
    size_t n;
    size_t single_max;
    size_t repeat; /* bench: batched runs per row, the fastest counts */
    int api;       /* API_GETCLOSEST | API_SEARCH */
    const char *collection; /* --collection: NULL = "default" */
    const char *where[32];  /* --where conditions, all must hold */
    int nwhere;
    int with_payload;        /* --with-payload */
    int with_vectors;        /* --with-vectors (scroll) */
    uint32_t limit;          /* --limit (scroll): keys per page */
    const char *columns[16]; /* --payload-column NAME (load) */
    int ncolumns;
} opts;

/* The two search RPCs: same arguments, same results. */
#define API_GETCLOSEST 1
#define API_SEARCH 2

typedef npvdb_status (*search_fn)(npvdb_client *c, const float *queries,
                                  size_t nq, uint32_t dim, uint32_t k,
                                  uint32_t nprobe, npvdb_client_results *out,
                                  npvdb_client_error *err);
typedef npvdb_status (*search_ex_fn)(npvdb_client *c, const float *queries,
                                     size_t nq, uint32_t dim, uint32_t k,
                                     uint32_t nprobe,
                                     const npvdb_client_search_opts *opts,
                                     npvdb_client_results *out,
                                     npvdb_client_error *err);

static const struct api {
    int bit;
    const char *name; /* the RPC */
    const char *call; /* for error messages */
    search_fn fn;
    search_ex_fn ex; /* with a filter and payloads */
} apis[] = {
    {API_GETCLOSEST, "GetClosest", "get_closest", npvdb_client_get_closest,
     npvdb_client_get_closest_ex},
    {API_SEARCH, "Search", "search", npvdb_client_search,
     npvdb_client_search_ex},
};
#define N_APIS (sizeof apis / sizeof apis[0])

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: npvdb [--server ADDR] [--timeout SECONDS] [--tls-ca FILE]\n"
        "             [--tls-cert FILE --tls-key FILE] [--token TOKEN] COMMAND "
        "...\n"
        "       npvdb --version | --help\n"
        "\n"
        "commands:\n"
        "  load FILE.hdf5 [--batch N] [--metric cosine|l2|ip] [--shards N]\n"
        "                 [--train-sample N] [--nprobe N] [--replace]\n"
        "                 [--payload-column NAME]...\n"
        "      create the collection from FILE's metric and dim (trained on\n"
        "      a sample of its rows) and stream its `train` rows; row i\n"
        "      gets key \"i\"; --batch: rows per Insert message (default:\n"
        "      about 2 MiB of vectors); --payload-column: the dataset NAME\n"
        "      of FILE (one integer, float, bool or string per train row)\n"
        "      becomes the payload field NAME of each row\n"
        "  query FILE.hdf5 [--k 10] [--nprobe N] [--n 5] [--api A]\n"
        "              [--where COND]... [--with-payload]\n"
        "      print the answers to the first N `test` queries (one Search\n"
        "      call; GetClosest with --api getclosest), the k nearest among\n"
        "      the vectors passing every COND, with their payloads\n"
        "  search V1,V2,... [--k 10] [--nprobe N] [--api A] [--where COND]...\n"
        "               [--with-payload]\n"
        "      the same for one query vector given on the command line:\n"
        "      one line per hit: key, distance (and payload as JSON)\n"
        "  bench FILE.hdf5 [--nprobe 1,2,4,8,16,32,64] [--k 10] [--batch N]\n"
        "                  [--single N] [--api getclosest|search|both]\n"
        "                  [--repeat N]\n"
        "      recall@k against `neighbors` and queries/s, batched (N\n"
        "      queries per call, 0 = all) and one query per call (at most\n"
        "      --single queries, default 1000), for the streaming\n"
        "      GetClosest RPC and the unary Search RPC (default both);\n"
        "      --repeat runs the batched pass N times and keeps the fastest\n"
        "      (default 1), which steadies figures on a busy machine; one\n"
        "      untimed batch per RPC warms the connection up first\n"
        "  info | snapshot | health\n"
        "  delete KEY...\n"
        "  get KEY... [--with-payload]\n"
        "      print each stored KEY's vector; a key not stored is an error\n"
        "      (on stderr; exit status 1 after printing the others)\n"
        "  collections\n"
        "      every collection: name, dim, metric, vectors\n"
        "  drop NAME\n"
        "      drop the collection NAME (its disk goes with the next "
        "snapshot)\n"
        "  count [--where COND]...\n"
        "      how many vectors pass every COND (all without one). COND is\n"
        "      FIELD=VALUE (an integer, true/false, else a string; quote\n"
        "      with \"...\" to force a string), FIELD!=VALUE (must not),\n"
        "      FIELD>N, FIELD>=N, FIELD<N, FIELD<=N (numbers), or\n"
        "      has:FIELD; e.g. --where tenant=42 --where 'price<20'\n"
        "  scroll [--where COND]... [--limit N] [--with-vectors]\n"
        "         [--with-payload]   (also: export)\n"
        "      every key of the collection passing every COND, one JSON\n"
        "      object a line: {\"key\": ..., \"vector\": [...], \"payload\":\n"
        "      {...}}, paged N keys per call (default 256)\n"
        "\n"
        "--collection NAME: the collection every command works on (default:\n"
        "\"default\"), e.g. npvdb --collection docs load FILE.hdf5\n"
        "\n"
        "--server ADDR: host:port of the server; default $NPVDB_ADDRESS, else\n"
        "$NPVDB_SERVER (older name), else " NPVDB_CLIENT_DEFAULT_TARGET ".\n"
        "--tls-ca FILE: connect with TLS, trusting the PEM CA(s) in FILE\n"
        "--tls-cert FILE --tls-key FILE: this client's PEM certificate and "
        "key,\n"
        "      for a server with --tls-client-ca (mutual TLS)\n"
        "--token TOKEN: sent as 'authorization: Bearer TOKEN' with every call\n"
        "      (a server with --token-file); default $NPVDB_TOKEN. The token\n"
        "      is never printed; prefer NPVDB_TOKEN to keep it out of ps.\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("npvdb: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int parse_ulong(const char *name, const char *s, unsigned long max,
                       unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fail("bad value for %s: '%s'", name, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_metric(const char *s, int *out)
{
    if (!strcmp(s, "cosine") || !strcmp(s, "angular"))
        *out = NPVDB_CLIENT_COSINE;
    else if (!strcmp(s, "l2") || !strcmp(s, "euclidean"))
        *out = NPVDB_CLIENT_L2;
    else if (!strcmp(s, "ip") || !strcmp(s, "dot"))
        *out = NPVDB_CLIENT_IP;
    else
        return fail("bad metric '%s' (cosine, l2 or ip)", s), 0;
    return 1;
}

static int parse_api(const char *s, int *out)
{
    if (!strcmp(s, "getclosest"))
        *out = API_GETCLOSEST;
    else if (!strcmp(s, "search"))
        *out = API_SEARCH;
    else if (!strcmp(s, "both"))
        *out = API_GETCLOSEST | API_SEARCH;
    else
        return fail("bad --api '%s' (getclosest, search or both)", s), 0;
    return 1;
}

/* Options with a value; returns 0 on a bad one. */
static int set_option(opts *o, const char *name, const char *v)
{
    unsigned long x;
    if (!strcmp(name, "--server"))
        o->server = v;
    else if (!strcmp(name, "--tls-ca"))
        o->sec.tls_ca_file = v;
    else if (!strcmp(name, "--tls-cert"))
        o->sec.tls_cert_file = v;
    else if (!strcmp(name, "--tls-key"))
        o->sec.tls_key_file = v;
    else if (!strcmp(name, "--token"))
        o->sec.token = v;
    else if (!strcmp(name, "--timeout")) {
        if (!parse_ulong(name, v, 86400, &x)) return 0;
        o->timeout_s = (int)x;
    } else if (!strcmp(name, "--batch")) {
        if (!parse_ulong(name, v, 1u << 24, &x)) return 0;
        o->batch = x;
    } else if (!strcmp(name, "--metric"))
        return parse_metric(v, &o->metric);
    else if (!strcmp(name, "--shards")) {
        if (!parse_ulong(name, v, 65536, &x)) return 0;
        o->shards = (long)x;
    } else if (!strcmp(name, "--train-sample")) {
        if (!parse_ulong(name, v, 1ul << 31, &x)) return 0;
        o->train_sample = (long)x;
    } else if (!strcmp(name, "--k")) {
        if (!parse_ulong(name, v, 16384, &x)) return 0;
        o->k = (uint32_t)x;
    } else if (!strcmp(name, "--nprobe")) {
        o->nprobe_list = v;
        if (!strchr(v, ',')) {
            if (!parse_ulong(name, v, 65536, &x)) return 0;
            o->nprobe = (uint32_t)x;
        }
    } else if (!strcmp(name, "--n")) {
        if (!parse_ulong(name, v, 1ul << 31, &x)) return 0;
        o->n = x;
    } else if (!strcmp(name, "--single")) {
        if (!parse_ulong(name, v, 1ul << 31, &x)) return 0;
        o->single_max = x;
    } else if (!strcmp(name, "--repeat")) {
        if (!parse_ulong(name, v, 1000, &x)) return 0;
        if (x == 0) return fail("--repeat must be at least 1"), 0;
        o->repeat = x;
    } else if (!strcmp(name, "--api")) {
        return parse_api(v, &o->api);
    } else if (!strcmp(name, "--collection")) {
        o->collection = v;
    } else if (!strcmp(name, "--where")) {
        if (o->nwhere >= (int)(sizeof o->where / sizeof o->where[0]))
            return fail("too many --where conditions"), 0;
        o->where[o->nwhere++] = v;
    } else if (!strcmp(name, "--limit")) {
        if (!parse_ulong(name, v, 16384, &x)) return 0;
        o->limit = (uint32_t)x;
    } else if (!strcmp(name, "--payload-column")) {
        if (o->ncolumns >= (int)(sizeof o->columns / sizeof o->columns[0]))
            return fail("too many --payload-column options"), 0;
        if (!*v || strlen(v) > 255)
            return fail("--payload-column: a name of 1..255 bytes"), 0;
        o->columns[o->ncolumns++] = v;
    } else {
        return fail("unknown option %s (see npvdb --help)", name), 0;
    }
    return 1;
}

/* Splits argv into options and positionals; *cmd gets the command. */
static int parse_args(int argc, char **argv, opts *o, const char **cmd)
{
    *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("npvdb %s\n", NPVDB_VERSION);
            exit(0);
        } else if (!strcmp(a, "--replace")) {
            o->replace = 1;
        } else if (!strcmp(a, "--with-payload")) {
            o->with_payload = 1;
        } else if (!strcmp(a, "--with-vectors")) {
            o->with_vectors = 1;
        } else if (!strncmp(a, "--", 2) && a[2]) {
            const char *eq = strchr(a, '=');
            char name[64];
            const char *v;
            if (eq) {
                snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
                v = eq + 1;
            } else {
                snprintf(name, sizeof name, "%s", a);
                if (i + 1 >= argc) return fail("option %s needs a value", a), 0;
                v = argv[++i];
            }
            if (!set_option(o, name, v)) return 0;
        } else if (!*cmd) {
            *cmd = a;
        } else if (o->npos < (int)(sizeof o->pos / sizeof o->pos[0])) {
            o->pos[o->npos++] = a;
        } else {
            return fail("too many arguments"), 0;
        }
    }
    return 1;
}

/* ---- helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static npvdb_client *connect_or_fail(const opts *o)
{
    npvdb_client_error err;
    npvdb_client *c = npvdb_client_connect_opts(o->server, &o->sec, 5000, &err);
    if (!c) {
        fail("%s (%s)", err.msg, npvdb_status_name(err.code));
        return NULL;
    }
    npvdb_client_set_timeout(c, o->timeout_s * 1000);
    if (o->collection &&
        npvdb_client_use(c, o->collection, &err) != NPVDB_STATUS_OK) {
        fail("%s", err.msg);
        npvdb_client_close(c);
        return NULL;
    }
    return c;
}

static int rpc_fail(const char *what, const npvdb_client_error *err)
{
    return fail("%s failed: %s (%s)", what, err->msg,
                npvdb_status_name(err->code));
}

static npvdb_annfile *open_file(const char *path)
{
    npvdb_error err;
    npvdb_annfile *f = npvdb_annfile_open(path, &err);
    if (!f) fail("cannot use %s: %s", path, err.msg);
    return f;
}

/* The engine's metric enum is the client's minus one. */
static npvdb_client_metric file_metric(const npvdb_annfile *f)
{
    switch (npvdb_annfile_metric(f)) {
    case NPVDB_METRIC_COSINE:
        return NPVDB_CLIENT_COSINE;
    case NPVDB_METRIC_IP:
        return NPVDB_CLIENT_IP;
    default:
        return NPVDB_CLIENT_L2;
    }
}

/* Reads `n` rows of `test` from the start; caller frees. */
static float *read_rows(npvdb_annfile *f, const char *dataset, size_t first,
                        size_t n)
{
    size_t dim = npvdb_annfile_dim(f);
    float *rows = malloc((n ? n : 1) * dim * sizeof(float));
    if (!rows) {
        fail("out of memory for %zu rows", n);
        return NULL;
    }
    npvdb_error err;
    if (n && npvdb_annfile_read(f, dataset, first, n, rows, &err) != NPVDB_OK) {
        fail("reading %s: %s", dataset, err.msg);
        free(rows);
        return NULL;
    }
    return rows;
}

/* ---- payloads as JSON ---- */

/* s[0..n) as a JSON string: quotes, backslashes and control bytes (a NUL
 * included) escaped; other bytes as they are (payload strings are
 * UTF-8). */
static void print_json_str(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* A double that reads back as one (5.0, not 5). */
static void print_json_double(double d)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.17g", d);
    fputs(buf, stdout);
    if (!strpbrk(buf, ".eEn")) fputs(".0", stdout);
}

/* p as a JSON object ({} for none), fields in name order. */
static void print_payload(const npvdb_client_payload *p)
{
    putchar('{');
    for (size_t i = 0; i < npvdb_client_payload_len(p); i++) {
        const npvdb_client_field *f = npvdb_client_payload_field(p, i);
        if (i) fputs(", ", stdout);
        print_json_str(f->name, f->name_len);
        fputs(": ", stdout);
        switch (f->type) {
        case NPVDB_CLIENT_VALUE_STRING:
            print_json_str(f->str, f->str_len);
            break;
        case NPVDB_CLIENT_VALUE_INT:
            printf("%lld", (long long)f->i);
            break;
        case NPVDB_CLIENT_VALUE_DOUBLE:
            print_json_double(f->d);
            break;
        case NPVDB_CLIENT_VALUE_BOOL:
            fputs(f->b ? "true" : "false", stdout);
            break;
        case NPVDB_CLIENT_VALUE_STRINGS:
            putchar('[');
            for (size_t j = 0; j < f->n_strs; j++) {
                if (j) fputs(", ", stdout);
                print_json_str(f->strs[j], f->str_lens[j]);
            }
            putchar(']');
            break;
        }
    }
    putchar('}');
}

/* The --where conditions as one filter (*out NULL without any); 0, or 2
 * after printing why not. */
static int where_filter(const opts *o, npvdb_client_filter **out);

/* ---- payload columns (load --payload-column) ---- */

typedef enum col_kind {
    COL_INT,
    COL_DOUBLE,
    COL_BOOL,
    COL_STR, /* fixed length */
    COL_VSTR /* variable length */
} col_kind;

typedef struct pcol {
    const char *name;
    hid_t ds, mem; /* mem: the type rows are read as */
    col_kind kind;
    size_t size; /* bytes of one row in buf */
    unsigned char *buf;
} pcol;

typedef struct pcols {
    hid_t file;
    int n;
    pcol c[16];
} pcols;

static void pcols_close(pcols *pc)
{
    for (int i = 0; i < pc->n; i++) {
        if (pc->c[i].mem >= 0) H5Tclose(pc->c[i].mem);
        if (pc->c[i].ds >= 0) H5Dclose(pc->c[i].ds);
        free(pc->c[i].buf);
    }
    if (pc->file >= 0) H5Fclose(pc->file);
    pc->n = 0;
    pc->file = -1;
}

/* The memory type and kind of a column of file type t; 0 when usable. */
static int pcol_type(pcol *c, hid_t t)
{
    switch (H5Tget_class(t)) {
    case H5T_INTEGER:
        c->kind = COL_INT;
        c->mem = H5Tcopy(H5T_NATIVE_INT64);
        break;
    case H5T_FLOAT:
        c->kind = COL_DOUBLE;
        c->mem = H5Tcopy(H5T_NATIVE_DOUBLE);
        break;
    case H5T_ENUM: /* h5py's bool: an int8 enum FALSE = 0, TRUE = 1 */
        if (H5Tget_nmembers(t) != 2 || H5Tget_size(t) != 1) return -1;
        c->kind = COL_BOOL;
        c->mem = H5Tget_native_type(t, H5T_DIR_ASCEND);
        break;
    case H5T_STRING:
        c->mem = H5Tcopy(H5T_C_S1);
        if (c->mem < 0) return -1;
        if (H5Tis_variable_str(t) > 0) {
            c->kind = COL_VSTR;
            H5Tset_size(c->mem, H5T_VARIABLE);
        } else {
            c->kind = COL_STR;
            H5Tset_size(c->mem, H5Tget_size(t));
            H5Tset_strpad(c->mem, H5T_STR_NULLPAD);
        }
        H5Tset_cset(c->mem, H5Tget_cset(t));
        break;
    default:
        return -1;
    }
    if (c->mem < 0) return -1;
    c->size = H5Tget_size(c->mem);
    return 0;
}

/* Opens column NAME: a dataset of `rows` values (shape (rows,) or
 * (rows, 1)). 0 on success, else a message was printed. */
static int pcol_open(pcols *pc, const char *name, size_t rows, size_t batch)
{
    pcol *c = &pc->c[pc->n++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->ds = c->mem = -1;
    c->ds = H5Dopen2(pc->file, name, H5P_DEFAULT);
    if (c->ds < 0) return fail("--payload-column %s: no such dataset", name);
    hid_t sp = H5Dget_space(c->ds);
    hsize_t dims[2] = {0, 0};
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank == 1 || rank == 2) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    if ((rank != 1 && !(rank == 2 && dims[1] == 1)) || dims[0] != rows)
        return fail("--payload-column %s: want one value per train row "
                    "(shape (%zu,)), not rank %d with %llu rows",
                    name, rows, rank, (unsigned long long)dims[0]);
    hid_t t = H5Dget_type(c->ds);
    int bad = t < 0 || pcol_type(c, t);
    if (t >= 0) H5Tclose(t);
    if (bad)
        return fail("--payload-column %s: only integers, floats, bools and "
                    "strings are supported",
                    name);
    c->buf = malloc(batch * c->size);
    if (!c->buf) return fail("out of memory for column %s", name);
    return 0;
}

/* Opens every --payload-column of FILE; 0 on success (pc->n 0 without
 * any), else a message was printed and everything is closed. */
static int pcols_open(pcols *pc, const char *path, const opts *o, size_t rows,
                      size_t batch)
{
    pc->n = 0;
    pc->file = -1;
    if (!o->ncolumns) return 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages, not HDF5's */
    pc->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (pc->file < 0) return fail("cannot open %s with libhdf5", path);
    for (int i = 0; i < o->ncolumns; i++)
        if (pcol_open(pc, o->columns[i], rows, batch)) {
            pcols_close(pc);
            return -1;
        }
    return 0;
}

/* Reads rows [first, first+n) of every column; 0 on success. */
static int pcols_read(pcols *pc, size_t first, size_t n)
{
    for (int i = 0; i < pc->n; i++) {
        pcol *c = &pc->c[i];
        hid_t fs = H5Dget_space(c->ds);
        int rank = H5Sget_simple_extent_ndims(fs);
        hsize_t start[2] = {first, 0}, count[2] = {n, 1};
        hid_t ms = H5Screate_simple(rank, count, NULL);
        herr_t rc =
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        if (rc >= 0) rc = H5Dread(c->ds, c->mem, ms, fs, H5P_DEFAULT, c->buf);
        H5Sclose(ms);
        H5Sclose(fs);
        if (rc < 0) return fail("reading payload column %s", c->name);
    }
    return 0;
}

/* Frees HDF5's strings of the variable-length columns after a read. */
static void pcols_reclaim(pcols *pc, size_t n)
{
    for (int i = 0; i < pc->n; i++) {
        pcol *c = &pc->c[i];
        if (c->kind != COL_VSTR) continue;
        hsize_t count = n;
        hid_t ms = H5Screate_simple(1, &count, NULL);
        H5Dvlen_reclaim(c->mem, ms, H5P_DEFAULT, c->buf);
        H5Sclose(ms);
    }
}

/* The payload of row j of the batch just read; NULL when out of memory. */
static npvdb_client_payload *pcols_payload(const pcols *pc, size_t j)
{
    npvdb_client_payload *p = npvdb_client_payload_new();
    for (int i = 0; p && i < pc->n; i++) {
        const pcol *c = &pc->c[i];
        const unsigned char *v = c->buf + j * c->size;
        int64_t x;
        double d;
        const char *str;
        int rc = 0;
        switch (c->kind) {
        case COL_INT:
            memcpy(&x, v, sizeof x);
            rc = npvdb_client_payload_set_int(p, c->name, x);
            break;
        case COL_DOUBLE:
            memcpy(&d, v, sizeof d);
            /* NaN / inf cannot be stored: the row goes without it. */
            if (isfinite(d))
                rc = npvdb_client_payload_set_double(p, c->name, d);
            break;
        case COL_BOOL:
            rc = npvdb_client_payload_set_bool(p, c->name, v[0] != 0);
            break;
        case COL_STR:
            rc = npvdb_client_payload_set_strn(
                p, c->name, (const char *)v, strnlen((const char *)v, c->size));
            break;
        case COL_VSTR:
            memcpy(&str, v, sizeof str);
            rc = npvdb_client_payload_set_str(p, c->name, str ? str : "");
            break;
        }
        if (rc) {
            npvdb_client_payload_free(p);
            p = NULL;
        }
    }
    return p;
}

/* ---- load ---- */

/* Reads n rows spread evenly over the file: row i of the sample is row
 * i * total / n, so a file sorted by cluster still gives a sample of every
 * cluster. This is the engine bench's choice too, so both train on the same
 * rows and build the same index (bench/server_vs_engine.py compares them).
 * The file is read sequentially, SAMPLE_CHUNK rows at a time. */
static float *read_sample(npvdb_annfile *f, size_t n)
{
    size_t total = npvdb_annfile_train_rows(f), dim = npvdb_annfile_dim(f);
    if (n >= total) return read_rows(f, "train", 0, total);
    float *rows = malloc(n * dim * sizeof(float));
    float *chunk = malloc(SAMPLE_CHUNK * dim * sizeof(float));
    if (!rows || !chunk) {
        fail("out of memory for a training sample of %zu rows", n);
        free(rows);
        free(chunk);
        return NULL;
    }
    size_t done = 0;
    for (size_t first = 0; done < n && first < total; first += SAMPLE_CHUNK) {
        size_t len =
            total - first < SAMPLE_CHUNK ? total - first : SAMPLE_CHUNK;
        npvdb_error err;
        if (npvdb_annfile_read(f, "train", first, len, chunk, &err) !=
            NPVDB_OK) {
            fail("reading train: %s", err.msg);
            free(rows);
            free(chunk);
            return NULL;
        }
        for (size_t row; done < n && (row = done * total / n) < first + len;
             done++)
            memcpy(rows + done * dim, chunk + (row - first) * dim,
                   dim * sizeof(float));
    }
    free(chunk);
    return rows;
}

static int init_collection(npvdb_client *c, npvdb_annfile *f, const opts *o,
                           uint32_t *shards_out)
{
    size_t total = npvdb_annfile_train_rows(f);
    uint32_t dim = npvdb_annfile_dim(f);
    /* The server sizes automatic shards from the sample, not the file, so
     * the CLI picks them from the file's size: about 4 * sqrt(n). */
    long shards = o->shards;
    if (shards <= 0) shards = lround(4.0 * sqrt((double)total));
    if (shards < 1) shards = 1;
    if ((size_t)shards > total) shards = (long)total;
    size_t sample =
        o->train_sample >= 0 ? (size_t)o->train_sample : (size_t)shards * 64;
    if (sample > total) sample = total;
    if (sample * dim * sizeof(float) > MAX_SAMPLE_BYTES)
        sample = MAX_SAMPLE_BYTES / (dim * sizeof(float));
    if (sample && sample < (size_t)shards) shards = (long)sample;
    float *train = sample ? read_sample(f, sample) : NULL;
    if (sample && !train) return 0;
    npvdb_client_init_params p = {
        .dim = dim,
        .metric =
            o->metric >= 0 ? (npvdb_client_metric)o->metric : file_metric(f),
        .n_shards = (uint32_t)shards,
        .train = train,
        .n_train = sample,
        .replace = o->replace,
        .default_nprobe = o->nprobe,
    };
    fprintf(stderr,
            "init: dim %u, metric %s, %ld shards, training on %zu rows\n", dim,
            npvdb_client_metric_name(p.metric), shards, sample);
    npvdb_client_error err;
    double t0 = now_s();
    int trained = 0;
    npvdb_status rc = npvdb_client_init(c, &p, &trained, NULL, &err);
    free(train);
    if (rc != NPVDB_STATUS_OK) {
        rpc_fail("init", &err);
        if (rc == NPVDB_STATUS_ALREADY_EXISTS)
            fprintf(stderr, "npvdb: use --replace to drop the existing "
                            "collection\n");
        return 0;
    }
    fprintf(stderr, "init: done in %.2f s (%s)\n", now_s() - t0,
            trained ? "trained" : "untrained");
    *shards_out = (uint32_t)shards;
    return 1;
}

static void progress_line(size_t done, size_t total, double t0, int final)
{
    double dt = now_s() - t0;
    fprintf(stderr, "\rload: %zu/%zu vectors (%.0f%%), %.0f vectors/s%s", done,
            total, total ? 100.0 * (double)done / (double)total : 100.0,
            dt > 0 ? (double)done / dt : 0.0, final ? "\n" : "");
    fflush(stderr);
}

/* Sends one batch: n rows, with the payloads of the columns' batch when
 * there are columns. */
static npvdb_status send_batch(npvdb_client_stream *s, const pcols *pc,
                               const char **keys, const float *rows, size_t n,
                               npvdb_client_payload **pls,
                               npvdb_client_error *err)
{
    if (!pc->n) return npvdb_client_stream_send(s, keys, rows, n, err);
    npvdb_status rc = NPVDB_STATUS_OK;
    size_t made = 0;
    for (; made < n; made++)
        if (!(pls[made] = pcols_payload(pc, made))) break;
    if (made < n) {
        rc = NPVDB_STATUS_RESOURCE_EXHAUSTED;
        snprintf(err->msg, sizeof err->msg, "out of memory for payloads");
        err->code = rc;
    } else {
        rc = npvdb_client_stream_send_payloads(
            s, keys, rows, (const npvdb_client_payload *const *)pls, n, err);
    }
    for (size_t i = 0; i < made; i++)
        npvdb_client_payload_free(pls[i]);
    return rc;
}

/* Streams every train row in batches; the next batch is read from the file
 * while the previous one is on the wire. */
static int stream_rows(npvdb_client *c, npvdb_annfile *f, size_t batch,
                       pcols *pc)
{
    size_t total = npvdb_annfile_train_rows(f), dim = npvdb_annfile_dim(f);
    float *rows = malloc(batch * dim * sizeof(float));
    char *keybuf = malloc(batch * KEY_MAX);
    const char **keys = malloc(batch * sizeof *keys);
    npvdb_client_payload **pls = calloc(batch, sizeof *pls);
    npvdb_client_error err;
    npvdb_client_stream *s =
        rows && keybuf && keys && pls
            ? npvdb_client_insert_begin(c, (uint32_t)dim, &err)
            : NULL;
    int ok = s != NULL;
    if (!ok && rows && keybuf && keys && pls)
        rpc_fail("insert", &err);
    else if (!ok)
        fail("out of memory for a batch of %zu rows", batch);
    double t0 = now_s(), last = 0;
    int tty = isatty(2);
    for (size_t first = 0; ok && first < total; first += batch) {
        size_t n = total - first < batch ? total - first : batch;
        npvdb_error ferr;
        if (npvdb_annfile_read(f, "train", first, n, rows, &ferr) != NPVDB_OK) {
            fail("reading train: %s", ferr.msg);
            ok = 0;
            break;
        }
        if (pc->n && pcols_read(pc, first, n)) {
            ok = 0;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            snprintf(keybuf + i * KEY_MAX, KEY_MAX, "%zu", first + i);
            keys[i] = keybuf + i * KEY_MAX;
        }
        npvdb_status src = send_batch(s, pc, keys, rows, n, pls, &err);
        pcols_reclaim(pc, n);
        if (src != NPVDB_STATUS_OK) {
            if (tty) fputc('\n', stderr);
            rpc_fail("insert", &err);
            ok = 0;
            break;
        }
        double t = now_s();
        if (t - last > (tty ? 0.2 : 5.0)) {
            progress_line(first + n, total, t0, !tty);
            last = t;
        }
    }
    if (s) {
        npvdb_client_insert_reply r;
        npvdb_status rc = npvdb_client_stream_finish(s, &r, &err);
        if (ok && rc != NPVDB_STATUS_OK) {
            if (tty) fputc('\n', stderr);
            rpc_fail("insert", &err);
            ok = 0;
        } else if (ok) {
            progress_line(total, total, t0, 1);
            double dt = now_s() - t0;
            printf("loaded %zu vectors in %.2f s (%.0f vectors/s): %llu new, "
                   "%llu replaced\n",
                   total, dt, dt > 0 ? (double)total / dt : 0.0,
                   (unsigned long long)r.inserted,
                   (unsigned long long)r.replaced);
        }
    }
    free(rows);
    free(keybuf);
    free(keys);
    free(pls);
    return ok;
}

/* Default rows per Insert message: about 2 MiB of vectors. Fewer, larger
 * messages let the server's router and workers run on larger blocks (200k
 * x 128 loaded about 15% faster than with 1000-row messages), and the size
 * in bytes, not rows, keeps wide vectors far from the message limit. */
#define LOAD_MESSAGE_BYTES (2u << 20)

static size_t load_batch(npvdb_annfile *f, const opts *o)
{
    /* A payload column: about 64 bytes a row with its field name. */
    size_t row = npvdb_annfile_dim(f) * sizeof(float) + KEY_MAX +
                 (size_t)o->ncolumns * 64;
    size_t n = LOAD_MESSAGE_BYTES / row;
    return n ? n : 1;
}

static int cmd_load(npvdb_client *c, const opts *o)
{
    if (o->npos != 1) return fail("usage: npvdb load FILE.hdf5 [options]");
    npvdb_annfile *f = open_file(o->pos[0]);
    if (!f) return 1;
    int ok = 0;
    uint32_t shards = 0;
    size_t batch = o->batch ? o->batch : load_batch(f, o);
    pcols pc;
    if (npvdb_annfile_train_rows(f) == 0)
        fail("%s has no `train` rows", o->pos[0]);
    else if (pcols_open(&pc, o->pos[0], o, npvdb_annfile_train_rows(f),
                        batch) == 0) {
        if (init_collection(c, f, o, &shards))
            ok = stream_rows(c, f, batch, &pc);
        pcols_close(&pc);
    }
    npvdb_annfile_close(f);
    return ok ? 0 : 1;
}

/* ---- query / bench ---- */

/* Neighbors of queries [0, n), or NULL if the file has none. */
static int32_t *read_neighbors(npvdb_annfile *f, size_t n, uint32_t *width)
{
    *width = npvdb_annfile_neighbors_width(f);
    if (!*width) return NULL;
    int32_t *nb = malloc((n ? n : 1) * *width * sizeof(int32_t));
    npvdb_error err;
    if (!nb ||
        (n && npvdb_annfile_read_neighbors(f, 0, n, nb, &err) != NPVDB_OK)) {
        free(nb);
        *width = 0;
        return NULL;
    }
    return nb;
}

/* Hits of query i (of results `r`, row `ri`) among its first k true
 * neighbors. */
static size_t hits(const npvdb_client_results *r, size_t ri,
                   const int32_t *truth, uint32_t k)
{
    size_t h = 0;
    for (uint32_t j = 0; j < r->counts[ri]; j++) {
        const char *key = r->keys[ri * r->k + j];
        char *end;
        long v = strtol(key, &end, 10);
        if (*end || end == key) continue;
        for (uint32_t t = 0; t < k; t++)
            if (truth[t] == v) {
                h++;
                break;
            }
    }
    return h;
}

static int cmd_query(npvdb_client *c, const opts *o)
{
    if (o->npos != 1) return fail("usage: npvdb query FILE.hdf5 [options]");
    npvdb_annfile *f = open_file(o->pos[0]);
    if (!f) return 1;
    size_t nt = npvdb_annfile_test_rows(f);
    size_t n = o->n < nt ? o->n : nt;
    uint32_t dim = npvdb_annfile_dim(f), width = 0;
    int rc = 1;
    float *q = nt ? read_rows(f, "test", 0, n) : NULL;
    int32_t *nb = q ? read_neighbors(f, n, &width) : NULL;
    /* One unary call unless GetClosest alone was asked for. */
    const struct api *a = &apis[o->api & API_SEARCH ? 1 : 0];
    npvdb_client_results r;
    npvdb_client_error err;
    npvdb_client_filter *flt = NULL;
    npvdb_client_search_opts so = {.with_payload = o->with_payload};
    if (!nt) {
        fail("%s has no `test` rows", o->pos[0]);
    } else if (q && where_filter(o, &flt)) {
        rc = 2;
    } else if (q && (so.filter = flt, a->ex(c, q, n, dim, o->k, o->nprobe, &so,
                                            &r, &err)) != NPVDB_STATUS_OK) {
        rpc_fail(a->call, &err);
    } else if (q) {
        for (size_t i = 0; i < n; i++) {
            printf("query %zu:", i);
            for (uint32_t j = 0; j < r.counts[i]; j++) {
                printf(" %s (%.4g)", r.keys[i * r.k + j],
                       (double)r.distances[i * r.k + j]);
                if (o->with_payload) {
                    putchar(' ');
                    print_payload(npvdb_client_results_payload(&r, i, j));
                }
            }
            /* Recall against `neighbors` means nothing under a filter. */
            if (nb && !flt) {
                uint32_t kk = o->k < width ? o->k : width;
                printf("  [recall@%u %.2f]", kk,
                       (double)hits(&r, i, nb + i * width, kk) / kk);
            }
            printf("\n");
        }
        npvdb_client_results_free(&r);
        rc = 0;
    }
    npvdb_client_filter_free(flt);
    free(q);
    free(nb);
    npvdb_annfile_close(f);
    return rc;
}

/* "0.5,1,-2" into a new array of *dim floats; NULL after a message. */
static float *parse_vector(const char *s, uint32_t *dim)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (n > 65536) return fail("query vector of more than 65536 values"), NULL;
    float *v = malloc(n * sizeof *v);
    if (!v) return fail("out of memory"), NULL;
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (end == s || errno || !isfinite(x) || (*end && *end != ',') ||
            (i + 1 < n) != (*end == ',')) {
            free(v);
            return fail("bad query vector at value %zu: use V1,V2,... of "
                        "finite numbers",
                        i),
                   NULL;
        }
        v[i] = (float)x;
        s = end + (*end == ',');
    }
    *dim = (uint32_t)n;
    return v;
}

static int cmd_search(npvdb_client *c, const opts *o)
{
    if (o->npos != 1) return fail("usage: npvdb search V1,V2,... [options]");
    uint32_t dim;
    float *q = parse_vector(o->pos[0], &dim);
    if (!q) return 2;
    npvdb_client_filter *flt = NULL;
    if (where_filter(o, &flt)) {
        free(q);
        return 2;
    }
    const struct api *a = &apis[o->api & API_SEARCH ? 1 : 0];
    npvdb_client_search_opts so = {.filter = flt,
                                   .with_payload = o->with_payload};
    npvdb_client_results r;
    npvdb_client_error err;
    int rc = 0;
    if (a->ex(c, q, 1, dim, o->k, o->nprobe, &so, &r, &err) !=
        NPVDB_STATUS_OK) {
        rc = rpc_fail(a->call, &err);
    } else {
        for (uint32_t j = 0; j < r.counts[0]; j++) {
            printf("%s\t%.6g", r.keys[j], (double)r.distances[j]);
            if (o->with_payload) {
                putchar('\t');
                print_payload(npvdb_client_results_payload(&r, 0, j));
            }
            putchar('\n');
        }
        npvdb_client_results_free(&r);
    }
    npvdb_client_filter_free(flt);
    free(q);
    return rc;
}

/* Parses "1,2,4" into out (at most max values); returns the count, 0 on a
 * bad list. */
static size_t parse_list(const char *s, uint32_t *out, size_t max)
{
    size_t n = 0;
    while (*s && n < max) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || v == 0 || v > 65536 || (*end && *end != ','))
            return 0;
        out[n++] = (uint32_t)v;
        s = *end ? end + 1 : end;
    }
    return *s ? 0 : n;
}

/* Adds the hits of results r (queries first.. of the file) to *h. */
static void score(const npvdb_client_results *r, size_t first,
                  const int32_t *nb, uint32_t width, uint32_t k, size_t *h)
{
    for (size_t i = 0; i < r->nq; i++)
        *h += hits(r, i, nb + (first + i) * width, k);
}

/* All queries, `chunk` per call of `api`; adds the hits to *h. Only the
 * calls are timed: the results are kept and scored afterwards, so the
 * recall bookkeeping does not count against the server. */
static int bench_batched(npvdb_client *c, const struct api *api, const float *q,
                         size_t nq, uint32_t dim, uint32_t k, uint32_t nprobe,
                         size_t chunk, const int32_t *nb, uint32_t width,
                         size_t *h, double *seconds)
{
    size_t calls = (nq + chunk - 1) / chunk;
    npvdb_client_results *r = calloc(calls ? calls : 1, sizeof *r);
    if (!r) return fail("out of memory for %zu results", nq), 0;
    npvdb_client_error err;
    size_t done = 0;
    double t0 = now_s();
    for (; done < calls; done++) {
        size_t first = done * chunk;
        size_t n = nq - first < chunk ? nq - first : chunk;
        if (api->fn(c, q + first * dim, n, dim, k, nprobe, &r[done], &err) !=
            NPVDB_STATUS_OK)
            break;
    }
    *seconds = now_s() - t0;
    for (size_t i = 0; i < done; i++) {
        score(&r[i], i * chunk, nb, width, k, h);
        npvdb_client_results_free(&r[i]);
    }
    free(r);
    if (done < calls) return rpc_fail(api->call, &err), 0;
    return 1;
}

static int bench_single(npvdb_client *c, const struct api *api, const float *q,
                        size_t nq, uint32_t dim, uint32_t k, uint32_t nprobe,
                        double *seconds)
{
    double t0 = now_s();
    for (size_t i = 0; i < nq; i++) {
        npvdb_client_results r;
        npvdb_client_error err;
        if (api->fn(c, q + i * dim, 1, dim, k, nprobe, &r, &err) !=
            NPVDB_STATUS_OK)
            return rpc_fail(api->call, &err), 0;
        npvdb_client_results_free(&r);
    }
    *seconds = now_s() - t0;
    return 1;
}

/* Default chunk of batched queries: all of them, within ~8 MiB of queries a
 * call, and within ~32 MiB of Search reply (about 16 bytes a hit with short
 * keys), so a Search batch fits the server's default 64 MiB limit. Both RPCs
 * use the same chunk, so their columns compare. */
static size_t batch_chunk(const opts *o, size_t nq, uint32_t dim)
{
    size_t cap = (8u << 20) / ((size_t)dim * 4);
    size_t reply_cap = (32u << 20) / ((size_t)o->k * 16);
    size_t chunk = o->batch ? o->batch : nq;
    if (chunk > cap) chunk = cap;
    if (chunk > reply_cap) chunk = reply_cap;
    return chunk ? chunk : 1;
}

/* Column titles: "batch NAME" for each chosen API, then "single NAME". */
static void bench_header(int api)
{
    printf("%8s  %9s", "nprobe", "recall@k");
    for (int single = 0; single < 2; single++)
        for (size_t a = 0; a < N_APIS; a++)
            if (api & apis[a].bit)
                printf("  %s %s", single ? "single" : "batch", apis[a].name);
    printf("   (queries/s)\n");
}

/* One row: batched calls of each chosen API, then single-query calls. The
 * recall comes from the first batched API; the others must agree. */
static int bench_row(npvdb_client *c, const opts *o, const float *q, size_t nq,
                     uint32_t dim, uint32_t nprobe, size_t chunk,
                     size_t n_single, const int32_t *nb, uint32_t width)
{
    double qps[2][N_APIS];
    size_t h[N_APIS], h0 = SIZE_MAX;
    for (size_t a = 0; a < N_APIS; a++) {
        if (!(o->api & apis[a].bit)) continue;
        double tb = 0, ts = 0;
        h[a] = 0;
        for (size_t run = 0; run < o->repeat; run++) {
            size_t hr = 0;
            double t = 0;
            if (!bench_batched(c, &apis[a], q, nq, dim, o->k, nprobe, chunk, nb,
                               width, &hr, &t))
                return 0;
            if (run == 0) h[a] = hr;
            if (run == 0 || t < tb) tb = t;
        }
        if (!bench_single(c, &apis[a], q, n_single, dim, o->k, nprobe, &ts))
            return 0;
        qps[0][a] = tb > 0 ? (double)nq / tb : 0.0;
        qps[1][a] = ts > 0 ? (double)n_single / ts : 0.0;
        if (h0 == SIZE_MAX) h0 = h[a];
        if (h[a] != h0)
            fprintf(stderr,
                    "npvdb: nprobe %u: %s found %zu true neighbors, the "
                    "first API %zu\n",
                    nprobe, apis[a].name, h[a], h0);
    }
    printf("%8u  %9.4f", nprobe, (double)h0 / ((double)nq * o->k));
    for (int single = 0; single < 2; single++)
        for (size_t a = 0; a < N_APIS; a++)
            if (o->api & apis[a].bit)
                printf("  %*.1f", (int)strlen(apis[a].name) + 6 + single,
                       qps[single][a]);
    printf("\n");
    fflush(stdout);
    return 1;
}

/* One untimed call of the first batch per chosen API: a new connection's
 * first large messages pay for HTTP/2 flow-control windows that grow as
 * data flows, which a long-lived client pays once, not per call. */
static int bench_warm_up(npvdb_client *c, const opts *o, const float *q,
                         size_t chunk, uint32_t dim, uint32_t nprobe)
{
    for (size_t a = 0; a < N_APIS; a++) {
        if (!(o->api & apis[a].bit)) continue;
        npvdb_client_results r;
        npvdb_client_error err;
        if (apis[a].fn(c, q, chunk, dim, o->k, nprobe, &r, &err) !=
            NPVDB_STATUS_OK)
            return rpc_fail(apis[a].call, &err), 0;
        npvdb_client_results_free(&r);
    }
    return 1;
}

static int run_bench(npvdb_client *c, const opts *o, npvdb_annfile *f)
{
    uint32_t list[64];
    size_t nl = parse_list(o->nprobe_list ? o->nprobe_list : "1,2,4,8,16,32,64",
                           list, 64);
    if (!nl) return fail("bad --nprobe list (e.g. 1,2,4,8)");
    size_t nq = npvdb_annfile_test_rows(f);
    uint32_t dim = npvdb_annfile_dim(f), width = 0;
    if (!nq) return fail("%s has no `test` rows", o->pos[0]);
    float *q = read_rows(f, "test", 0, nq);
    int32_t *nb = q ? read_neighbors(f, nq, &width) : NULL;
    if (q && !nb)
        fail("%s has no `neighbors`: cannot measure recall", o->pos[0]);
    if (!nb || width < o->k) {
        if (nb)
            fail("`neighbors` has %u columns, fewer than k %u", width, o->k);
        free(q);
        free(nb);
        return 1;
    }
    size_t chunk = batch_chunk(o, nq, dim);
    size_t n_single = o->single_max < nq ? o->single_max : nq;
    printf("%zu queries, k %u, batched %zu per call (fastest of %zu), single "
           "%zu calls\n",
           nq, o->k, chunk, o->repeat, n_single);
    int ok = bench_warm_up(c, o, q, chunk, dim, list[0]);
    if (ok) bench_header(o->api);
    for (size_t i = 0; ok && i < nl; i++)
        ok = bench_row(c, o, q, nq, dim, list[i], chunk, n_single, nb, width);
    free(q);
    free(nb);
    return ok ? 0 : 1;
}

static int cmd_bench(npvdb_client *c, const opts *o)
{
    if (o->npos != 1) return fail("usage: npvdb bench FILE.hdf5 [options]");
    npvdb_annfile *f = open_file(o->pos[0]);
    if (!f) return 1;
    int rc = run_bench(c, o, f);
    npvdb_annfile_close(f);
    return rc;
}

/* ---- small commands ---- */

static int cmd_info(npvdb_client *c)
{
    npvdb_client_info info;
    npvdb_client_error err;
    if (npvdb_client_info_get(c, &info, &err) != NPVDB_STATUS_OK)
        return rpc_fail("info", &err);
    printf("server:      %s (version %s)\n", npvdb_client_target(c),
           info.server_version);
    if (!info.initialized) {
        printf("collection:  none (run `npvdb load` or Init first)\n");
        return 0;
    }
    printf("dim:         %u\nmetric:      %s\nvectors:     %llu\n"
           "shards:      %u\ntrained:     %s\nnprobe:      %u (default)\n"
           "memory:      %.1f MiB\n",
           info.dim, npvdb_client_metric_name(info.metric),
           (unsigned long long)info.vectors, info.n_shards,
           info.trained ? "yes" : "no", info.default_nprobe,
           (double)info.memory_bytes / (1 << 20));
    if (info.n_shards)
        printf("shard sizes: %llu .. %llu (mean %.1f)\n",
               (unsigned long long)info.smallest_shard,
               (unsigned long long)info.largest_shard,
               (double)info.vectors / info.n_shards);
    printf("rebalanced:  %llu splits, %llu merges, %llu retrains\n",
           (unsigned long long)info.splits, (unsigned long long)info.merges,
           (unsigned long long)info.retrains);
    npvdb_client_info_free(&info);
    return 0;
}

static int cmd_snapshot(npvdb_client *c)
{
    npvdb_client_snapshot_info s;
    npvdb_client_error err;
    if (npvdb_client_snapshot(c, &s, &err) != NPVDB_STATUS_OK)
        return rpc_fail("snapshot", &err);
    printf("snapshot %s: %llu vectors, %llu bytes, %.2f s (log sequence "
           "%llu)\n",
           s.path, (unsigned long long)s.vectors, (unsigned long long)s.bytes,
           s.seconds, (unsigned long long)s.sequence);
    return 0;
}

static int cmd_delete(npvdb_client *c, const opts *o)
{
    if (o->npos < 1) return fail("usage: npvdb delete KEY...");
    uint64_t deleted = 0;
    npvdb_client_error err;
    if (npvdb_client_delete(c, o->pos, (size_t)o->npos, &deleted, &err) !=
        NPVDB_STATUS_OK)
        return rpc_fail("delete", &err);
    printf("deleted %llu of %d keys\n", (unsigned long long)deleted, o->npos);
    return 0;
}

static int cmd_get(npvdb_client *c, const opts *o)
{
    if (o->npos < 1) return fail("usage: npvdb get KEY...");
    npvdb_client_info info;
    npvdb_client_error err;
    if (npvdb_client_info_get(c, &info, &err) != NPVDB_STATUS_OK)
        return rpc_fail("info", &err);
    npvdb_client_info_free(&info);
    npvdb_client_vectors v;
    if (npvdb_client_get_ex(c, o->pos, (size_t)o->npos, info.dim,
                            o->with_payload, &v, &err) != NPVDB_STATUS_OK)
        return rpc_fail("get", &err);
    for (size_t i = 0; i < v.n_found; i++) {
        printf("%s:", v.keys[i]);
        for (uint32_t j = 0; j < v.dim; j++)
            printf(" %g", (double)v.vectors[i * v.dim + j]);
        if (o->with_payload) {
            putchar(' ');
            print_payload(npvdb_client_vectors_payload(&v, i));
        }
        printf("\n");
    }
    /* The keys found are printed; each missing one is an error, on stderr,
     * and makes the exit status 1. */
    fflush(stdout);
    for (size_t i = 0; i < v.n_missing; i++)
        fail("get: key '%s' not found", v.missing[i]);
    int rc = v.n_missing ? 1 : 0;
    npvdb_client_vectors_free(&v);
    return rc;
}

static int cmd_health(npvdb_client *c)
{
    int serving = 0;
    npvdb_client_error err;
    if (npvdb_client_health(c, "", &serving, &err) != NPVDB_STATUS_OK)
        return rpc_fail("health", &err);
    printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
}

static int cmd_collections(npvdb_client *c)
{
    npvdb_client_collection_info *v;
    size_t n;
    npvdb_client_error err;
    if (npvdb_client_list_collections(c, &v, &n, &err) != NPVDB_STATUS_OK)
        return rpc_fail("list_collections", &err);
    for (size_t i = 0; i < n; i++)
        printf("%s\tdim %u\t%s\t%llu vectors\n", v[i].name, v[i].dim,
               npvdb_client_metric_name(v[i].metric),
               (unsigned long long)v[i].vectors);
    free(v);
    return 0;
}

static int cmd_drop(npvdb_client *c, const opts *o)
{
    if (o->npos != 1) return fail("usage: npvdb drop NAME");
    uint64_t vectors = 0;
    npvdb_client_error err;
    if (npvdb_client_drop_collection(c, o->pos[0], &vectors, &err) !=
        NPVDB_STATUS_OK)
        return rpc_fail("drop", &err);
    printf("dropped %s (%llu vectors)\n", o->pos[0],
           (unsigned long long)vectors);
    return 0;
}

/* VALUE of FIELD=VALUE as a match: integer, true/false, or a string (a
 * "quoted" one always). 0 on success. */
static int add_match(npvdb_client_filter *f, npvdb_client_clause cl,
                     const char *key, const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        char *s = strndup(v + 1, n - 2);
        int rc = s ? npvdb_client_filter_match_str(f, cl, key, s) : -1;
        free(s);
        return rc;
    }
    if (!strcmp(v, "true") || !strcmp(v, "false"))
        return npvdb_client_filter_match_bool(f, cl, key, v[0] == 't');
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v && !*end && !errno)
        return npvdb_client_filter_match_int(f, cl, key, (int64_t)x);
    return npvdb_client_filter_match_str(f, cl, key, v);
}

/* One --where COND into f; 0 on success, else a message was printed. */
static int add_where(npvdb_client_filter *f, const char *cond)
{
    if (!strncmp(cond, "has:", 4))
        return cond[4] ? npvdb_client_filter_has_field(f, NPVDB_CLIENT_MUST,
                                                       cond + 4)
                       : (fail("--where '%s': has: needs a field", cond), -1);
    size_t at = strcspn(cond, "=!<>");
    if (at == 0 || !cond[at] || at > 255)
        return fail("--where '%s': use FIELD=VALUE, FIELD!=VALUE, FIELD<N, "
                    "FIELD<=N, FIELD>N, FIELD>=N or has:FIELD",
                    cond),
               -1;
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)at, cond);
    const char *op = cond + at;
    if (op[0] == '=') return add_match(f, NPVDB_CLIENT_MUST, key, op + 1);
    if (op[0] == '!' && op[1] == '=')
        return add_match(f, NPVDB_CLIENT_MUST_NOT, key, op + 2);
    if (op[0] != '<' && op[0] != '>')
        return fail("--where '%s': unknown operator", cond), -1;
    int eq = op[1] == '=';
    const char *num = op + 1 + eq;
    char *end;
    errno = 0;
    double x = strtod(num, &end);
    if (!*num || *end || errno || !isfinite(x))
        return fail("--where '%s': '%s' is not a number", cond, num), -1;
    if (op[0] == '>')
        return npvdb_client_filter_range(f, NPVDB_CLIENT_MUST, key, x, !eq, NAN,
                                         0);
    return npvdb_client_filter_range(f, NPVDB_CLIENT_MUST, key, NAN, 0, x, !eq);
}

static int where_filter(const opts *o, npvdb_client_filter **out)
{
    *out = NULL;
    if (!o->nwhere) return 0;
    npvdb_client_filter *f = npvdb_client_filter_new();
    if (!f) return fail("out of memory"), 2;
    for (int i = 0; i < o->nwhere; i++) {
        if (add_where(f, o->where[i])) {
            npvdb_client_filter_free(f);
            return 2;
        }
    }
    *out = f;
    return 0;
}

static int cmd_count(npvdb_client *c, const opts *o)
{
    if (o->npos) return fail("usage: npvdb count [--where COND]...");
    npvdb_client_filter *f;
    if (where_filter(o, &f)) return 2;
    uint64_t n = 0;
    npvdb_client_error err;
    npvdb_status rc = npvdb_client_count(c, f, &n, &err);
    npvdb_client_filter_free(f);
    if (rc != NPVDB_STATUS_OK) return rpc_fail("count", &err);
    printf("%llu\n", (unsigned long long)n);
    return 0;
}

/* One scrolled key as a JSON line. */
static void print_item(const npvdb_client_page *pg, size_t i, const opts *o)
{
    fputs("{\"key\": ", stdout);
    print_json_str(pg->keys[i], strlen(pg->keys[i]));
    if (o->with_vectors) {
        fputs(", \"vector\": [", stdout);
        for (uint32_t j = 0; j < pg->dim; j++)
            printf("%s%.9g", j ? ", " : "",
                   (double)pg->vectors[i * pg->dim + j]);
        putchar(']');
    }
    if (o->with_payload) {
        fputs(", \"payload\": ", stdout);
        print_payload(npvdb_client_page_payload(pg, i));
    }
    fputs("}\n", stdout);
}

static int cmd_scroll(npvdb_client *c, const opts *o)
{
    if (o->npos)
        return fail("usage: npvdb scroll [--where COND]... [--limit N] "
                    "[--with-vectors] [--with-payload]");
    npvdb_client_filter *f;
    if (where_filter(o, &f)) return 2;
    npvdb_client_scroll_params p = {.filter = f,
                                    .limit = o->limit,
                                    .with_vectors = o->with_vectors,
                                    .with_payload = o->with_payload};
    npvdb_client_page pg = {0};
    npvdb_client_error err;
    int rc = 0;
    do {
        if (npvdb_client_scroll(c, &p, &pg, &err) != NPVDB_STATUS_OK) {
            rc = rpc_fail("scroll", &err);
            break;
        }
        for (size_t i = 0; i < pg.n; i++)
            print_item(&pg, i, o);
    } while (!pg.done);
    npvdb_client_page_free(&pg);
    npvdb_client_filter_free(f);
    return rc;
}

static int dispatch(npvdb_client *c, const char *cmd, const opts *o)
{
    if (!strcmp(cmd, "search")) return cmd_search(c, o);
    if (!strcmp(cmd, "scroll") || !strcmp(cmd, "export"))
        return cmd_scroll(c, o);
    if (!strcmp(cmd, "collections")) return cmd_collections(c);
    if (!strcmp(cmd, "drop")) return cmd_drop(c, o);
    if (!strcmp(cmd, "count")) return cmd_count(c, o);
    if (!strcmp(cmd, "load")) return cmd_load(c, o);
    if (!strcmp(cmd, "query")) return cmd_query(c, o);
    if (!strcmp(cmd, "bench")) return cmd_bench(c, o);
    if (!strcmp(cmd, "info")) return cmd_info(c);
    if (!strcmp(cmd, "snapshot")) return cmd_snapshot(c);
    if (!strcmp(cmd, "delete")) return cmd_delete(c, o);
    if (!strcmp(cmd, "get")) return cmd_get(c, o);
    return cmd_health(c);
}

int main(int argc, char **argv)
{
    /* NPVDB_ADDRESS is every client's variable; NPVDB_SERVER was the CLI's
     * alone and is still read. */
    const char *env = getenv("NPVDB_ADDRESS");
    if (!env || !*env) env = getenv("NPVDB_SERVER");
    const char *token = getenv("NPVDB_TOKEN");
    opts o = {
        .server = env && *env ? env : NPVDB_CLIENT_DEFAULT_TARGET,
        .sec = {.token = token && *token ? token : NULL},
        .timeout_s = 3600,
        .metric = -1,
        .train_sample = -1,
        .k = 10,
        .n = 5,
        .single_max = 1000,
        .repeat = 1,
        .api = API_GETCLOSEST | API_SEARCH,
    };
    const char *cmd;
    if (!parse_args(argc, argv, &o, &cmd)) return 2;
    static const char *const known[] = {
        "load",   "query",  "bench",  "info",        "snapshot",
        "delete", "get",    "health", "collections", "drop",
        "count",  "search", "scroll", "export"};
    int found = 0;
    for (size_t i = 0; cmd && i < sizeof known / sizeof known[0]; i++)
        found |= !strcmp(cmd, known[i]);
    if (!found) {
        if (cmd) fail("unknown command '%s'", cmd);
        usage(stderr);
        return 2;
    }
    if (o.k == 0) return fail("--k must be at least 1"), 2;
    npvdb_client *c = connect_or_fail(&o);
    if (!c) return 1;
    int rc = dispatch(c, cmd, &o);
    npvdb_client_close(c);
    return rc;
}
