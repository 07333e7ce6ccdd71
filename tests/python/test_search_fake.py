"""The client's Search path against an in-process fake server.

No npvdb-server needed: a grpc servicer written here answers Info, Search and
GetClosest from a numpy brute force, and can be told to misbehave (refuse
replies over a size, leave rows short, answer UNIMPLEMENTED, send a malformed
reply), so the client's chunking, splitting, padding, decoding and fallback
are checked exactly, call by call.
"""
from concurrent import futures

import grpc
import numpy as np
import pytest

import npvdb
from npvdb import client as npclient
from npvdb.v1 import npvdb_pb2 as pb
from npvdb.v1 import npvdb_pb2_grpc as pb_grpc


class FakeDB(pb_grpc.VectorDBServicer):
    """An l2 collection searched exactly. `short` maps a query row (within
    its request) to how many hits it gets (fewer than k: padding)."""

    def __init__(self, keys, data):
        self.keys = np.array(keys, dtype=object)
        self.data = np.asarray(data, dtype=np.float32)
        self.search_calls = []       # queries per Search call (two may
                                     # run at once: any order)
        self.stream_calls = []       # queries per GetClosest call
        self.max_reply = None        # RESOURCE_EXHAUSTED past this size
        self.short = {}
        self.unimplemented = False
        self.corrupt = False

    def Info(self, request, context):
        return pb.InfoReply(initialized=True, dim=self.data.shape[1],
                            metric=pb.L2, vectors=len(self.data), trained=True)

    def _top(self, request, context):
        dim = self.data.shape[1]
        if request.dim and request.dim != dim:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "queries have dim {}, the collection {}".format(request.dim, dim))
        q = np.frombuffer(request.queries, dtype="<f4").reshape(-1, dim)
        d = ((q[:, None, :].astype(np.float64) - self.data[None]) ** 2).sum(-1)
        idx = np.argsort(d, axis=1, kind="stable")[:, :request.k]
        return idx, np.sqrt(np.take_along_axis(d, idx, axis=1)).astype(np.float32)

    def Search(self, request, context):
        if self.unimplemented:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no Search here")
        idx, dist = self._top(request, context)
        q, k = idx.shape
        counts = np.array([self.short.get(i, k) for i in range(q)])
        dist[np.arange(k)[None, :] >= counts[:, None]] = np.inf
        keys = [key for i in range(q) for key in self.keys[idx[i, :counts[i]]]]
        reply = pb.SearchReply(k=k, counts=counts.tolist(), keys=keys,
                               distances=dist.astype("<f4").tobytes())
        if self.corrupt:
            reply.counts[0] = k + 1
        if self.max_reply is not None and reply.ByteSize() > self.max_reply:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "reply of {} bytes".format(reply.ByteSize()))
        self.search_calls.append(q)
        return reply

    def GetClosest(self, request, context):
        idx, dist = self._top(request, context)
        self.stream_calls.append(len(idx))
        for i in range(len(idx)):
            m = self.short.get(i, idx.shape[1])
            yield pb.GetClosestReply(query_index=i, keys=list(self.keys[idx[i, :m]]),
                                     distances=dist[i, :m].tolist())


N, DIM = 300, 8


@pytest.fixture
def fake():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(N, DIM)).astype(np.float32)
    db = FakeDB(["key-{}".format(i) for i in range(N)], data)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_VectorDBServicer_to_server(db, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    db.address = "127.0.0.1:{}".format(port)
    yield db
    server.stop(None)


def reference(fake, queries, k):
    d = ((queries[:, None, :].astype(np.float64) - fake.data[None]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return fake.keys[idx], np.sqrt(np.take_along_axis(d, idx, axis=1))


def queries(n, seed=1):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_one_call_equals_brute_force(fake):
    qs = queries(50)
    with npvdb.connect(fake.address, timeout=30) as c:
        keys, dist = c.get_closest(qs, k_nearest=7)
    assert fake.search_calls == [50] and fake.stream_calls == []
    want_keys, want_dist = reference(fake, qs, 7)
    assert keys.shape == (50, 7) and keys.dtype == object
    assert dist.shape == (50, 7) and dist.dtype == np.float32
    assert (keys == want_keys).all()
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5)
    assert dist.flags.writeable and dist.flags.c_contiguous
    dist[0, 0] = -1  # the caller owns the result


def test_one_dimensional_query(fake):
    with npvdb.connect(fake.address) as c:
        keys, dist = c.get_closest(fake.data[5], k_nearest=3)
    assert keys.shape == (3,) and dist.shape == (3,) and keys[0] == "key-5"


def test_padding_of_short_rows(fake):
    fake.short = {0: 0, 2: 3, 4: 1}
    qs = queries(6)
    with npvdb.connect(fake.address) as c:
        keys, dist = c.get_closest(qs, k_nearest=5)
    want_keys, want_dist = reference(fake, qs, 5)
    for i in range(6):
        m = fake.short.get(i, 5)
        assert list(keys[i, :m]) == list(want_keys[i, :m])
        assert all(x is None for x in keys[i, m:])
        np.testing.assert_allclose(dist[i, :m], want_dist[i, :m], rtol=1e-5)
        assert np.isinf(dist[i, m:]).all() and (dist[i, m:] > 0).all()


def test_chunks_across_several_replies(fake):
    # 1 KiB messages: 32 queries of 8 float32 per request, and replies of
    # k=2 estimated at 4 * 2 + 6 + 2 * (64 + 3) = 148 bytes a query: 6 a call.
    qs = queries(100)
    with npvdb.connect(fake.address, max_message_bytes=1024) as c:
        assert c._search_rows(DIM, 2) == 6
        keys, dist = c.get_closest(qs, k_nearest=2)
    assert sorted(fake.search_calls) == [4] + [6] * 16
    want_keys, want_dist = reference(fake, qs, 2)
    assert (keys == want_keys).all()
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5)


def test_chunks_by_request_size(fake):
    with npvdb.connect(fake.address, max_message_bytes=24 * 1024) as c:
        # 8 KiB for queries of 8 floats in each message (the reply budget
        # would allow more for k=1): 256 queries a call
        c._key_bound = 1
        assert c._search_rows(DIM, 1) == 256
        keys, _ = c.get_closest(queries(600), k_nearest=1)
    assert sorted(fake.search_calls) == [88, 256, 256]


def test_chunks_by_reply_size(fake):
    # k=200 with keys assumed up to 64 bytes: 14206 bytes of reply per
    # query, so a 64 KiB budget takes 4 queries per call.
    with npvdb.connect(fake.address, max_message_bytes=80 * 1024) as c:
        assert c._search_rows(DIM, 200) == 4
        keys, _ = c.get_closest(queries(10), k_nearest=200)
    assert sorted(fake.search_calls) == [2, 4, 4]
    assert keys.shape == (10, 200) and (keys != None).all()  # noqa: E711


def test_resource_exhausted_splits_and_retries(fake):
    # The server refuses replies over 5000 bytes (19 queries of k=20 with
    # 7-character keys, 262 bytes each); the client's estimate lets all 100
    # through, so it must halve the chunk until the replies fit.
    fake.max_reply = 5000
    qs = queries(100)
    with npvdb.connect(fake.address) as c:
        keys, dist = c.get_closest(qs, k_nearest=20)
        assert c._key_bound > npclient._KEY_BOUND  # later chunks start smaller
    assert sum(fake.search_calls) == 100 and max(fake.search_calls) <= 19
    want_keys, want_dist = reference(fake, qs, 20)
    assert (keys == want_keys).all()
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5)


