"""Collections, payloads, filters, Count and Scroll through a real server
(issue 9), with messages made by protoc and brute force computed here."""
import os
import signal

import grpc
import numpy as np
import pytest

from wire import (SERVER, Server, distances, floats, payload, pb, unpayload)

pytestmark = pytest.mark.skipif(not SERVER, reason="NPVDB_SERVER not set")
METRICS = ["L2", "INNER_PRODUCT", "COSINE"]


@pytest.fixture
def srv(tmp_path):
    s = Server(str(tmp_path))
    yield s
    s.stop()


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def init(s, name, dim, metric="L2", shards=0, train=None):
    req = pb().InitRequest(dim=dim, metric=getattr(pb(), metric),
                           n_shards=shards, collection=name)
    if train is not None:
        req.train_vectors = floats(train)
    return s.call("Init", req)


def insert(s, name, keys, rows, pls=None, per=None):
    msgs = []
    per = per or len(keys)
    for i in range(0, len(keys), per):
        m = pb().InsertRequest(keys=keys[i:i + per],
                               vectors=floats(rows[i:i + per]),
                               collection=name)
        if pls is not None:
            m.payloads.extend(payload(p) for p in pls[i:i + per])
        msgs.append(m)
    return s.insert(msgs)


def count(s, name, flt=None):
    req = pb().CountRequest(collection=name)
    if flt is not None:
        req.filter.CopyFrom(flt)
    return s.call("Count", req).count


# ---- collections ----

