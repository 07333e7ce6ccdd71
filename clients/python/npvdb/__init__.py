"""npvdb: the Python client of the npvdb vector database server.

    import npvdb
    db = npvdb.connect("127.0.0.1:50051")
    db.init(keys, data)                                  # n x dim, any float dtype
    keys, dist = db.get_closest(data[:1], k_nearest=3)   # shapes (1, 3)

Errors from the server raise subclasses of npvdb.Error carrying its message
(npvdb.InvalidArgument, npvdb.NotFound, ...). The gRPC messages generated from
protos/npvdb/v1/npvdb.proto are importable as npvdb.v1.npvdb_pb2.
"""
from .client import (DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, Client,
                     Info, InitResult, InsertResult, SnapshotResult, VectorDB,
                     connect)
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss,
                     DeadlineExceeded, Error, FailedPrecondition, Internal,
                     InvalidArgument, NotFound, OutOfRange, PermissionDenied,
                     ResourceExhausted, Unauthenticated, Unavailable,
                     Unimplemented, Unknown)

__version__ = "0.1.0"

__all__ = [
    "connect", "Client", "VectorDB", "Info", "InitResult", "InsertResult",
    "SnapshotResult", "DEFAULT_ADDRESS", "DEFAULT_MAX_MESSAGE_BYTES",
    "Error", "Aborted", "AlreadyExists", "Cancelled", "DataLoss",
    "DeadlineExceeded", "FailedPrecondition", "Internal", "InvalidArgument",
    "NotFound", "OutOfRange", "PermissionDenied", "ResourceExhausted",
    "Unauthenticated", "Unavailable", "Unimplemented", "Unknown",
]
