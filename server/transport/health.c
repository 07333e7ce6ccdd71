/*
 * health.c -- grpc.health.v1.Health/Check, for load balancers and Kubernetes
 * probes. The server is SERVING as soon as it accepts calls (also before
 * Init: an empty database is healthy). Watch is not offered (UNIMPLEMENTED).
 */
#include "internal.h"

#include "codec.h"
#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

static void handle_check(npvdb_server *s, const uint8_t *buf, size_t len,
                         nt_result *res)
{
    char service[256];
    npvdb_error err = {0};
    if (codec_decode_health(buf, len, service, sizeof service, &err)) {
        nt_result_error(res, &err);
        return;
    }
    if (service[0] && strcmp(service, "npvdb.v1.VectorDB") != 0) {
        nt_result_fail(res, GRPC_STATUS_NOT_FOUND, "unknown service \"%s\"",
                       service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse r =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    nt_result_pack(res, &r.base);
}

const nt_method nt_rpc_health = {
    .path = "/grpc.health.v1.Health/Check",
    .runs_inline = 1,
    .call_size = sizeof(nt_call),
    .start = nt_unary_start,
    .unary = handle_check,
};
