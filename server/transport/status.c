/*
 * status.c -- the one place where npvdb error codes become gRPC status codes.
 */
#include "internal.h"

grpc_status_code nt_status_from_code(npvdb_code code)
{
    switch (code) {
    case NPVDB_OK:
        return GRPC_STATUS_OK;
    case NPVDB_EINVAL:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case NPVDB_ESTATE:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case NPVDB_ELIMIT:
    case NPVDB_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case NPVDB_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case NPVDB_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case NPVDB_EINTERNAL:
    default:
        return GRPC_STATUS_INTERNAL;
    }
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
