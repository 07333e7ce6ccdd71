"""The npvdb client: numpy arrays in, numpy arrays out, gRPC underneath.

Wire layout (see protos/npvdb/v1/npvdb.proto): vectors travel as the raw
memory of a C-contiguous little-endian float32 array. Every input is converted
once with np.ascontiguousarray(x, dtype='<f4'), which copies only when the
dtype or the layout differs (float64 input, a transposed or strided view);
each message then takes one `tobytes()` of a slice of that array.

Large inputs are split into several messages: insert batches and query
blocks of about 4 MiB (small enough for a progress bar to move and for the
server to apply and log batch by batch), and never more than the server's
receive limit (npvdb-server's default is 64 MiB; pass max_message_bytes to
connect() when the server is started with a lower one). Only the training
sample of init() uses the whole limit, since k-means wants many rows.

Queries go in unary Search calls answered with packed arrays (counts, flat
keys, q x k distances): grpcio costs ~0.1 ms per message and starts a thread
per server-streaming call, so the streaming GetClosest (one message per
query) caps a Python client at a few thousand queries/s. Search replies are
kept near 4 MiB by estimating their size from k and the longest key seen.
"""
import math
import os
import sys
from collections import namedtuple
from dataclasses import dataclass, field

import grpc
import numpy as np

from .errors import Internal, InvalidArgument, NotFound, Unimplemented
from .errors import from_rpc_error
from .payload import (filter_pb, payload_dict, payload_pb, payloads_pb)

try:
    from .v1 import npvdb_pb2 as pb
    from .v1 import npvdb_pb2_grpc as pb_grpc
except ImportError as e:  # generated at build time, never committed
    raise ImportError(
        "npvdb: the generated gRPC stubs (npvdb.v1) cannot be imported. Use the "
        "package from the CMake build tree (target npvdb_python) or install it "
        "with `pip install --no-build-isolation clients/python`.") from e

DEFAULT_ADDRESS = "127.0.0.1:50051"


def default_address():
    """The address a client dials when given none: $NPVDB_ADDRESS (the
    variable every npvdb client and the CLI read), else DEFAULT_ADDRESS."""
    return os.environ.get("NPVDB_ADDRESS") or DEFAULT_ADDRESS


# npvdb-server's default receive limit (--max-message-bytes).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Target size of insert and query messages.
_STREAM_MESSAGE_BYTES = 4 * 1024 * 1024
# Target size of Search replies, estimated as _search_rows() says.
_REPLY_MESSAGE_BYTES = 4 * 1024 * 1024
# Key length (bytes) Search replies are first estimated with, and the
# server's maximum (NPVDB_MAX_KEY_LEN).
_KEY_BOUND = 64
_MAX_KEY_BYTES = 1024
# Search calls outstanding at once, and how often one chunk may be halved
# after RESOURCE_EXHAUSTED before the error is raised.
_SEARCH_IN_FLIGHT = 2
_MAX_SPLITS = 12
# Room left in each message for field tags, lengths and the other fields.
_MESSAGE_SLACK = 16 * 1024
# Training rows per shard the client aims for (the engine's own default for
# training as vectors arrive); fewer than _MIN_TRAIN_PER_SHARD is not worth
# sending, the server then trains itself once enough vectors have arrived.
_TRAIN_PER_SHARD = 64
_MIN_TRAIN_PER_SHARD = 4
_MAX_SHARDS = 65536

_METRICS = {
    "cosine": pb.COSINE, "angular": pb.COSINE,
    "l2": pb.L2, "euclidean": pb.L2,
    "inner_product": pb.INNER_PRODUCT, "ip": pb.INNER_PRODUCT,
    "dot": pb.INNER_PRODUCT,
}
_METRIC_NAMES = {pb.COSINE: "cosine", pb.L2: "l2",
                 pb.INNER_PRODUCT: "inner_product"}

_UNSET = object()
# The collection a Client means when none is named: "" is "default" on the
# wire (what clients older than collections send).
DEFAULT_COLLECTION = "default"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789_.-")
# Scroll page size when none is given, and the contract's maximum.
_SCROLL_BATCH = 256
_SCROLL_MAX = 16384
# Payload bytes per hit assumed when sizing Search replies with payloads.
_PAYLOAD_BOUND = 256


@dataclass(frozen=True)
class Info:
    """What the server holds. Before the first init() only `initialized`
    (False) and `server_version` are meaningful."""
    initialized: bool
    dim: int
    metric: str  # "cosine", "l2", "inner_product" (None before init)
    vectors: int
    n_shards: int
    trained: bool
    memory_bytes: int
    server_version: str
    default_nprobe: int
    shard_sizes: np.ndarray = field(repr=False, compare=False)
    collection: str = DEFAULT_COLLECTION  # the collection described
    # The partition as it follows the data: shards split as the collection
    # grows and merge after deletes (counts since the server loaded it).
    largest_shard: int = 0
    smallest_shard: int = 0
    splits: int = 0
    merges: int = 0
    retrains: int = 0  # full trainings after the first


@dataclass(frozen=True)
class CollectionInfo:
    """One entry of Client.collections()."""
    name: str
    dim: int
    metric: str  # "cosine", "l2", "inner_product"
    vectors: int


@dataclass(frozen=True)
class InsertResult:
    inserted: int  # keys that were new
    replaced: int  # keys that existed and got the new vector
    messages: int  # stream messages the server applied


@dataclass(frozen=True)
class InitResult:
    replaced: bool     # an existing collection was dropped (replace=True)
    trained: bool      # the index was trained from the sample sent with Init
    n_shards: int      # shards asked for (0: the server chooses)
    train_rows: int    # rows sent as the training sample
    inserted: int      # rows streamed after Init
    messages: int


