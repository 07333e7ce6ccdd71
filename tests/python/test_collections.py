"""Collections, payloads, filters, count, scroll and fewer-than-k through the
Python client against a real npvdb-server (conftest.py starts it)."""
import numpy as np
import pytest

import npvdb
from conftest import clustered, make_keys


def test_collections_are_separate(fresh_server):
    with npvdb.connect(fresh_server.address, timeout=60) as db:
        assert db.collections() == []
        a = db.collection("alpha")
        a.init(make_keys(30, "a"), clustered(30, 8), n_shards=2, metric="l2")
        db.init(make_keys(5, "b"), clustered(5, 16, seed=1), n_shards=1,
                metric="cosine", collection="beta.2")
        db.init(make_keys(7), clustered(7, 4, seed=2), n_shards=1)  # "default"
        got = db.collections()
        assert [(c.name, c.dim, c.metric, c.vectors) for c in got] == [
            ("alpha", 8, "l2", 30), ("beta.2", 16, "cosine", 5), ("default", 4, "cosine", 7)]
        assert a.info().dim == 8 and db.info().dim == 4
        assert db.info(collection="beta.2").vectors == 5
        keys, _ = a.get_closest(clustered(30, 8)[3], k_nearest=1, nprobe=2)
        assert keys[0] == "a3"
        # a query of alpha's width is refused for beta.2 by the client
        with pytest.raises(npvdb.InvalidArgument, match="16"):
            db.get_closest(np.ones(8), collection="beta.2")
        with pytest.raises(npvdb.NotFound, match="nope"):
            db.count(collection="nope")
        with pytest.raises(npvdb.NotFound, match="nope"):
            db.collection("nope").insert(["x"], np.ones(4))
        with pytest.raises(npvdb.AlreadyExists):
            a.init(["x"], np.ones((1, 8)))
        assert db.drop("beta.2") == 5
        with pytest.raises(npvdb.NotFound):
            db.drop("beta.2")
        assert [c.name for c in db.collections()] == ["alpha", "default"]
        assert a.delete(["a1", "a2", "zz"]) == 2 and a.count() == 28


def payload_of(i):
    return {"tenant": i % 3, "lang": ["en", "de", "fr"][i % 3],
            "price": float(i), "tags": ["even"] if i % 2 == 0 else ["odd", "x"],
            "flag": i % 5 == 0}


@pytest.fixture
def shop(db):
    n = 300
    data = clustered(n, 8, seed=3)
    pls = [None if i % 10 == 9 else payload_of(i) for i in range(n)]
    db.init(make_keys(n), data, pls, n_shards=6, metric="l2", replace=True,
            collection="shop")
    return db.collection("shop"), data, pls


def passes(p, flt):
    """The reference: does payload p pass the filter dict flt."""
    def cond(c):
        if "has_field" in c:
            return p is not None and c["has_field"] in p
        if any(k in c for k in ("must", "should", "must_not")):
            return passes(p, c)
        v = None if p is None else p.get(c["key"])
        if v is None:
            return False
        if "match" in c:
            m = c["match"]
            want = [m["value"]] if "value" in m else m["any"]
            vals = v if isinstance(v, list) else [v]
            return any(type(x) is type(w) and x == w for x in vals for w in want)
        r = c["range"]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return all(op(v, r[k]) for k, op in (
            ("gt", lambda a, b: a > b), ("gte", lambda a, b: a >= b),
            ("lt", lambda a, b: a < b), ("lte", lambda a, b: a <= b)) if k in r)
    ok = all(cond(c) for c in flt.get("must", []))
    if flt.get("should"):
        ok = ok and any(cond(c) for c in flt["should"])
    return ok and not any(cond(c) for c in flt.get("must_not", []))


FILTERS = [
    {"must": [{"key": "tenant", "match": {"value": 1}}]},
    {"must": [{"key": "lang", "match": {"any": ["de", "fr"]}}],
     "must_not": [{"key": "tags", "match": {"any": ["x"]}}]},
    {"must": [{"key": "price", "range": {"gte": 50, "lt": 120}}]},
    {"should": [{"key": "flag", "match": {"value": True}}, {"has_field": "nothing"}]},
    {"must_not": [{"has_field": "tenant"}]},
    {"must": [{"should": [{"key": "tags", "match": {"value": "even"}},
                          {"key": "price", "range": {"gt": 290}}]}]},
    {"must": [{"key": "nobody", "match": {"value": "has"}}]},
    {"must": [{"key": "lang", "match": {"value": 3}}]},  # wrong type: no match
]


@pytest.mark.parametrize("flt", FILTERS)
def test_filtered_search_count_scroll(shop, flt):
    coll, data, pls = shop
    want = [i for i in range(len(data)) if passes(pls[i], flt)]
    assert coll.count(filter=flt) == len(want)
    got = sorted(int(k[1:]) for k, _, _ in coll.scroll(filter=flt, batch_size=17))
    assert got == want
    q = clustered(5, 8, seed=9)
    k = 10
    keys, dist, payloads = coll.get_closest(q, k_nearest=k, nprobe=6, filter=flt,
                                            with_payload=True)
    d = np.sqrt(((q[:, None, :].astype(np.float64) - data[want][None]) ** 2).sum(-1))
    for i in range(len(q)):
        order = np.argsort(d[i], kind="stable")[:k]
        m = len(order)
        assert [int(x[1:]) for x in keys[i, :m]] == [want[j] for j in order]
        np.testing.assert_allclose(dist[i, :m], d[i, order], rtol=1e-4, atol=1e-4)
        assert all(x is None for x in keys[i, m:]) and np.isinf(dist[i, m:]).all()
        assert payloads[i][:m] == [pls[want[j]] or {} for j in order]
        assert payloads[i][m:] == [None] * (k - m)


def test_payloads_round_trip(shop):
    coll, data, pls = shop
    vecs, got = coll.get(["k0", "k9", "k5"], with_payload=True)
    assert got == [pls[0], {}, pls[5]]
    assert isinstance(got[0]["flag"], bool) and isinstance(got[0]["tenant"], int)
    np.testing.assert_allclose(vecs[2], data[5], rtol=1e-6)
    # an upsert replaces the payload with the vector; without one: none
    coll.insert(["k0", "k5"], data[[0, 5]], [{"new": "yes"}, None])
    assert coll.get(["k0", "k5"], with_payload=True)[1] == [{"new": "yes"}, {}]
    with pytest.raises(TypeError, match=r"payloads\[0\]\['bad'\]"):
        coll.insert(["z"], data[:1], [{"bad": {"nested": 1}}])
    rows = list(coll.scroll(with_vectors=True))
    assert len(rows) == len(data) and len({k for k, _, _ in rows}) == len(data)
    by_key = {k: (v, p) for k, v, p in rows}
    np.testing.assert_allclose(by_key["k7"][0], data[7], rtol=1e-6)
    assert by_key["k7"][1] == pls[7] and by_key["k0"][1] == {"new": "yes"}
