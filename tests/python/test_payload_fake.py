"""Collections, payloads and filters in the client, without npvdb-server.

The conversions (payload dicts -> Payload, Qdrant-shaped filter dicts ->
Filter) are checked message by message, and a fake servicer written here
records every request and answers from a dict of collections, so what the
client sends (collection names, payloads per message, filters) and how it
decodes what comes back (payloads in Search and Get replies, Scroll pages,
padding of short rows) is checked exactly.
"""
from concurrent import futures

import grpc
import numpy as np
import pytest

import npvdb
from npvdb.payload import filter_pb, payload_dict, payload_pb
from npvdb.v1 import npvdb_pb2 as pb
from npvdb.v1 import npvdb_pb2_grpc as pb_grpc

DIM = 4


# -- conversions --------------------------------------------------------------
def test_payload_types():
    p = payload_pb({"s": "x", "i": 42, "f": 2.5, "b": True, "l": ["a", "b"],
                    "ni": np.int32(-7), "nf": np.float32(0.5), "nb": np.bool_(False),
                    "empty": [], "big": (1 << 63) - 1})
    f = p.fields
    assert f["s"].string_value == "x"
    assert f["i"].WhichOneof("kind") == "int_value" and f["i"].int_value == 42
    assert f["f"].WhichOneof("kind") == "double_value" and f["f"].double_value == 2.5
    assert f["b"].WhichOneof("kind") == "bool_value" and f["b"].bool_value is True
    assert list(f["l"].strings_value.values) == ["a", "b"]
    assert f["ni"].int_value == -7 and f["nf"].double_value == 0.5
    assert f["nb"].WhichOneof("kind") == "bool_value"
    assert f["empty"].WhichOneof("kind") == "strings_value"
    assert f["big"].int_value == (1 << 63) - 1
    back = payload_dict(p)
    assert back["b"] is True and back["i"] == 42 and isinstance(back["i"], int)
    assert back["l"] == ["a", "b"] and back["empty"] == [] and back["s"] == "x"
    assert payload_dict(payload_pb(None)) == {}


@pytest.mark.parametrize("value, exc, words", [
    (None, TypeError, "NoneType is not a payload type"),
    ({"a": 1}, TypeError, "dict is not a payload type"),
    ([1, 2], TypeError, "[0]: a list holds only str"),
    (["a", 3], TypeError, "[1]: a list holds only str"),
    (float("nan"), ValueError, "nan is not finite"),
    (float("inf"), ValueError, "inf is not finite"),
    (1 << 63, ValueError, "does not fit int64"),
    (b"bytes", TypeError, "bytes is not a payload type"),
    ("x" * 65536, ValueError, "65536 bytes, at most 65535"),
])
def test_payload_refused_with_index_and_field(value, exc, words):
    with npvdb.connect("127.0.0.1:1") as c:  # nothing is sent: no server needed
        with pytest.raises(exc) as e:
            c.insert(["a", "b"], np.ones((2, DIM)), [None, {"ok": 1, "bad": value}])
    assert isinstance(e.value, npvdb.InvalidArgument)
    assert "payloads[1]['bad']" in str(e.value) and words in str(e.value)


def test_payload_shape_errors():
    with pytest.raises(TypeError, match=r"payloads\[0\]: a payload is a dict"):
        payload_pb(["x"], "payloads[0]")
    with pytest.raises(ValueError, match="empty field name"):
        payload_pb({"": 1})
    with pytest.raises(TypeError, match="field name 3 is not a str"):
        payload_pb({3: 1})
    with pytest.raises(ValueError, match="65 fields, at most 64"):
        payload_pb({"f%d" % i: i for i in range(65)})
    with npvdb.connect("127.0.0.1:1") as c:
        with pytest.raises(ValueError, match="1 payloads for 2 keys"):
            c.insert(["a", "b"], np.ones((2, DIM)), [{"x": 1}])
        with pytest.raises(TypeError, match="payloads must be a list of dicts"):
            c.insert(["a"], np.ones((1, DIM)), {"x": 1})


