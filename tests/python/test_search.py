"""get_closest over the unary Search RPC against a real server, its chunking
and splitting, the server's own checks, and the streaming GetClosest variant
beside it."""
import grpc
import numpy as np
import pytest

import npvdb
from npvdb.v1 import npvdb_pb2 as pb
from conftest import clustered, make_keys, start_server, stop_checked
from test_client import brute_force


class CountingStub:
    """Wraps a client's stub and counts the calls of each RPC."""

    def __init__(self, client):
        self._stub = client._stub
        self.calls = {}
        client._stub = self

    def __getattr__(self, name):
        self.calls[name] = self.calls.get(name, 0)
        method = getattr(self._stub, name)
        counts = self.calls

        class Counted:
            def __call__(self, *a, **kw):
                counts[name] += 1
                return method(*a, **kw)

            def future(self, *a, **kw):
                counts[name] += 1
                counts["futures"] = counts.get("futures", 0) + 1
                return method.future(*a, **kw)

        return Counted()


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_search_equals_brute_force(db, metric):
    n, dim, k = 3000, 24, 10
    keys, data = make_keys(n), clustered(n, dim, seed=12)
    db.init(keys, data, n_shards=16, metric=metric, replace=True)
    queries = clustered(300, dim, seed=13)
    calls = CountingStub(db).calls
    got_keys, got_dist = db.get_closest(queries, k_nearest=k, nprobe=1 << 16)
    assert calls == {"Search": 1}  # a lone call blocks: no future, no thread
    assert got_keys.shape == (300, k) and got_keys.dtype == object
    assert got_dist.shape == (300, k) and got_dist.dtype == np.float32
    idx, ref = brute_force(data, queries, k, metric)
    want = np.array(keys, dtype=object)[idx]
    assert (got_keys == want).mean() > 0.99  # float32 near-ties may swap
    np.testing.assert_allclose(got_dist, ref, rtol=1e-4, atol=1e-4)
    # the streaming GetClosest gives the same answer
    s_keys, s_dist = db.get_closest(queries, k_nearest=k, nprobe=1 << 16, stream=True)
    assert calls == {"Search": 1, "GetClosest": 1}
    assert (s_keys == got_keys).all()
    np.testing.assert_array_equal(s_dist, got_dist)


def test_search_padding(db):
    # Two far clusters, one shard each: probing only the small one finds 3.
    small = np.full((3, 4), 100.0) + np.arange(12).reshape(3, 4) * 0.01
    big = np.full((40, 4), -100.0) + np.arange(160).reshape(40, 4) * 0.01
    db.init(make_keys(43), np.vstack([small, big]), metric="l2", n_shards=2,
            replace=True)
    queries = np.array([[100.0] * 4, [-100.0] * 4, [100.0] * 4])
    for stream in (False, True):
        keys, dist = db.get_closest(queries, k_nearest=10, nprobe=1, stream=stream)
        assert keys.shape == (3, 10) and dist.shape == (3, 10)
        for row in (0, 2):
            assert set(keys[row, :3]) == {"k0", "k1", "k2"}
            assert all(k is None for k in keys[row, 3:])
            assert np.isfinite(dist[row, :3]).all()
            assert np.isposinf(dist[row, 3:]).all()
        assert all(k is not None for k in keys[1]) and np.isfinite(dist[1]).all()
        assert np.all(np.diff(dist[:, :3], axis=1) >= 0)


def test_search_chunks_across_replies(server):
    n, dim, k = 2000, 16, 5
    data = clustered(n, dim, seed=14)
    queries = clustered(700, dim, seed=15)
    with npvdb.connect(server.address, timeout=60) as big:
        big.init(make_keys(n), data, n_shards=8, metric="l2", replace=True)
        want_keys, want_dist = big.get_closest(queries, k_nearest=k, nprobe=8)
    # 4 KiB messages: the client estimates 5 * 4 + 6 + 5 * (64 + 3) = 361
    # reply bytes a query, so 11 queries per Search call.
    with npvdb.connect(server.address, timeout=60, max_message_bytes=20 * 1024) as small:
        assert small._search_rows(dim, k) == 11
        calls = CountingStub(small).calls
        keys, dist = small.get_closest(queries, k_nearest=k, nprobe=8)
        assert calls["Search"] == 64  # ceil(700 / 11)
        assert calls["futures"] == 64  # two in flight at a time
    assert (keys == want_keys).all()
    np.testing.assert_array_equal(dist, want_dist)
    assert list(keys[:, 0]) == list(np.array(make_keys(n), dtype=object)[
        brute_force(data, queries, 1, "l2")[0][:, 0]])


