"""Every error class: raised for the right reason, with the server's message."""
import socket
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

import npvdb
from npvdb import errors
from npvdb.v1 import npvdb_pb2 as pb
from npvdb.v1 import npvdb_pb2_grpc as pb_grpc
from conftest import clustered, make_keys

DIM = 8


@pytest.fixture
def loaded(db):
    db.init(make_keys(100), clustered(100, DIM), n_shards=4, replace=True)
    return db


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def test_every_status_code_has_a_class():
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        e = errors.from_rpc_error(FakeRpcError(code, "why"))
        assert isinstance(e, npvdb.Error) and type(e) is not npvdb.Error
        assert e.code == code and e.message == "why"
        assert str(e) == "{}: why".format(code.name)
    assert issubclass(npvdb.InvalidArgument, ValueError)
    assert issubclass(npvdb.NotFound, LookupError)
    assert issubclass(npvdb.Unavailable, ConnectionError)
    assert issubclass(npvdb.DeadlineExceeded, TimeoutError)


def test_already_exists(loaded):
    with pytest.raises(npvdb.AlreadyExists) as e:
        loaded.init(["a"], np.ones((1, DIM)))
    assert e.value.message
    assert loaded.info().vectors == 100  # nothing replaced


def test_invalid_argument_from_server(loaded):
    q = clustered(1, DIM)
    with pytest.raises(npvdb.InvalidArgument) as e:
        loaded.get_closest(q, k_nearest=0)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.message
    with pytest.raises(npvdb.InvalidArgument):
        loaded.get_closest(q, k_nearest=16385)  # past the server's limit
    bad = np.ones((1, DIM))
    bad[0, 3] = np.nan
    with pytest.raises(npvdb.InvalidArgument):
        loaded.insert(["nan"], bad)
    with pytest.raises(npvdb.InvalidArgument):
        loaded.insert([""], np.ones((1, DIM)))
    with pytest.raises(npvdb.InvalidArgument):
        loaded.insert(["x" * 1025], np.ones((1, DIM)))
    with pytest.raises(npvdb.InvalidArgument):
        loaded.init(["a"], np.ones((1, 5000)), replace=True)  # dim > 4096
    assert loaded.info().vectors == 100  # refused batches left no trace


def test_invalid_argument_in_client(loaded):
    with pytest.raises(npvdb.InvalidArgument):
        loaded.init(["a"], np.ones((1, DIM)), metric="hamming", replace=True)
    with pytest.raises(npvdb.InvalidArgument):
        loaded.get_closest(np.ones(DIM), k_nearest=3, nprobe=-1)
    with pytest.raises(npvdb.InvalidArgument):
        loaded.get([b"\xff"])
    with pytest.raises(npvdb.InvalidArgument):
        loaded.get(["a"], missing="zero")


def test_not_found(loaded):
    with pytest.raises(npvdb.NotFound) as e:
        loaded.get(["k1", "absent"])
    assert "absent" in e.value.message


def test_not_found_before_init(fresh_server):
    # Before the first Init the collection "default" does not exist: the
    # client reads Info for the dim, finds none and lets the server answer,
    # so every call raises the server's NotFound; a snapshot of no
    # collection at all is an empty one.
    with npvdb.connect(fresh_server.address) as c:
        for stream in (False, True):
            with pytest.raises(npvdb.NotFound) as e:
                c.get_closest(np.ones(DIM), k_nearest=1, stream=stream)
            assert "collection 'default' not found" in e.value.message
        with pytest.raises(npvdb.NotFound) as e:
            c.get_closest(np.ones(DIM), k_nearest=1, collection="nope")
        assert "collection 'nope' not found" in e.value.message
        with pytest.raises(npvdb.NotFound) as e:
            c.get([])  # no call needed for no keys: the client says it
        assert "collection 'default' not found" in e.value.message
        with pytest.raises(npvdb.NotFound) as e:
            c.insert(["a"], np.ones((1, DIM)))        # found by the server
        assert "collection 'default' not found" in e.value.message
        with pytest.raises(grpc.RpcError) as raw:  # the server's own check
            list(c._stub.GetClosest(pb.GetClosestRequest(
                queries=np.ones(DIM, "<f4").tobytes(), k=1)))
        assert raw.value.code() == grpc.StatusCode.NOT_FOUND
        c.snapshot()


def test_resource_exhausted(server):
    # A message larger than the server accepts (64 MiB by default): the
    # client normally splits, so lift its own limit and send one training
    # sample that is too big.
    with npvdb.connect(server.address, max_message_bytes=1 << 30) as c:
        big = np.ones((17 * 1024, 1024), dtype=np.float32)  # 68 MiB
        with pytest.raises(npvdb.ResourceExhausted) as e:
            c.init(make_keys(len(big)), big, n_shards=16, train_size=len(big),
                   replace=True)
        assert e.value.message


def test_unavailable():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with npvdb.connect("127.0.0.1:{}".format(port), timeout=10) as c:
        with pytest.raises(npvdb.Unavailable) as e:
            c.info()
        assert e.value.message


class StalledDB(pb_grpc.VectorDBServicer):
    """Answers Info only when released (or after a minute): a server that
    cannot finish a call within any short deadline, by construction."""

    def __init__(self):
        self.release = threading.Event()

    def Info(self, request, context):
        self.release.wait(60)
        return pb.InfoResponse()


def test_deadline_exceeded():
    # A deadline the server cannot meet: it holds the call until released. (A
    # tiny deadline against the real server, as before, raised nothing once
    # under the sanitizer build: whether 1 us expires first is a race.)
    db = StalledDB()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_VectorDBServicer_to_server(db, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with npvdb.connect("127.0.0.1:{}".format(port), timeout=0.5) as c:
            t0 = time.monotonic()
            with pytest.raises(npvdb.DeadlineExceeded) as e:
                c.info()
            elapsed = time.monotonic() - t0
        assert 0.45 <= elapsed < 30, elapsed
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        db.release.set()
        server.stop(None)
