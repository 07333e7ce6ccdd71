"""npvdb: the Python client of the npvdb vector database server.

    import npvdb
    db = npvdb.connect("127.0.0.1:50051")
    db.init(keys, data)                                  # n x dim, any float dtype
    keys, dist = db.get_closest(data[:1], k_nearest=3)   # shapes (1, 3)
    docs = db.collection("docs")                         # same methods, another collection
    docs.init(keys, data, payloads=[{"tenant": 42}] * len(keys))
    keys, dist, pls = docs.get_closest(data[:1], filter={"must": [
        {"key": "tenant", "match": {"value": 42}}]}, with_payload=True)

Errors from the server raise subclasses of npvdb.Error carrying its message
(npvdb.InvalidArgument, npvdb.NotFound, ...). The gRPC messages generated from
protos/npvdb/v1/npvdb.proto are importable as npvdb.v1.npvdb_pb2.
"""
from .client import (DEFAULT_ADDRESS, DEFAULT_COLLECTION,
                     DEFAULT_MAX_MESSAGE_BYTES, Client, CollectionInfo, Info,
                     InitResult, InsertResult, SnapshotResult, VectorDB,
                     connect, default_address)
from .errors import (Aborted, AlreadyExists, Cancelled, DataLoss,
                     DeadlineExceeded, Error, FailedPrecondition, Internal,
                     InvalidArgument, NotFound, OutOfRange, PermissionDenied,
                     ResourceExhausted, Unauthenticated, Unavailable,
                     Unimplemented, Unknown)

__version__ = "0.1.0"

__all__ = [
    "connect", "default_address", "Client", "VectorDB", "Info", "CollectionInfo", "InitResult",
    "InsertResult", "SnapshotResult", "DEFAULT_ADDRESS", "DEFAULT_COLLECTION",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Error", "Aborted", "AlreadyExists", "Cancelled", "DataLoss",
    "DeadlineExceeded", "FailedPrecondition", "Internal", "InvalidArgument",
    "NotFound", "OutOfRange", "PermissionDenied", "ResourceExhausted",
    "Unauthenticated", "Unavailable", "Unimplemented", "Unknown",
]