def test_search_splits_when_the_server_refuses(tmp_path):
    # A server with 1 MiB messages and 1000-byte keys: a reply of k=100 is
    # ~100 KB a query. A client that never saw these keys estimates 64-byte
    # keys (~145 queries a call); the server answers RESOURCE_EXHAUSTED and
    # the client halves the chunk until replies fit.
    srv = start_server(tmp_path, ["--max-message-mb", "1"])
    try:
        n, dim, k = 300, 8, 100
        keys = ["{:04d}".format(i) + "x" * 996 for i in range(n)]
        data = clustered(n, dim, seed=16)
        with npvdb.connect(srv.address, timeout=60, max_message_bytes=1 << 20) as c:
            c.init(keys, data, n_shards=1, metric="l2", replace=True)
        queries = clustered(200, dim, seed=17)
        with npvdb.connect(srv.address, timeout=60, max_message_bytes=1 << 20) as c:
            assert c._search_rows(dim, k) > 100
            calls = CountingStub(c).calls
            got, dist = c.get_closest(queries, k_nearest=k)
            assert calls["Search"] > 2
            first_calls = calls["Search"]
            c.get_closest(queries, k_nearest=k)  # learnt: no refusals now
            assert calls["Search"] - first_calls <= 200 // 9 + 1
        idx, ref = brute_force(data, queries, k, "l2")
        want = np.array(keys, dtype=object)[idx]
        assert (got == want).mean() > 0.99
        np.testing.assert_allclose(dist, ref, rtol=1e-4, atol=1e-4)
    finally:
        stop_checked(srv)


def test_search_dim_checked_by_server(db):
    dim = 16
    db.init(make_keys(100), clustered(100, dim), n_shards=2, replace=True)
    two_of_8 = np.ones((2, 8), dtype="<f4").tobytes()  # the bytes of one 16-d query
    for rpc, req in (("Search", pb.SearchRequest), ("GetClosest", pb.GetClosestRequest)):
        with pytest.raises(grpc.RpcError) as e:
            r = getattr(db._stub, rpc)(req(queries=two_of_8, k=1, dim=8))
            list(r) if rpc == "GetClosest" else r
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "8" in e.value.details() and "16" in e.value.details()
    # dim=0 is unchecked: the bytes are read as one 16-d query
    reply = db._stub.Search(pb.SearchRequest(queries=two_of_8, k=3, dim=0))
    assert list(reply.counts) == [3] and reply.k == 3
    assert len(reply.distances) == 3 * 4
    # the client's cached dim is stale: the server's check still answers
    db._dim = 8
    with pytest.raises(npvdb.InvalidArgument):
        db.get_closest(np.ones((2, 8)), k_nearest=1)


def test_search_errors_from_server(fresh_server, db):
    with npvdb.connect(fresh_server.address) as c:
        with pytest.raises(grpc.RpcError) as e:
            c._stub.Search(pb.SearchRequest(queries=np.ones(4, "<f4").tobytes(),
                                            k=1, dim=4))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    db.init(make_keys(10), clustered(10, 4), n_shards=1, replace=True)
    with pytest.raises(npvdb.InvalidArgument):
        db.get_closest(np.ones(4), k_nearest=0)
    keys, dist = db.get_closest(np.ones(4), k_nearest=11)  # more than stored
    assert sorted(keys[:10]) == sorted(make_keys(10)) and keys[10] is None
    assert np.isinf(dist[10])
    assert db._search_ok  # errors are not taken for a missing Search


def test_get_closest_stream_generator(db):
    n, dim = 500, 8
    data = clustered(n, dim, seed=18)
    db.init(make_keys(n), data, n_shards=4, metric="l2", replace=True)
    queries = data[:40]
    keys, dist = db.get_closest(queries, k_nearest=3, nprobe=4)
    seen = []
    for i, k_row, d_row in db.get_closest_stream(queries, k_nearest=3, nprobe=4):
        assert k_row.shape == (3,) and d_row.shape == (3,) and d_row.dtype == np.float32
        assert list(k_row) == list(keys[i])
        np.testing.assert_array_equal(d_row, dist[i])
        seen.append(i)
    assert seen == list(range(40))
    it = db.get_closest_stream(queries, k_nearest=3, nprobe=4)
    assert next(it)[1][0] == "k0"
    it.close()  # cancels the call; the connection stays usable
    assert db.get_closest(data[7], k_nearest=1, nprobe=4)[0][0] == "k7"
    one_k, one_d = db.get_closest(data[7], k_nearest=2, nprobe=4, stream=True)
    assert one_k.shape == (2,) and one_k[0] == "k7"