def test_resource_exhausted_for_one_query_is_raised(fake):
    fake.max_reply = 10  # no reply fits
    with npvdb.connect(fake.address) as c:
        with pytest.raises(npvdb.ResourceExhausted) as e:
            c.get_closest(queries(40), k_nearest=4)
    assert "reply of" in e.value.message
    assert fake.search_calls == []


def test_dim_is_sent(fake):
    stub = pb_grpc.VectorDBStub(grpc.insecure_channel(fake.address))
    with pytest.raises(grpc.RpcError) as e:
        stub.Search(pb.SearchRequest(queries=queries(2).tobytes(), k=1, dim=DIM * 2))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with npvdb.connect(fake.address) as c:  # the client always sends its width
        c._dim = DIM  # as if learnt before, while the server's dim is 2 * DIM
        fake.data = np.hstack([fake.data, fake.data])
        with pytest.raises(npvdb.InvalidArgument):
            c.get_closest(queries(3), k_nearest=1)


def test_malformed_reply_is_internal(fake):
    fake.corrupt = True
    with npvdb.connect(fake.address) as c:
        with pytest.raises(npvdb.Internal):
            c.get_closest(queries(3), k_nearest=2)


def test_stream_option_and_generator(fake):
    fake.short = {1: 2}
    qs = queries(5)
    with npvdb.connect(fake.address) as c:
        keys, dist = c.get_closest(qs, k_nearest=4, stream=True)
        rows = list(c.get_closest_stream(qs, k_nearest=4))
    assert fake.search_calls == [] and fake.stream_calls == [5, 5]
    want_keys, want_dist = reference(fake, qs, 4)
    assert [r[0] for r in rows] == list(range(5))
    for i, k_row, d_row in rows:
        assert list(k_row) == list(keys[i]) and (d_row == dist[i]).all()
        assert k_row.shape == (4,) and d_row.dtype == np.float32
    assert list(keys[1]) == list(want_keys[1, :2]) + [None, None]
    assert np.isinf(dist[1, 2:]).all()
    assert (keys[[0, 2, 3, 4]] == want_keys[[0, 2, 3, 4]]).all()


def test_generator_stopped_early(fake):
    with npvdb.connect(fake.address) as c:
        it = c.get_closest_stream(queries(20), k_nearest=1)
        first = next(it)
        it.close()  # cancels the call
        assert first[0] == 0
        assert c.get_closest(queries(2), k_nearest=1)[0].shape == (2, 1)


def test_server_without_search_falls_back_to_stream(fake):
    fake.unimplemented = True
    qs = queries(4)
    with npvdb.connect(fake.address) as c:
        keys, _ = c.get_closest(qs, k_nearest=3)
        assert not c._search_ok
        c.get_closest(qs, k_nearest=3)  # no second Search attempt
    assert fake.stream_calls == [4, 4]
    assert (keys == reference(fake, qs, 3)[0]).all()


def test_empty_and_bad_input(fake):
    with npvdb.connect(fake.address) as c:
        keys, dist = c.get_closest(np.zeros((0, DIM)), k_nearest=3)
        assert keys.shape == (0, 3) and dist.shape == (0, 3)
        assert list(c.get_closest_stream(np.zeros((0, DIM)))) == []
        with pytest.raises(npvdb.InvalidArgument):
            c.get_closest(np.zeros((2, DIM + 1)), k_nearest=3)  # known dim
        with pytest.raises(npvdb.InvalidArgument):
            c.get_closest(np.zeros((2, 2, DIM)), k_nearest=3)
        with pytest.raises(npvdb.InvalidArgument):
            c.get_closest([["a"] * DIM], k_nearest=3)
    assert fake.search_calls == []