def test_collections(srv):
    P = pb()
    rng = np.random.default_rng(1)
    a, b = rng.random((20, 4)), rng.random((30, 8))
    init(srv, "a", 4, "L2")
    init(srv, "b.v2", 8, "INNER_PRODUCT")
    insert(srv, "a", ["a%d" % i for i in range(20)], a)
    insert(srv, "b.v2", ["b%d" % i for i in range(30)], b)
    got = srv.call("ListCollections", P.ListCollectionsRequest()).collections
    assert [(c.name, c.dim, c.metric, c.vectors) for c in got] == [
        ("a", 4, P.L2, 20), ("b.v2", 8, P.INNER_PRODUCT, 30)]
    # Each answers with its own data and dim.
    r = srv.call("Search", P.SearchRequest(queries=floats(a[3]), k=1,
                                           nprobe=64, collection="a"))
    assert list(r.keys) == ["a3"]
    r = srv.call("Search", P.SearchRequest(queries=floats(b[:2]), k=3,
                                           collection="b.v2"))
    assert list(r.counts) == [3, 3]
    code, msg = code_of(lambda: srv.call("Search", P.SearchRequest(
        queries=floats(a[0]), k=1, collection="b.v2")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    info = srv.call("Info", P.InfoRequest(collection="b.v2"))
    assert info.initialized and info.dim == 8 and info.vectors == 30
    assert info.collection == "b.v2"
    # An existing name without replace; a bad name.
    code, msg = code_of(lambda: init(srv, "a", 4))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "'a'" in msg
    code, msg = code_of(lambda: init(srv, "no/slash", 4))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: init(srv, "x" * 256, 4))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "256" in msg


def test_missing_collection_is_not_found(srv):
    P = pb()
    init(srv, "here", 2)
    q = floats([1, 2])
    calls = {
        "Search": lambda: srv.call("Search", P.SearchRequest(
            queries=q, k=1, collection="gone")),
        "GetClosest": lambda: srv.closest(P.GetClosestRequest(
            queries=q, k=1, collection="gone")),
        "Insert": lambda: srv.insert([P.InsertRequest(
            keys=["k"], vectors=q, collection="gone")]),
        "Delete": lambda: srv.call("Delete", P.DeleteRequest(
            keys=["k"], collection="gone")),
        "Get": lambda: srv.call("Get", P.GetRequest(keys=["k"],
                                                    collection="gone")),
        "Count": lambda: srv.call("Count", P.CountRequest(collection="gone")),
        "Scroll": lambda: srv.call("Scroll", P.ScrollRequest(
            collection="gone")),
        "DropCollection": lambda: srv.call("DropCollection",
                                           P.DropCollectionRequest(
                                               collection="gone")),
        "Snapshot": lambda: srv.call("Snapshot", P.SnapshotRequest(
            collection="gone")),
    }
    for name, fn in calls.items():
        code, msg = code_of(fn)
        assert code == grpc.StatusCode.NOT_FOUND, name
        assert "collection 'gone' not found" in msg, (name, msg)
    info = srv.call("Info", P.InfoRequest(collection="gone"))
    assert not info.initialized and info.collection == "gone"
    assert count(srv, "here") == 0  # still serving


def test_insert_stream_switching_collection(srv):
    P = pb()
    init(srv, "a", 2)
    init(srv, "b", 2)
    msgs = [P.InsertRequest(keys=["k0", "k1"], vectors=floats([[1, 0], [0, 1]]),
                            collection="a"),
            P.InsertRequest(keys=["k2"], vectors=floats([1, 1])),  # "a"
            P.InsertRequest(keys=["k3"], vectors=floats([2, 2]),
                            collection="b")]
    code, msg = code_of(lambda: srv.insert(msgs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Insert message 2" in msg and "'b'" in msg and "'a'" in msg
    assert "3 vectors were applied before it" in msg
    assert count(srv, "a") == 3 and count(srv, "b") == 0
    # A stream naming a missing collection first.
    code, msg = code_of(lambda: srv.insert([P.InsertRequest(
        keys=["z"], vectors=floats([1, 1]), collection="nope")]))
    assert code == grpc.StatusCode.NOT_FOUND and "'nope'" in msg


def test_drop_and_default(srv):
    P = pb()
    init(srv, "", 3)  # an old client: "default"
    insert(srv, "", ["x"], np.ones((1, 3)))
    assert count(srv, "default") == 1
    got = srv.call("Get", P.GetRequest(keys=["x"], collection="default"))
    assert list(got.keys) == ["x"]
    init(srv, "tmp", 3)
    insert(srv, "tmp", ["a", "b"], np.ones((2, 3)))
    r = srv.call("DropCollection", P.DropCollectionRequest(collection="tmp"))
    assert r.vectors == 2
    code, msg = code_of(lambda: count(srv, "tmp"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, msg = code_of(lambda: srv.call("DropCollection",
                                         P.DropCollectionRequest(
                                             collection="tmp")))
    assert code == grpc.StatusCode.NOT_FOUND
    names = [c.name for c in srv.call("ListCollections",
                                      P.ListCollectionsRequest()).collections]
    assert names == ["default"]
    # Drop "default" with "".
    srv.call("DropCollection", P.DropCollectionRequest())
    assert len(srv.call("ListCollections",
                        P.ListCollectionsRequest()).collections) == 0


# ---- payloads ----

def sample_payload(i):
    if i % 11 == 0:
        return {}
    p = {"tenant": i % 5, "price": float(i % 37) + 0.5,
         "tags": ["even"] if i % 2 == 0 else ["odd", "x"],
         "lang": ["en", "de", "fr"][i % 3]}
    if i % 4 == 0:
        p["flag"] = i % 8 == 0
    return p


def test_payloads(srv):
    P = pb()
    init(srv, "p", 2)
    keys = ["k%d" % i for i in range(50)]
    rows = np.arange(100, dtype=np.float32).reshape(50, 2)
    pls = [sample_payload(i) for i in range(50)]
    pls[1] = {"s": "a\x00b \u00e9", "neg": -(1 << 62), "big": 1e300,
              "empty": [], "t": True}
    insert(srv, "p", keys, rows, pls, per=16)
    got = srv.call("Get", P.GetRequest(keys=keys + ["absent"], collection="p",
                                       with_payload=True))
    assert list(got.keys) == keys and list(got.missing) == ["absent"]
    assert [unpayload(p) for p in got.payloads] == pls
    # Without with_payload: none.
    got = srv.call("Get", P.GetRequest(keys=keys[:3], collection="p"))
    assert len(got.payloads) == 0
    # An upsert without payload clears it.
    insert(srv, "p", ["k2"], rows[2:3])
    got = srv.call("Get", P.GetRequest(keys=["k2"], collection="p",
                                       with_payload=True))
    assert unpayload(got.payloads[0]) == {}


def test_bad_payloads(srv):
    P = pb()
    init(srv, "p", 1)

    def send(*pls, keys=None):
        keys = keys or ["k%d" % i for i in range(len(pls))]
        m = P.InsertRequest(keys=keys, vectors=floats(np.ones(len(keys))),
                            collection="p")
        m.payloads.extend(pls)
        return code_of(lambda: srv.insert([m]))

    unset = P.Payload(fields={"f": P.Value()})
    code, msg = send(payload({}), unset)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "payloads[1] field 'f': value has nothing set" in msg
    code, msg = send(payload({"d": float("nan")}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'d'" in msg
    code, msg = send(payload({"n": 1}), keys=["a", "b"])
    assert "payloads has 1 entries for 2 keys" in msg
    code, msg = send(payload({"x" * 256: 1}))
    assert "name of 256 bytes" in msg
    code, msg = send(payload({"s": "y" * 65536}))
    assert "string of 65536 bytes" in msg
    code, msg = send(payload({"l": ["a"] * 1025}))
    assert "list of 1025 strings" in msg
    code, msg = send(payload({"f%d" % i: i for i in range(65)}))
    assert "more than 64 fields" in msg
    assert count(srv, "p") == 0  # nothing of them was applied


# ---- filtered search ----

def filters():
    """(wire filter, predicate on a payload dict) pairs."""
    P = pb()
    C, M, R = P.Condition, P.Match, P.Range
    SL, IL = P.StringList, P.IntList
    return [
        (P.Filter(must=[C(key="tenant", match=M(integer=2))]),
         lambda p: p.get("tenant") == 2),
        (P.Filter(must=[C(key="price", range=R(gte=10, lt=20))]),
         lambda p: "price" in p and 10 <= p["price"] < 20),
        (P.Filter(should=[C(key="lang", match=M(keywords=SL(values=["en", "de"]))),
                          C(key="tags", match=M(keyword="x"))],
                  must_not=[C(key="tenant", match=M(integers=IL(values=[0, 1])))]),
         lambda p: bool(p) and (p["lang"] in ("en", "de") or "x" in p["tags"])
         and p["tenant"] not in (0, 1)),
        (P.Filter(must=[C(has_field="lang"),
                        C(filter=P.Filter(must_not=[C(key="tags",
                                                      match=M(keyword="odd"))]))]),
         lambda p: "lang" in p and "odd" not in p["tags"]),
        (P.Filter(must=[C(key="flag", match=M(boolean=True))]),
         lambda p: p.get("flag") is True),
        (P.Filter(must=[C(key="nobody", match=M(keyword="a"))]),
         lambda p: False),
        (P.Filter(), lambda p: True),
    ]


def brute(metric, data, mask, q, k):
    idx = np.flatnonzero(mask)
    d = distances(metric, q.astype(np.float64), data[idx].astype(np.float64))
    order = np.argsort(d, kind="stable")[:k]
    return idx[order], d[order]


@pytest.mark.parametrize("metric", METRICS)
def test_filtered_search_is_brute_force(srv, metric):
    P = pb()
    rng = np.random.default_rng(7)
    n, dim, k = 400, 8, 10
    data = rng.standard_normal((n, dim)).astype(np.float32)
    keys = ["k%d" % i for i in range(n)]
    pls = [sample_payload(i) for i in range(n)]
    init(srv, "f", dim, metric, shards=4, train=data[:200])
    insert(srv, "f", keys, data, pls, per=100)
    stored = data / np.linalg.norm(data, axis=1, keepdims=True) \
        if metric == "COSINE" else data
    queries = rng.standard_normal((3, dim)).astype(np.float32)
    for flt, pred in filters():
        mask = np.array([pred(p) for p in pls])
        assert count(srv, "f", flt) == mask.sum()
        req = P.SearchRequest(queries=floats(queries), k=k, nprobe=64,
                              collection="f", filter=flt, with_payload=True)
        r = srv.call("Search", req)
        closest = srv.closest(P.GetClosestRequest(
            queries=floats(queries), k=k, nprobe=64, collection="f",
            filter=flt, with_payload=True))
        dist = np.frombuffer(r.distances, "<f4").reshape(len(queries), k)
        at = 0
        for i, q in enumerate(queries):
            want, wd = brute(metric, stored, mask, q, k)
            c = r.counts[i]
            assert c == len(want)
            assert list(r.keys[at:at + c]) == [keys[j] for j in want]
            np.testing.assert_allclose(dist[i, :c], wd, rtol=1e-4, atol=1e-4)
            assert np.all(np.isinf(dist[i, c:]))
            assert [unpayload(p) for p in r.payloads[at:at + c]] == \
                [pls[j] for j in want]
            g = closest[i]
            assert g.query_index == i
            assert list(g.keys) == [keys[j] for j in want]
            assert [unpayload(p) for p in g.payloads] == [pls[j] for j in want]
            at += c
    # A malformed filter names its place; the server goes on.
    bad = P.Filter(must=[P.Condition(filter=P.Filter(should=[P.Condition()]))])
    code, msg = code_of(lambda: srv.call("Search", P.SearchRequest(
        queries=floats(queries), k=1, collection="f", filter=bad)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter.must[0].should[0]: condition has nothing set" in msg
    code, msg = code_of(lambda: srv.closest(P.GetClosestRequest(
        queries=floats(queries), k=1, collection="f", filter=bad)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: srv.call("Count", P.CountRequest(
        collection="f", filter=P.Filter(must=[P.Condition(
            key="price", range=P.Range())]))))
    assert "filter.must[0]: range has no bound" in msg
    assert count(srv, "f") == n


# ---- scroll ----

def test_scroll(srv):
    P = pb()
    rng = np.random.default_rng(3)
    n, dim = 300, 4
    data = rng.standard_normal((n, dim)).astype(np.float32)
    keys = ["s%d" % i for i in range(n)]
    pls = [sample_payload(i) for i in range(n)]
    init(srv, "s", dim, "L2")
    insert(srv, "s", keys, data, pls, per=64)

    def scroll_all(flt=None, limit=7):
        seen, cursor = [], b""
        for _ in range(10 * n):
            req = P.ScrollRequest(collection="s", limit=limit, cursor=cursor,
                                  with_vectors=True, with_payload=True)
            if flt is not None:
                req.filter.CopyFrom(flt)
            r = srv.call("Scroll", req)
            assert len(r.keys) <= limit
            vec = np.frombuffer(r.vectors, "<f4").reshape(len(r.keys), dim)
            assert len(r.payloads) == len(r.keys)
            for key, v, p in zip(r.keys, vec, r.payloads):
                i = int(key[1:])
                np.testing.assert_array_equal(v, data[i])
                assert unpayload(p) == pls[i]
                seen.append(key)
            if not r.next_cursor:
                return seen
            cursor = r.next_cursor
        raise AssertionError("scroll did not end")

    seen = scroll_all()
    assert sorted(seen) == sorted(keys) and len(seen) == n
    flt, pred = filters()[0]
    seen = scroll_all(flt, limit=5)
    assert sorted(seen) == sorted(k for k, p in zip(keys, pls) if pred(p))
    # Default limit (256) and no vectors: keys only.
    r = srv.call("Scroll", P.ScrollRequest(collection="s"))
    assert len(r.keys) == 256 and r.next_cursor
    assert not r.vectors and len(r.payloads) == 0
    code, msg = code_of(lambda: srv.call("Scroll", P.ScrollRequest(
        collection="s", cursor=b"not a cursor")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cursor" in msg
    r = srv.call("Scroll", P.ScrollRequest(collection="s", limit=3))
    bad = bytearray(r.next_cursor)
    bad[5] ^= 1
    code, msg = code_of(lambda: srv.call("Scroll", P.ScrollRequest(
        collection="s", cursor=bytes(bad))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: srv.call("Scroll", P.ScrollRequest(
        collection="s", limit=16385)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "16384" in msg


# ---- restart ----

def test_restart_with_collections_and_payloads(tmp_path):
    P = pb()
    s = Server(str(tmp_path))
    try:
        rng = np.random.default_rng(5)
        init(s, "one", 3, "L2")
        init(s, "two", 5, "COSINE")
        init(s, "gone", 2)
        a = rng.random((40, 3)).astype(np.float32)
        b = rng.random((20, 5)).astype(np.float32)
        insert(s, "one", ["o%d" % i for i in range(40)], a,
               [sample_payload(i) for i in range(40)], per=10)
        insert(s, "gone", ["g"], np.ones((1, 2)))
        s.call("Snapshot", P.SnapshotRequest())
        # After the snapshot: log only.
        insert(s, "two", ["t%d" % i for i in range(20)], b,
               [sample_payload(i + 1) for i in range(20)])
        s.call("Delete", P.DeleteRequest(keys=["o0", "o1"], collection="one"))
        insert(s, "one", ["o2"], a[2:3])  # payload cleared
        s.call("DropCollection", P.DropCollectionRequest(collection="gone"))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            s.stop(sig)
            s.start()
            got = s.call("ListCollections", P.ListCollectionsRequest())
            assert [(c.name, c.vectors) for c in got.collections] == [
                ("one", 38), ("two", 20)]
            r = s.call("Get", P.GetRequest(keys=["o%d" % i for i in range(40)],
                                           collection="one", with_payload=True))
            assert list(r.missing) == ["o0", "o1"]
            np.testing.assert_array_equal(
                np.frombuffer(r.vectors, "<f4").reshape(38, 3), a[2:])
            want = [{}] + [sample_payload(i) for i in range(3, 40)]
            assert [unpayload(p) for p in r.payloads] == want
            r = s.call("Get", P.GetRequest(keys=["t7"], collection="two",
                                           with_payload=True))
            assert unpayload(r.payloads[0]) == sample_payload(8)
            flt, pred = filters()[0]
            assert count(s, "one", flt) == sum(
                pred(p) for p in want)
    finally:
        s.stop()


# ---- many collections ----

def test_thousand_collections(tmp_path):
    """1,000 small collections: create, write, restart, search each; the
    fixed cost of an empty collection stays a few KiB of memory and no
    thread (a per-collection pool or a 1 MiB buffer each would fail)."""
    P = pb()
    n = int(os.environ.get("NPVDB_IT_COLLECTIONS", "1000"))
    s = Server(str(tmp_path), sync="none")
    try:
        init(s, "warm", 4)  # the first collection's one-off costs
        rss0, data0 = s.status("VmRSS"), s.status("VmData")
        threads0 = s.status("Threads")
        for i in range(n):
            init(s, "c%04d" % i, 4, "L2")
        rss, data = s.status("VmRSS"), s.status("VmData")
        per_rss = (rss - rss0) * 1024 / n
        per_data = (data - data0) * 1024 / n
        print("per empty collection: %.0f bytes RSS, %.0f bytes heap"
              % (per_rss, per_data))
        assert s.status("Threads") - threads0 <= 4
        # Under AddressSanitizer redzones and quarantine own the memory.
        if not s.sanitized():
            assert per_rss < 8 * 1024, "%.0f B of RSS per collection" % per_rss
            assert per_data < 64 * 1024, "%.0f B of heap per collection" % \
                per_data
        # Small values: L2 through BLAS (|q|^2 + |x|^2 - 2 q.x) loses the
        # difference of big ones to cancellation.
        rows = np.random.default_rng(9).random((n, 3, 4)).astype(np.float32)
        for i in range(n):
            insert(s, "c%04d" % i, ["a", "b", "c"], rows[i],
                   [{"i": i}, {}, {"i": -i}])
        s.restart()
        assert len(s.call("ListCollections",
                          P.ListCollectionsRequest()).collections) == n + 1
        for i in range(n):
            r = s.call("Search", P.SearchRequest(
                queries=floats(rows[i, 1]), k=1, nprobe=8,
                collection="c%04d" % i, with_payload=True))
            assert list(r.keys) == ["b"], i
        r = s.call("Get", P.GetRequest(keys=["c"], collection="c%04d" % (n - 1),
                                       with_payload=True))
        assert unpayload(r.payloads[0]) == {"i": -(n - 1)}
    finally:
        s.stop()


# ---- fewer than k ----


def test_fewer_than_k(srv):
    """The README example on a 5-vector collection with k 10 gives the 5
    there are; an empty collection gives empty rows; a filter passing 2
    gives 2. Rows are padded with +inf in Search."""
    P = pb()
    rng = np.random.default_rng(11)
    data = rng.random((5, 4)).astype(np.float32)
    keys = ["v%d" % i for i in range(5)]
    init(srv, "five", 4, "L2")
    init(srv, "empty", 4, "L2")
    insert(srv, "five", keys, data,
           [{"t": 1}, {"t": 2}, {"t": 1}, {}, {"t": 3}])
    q = rng.random((2, 4)).astype(np.float32)
    # A filter passing 2 of 5 with k 3 (k within the collection): short.
    flt = P.Filter(must=[P.Condition(key="t", match=P.Match(integer=1))])
    r = srv.call("Search", P.SearchRequest(queries=floats(q), k=3,
                                           collection="five", filter=flt))
    assert list(r.counts) == [2, 2] and set(r.keys) == {"v0", "v2"}
    assert np.all(np.isinf(np.frombuffer(r.distances, "<f4")
                           .reshape(2, 3)[:, 2]))
    g = srv.closest(P.GetClosestRequest(queries=floats(q), k=3,
                                        collection="five", filter=flt))
    assert [len(x.keys) for x in g] == [2, 2]
    # k past the collection.
    r = (srv.call("Search", P.SearchRequest(
        queries=floats(q), k=10, collection="five")))
    assert list(r.counts) == [5, 5] and r.k == 10
    dist = np.frombuffer(r.distances, "<f4").reshape(2, 10)
    for i in range(2):
        want = np.argsort(distances("L2", q[i], data))
        assert list(r.keys[5 * i:5 * i + 5]) == [keys[j] for j in want]
        assert np.all(np.isfinite(dist[i, :5]))
        assert np.all(np.isinf(dist[i, 5:]))
    g = (srv.closest(P.GetClosestRequest(
        queries=floats(q), k=10, collection="five")))
    assert [len(x.keys) for x in g] == [5, 5]
    r = (srv.call("Search", P.SearchRequest(
        queries=floats(q), k=3, collection="empty")))
    assert list(r.counts) == [0, 0] and len(r.keys) == 0
    assert np.all(np.isinf(np.frombuffer(r.distances, "<f4")))
    g = (srv.closest(P.GetClosestRequest(
        queries=floats(q), k=3, collection="empty")))
    assert [len(x.keys) for x in g] == [0, 0]
    assert [x.query_index for x in g] == [0, 1]
    assert count(srv, "five") == 5  # still serving, nothing lost
