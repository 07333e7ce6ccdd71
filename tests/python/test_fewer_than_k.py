"""Fewer than k: a search asking for more neighbours than the collection
(or the filtered set) holds returns short rows, padded with None keys and
inf distances (and None payloads), in every search path of the client."""
import numpy as np

import npvdb
from conftest import clustered, make_keys


def test_fewer_than_k(fresh_server):
    with npvdb.connect(fresh_server.address, timeout=60) as db:
        c = db.collection("tiny")
        c.init([], np.zeros((0, 4)), n_shards=1, metric="l2")
        keys, dist = c.get_closest(np.ones(4), k_nearest=3)  # empty collection
        assert list(keys) == [None] * 3 and np.isinf(dist).all()
        c.insert(make_keys(5), clustered(5, 4), [{"i": i} for i in range(5)])
        keys, dist, pls = c.get_closest(np.ones((2, 4)), k_nearest=10, with_payload=True)
        assert keys.shape == (2, 10)
        for i in range(2):
            assert sorted(keys[i, :5]) == make_keys(5)
            assert list(keys[i, 5:]) == [None] * 5 and np.isinf(dist[i, 5:]).all()
            assert sorted(p["i"] for p in pls[i][:5]) == list(range(5))
        flt = {"must": [{"key": "i", "range": {"lt": 2}}]}
        keys, dist = c.get_closest(np.ones(4), k_nearest=4, filter=flt)
        assert sorted(keys[:2]) == ["k0", "k1"] and list(keys[2:]) == [None, None]
        keys, _ = c.get_closest(np.ones((3, 4)), k_nearest=4, filter=flt, stream=True)
        assert all(sorted(r[:2]) == ["k0", "k1"] and list(r[2:]) == [None, None]
                   for r in keys)
