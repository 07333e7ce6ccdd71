/*
 * status.c -- the one place where npvdb error codes become gRPC status codes.
 */
#include "internal.h"

grpc_status_code nt_status_from_code(npvdb_code code)
{
    switch (code) {
#define STATUS_CASE(code, name, grpc)                                          \
    case NPVDB_##code:                                                         \
        return GRPC_STATUS_##grpc;
        NPVDB_CODE_MAP(STATUS_CASE)
#undef STATUS_CASE
    }
    return GRPC_STATUS_INTERNAL;
}

const char *nt_status_name(grpc_status_code st)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)st < sizeof names / sizeof names[0]) return names[st];
    return "?";
}