def test_filter_conversion():
    f = filter_pb({
        "must": [{"key": "tenant", "match": {"value": 42}},
                 {"key": "lang", "match": {"value": "en"}},
                 {"key": "ok", "match": {"value": True}},
                 {"key": "price", "range": {"gte": 10, "lt": 20.5}},
                 {"should": [{"has_field": "x"}], "must_not": [{"has_field": "y"}]}],
        "must_not": [{"key": "tag", "match": {"any": ["spam", "old"]}}],
        "should": [{"key": "n", "match": {"any": [1, np.int64(2)]}}]})
    m = f.must
    assert m[0].key == "tenant" and m[0].match.WhichOneof("kind") == "integer"
    assert m[0].match.integer == 42
    assert m[1].match.WhichOneof("kind") == "keyword" and m[1].match.keyword == "en"
    assert m[2].match.WhichOneof("kind") == "boolean" and m[2].match.boolean
    r = m[3].range
    assert r.WhichOneof("lower") == "gte" and r.gte == 10
    assert r.WhichOneof("upper") == "lt" and r.lt == 20.5
    assert m[4].WhichOneof("condition") == "filter"
    assert m[4].filter.should[0].has_field == "x"
    assert m[4].filter.must_not[0].has_field == "y"
    assert list(f.must_not[0].match.keywords.values) == ["spam", "old"]
    assert list(f.should[0].match.integers.values) == [1, 2]
    # an empty nested filter is still a (pass-everything) filter condition
    assert filter_pb({"must": [{"must": []}]}).must[0].WhichOneof("condition") == "filter"
    assert filter_pb(None) is None
    assert filter_pb({}).ByteSize() == 0


@pytest.mark.parametrize("rng, lower, upper", [
    ({"gt": 5, "gte": 5}, ("gt", 5), None),
    ({"gt": 3, "gte": 5}, ("gte", 5), None),
    ({"gt": 7, "gte": 5}, ("gt", 7), None),
    ({"lt": 5, "lte": 5}, None, ("lt", 5)),
    ({"lt": 9, "lte": 5}, None, ("lte", 5)),
    ({"lte": 1.5}, None, ("lte", 1.5)),
])
def test_range_keeps_the_tighter_bound(rng, lower, upper):
    r = filter_pb({"must": [{"key": "p", "range": rng}]}).must[0].range
    for side, want in (("lower", lower), ("upper", upper)):
        got = r.WhichOneof(side)
        assert got == (want and want[0])
        if want:
            assert getattr(r, got) == want[1]


