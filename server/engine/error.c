/* error.c -- errors as values: a code plus a message naming what was wrong. */
#include "internal.h" /* npvdb_ok */

#include <stdarg.h>
#include <stdio.h>

npvdb_code npvdb_set_error(npvdb_error *err, npvdb_code code, const char *fmt,
                           ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void npvdb_ok(npvdb_error *err)
{
    if (err) {
        err->code = NPVDB_OK;
        err->msg[0] = '\0';
    }
}

const char *npvdb_code_name(npvdb_code code)
{
    switch (code) {
#define NAME_CASE(code, name, grpc)                                            \
    case NPVDB_##code:                                                         \
        return name;
        NPVDB_CODE_MAP(NAME_CASE)
#undef NAME_CASE
    }
    return "unknown error";
}

const char *npvdb_metric_name(npvdb_metric m)
{
    switch (m) {
    case NPVDB_METRIC_COSINE:
        return "cosine";
    case NPVDB_METRIC_L2:
        return "l2";
    case NPVDB_METRIC_IP:
        return "inner_product";
    }
    return "unknown";
}
