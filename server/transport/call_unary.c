/*
 * call_unary.c -- the shape shared by every unary RPC: the request arrives
 * with the call, the handler runs on the polling thread, and one final batch
 * sends metadata, reply and status together.
 */
#include "internal.h"

#include <grpc/slice.h>

void nt_unary_start(nt_call *c)
{
    nt_result res = {0};
    if (!c->recv) {
        /* The client half-closed without sending its request. */
        nt_result_fail(&res, GRPC_STATUS_INVALID_ARGUMENT,
                       "missing request message");
    } else {
        grpc_slice s = nt_call_take_message(c);
        c->method->unary(c->srv, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
                         &res);
        grpc_slice_unref(s);
    }
    nt_call_finish(c, &res);
}