@dataclass(frozen=True)
class SnapshotResult:
    path: str
    vectors: int
    bytes: int
    seconds: float
    sequence: int  # last log record the snapshot covers


# What one get_closest() asks of every Search / GetClosest call it makes.
_SearchOptions = namedtuple("_SearchOptions", "k nprobe filter with_payload")


def connect(address=None, timeout=None, *, tls_ca=None,
            tls_cert=None, tls_key=None, token=None, **kwargs):
    """Opens a client to the npvdb server at `address` ("host:port"; None:
    $NPVDB_ADDRESS, else 127.0.0.1:50051, as every npvdb client).

    timeout: deadline in seconds for each call (an insert stream counts as
    one call), None for none.
    tls_ca: the CA certificate (PEM file path, or the PEM bytes) that signed
    the server's certificate: connects with TLS (npvdb-server --tls-cert).
    tls_cert, tls_key: this client's certificate and key (paths or PEM
    bytes), for a server with --tls-client-ca (mutual TLS).
    token: sent as `authorization: Bearer <token>` with every call (a
    server with --token-file); None: $NPVDB_TOKEN if set, else no token.
    Over plaintext anyone on the path can read it: use TLS off loopback.
    Other keyword arguments go to Client. The connection is made lazily: a
    server that is not there, or a TLS handshake that fails, shows as
    npvdb.Unavailable on the first call."""
    return Client(address, timeout=timeout, tls_ca=tls_ca, tls_cert=tls_cert,
                  tls_key=tls_key, token=token, **kwargs)


