"""Exceptions: one class per gRPC status code, all under npvdb.Error.

The server's message travels in the gRPC status details and becomes the
exception's message, so `str(e)` says what the server found wrong. Errors the
client detects itself before sending (a key/row count mismatch, a query of the
wrong dimension) raise the class of the status the server would have sent, so
callers handle one hierarchy.
"""
import grpc

__all__ = [
    "Error", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
    "Unavailable", "DataLoss", "Unauthenticated",
]


class Error(Exception):
    """Base of every npvdb error. `code` is the grpc.StatusCode, `message`
    the server's (or the client's) explanation."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return "{}: {}".format(self.code.name, self.message)


class Cancelled(Error):
    code = grpc.StatusCode.CANCELLED


class Unknown(Error):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(Error, ValueError):
    """Bad input: wrong dimension, NaN, empty or too long key, bad k, ..."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(Error, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(Error, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    """init() on an existing collection without replace=True."""
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(Error):
    """A read-only token on a call that writes (Init, Insert, Delete, ...)."""
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    """A size limit: message too large, k or shard count past the maximum,
    out of memory on the server."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(Error):
    """The call does not fit the server's state, e.g. Snapshot on a server
    running without a data directory."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(Error):
    code = grpc.StatusCode.ABORTED


class OutOfRange(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(Error):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(Error):
    code = grpc.StatusCode.INTERNAL


class Unavailable(Error, ConnectionError):
    """No server at the address, or it went away."""
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(Error):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(Error):
    """No token, or one the server does not know (connect(token=...))."""
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE = {cls.code: cls for cls in (
    Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound,
    AlreadyExists, PermissionDenied, ResourceExhausted, FailedPrecondition,
    Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
    Unauthenticated)}


def from_rpc_error(e):
    """The npvdb exception for a grpc.RpcError (a grpc.Call)."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else None
    cls = _BY_CODE.get(code, Error)
    return cls(details or str(e), code)