@pytest.mark.parametrize("flt, path", [
    ({"must": [{"key": "t", "equals": 3}]}, "filter.must[0]: unknown operator 'equals'"),
    ({"mustnt": []}, "filter: unknown clause 'mustnt'"),
    ({"must": [{}]}, "filter.must[0]: empty condition"),
    ({"must": [{"key": "t"}]}, "filter.must[0]: one of match or range, got none"),
    ({"must": 3}, "filter.must: a list of conditions"),
    ({"should": [{"key": "a", "match": {"value": 1}}, 5]}, "filter.should[1]: a condition is a dict"),
    ({"must": [{"match": {"value": 1}}]}, "filter.must[0].key: a non-empty field name"),
    ({"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]},
     "filter.must[0]: one of match or range, got match and range"),
    ({"must": [{"key": "a", "match": {"text": "x"}}]}, "filter.must[0].match: unknown operator 'text'"),
    ({"must": [{"key": "a", "match": {"value": 1.5}}]}, "filter.must[0].match.value: match a str, int or bool"),
    ({"must": [{"key": "a", "match": {"value": None}}]}, "filter.must[0].match.value"),
    ({"must": [{"key": "a", "match": {"any": []}}]}, "filter.must[0].match.any: a non-empty list"),
    ({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}, "filter.must[0].match.any: all str or all int"),
    ({"must": [{"key": "a", "match": {"any": [True]}}]}, "filter.must[0].match.any: all str or all int"),
    ({"must": [{"key": "a", "match": {"value": 1, "any": [1]}}]}, "filter.must[0].match: one of"),
    ({"must": [{"key": "a", "range": {}}]}, "filter.must[0].range: a dict of gt"),
    ({"must": [{"key": "a", "range": {"ge": 1}}]}, "filter.must[0].range: unknown operator 'ge'"),
    ({"must": [{"key": "a", "range": {"gt": "1"}}]}, "filter.must[0].range.gt: a number"),
    ({"must": [{"key": "a", "range": {"gt": True}}]}, "filter.must[0].range.gt: a number"),
    ({"must": [{"key": "a", "range": {"lt": float("nan")}}]}, "filter.must[0].range.lt: nan is not finite"),
    ({"must": [{"has_field": ""}]}, "filter.must[0].has_field: a non-empty field name"),
    ({"must": [{"has_field": "a", "key": "b"}]}, "filter.must[0]: has_field stands alone"),
    ({"must": [{"must": [{"key": "a", "oops": 1}]}]}, "filter.must[0].must[0]: unknown operator 'oops'"),
    ({"must": [{"must": [], "key": "a"}]}, "filter.must[0]: a nested filter holds only"),
    ([1], "filter: a filter is a dict"),
])
def test_malformed_filter_names_its_path(flt, path):
    with pytest.raises(ValueError) as e:
        filter_pb(flt)
    assert isinstance(e.value, npvdb.InvalidArgument)
    assert path in e.value.message


# -- a fake server ------------------------------------------------------------
class Coll:
    def __init__(self, dim):
        self.dim = dim
        self.keys, self.rows, self.payloads = [], [], []


class FakeCollections(pb_grpc.VectorDBServicer):
    """l2 collections by name, searched exactly (filters are recorded, not
    applied: the real server's tests check filtering)."""

    def __init__(self):
        self.colls = {}
        self.requests = []  # (method, request) in arrival order

    def _get(self, name, context):
        name = name or "default"
        if name not in self.colls:
            context.abort(grpc.StatusCode.NOT_FOUND, "no collection '{}'".format(name))
        return self.colls[name]

    def Init(self, request, context):
        self.requests.append(("Init", request))
        self.colls[request.collection or "default"] = Coll(request.dim)
        return pb.InitReply()

    def Insert(self, request_iterator, context):
        n = msgs = 0
        name = None
        for r in request_iterator:
            self.requests.append(("Insert", r))
            name = name if name is not None else r.collection
            c = self._get(name, context)
            assert not r.payloads or len(r.payloads) == len(r.keys)
            rows = np.frombuffer(r.vectors, "<f4").reshape(len(r.keys), c.dim)
            for i, key in enumerate(r.keys):
                c.keys.append(key)
                c.rows.append(rows[i])
                c.payloads.append(r.payloads[i] if r.payloads else pb.Payload())
            n += len(r.keys)
            msgs += 1
        return pb.InsertReply(inserted=n, messages=msgs)

    def Info(self, request, context):
        self.requests.append(("Info", request))
        c = self._get(request.collection, context)
        return pb.InfoReply(initialized=True, dim=c.dim, metric=pb.L2,
                            vectors=len(c.keys), collection=request.collection or "default")

    def Search(self, request, context):
        self.requests.append(("Search", request))
        c = self._get(request.collection, context)
        q = np.frombuffer(request.queries, "<f4").reshape(-1, c.dim)
        k = request.k
        data = np.array(c.rows).reshape(-1, c.dim)
        counts, keys, pls = [], [], []
        dist = np.full((len(q), k), np.inf, dtype="<f4")
        for i, row in enumerate(q):
            d = np.sqrt(((data - row) ** 2).sum(-1)) if len(data) else np.zeros(0)
            idx = np.argsort(d, kind="stable")[:k]
            counts.append(len(idx))
            keys += [c.keys[j] for j in idx]
            pls += [c.payloads[j] for j in idx]
            dist[i, :len(idx)] = d[idx]
        reply = pb.SearchReply(k=k, counts=counts, keys=keys, distances=dist.tobytes())
        if request.with_payload:
            reply.payloads.extend(pls)
        return reply

    def GetClosest(self, request, context):
        self.requests.append(("GetClosest", request))
        r = self.Search(request, context)
        at = 0
        for i, m in enumerate(r.counts):
            out = pb.GetClosestReply(query_index=i, keys=r.keys[at:at + m],
                                     distances=np.frombuffer(r.distances, "<f4")
                                     [i * r.k:i * r.k + m].tolist())
            if request.with_payload:
                out.payloads.extend(r.payloads[at:at + m])
            at += m
            yield out

    def Get(self, request, context):
        self.requests.append(("Get", request))
        c = self._get(request.collection, context)
        out = pb.GetReply()
        rows = []
        for key in request.keys:
            if key in c.keys:
                j = c.keys.index(key)
                out.keys.append(key)
                rows.append(c.rows[j])
                if request.with_payload:
                    out.payloads.append(c.payloads[j])
            else:
                out.missing.append(key)
        out.vectors = np.array(rows, dtype="<f4").tobytes()
        return out

    def Delete(self, request, context):
        self.requests.append(("Delete", request))
        c = self._get(request.collection, context)
        gone = [k for k in request.keys if k in c.keys]
        for key in gone:
            j = c.keys.index(key)
            del c.keys[j], c.rows[j], c.payloads[j]
        return pb.DeleteReply(deleted=len(gone))

    def Count(self, request, context):
        self.requests.append(("Count", request))
        return pb.CountReply(count=len(self._get(request.collection, context).keys))

    def Scroll(self, request, context):
        self.requests.append(("Scroll", request))
        c = self._get(request.collection, context)
        start = int(request.cursor or b"0")
        end = min(len(c.keys), start + (request.limit or 256))
        out = pb.ScrollReply(keys=c.keys[start:end])
        if request.with_vectors:
            out.vectors = np.array(c.rows[start:end], dtype="<f4").tobytes()
        if request.with_payload:
            out.payloads.extend(c.payloads[start:end])
        if end < len(c.keys):
            out.next_cursor = str(end).encode()
        return out

    def ListCollections(self, request, context):
        self.requests.append(("ListCollections", request))
        return pb.ListCollectionsReply(collections=[
            pb.CollectionInfo(name=n, dim=c.dim, metric=pb.L2, vectors=len(c.keys))
            for n, c in sorted(self.colls.items())])

    def DropCollection(self, request, context):
        self.requests.append(("DropCollection", request))
        c = self._get(request.collection, context)
        del self.colls[request.collection or "default"]
        return pb.DropCollectionReply(vectors=len(c.keys))

    def sent(self, method):
        return [r for m, r in self.requests if m == method]


@pytest.fixture
def fake():
    db = FakeCollections()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_VectorDBServicer_to_server(db, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    db.address = "127.0.0.1:{}".format(port)
    yield db
    server.stop(None)


def rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_collection_names_on_every_call(fake):
    with npvdb.connect(fake.address) as db:
        docs = db.collection("docs")
        assert docs.name == "docs" and db.name == "default"
        assert db.collection("default") is db
        docs.init(["a", "b"], rows(2))
        db.init(["x"], rows(1, 1), collection="other")
        docs.insert(["c"], rows(1, 2))
        docs.get_closest(rows(1)[0], k_nearest=1)
        db.get_closest(rows(2), k_nearest=1, collection="other", stream=True)
        docs.get(["a"])
        docs.delete(["zz"])
        assert docs.count() == 3
        assert db.count(collection="other") == 1
        assert [k for k, _, _ in docs.scroll()] == ["a", "b", "c"]
        assert docs.info().collection == "docs"
        assert [(c.name, c.dim, c.vectors) for c in db.collections()] == [
            ("docs", DIM, 3), ("other", DIM, 1)]
        assert db.drop("other") == 1
        assert docs.drop() == 3
        with pytest.raises(npvdb.NotFound):
            db.drop("docs")
        with pytest.raises(npvdb.NotFound, match="no collection 'default'"):
            db.count()
        docs.close()  # a handle leaves the channel to db
        assert db.collections() == []
    names = [(m, getattr(r, "collection", None)) for m, r in fake.requests
             if m not in ("ListCollections",)]
    assert ("Init", "docs") in names and ("Init", "other") in names
    assert all(c in ("docs", "other", "") for _, c in names), names
    assert [r.collection for r in fake.sent("Insert")] == ["docs", "other", "docs"]
    assert [r.collection for r in fake.sent("Search")] == ["docs", "other"]
    assert [r.collection for r in fake.sent("DropCollection")] == ["other", "docs", "docs"]


def test_bad_collection_names():
    with npvdb.connect("127.0.0.1:1") as db:
        for bad in ["", "a b", "x" * 256, "é", "a/b"]:
            with pytest.raises(npvdb.InvalidArgument, match="collection name"):
                db.collection(bad)
        with pytest.raises(npvdb.InvalidArgument):
            db.count(collection=3)
        assert db.collection("x" * 255).name == "x" * 255
        assert db.collection("A-z_0.9").name == "A-z_0.9"


def test_payloads_per_message(fake):
    n = 10
    pls = [None if i % 3 == 0 else {"i": i, "tag": ["t%d" % i]} for i in range(n)]
    with npvdb.connect(fake.address) as db:
        db.init([str(i) for i in range(n)], rows(n), pls, batch_size=4)
        db.insert(["none"], rows(1))
        db.insert(["n0", "n1"], rows(2), [None, None])
        vecs, got = db.get(["1", "0", "none", "missing"], missing="nan", with_payload=True)
    assert got == [{"i": 1, "tag": ["t1"]}, {}, {}, None]
    assert np.isnan(vecs[3]).all()
    msgs = fake.sent("Insert")
    assert [len(m.keys) for m in msgs] == [4, 4, 2, 1, 2]
    assert all(len(m.payloads) == len(m.keys) for m in msgs[:3])
    assert msgs[0].payloads[0].ByteSize() == 0 and msgs[0].payloads[1].fields["i"].int_value == 1
    assert not msgs[3].payloads and not msgs[4].payloads  # none: not sent at all
    assert all(r.with_payload for r in fake.sent("Get"))


def test_large_payloads_split_messages(fake):
    # 20 payloads of ~100 KiB: a 4 MiB message takes about 40 of them
    # without payloads counted; with them, no message passes the budget.
    n = 100
    pls = [{"blob": "x" * 60000, "more": "y" * 40000} for _ in range(n)]
    with npvdb.connect(fake.address) as db:
        db.init([str(i) for i in range(n)], rows(n), pls)
    msgs = fake.sent("Insert")
    assert len(msgs) > 1 and sum(len(m.keys) for m in msgs) == n
    assert all(m.ByteSize() <= 4 * 1024 * 1024 for m in msgs)


def test_search_with_payload_and_filter(fake):
    n = 6
    data = rows(n)
    pls = [{"i": i} for i in range(n)]
    flt = {"must": [{"key": "i", "range": {"gte": 1}}]}
    with npvdb.connect(fake.address) as db:
        db.init(["k%d" % i for i in range(n)], data, pls)
        keys, dist, got = db.get_closest(data[:2], k_nearest=3, filter=flt, with_payload=True)
        assert keys.shape == (2, 3) and len(got) == 2 and all(len(r) == 3 for r in got)
        for i in range(2):
            assert [p["i"] for p in got[i]] == [int(k[1:]) for k in keys[i]]
        # a 1-D query: one list
        k1, d1, p1 = db.get_closest(data[4], k_nearest=2, with_payload=True)
        assert k1[0] == "k4" and p1[0] == {"i": 4} and len(p1) == 2
        # fewer than k: padded keys None, inf, payload None
        k2, d2, p2 = db.get_closest(data[:1], k_nearest=8, with_payload=True)
        assert list(k2[0, 6:]) == [None, None] and np.isinf(d2[0, 6:]).all()
        assert p2[0][6:] == [None, None] and all(p is not None for p in p2[0][:6])
        # the stream path gives the same
        ks, ds, ps = db.get_closest(data[:2], k_nearest=8, filter=flt,
                                    with_payload=True, stream=True)
        assert ps[0][:6] == p2[0][:6] and ps[0][6:] == [None, None]
        rows_ = list(db.get_closest_stream(data[:2], k_nearest=3, with_payload=True))
        assert [len(r) for r in rows_] == [4, 4] and rows_[0][3] == got[0]
        # without with_payload nothing changes: two arrays
        assert len(db.get_closest(data[:2], k_nearest=3, filter=flt)) == 2
    s = fake.sent("Search")
    assert s[0].with_payload and s[0].filter == filter_pb(flt)
    plain = fake.sent("Search")[-1]
    assert not plain.with_payload and plain.HasField("filter")
    assert not fake.sent("Search")[1].HasField("filter")  # no filter: unset
    assert fake.sent("GetClosest")[0].filter == filter_pb(flt)


def test_malformed_filter_sends_nothing(fake):
    with npvdb.connect(fake.address) as db:
        db.init(["a"], rows(1))
        before = len(fake.requests)
        with pytest.raises(ValueError, match=r"filter.must\[0\]: unknown operator 'equals'"):
            db.get_closest(rows(1), filter={"must": [{"key": "a", "equals": 1}]})
        with pytest.raises(ValueError, match="unknown clause"):
            db.count(filter={"al": []})
        with pytest.raises(ValueError, match="unknown clause"):
            next(db.scroll(filter={"al": []}))
        assert len(fake.requests) == before


def test_count_and_scroll(fake):
    n = 23
    data = rows(n)
    pls = [{"i": i} if i % 2 else None for i in range(n)]
    flt = {"must": [{"has_field": "i"}]}
    with npvdb.connect(fake.address) as db:
        db.init(["k%d" % i for i in range(n)], data, pls)
        assert db.count(filter=flt) == n  # the fake does not filter
        got = list(db.scroll(filter=flt, with_vectors=True, batch_size=5))
        assert [k for k, _, _ in got] == ["k%d" % i for i in range(n)]
        for i, (k, v, p) in enumerate(got):
            np.testing.assert_array_equal(v, data[i])
            assert p == ({"i": i} if i % 2 else {})
        assert all(v is None and p is None
                   for _, v, p in db.scroll(with_payload=False, batch_size=7))
        with pytest.raises(npvdb.InvalidArgument, match="batch_size"):
            next(db.scroll(batch_size=0))
        with pytest.raises(npvdb.InvalidArgument, match="batch_size"):
            next(db.scroll(batch_size=16385))
    sc = fake.sent("Scroll")
    assert [r.limit for r in sc[:5]] == [5] * 5 and len(sc) == 5 + 4
    assert sc[0].cursor == b"" and sc[1].cursor == b"5"
    assert sc[0].filter == filter_pb(flt) and sc[0].with_vectors and sc[0].with_payload
    assert fake.sent("Count")[0].filter == filter_pb(flt)
    assert not fake.sent("Count")[0].collection


def test_vectordb_and_old_calls_unchanged(fake):
    data = rows(5)
    with npvdb.VectorDB(2, address=fake.address) as db:
        db.init(["a", "b", "c", "d", "e"], data)
        keys, dist = db.get_closest(data[:1], k_nearest=3)
        assert keys.shape == (1, 3) and keys[0, 0] == "a"
        assert db.get(["b"]).shape == (1, DIM)
        assert db.insert(["f"], rows(1, 3)).inserted == 1
    init = fake.sent("Init")[0]
    assert init.collection == "" and init.replace and init.n_shards == 2
    assert all(not r.payloads for r in fake.sent("Insert"))