class Client:
    """A connection to one npvdb server. Thread-safe like a grpc channel.

    Use as a context manager, or call close()."""

    def __init__(self, address=None, timeout=None, *,
                 credentials=None, options=None,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES, tls_ca=None,
                 tls_cert=None, tls_key=None, token=None):
        """address, tls_ca, tls_cert, tls_key, token: as in connect().
        credentials: any grpc.ChannelCredentials instead of tls_* (e.g.
        grpc.ssl_channel_credentials() for the system's CAs); None and no
        tls_*: plaintext.
        options: extra grpc channel options, a list of (name, value) (e.g.
        ("grpc.ssl_target_name_override", "db.internal") when the address
        is not a name in the server's certificate).
        max_message_bytes: the server's receive limit; inputs are split into
        messages no larger than this (the Init training sample may use all
        of it; other messages are about 4 MiB)."""
        address = address or default_address()
        opts = [("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1)]
        opts += list(options or [])
        tls = _tls_credentials(tls_ca, tls_cert, tls_key)
        if tls is not None:
            if credentials is not None:
                raise InvalidArgument("give credentials or tls_ca/tls_cert/"
                                      "tls_key, not both")
            credentials = tls
        if token is None and os.environ.get("NPVDB_TOKEN"):
            metadata = _token_metadata(os.environ["NPVDB_TOKEN"],
                                       "$NPVDB_TOKEN")
        else:
            metadata = _token_metadata(token)
        if credentials is not None:
            self._channel = grpc.secure_channel(address, credentials, opts)
        else:
            self._channel = grpc.insecure_channel(address, opts)
        channel = self._channel
        if metadata is not None:
            channel = grpc.intercept_channel(channel, _Metadata(metadata))
        self._stub = pb_grpc.VectorDBStub(channel)
        self.address = address
        self.timeout = timeout
        self.max_message_bytes = int(max_message_bytes)
        # The collection this handle means ("": "default", what db means).
        self._collection = ""
        # Each collection's dim, remembered so that a query of the wrong
        # width is refused here: the server can only see a byte count, and
        # a (2, 64) block looks like one 128-d query to it. Shared with the
        # handles of collection().
        self._dims = {}
        self._owns_channel = True
        self._payload_bound = _PAYLOAD_BOUND
        # Longest key (bytes) assumed when sizing Search replies; grows with
        # the keys this client inserts or receives.
        self._key_bound = _KEY_BOUND
        # False once the server answered Search with UNIMPLEMENTED.
        self._search_ok = True

    @property
    def _dim(self):
        return self._dims.get(self._collection)

    @_dim.setter
    def _dim(self, dim):
        self._dims[self._collection] = dim

    # -- life cycle -----------------------------------------------------
    def close(self):
        """Closes the connection (a collection() handle leaves it to its
        parent's close())."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if self._collection:
            return "npvdb.Client({!r}).collection({!r})".format(
                self.address, self._collection)
        return "npvdb.Client({!r})".format(self.address)

    # -- collections ----------------------------------------------------
    @property
    def name(self):
        """The collection this client or handle means ("default" for db)."""
        return self._collection or DEFAULT_COLLECTION

    def collection(self, name):
        """A handle on the collection `name` with every method of this
        client (init, insert, get_closest, count, scroll, get, delete,
        info, ...), sharing its connection: db.collection("docs").insert(...)
        is db.insert(..., collection="docs"). The collection need not exist
        yet (init() creates it). Names: 1..255 bytes of [A-Za-z0-9_.-]."""
        name = _collection_name(name)
        if name == self._collection:
            return self
        h = object.__new__(type(self))
        h.__dict__.update(self.__dict__)
        h._collection = name
        h._owns_channel = False
        return h

    def collections(self):
        """Every collection on the server, sorted by name, as a list of
        npvdb.CollectionInfo(name, dim, metric, vectors)."""
        r = self._unary(self._stub.ListCollections, pb.ListCollectionsRequest())
        return [CollectionInfo(name=c.name, dim=c.dim,
                               metric=_METRIC_NAMES.get(c.metric),
                               vectors=c.vectors) for c in r.collections]

    def drop(self, name=None):
        """Drops the collection `name` (None: this handle's) and frees its
        memory; its disk goes with the next snapshot. Returns the number of
        vectors it held; npvdb.NotFound if there is no such collection."""
        name = self._collection if name is None else _collection_name(name)
        r = self._unary(self._stub.DropCollection,
                        pb.DropCollectionRequest(collection=name))
        self._dims.pop(name, None)
        return r.vectors

    def _on(self, collection):
        """The handle a call with collection= means."""
        return self if collection is None else self.collection(collection)

    # -- the API --------------------------------------------------------
    def init(self, keys, data, payloads=None, n_shards=None, metric="cosine",
             replace=False, train_size=None, nprobe=None, batch_size=None,
             progress=None, seed=None, collection=None):
        """Creates the collection from `data` (n x dim) under `keys` (n
        strings; ints are converted with str()): trains the index on a random
        sample of the rows, sent with the Init call, then streams all rows as
        insert() does. payloads: as in insert(). collection: the one to
        create (None: this handle's, "default" for db).

        n_shards: None = about 4*sqrt(n), at most n. metric: "cosine" (default),
        "l2" or "inner_product". replace: drop an existing collection first
        (without it an existing one raises npvdb.AlreadyExists). train_size:
        rows in the training sample; None = min(n, 64 * n_shards, what fits
        in one message), or no sample when fewer than 4 rows per shard fit
        (the server then trains itself once enough vectors have arrived).
        nprobe: the default shards probed per query (None: the server's).
        seed: the sample's random seed. Init and the insert stream are two
        calls: if the stream fails, the collection exists with the messages
        applied before the failure (insert() again with the same keys is an
        upsert)."""
        if collection is not None:
            return self.collection(collection).init(
                keys, data, payloads, n_shards=n_shards, metric=metric,
                replace=replace, train_size=train_size, nprobe=nprobe,
                batch_size=batch_size, progress=progress, seed=seed)
        keys = _keys(keys)
        arr = _matrix(data, "data")
        n, dim = arr.shape
        _check_rows(keys, n)
        pls = payloads_pb(payloads, n)
        if isinstance(metric, str):
            metric = metric.lower()
        if metric not in _METRICS and metric not in _METRIC_NAMES:
            raise InvalidArgument(
                "metric {!r}: use one of {}".format(metric, sorted(_METRICS)))
        metric = _METRICS.get(metric, metric)
        if n_shards is None:
            n_shards = _auto_shards(n)
        n_shards = _uint(n_shards, "n_shards")
        sample = self._train_sample(arr, n_shards, train_size, seed)
        req = pb.InitRequest(
            dim=dim, metric=metric, n_shards=n_shards, replace=bool(replace),
            train_vectors=sample.tobytes() if sample is not None else b"",
            default_nprobe=_uint(nprobe, "nprobe"), collection=self._collection)
        reply = self._unary(self._stub.Init, req)
        self._dim = dim
        ins = (self._insert(keys, arr, pls, batch_size, progress) if n
               else InsertResult(0, 0, 0))
        return InitResult(replaced=reply.replaced, trained=reply.trained,
                          n_shards=n_shards,
                          train_rows=0 if sample is None else len(sample),
                          inserted=ins.inserted + ins.replaced,
                          messages=ins.messages)

    def insert(self, keys, data, payloads=None, batch_size=None, progress=None,
               collection=None):
        """Upserts rows of `data` (n x dim, or one 1-D vector) under `keys`.

        payloads: None, or a list of n dicts (payloads[i] goes with keys[i];
        a None entry: no payload), each mapping field names (str) to a str,
        int, float, bool or list of str (numpy scalars too; bool is not an
        int). An upsert replaces the payload with the vector: a key inserted
        again without one has none afterwards. Every payload is checked
        before anything is sent: a TypeError / ValueError (also
        npvdb.InvalidArgument) names the index and field
        ("payloads[3]['price']: nan is not finite").

        One client-streaming call of messages of `batch_size` rows (None:
        messages of about 4 MiB). progress: a tqdm bar; None =
        shown when stderr is a terminal and the load takes several messages,
        False = never, True = always (if tqdm is installed)."""
        if collection is not None:
            return self.collection(collection).insert(
                keys, data, payloads, batch_size=batch_size, progress=progress)
        keys = _keys(keys)
        arr = _matrix(data, "data")
        _check_rows(keys, arr.shape[0])
        pls = payloads_pb(payloads, arr.shape[0])
        return self._insert(keys, arr, pls, batch_size, progress)

    def get_closest(self, queries, k_nearest=10, nprobe=None, filter=None,
                    with_payload=False, stream=False, collection=None):
        """The k_nearest stored vectors closest to each query.

        queries: (q, dim) array, or one 1-D vector of dim values.
        Returns (keys, distances): for a 2-D input, arrays of shape
        (q, k_nearest), keys of dtype object (str), distances float32, nearest
        first; for a 1-D input, the same for that one query with shape
        (k_nearest,). A query with fewer than k_nearest answers (a smaller
        collection or filtered set, or fewer in the shards it probes) gets
        its row padded with None keys and inf distances.
        nprobe: shards probed per query (None: the collection's default;
        >= the shard count is an exact search).

        filter: only vectors passing it are candidates (the k nearest among
        them, searched during the scan, not filtered afterwards): a dict in
        Qdrant's shape, e.g. {"must": [{"key": "tenant", "match": {"value":
        42}}], "must_not": [{"key": "tag", "match": {"any": ["spam"]}}]},
        conditions {"key": K, "match": {"value": v}} (v str, int or bool),
        {"key": K, "match": {"any": [...]}} (all str or all int; a list field
        matches when it contains one), {"key": K, "range": {"gte": 10, "lt":
        20}} (gt/gte/lt/lte; given both gt and gte the tighter bound is
        kept), {"has_field": K}, or a nested {"must"/"should"/"must_not":
        [...]}. A malformed filter raises ValueError (npvdb.InvalidArgument)
        naming its path ("filter.must[0]: unknown operator 'equals' ...")
        before anything is sent.

        with_payload=True returns (keys, distances, payloads) instead:
        payloads a list of q lists of k_nearest entries aligned with keys,
        each the hit's payload dict ({} for a vector without one) and None
        in padded slots; for a 1-D input one list of k_nearest entries.

        The queries go in unary Search calls, each answered by one packed
        reply (several calls when the replies would pass the message limit,
        two in flight at a time). stream=True uses the server-streaming
        GetClosest instead (one reply message per query, much slower from
        Python: see get_closest_stream()); a server without Search is
        detected once and streamed to automatically."""
        if collection is not None:
            return self.collection(collection).get_closest(
                queries, k_nearest, nprobe, filter, with_payload, stream)
        flt = filter_pb(filter)
        arr, k, single = self._queries(queries, k_nearest)
        nprobe = _uint(nprobe, "nprobe")
        opts = _SearchOptions(k, nprobe, flt, bool(with_payload))
        q = arr.shape[0]
        # np.empty of object is all None: rows a reply leaves short stay so.
        out_keys = np.empty((q, k), dtype=object)
        out_dist = np.empty((q, k), dtype=np.float32)
        out_pl = [[None] * k for _ in range(q)] if with_payload else None
        if q and (stream or not self._search_ok):
            out_dist.fill(np.inf)
            for i, keys, dist, pls in self._stream(arr, opts):
                out_keys[i, :len(keys)] = keys
                out_dist[i, :len(dist)] = dist
                if out_pl is not None:
                    out_pl[i][:len(pls)] = pls
        elif q:
            try:
                self._search(arr, opts, out_keys, out_dist, out_pl)
            except Unimplemented:
                self._search_ok = False  # a server older than Search
                return self.get_closest(queries, k_nearest, nprobe, filter,
                                        with_payload, stream=True)
        if single:
            out = (out_keys[0], out_dist[0]) + ((out_pl[0],) if with_payload else ())
        else:
            out = (out_keys, out_dist) + ((out_pl,) if with_payload else ())
        return out

    def get_closest_stream(self, queries, k_nearest=10, nprobe=None,
                           filter=None, with_payload=False, collection=None):
        """Yields (i, keys, distances) per query, in query order, as the
        server-streaming GetClosest delivers them: keys a (k_nearest,) object
        array, distances (k_nearest,) float32, padded with None / inf as in
        get_closest(); with_payload=True yields (i, keys, distances,
        payloads), payloads a list of k_nearest dicts (None where padded).
        filter: as in get_closest(). Results arrive while later queries are
        still being searched, but each message costs the Python grpc runtime
        about 0.1 ms, so get_closest() (Search) is several times faster for
        batches. Stopping the iteration early cancels the call."""
        if collection is not None:
            yield from self.collection(collection).get_closest_stream(
                queries, k_nearest, nprobe, filter, with_payload)
            return
        flt = filter_pb(filter)
        arr, k, _ = self._queries(queries, k_nearest)
        opts = _SearchOptions(k, _uint(nprobe, "nprobe"), flt, bool(with_payload))
        if arr.shape[0]:
            for i, hit_keys, hit_dist, hit_pl in self._stream(arr, opts):
                keys = np.empty(k, dtype=object)
                dist = np.full(k, np.inf, dtype=np.float32)
                keys[:len(hit_keys)] = hit_keys
                dist[:len(hit_dist)] = hit_dist
                if with_payload:
                    pls = [None] * k
                    pls[:len(hit_pl)] = hit_pl
                    yield i, keys, dist, pls
                else:
                    yield i, keys, dist

    def count(self, filter=None, collection=None):
        """How many vectors pass `filter` (as in get_closest(); None: all of
        them)."""
        if collection is not None:
            return self.collection(collection).count(filter)
        req = pb.CountRequest(collection=self._collection)
        flt = filter_pb(filter)
        if flt is not None:
            req.filter.CopyFrom(flt)
        return self._unary(self._stub.Count, req).count

    def scroll(self, filter=None, with_vectors=False, with_payload=True,
               batch_size=None, collection=None):
        """A generator of (key, vector or None, payload or None) over every
        vector passing `filter` (None: all), fetched in Scroll pages of
        batch_size keys (None: 256; at most 16384). vector: a (dim,) float32
        array with with_vectors=True, else None; payload: a dict ({} for a
        vector without one) with with_payload=True, else None. Every vector
        stored for the whole scroll is yielded at least once (one written
        meanwhile may or may not be); the order is the server's."""
        if collection is not None:
            yield from self.collection(collection).scroll(
                filter, with_vectors, with_payload, batch_size)
            return
        limit = _SCROLL_BATCH if batch_size is None else int(batch_size)
        if not 1 <= limit <= _SCROLL_MAX:
            raise InvalidArgument("batch_size must be 1..{}, got {}".format(
                _SCROLL_MAX, limit))
        req = pb.ScrollRequest(collection=self._collection, limit=limit,
                               with_vectors=bool(with_vectors),
                               with_payload=bool(with_payload))
        flt = filter_pb(filter)
        if flt is not None:
            req.filter.CopyFrom(flt)
        while True:
            r = self._unary(self._stub.Scroll, req)
            n = len(r.keys)
            vecs = None
            if with_vectors:
                vecs = np.frombuffer(r.vectors, dtype="<f4")
                if n and len(vecs) % n:
                    raise Internal("Scroll reply: {} vector bytes for {} keys".format(
                        len(r.vectors), n))
                vecs = vecs.reshape(n, -1) if n else vecs
            if with_payload and len(r.payloads) != n:
                raise Internal("Scroll reply: {} payloads for {} keys".format(
                    len(r.payloads), n))
            for i, key in enumerate(r.keys):
                yield (key, None if vecs is None else vecs[i].copy(),
                       payload_dict(r.payloads[i]) if with_payload else None)
            if not r.next_cursor:
                return
            if not n and r.next_cursor == req.cursor:
                raise Internal("Scroll: the server repeats an empty page")
            req.cursor = r.next_cursor

    def get(self, keys, missing="raise", with_payload=False, collection=None):
        """The stored vectors of `keys` as a (len(keys), dim) float32 array,
        in the order of `keys` (for cosine collections: the normalised
        vectors). missing="raise" raises npvdb.NotFound naming absent keys;
        missing="nan" gives them rows of NaN instead. with_payload=True
        returns (vectors, payloads), payloads a list aligned with keys: a
        dict per key ({} without a payload), None for a missing key."""
        if collection is not None:
            return self.collection(collection).get(keys, missing, with_payload)
        if missing not in ("raise", "nan"):
            raise InvalidArgument("missing must be 'raise' or 'nan'")
        keys = _keys(keys)
        found = {}
        found_pl = {}
        absent = []
        for chunk in self._key_chunks(keys):
            reply = self._unary(self._stub.Get, pb.GetRequest(
                keys=chunk, collection=self._collection,
                with_payload=bool(with_payload)))
            vecs = np.frombuffer(reply.vectors, dtype="<f4")
            if reply.keys:
                vecs = vecs.reshape(len(reply.keys), -1)
            if with_payload and len(reply.payloads) != len(reply.keys):
                raise Internal("Get reply: {} payloads for {} keys".format(
                    len(reply.payloads), len(reply.keys)))
            for i, (key, row) in enumerate(zip(reply.keys, vecs)):
                found[key] = row
                if with_payload:
                    found_pl[key] = reply.payloads[i]
            absent.extend(reply.missing)
        if absent and missing == "raise":
            shown = ", ".join(repr(k) for k in absent[:5])
            more = " and {} more".format(len(absent) - 5) if len(absent) > 5 else ""
            raise NotFound("{} key(s) not in the collection: {}{}".format(
                len(absent), shown, more))
        dim = next(iter(found.values())).shape[0] if found else self._dim_now()
        out = np.full((len(keys), dim), np.nan, dtype=np.float32)
        for i, key in enumerate(keys):
            row = found.get(key)
            if row is not None:
                out[i] = row
        if with_payload:
            return out, [payload_dict(found_pl[k]) if k in found_pl else None
                         for k in keys]
        return out

    def delete(self, keys, collection=None):
        """Deletes `keys` (one str, or a sequence). Unknown keys are not an
        error. Returns how many existed."""
        if collection is not None:
            return self.collection(collection).delete(keys)
        deleted = 0
        for chunk in self._key_chunks(_keys(keys)):
            deleted += self._unary(self._stub.Delete, pb.DeleteRequest(
                keys=chunk, collection=self._collection)).deleted
        return deleted

    def snapshot(self, collection=None):
        """Writes a consistent snapshot of every collection to the server's
        data directory (a handle or collection= names one, which must
        exist: npvdb.NotFound otherwise)."""
        if collection is not None:
            return self.collection(collection).snapshot()
        r = self._unary(self._stub.Snapshot,
                        pb.SnapshotRequest(collection=self._collection))
        return SnapshotResult(path=r.path, vectors=r.vectors, bytes=r.bytes,
                              seconds=r.seconds, sequence=r.sequence)

    def info(self, collection=None):
        """The collection's state as an npvdb.Info."""
        if collection is not None:
            return self.collection(collection).info()
        r = self._unary(self._stub.Info, pb.InfoRequest(collection=self._collection))
        if r.initialized:
            self._dim = r.dim
        return Info(initialized=r.initialized, dim=r.dim,
                    metric=_METRIC_NAMES.get(r.metric), vectors=r.vectors,
                    n_shards=r.n_shards, trained=r.trained,
                    memory_bytes=r.memory_bytes,
                    server_version=r.server_version,
                    default_nprobe=r.default_nprobe,
                    shard_sizes=np.array(r.shard_sizes, dtype=np.uint64),
                    collection=r.collection or self.name,
                    largest_shard=r.largest_shard,
                    smallest_shard=r.smallest_shard, splits=r.splits,
                    merges=r.merges, retrains=r.retrains)

    # -- internals ------------------------------------------------------
    def _unary(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _budget(self):
        """Payload bytes per insert, query, get or delete message."""
        return max(1024, min(self.max_message_bytes, _STREAM_MESSAGE_BYTES) - _MESSAGE_SLACK)

    def _train_budget(self):
        return max(1024, self.max_message_bytes - _MESSAGE_SLACK)

    def _insert(self, keys, arr, payloads, batch_size, progress):
        n, dim = arr.shape
        if n == 0:
            return InsertResult(0, 0, 0)
        # Search replies will carry keys like these (at most 4 UTF-8 bytes a
        # character): size them accordingly.
        longest = 4 * max(map(len, keys))
        self._key_bound = max(self._key_bound, min(_MAX_KEY_BYTES, longest))
        if batch_size is None:
            # Bounded by the longest key, plus its tag and length: no
            # message can pass the budget.
            per_row = 4 * dim + longest + 4
            batch_size = max(1, self._budget() // per_row)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise InvalidArgument("batch_size must be >= 1")
        bar = _progress_bar(progress, n, batch_size)
        bounds = _insert_batches(n, batch_size, payloads, self._budget(),
                                 4 * dim + longest + 4)

        def requests():
            for i, j in bounds:
                req = pb.InsertRequest(keys=keys[i:j], vectors=arr[i:j].tobytes(),
                                       collection=self._collection)
                # Only empty payloads: none for the message (the contract's
                # "none for the whole message").
                if payloads is not None and any(p.fields for p in payloads[i:j]):
                    req.payloads.extend(payloads[i:j])
                yield req
                if bar is not None:
                    bar.update(j - i)

        try:
            r = self._unary(self._stub.Insert, requests())
        finally:
            if bar is not None:
                bar.close()
        return InsertResult(r.inserted, r.replaced, r.messages)

    def _train_sample(self, arr, n_shards, train_size, seed):
        n, dim = arr.shape
        if train_size is None:
            fits = self._train_budget() // (4 * dim)
            train_size = min(n, _TRAIN_PER_SHARD * max(1, n_shards), fits)
            if train_size < min(n, _MIN_TRAIN_PER_SHARD * n_shards):
                return None
        train_size = int(train_size)
        if train_size <= 0 or n == 0:
            return None
        if train_size > n:
            raise InvalidArgument(
                "train_size {} is larger than the {} rows given".format(train_size, n))
        if train_size == n:
            return arr
        rng = np.random.default_rng(seed)
        # Sorted indices read the rows in memory order.
        return arr[np.sort(rng.choice(n, size=train_size, replace=False))]

    def _check_dim(self, dim):
        if self._dim is None or self._dim != dim:
            # First query, or another client may have re-created the
            # collection: ask the server once before refusing. A collection
            # that does not exist is left to the server, whose NotFound
            # says so.
            self._dim = None
            self.info()
        if self._dim is not None and self._dim != dim:
            raise InvalidArgument(
                "queries have {} dimensions, the collection has {}".format(dim, self._dim))

    def _dim_now(self):
        if self._dim is None:
            info = self.info()
            if not info.initialized:
                # What the server answers for a collection that is not there.
                raise NotFound("collection '{}' not found".format(self.name))
        return self._dim

    def _queries(self, queries, k_nearest):
        """(queries as a (q, dim) '<f4' array, k, was the input 1-D)."""
        try:
            arr = np.ascontiguousarray(queries, dtype="<f4")
        except (TypeError, ValueError) as e:
            raise InvalidArgument("queries: not a float array: {}".format(e)) from None
        single = arr.ndim == 1
        if single:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise InvalidArgument(
                "queries must be 1-D or 2-D, got shape {}".format(arr.shape))
        k = int(k_nearest)
        if k < 0:
            raise InvalidArgument("k_nearest must be positive, got {}".format(k))
        self._check_dim(arr.shape[1])
        return arr, k, single

    def _search_rows(self, dim, k, with_payload=False):
        """Queries per Search call: the request within the message budget,
        and the reply's estimated size too. A reply holds per query k
        float32 distances, one count and up to k keys (each its bytes, a tag
        and a length); keys are assumed no longer than the longest this
        client has seen (at least _KEY_BOUND bytes), and a reply that still
        passes the server's limit is split on the way (_search)."""
        per_reply = 4 * k + 6 + k * (self._key_bound + 3)
        if with_payload:
            per_reply += k * (self._payload_bound + 3)
        rows = min(self._budget() // (4 * dim), self._reply_budget() // per_reply)
        return max(1, rows)

    def _reply_budget(self):
        return max(1024, min(self.max_message_bytes, _REPLY_MESSAGE_BYTES) - _MESSAGE_SLACK)

    def _search(self, arr, opts, out_keys, out_dist, out_pl):
        """Fills out_keys/out_dist with Search calls over row chunks of arr.
        Several chunks: up to _SEARCH_IN_FLIGHT calls outstanding (futures),
        so the server searches the next chunk while this thread decodes a
        reply. The last lone call (the only one, for most batches and every
        single query) is a blocking call: a future starts grpc's channel
        polling thread whenever none is running, ~0.1 ms a call."""
        q, dim = arr.shape
        k = opts.k
        rows = self._search_rows(dim, k, opts.with_payload) if q > 1 else 1
        todo = [(s, min(q, s + rows), 0) for s in range(0, q, rows)]
        todo.reverse()  # pop() takes them in order
        pending = []

        def request(start, end):
            req = pb.SearchRequest(queries=arr[start:end].tobytes(), k=k,
                                   nprobe=opts.nprobe, dim=dim,
                                   collection=self._collection,
                                   with_payload=opts.with_payload)
            if opts.filter is not None:
                req.filter.CopyFrom(opts.filter)
            return req

        try:
            while todo or pending:
                if not pending and len(todo) == 1:
                    start, end, depth = todo.pop()
                    req = request(start, end)
                    wait = lambda: self._stub.Search(req, timeout=self.timeout)  # noqa: E731
                else:
                    while todo and len(pending) < _SEARCH_IN_FLIGHT:
                        start, end, depth = todo.pop()
                        pending.append((start, end, depth, self._stub.Search.future(
                            request(start, end), timeout=self.timeout)))
                    start, end, depth, fut = pending.pop(0)
                    wait = fut.result
                try:
                    reply = wait()
                except grpc.RpcError as e:
                    if (e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                            or end - start == 1 or depth >= _MAX_SPLITS):
                        raise from_rpc_error(e) from None
                    # The reply passed the server's limit: keys are longer
                    # than assumed. Split this chunk; later ones are as
                    # large, so assume longer keys for them too.
                    self._key_bound = min(_MAX_KEY_BYTES, 2 * self._key_bound)
                    if opts.with_payload:
                        self._payload_bound *= 2
                    mid = (start + end) // 2
                    todo += [(mid, end, depth + 1), (start, mid, depth + 1)]
                    continue
                self._place(reply, k, out_keys[start:end], out_dist[start:end],
                            None if out_pl is None else out_pl[start:end])
        finally:
            for *_, fut in pending:
                fut.cancel()

    def _place(self, reply, k, out_keys, out_dist, out_pl=None):
        """Decodes one SearchReply into out_keys/out_dist (C-contiguous views
        of q rows; out_keys None-filled). No Python loop per hit: the
        distances are one frombuffer copied into place, the keys one list
        assignment (every row full, the common case) or one boolean-mask
        assignment (rows with fewer than k hits keep their None). out_pl:
        None, or q lists of k None to fill with the hits' payload dicts."""
        q = out_keys.shape[0]
        counts = reply.counts[:]  # a list: sum/max of a few ints beat numpy's
        keys = list(reply.keys)
        n = len(keys)
        if (reply.k != k or len(counts) != q or len(reply.distances) != 4 * q * k
                or n != sum(counts) or max(counts, default=0) > k
                or (out_pl is not None and len(reply.payloads) != n)):
            self._dim = None
            raise Internal(
                "Search reply (k={}, {} counts, {} keys, {} distance bytes, {} "
                "payloads) does not fit {} queries of k={}".format(
                    reply.k, len(counts), n, len(reply.distances),
                    len(reply.payloads), q, k))
        # One copy, which also makes the result writable (frombuffer of
        # bytes is read-only) and native-endian.
        out_dist[...] = np.frombuffer(reply.distances, dtype="<f4").reshape(q, k)
        if n == q * k:
            out_keys.reshape(-1)[:] = keys  # a view: out_keys is C-contiguous
        elif n:
            flat = np.empty(n, dtype=object)
            flat[:] = keys
            # A boolean mask assigns in row-major order, as keys are packed.
            hit = np.arange(k)[None, :] < np.array(counts)[:, None]
            out_keys[hit] = flat
        if n:
            # Sizes the next calls (_search_rows); ~1000 keys tell enough,
            # a longer key missed here is caught by _search's split.
            longest = max(map(len, keys[::max(1, n // 1024)]))
            if 4 * longest > self._key_bound:  # characters: <= 4 bytes each
                self._key_bound = min(_MAX_KEY_BYTES, 4 * longest)
        if out_pl is not None and n:
            pls = reply.payloads
            at = 0
            for i, c in enumerate(counts):
                out_pl[i][:c] = [payload_dict(pls[at + j]) for j in range(c)]
                at += c
            largest = max(p.ByteSize() for p in pls[::max(1, n // 1024)])
            self._payload_bound = max(self._payload_bound, 2 * largest)

    def _stream(self, arr, opts):
        """GetClosest over chunks of arr: yields (i, keys, distances,
        payloads) per query, the reply's repeated fields as they are (m <= k
        hits; payloads a list of m dicts, or empty without with_payload)."""
        q, dim = arr.shape
        k = opts.k
        rows = max(1, self._budget() // (4 * dim))
        for start in range(0, q, rows):
            chunk = arr[start:start + rows]
            req = pb.GetClosestRequest(queries=chunk.tobytes(), k=k,
                                       nprobe=opts.nprobe, dim=dim,
                                       collection=self._collection,
                                       with_payload=opts.with_payload)
            if opts.filter is not None:
                req.filter.CopyFrom(opts.filter)
            call = self._stub.GetClosest(req, timeout=self.timeout)
            try:
                yield from self._stream_chunk(call, start, len(chunk), k,
                                              opts.with_payload)
            finally:
                call.cancel()  # no-op once the call has ended

    def _stream_chunk(self, call, start, q, k, with_payload=False):
        seen = 0
        try:
            for r in call:
                i = r.query_index
                m = len(r.keys)
                if (i != seen or m > k or len(r.distances) != m
                        or (with_payload and len(r.payloads) != m)):
                    self._dim = None
                    raise Internal(
                        "reply {} for query {} with {} keys and {} distances does "
                        "not fit {} queries of k={}".format(
                            seen, i, m, len(r.distances), q, k))
                seen += 1
                pls = [payload_dict(p) for p in r.payloads] if with_payload else []
                yield start + i, r.keys, r.distances, pls
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if seen != q:
            raise Internal("{} replies for {} queries".format(seen, q))

    def _key_chunks(self, keys):
        """Splits keys into runs whose encoded size fits one message."""
        budget = self._budget()
        chunk, size = [], 0
        for key in keys:
            cost = len(key.encode("utf-8")) + 4
            if chunk and size + cost > budget:
                yield chunk
                chunk, size = [], 0
            chunk.append(key)
            size += cost
        if chunk:
            yield chunk


class VectorDB(Client):
    """The original npvDB entry point, kept for its users: `VectorDB(n_workers)`
    then `init(keys, data)` and `get_closest(data[:1], k_nearest=3)`.

    The database is now a server: this connects to `address` (default
    $NPVDB_ADDRESS, else 127.0.0.1:50051). n_workers becomes the number of
    shards (each of the original's workers held one k-means partition), and
    init() replaces an existing collection as the original's did. Everything
    else is Client's API; get_closest returns (keys, distances)."""

    def __init__(self, n_workers=None, address=None, **kwargs):
        super().__init__(address, **kwargs)
        self.n_workers = n_workers

    def init(self, keys, data, payloads=None, n_shards=None, replace=True, **kwargs):
        if n_shards is None and self.n_workers:
            n_shards = int(self.n_workers)
        return super().init(keys, data, payloads, n_shards=n_shards,
                            replace=replace, **kwargs)


# -- security --------------------------------------------------------------
def _pem(value, what):
    """PEM bytes from a path (str or os.PathLike) or the bytes themselves."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (str, os.PathLike)):
        with open(value, "rb") as f:  # OSError names the path
            return f.read()
    raise InvalidArgument("{} must be a file path or PEM bytes, got {}".format(
        what, type(value).__name__))


def _tls_credentials(tls_ca, tls_cert, tls_key):
    """grpc.ChannelCredentials for the tls_* arguments, None without any."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return None
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgument("tls_cert and tls_key go together (a client "
                              "certificate and its key)")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca, "tls_ca"),
        private_key=_pem(tls_key, "tls_key"),
        certificate_chain=_pem(tls_cert, "tls_cert"))


def _token_metadata(token, what="token"):
    """The ("authorization", "Bearer <token>") pair, None without a token.
    what: where the token came from, for the error (never the token)."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise InvalidArgument("{} must be a str, got {}".format(
            what, type(token).__name__))
    if not token or any(not "!" <= ch <= "~" for ch in token):
        raise InvalidArgument("{} must be printable ASCII without "
                              "whitespace (as in the server's token file)"
                              .format(what))
    return ("authorization", "Bearer " + token)


class _CallDetails(namedtuple("_CallDetails", "method timeout metadata "
                              "credentials wait_for_ready compression"),
                   grpc.ClientCallDetails):
    pass


class _Metadata(grpc.UnaryUnaryClientInterceptor,
                grpc.UnaryStreamClientInterceptor,
                grpc.StreamUnaryClientInterceptor,
                grpc.StreamStreamClientInterceptor):
    """Adds one metadata pair to every call of a channel."""

    def __init__(self, pair):
        self._pair = pair

    def _details(self, d):
        return _CallDetails(d.method, d.timeout,
                            list(d.metadata or ()) + [self._pair],
                            d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


# -- conversions -----------------------------------------------------------
def _keys(keys):
    """A list of str from one str, a sequence of str/bytes/int, or a numpy
    array of strings or integers."""
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    if isinstance(keys, np.ndarray):
        if keys.dtype.kind == "U":
            return keys.ravel().tolist()
        if keys.dtype.kind in "iu":
            return [str(k) for k in keys.ravel().tolist()]
        keys = keys.ravel().tolist()
    out = []
    for k in keys:
        if isinstance(k, str):
            out.append(str(k))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(str(int(k)))
        elif isinstance(k, bytes):
            try:
                out.append(k.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InvalidArgument("key {!r} is not UTF-8: {}".format(k, e)) from None
        else:
            raise InvalidArgument(
                "keys must be str or int, got {}".format(type(k).__name__))
    return out


def _matrix(data, what):
    """`data` as a C-contiguous little-endian float32 (n, dim) array; one
    1-D vector becomes one row. Copies only when the input is not already
    that."""
    try:
        arr = np.ascontiguousarray(data, dtype="<f4")
    except (TypeError, ValueError) as e:
        raise InvalidArgument("{}: not a float array: {}".format(what, e)) from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidArgument("{} must be 2-D (rows, dim), got shape {}".format(what, arr.shape))
    if arr.shape[1] == 0:
        raise InvalidArgument("{} has 0 dimensions".format(what))
    return arr


def _collection_name(name):
    """A collection name as sent: "" for "default" (what older servers and
    clients mean by no name), else checked as the contract's 1..255 bytes of
    [A-Za-z0-9_.-]."""
    if not isinstance(name, str):
        raise InvalidArgument("collection name must be a str, got {}".format(
            type(name).__name__))
    if name == DEFAULT_COLLECTION:
        return ""
    if not 1 <= len(name) <= 255 or not _NAME_CHARS.issuperset(name):
        raise InvalidArgument(
            "collection name {!r}: use 1..255 characters of A-Z a-z 0-9 _ . -".format(name))
    return name


def _insert_batches(n, batch_size, payloads, budget, per_row):
    """(start, end) row ranges of the insert messages: batch_size rows, and
    with payloads also at most `budget` bytes (a payload counts its encoded
    size); a row alone over the budget still gets its message."""
    if payloads is None:
        return [(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
    out, start, size = [], 0, 0
    for i, p in enumerate(payloads):
        row = per_row + p.ByteSize() + 4
        if i > start and (i - start >= batch_size or size + row > budget):
            out.append((start, i))
            start, size = i, 0
        size += row
    out.append((start, n))
    return out


def _check_rows(keys, n):
    if len(keys) != n:
        raise InvalidArgument("{} keys for {} rows".format(len(keys), n))


def _uint(value, what):
    if value is None:
        return 0
    value = int(value)
    if value < 0 or value >= 1 << 32:
        raise InvalidArgument("{} out of range: {}".format(what, value))
    return value


def _auto_shards(n):
    if n == 0:
        return 0
    return max(1, min(n, _MAX_SHARDS, int(round(4 * math.sqrt(n)))))


def _progress_bar(progress, total, batch_size):
    if progress is False or progress is None and (
            total <= batch_size or not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="npvdb insert", unit="vec", unit_scale=True)
