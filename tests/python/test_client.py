"""Every method of npvdb.Client against a real server."""
import math
import os

import numpy as np
import pytest

import npvdb
from conftest import clustered, make_keys


def brute_force(data, queries, k, metric):
    """Reference top-k in float64: (indices, distances)."""
    x = data.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1.0 - q @ x.T
    elif metric == "l2":
        d = np.sqrt(np.maximum(
            (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :], 0))
    else:
        d = -(q @ x.T)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def test_original_api_reads_as_before(db):
    # The README of the original numpy npvDB, line for line.
    keys, data = make_keys(2000), clustered(2000, 32)
    db.init(keys, data, replace=True)
    closest, dist = db.get_closest(data[:1], k_nearest=3)
    assert closest.shape == (1, 3) and dist.shape == (1, 3)
    assert closest[0, 0] == "k0"
    assert dist[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert np.all(np.diff(dist[0]) >= 0)


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_exact_search_matches_numpy(db, metric):
    n, dim, k = 3000, 24, 10
    keys, data = make_keys(n), clustered(n, dim, seed=2)
    res = db.init(keys, data, n_shards=16, metric=metric, replace=True)
    assert res.n_shards == 16 and res.inserted == n
    queries = clustered(50, dim, seed=3)
    got_keys, got_dist = db.get_closest(queries, k_nearest=k, nprobe=1 << 16)  # every shard, however many splits made
    assert got_keys.shape == (50, k) and got_keys.dtype == object
    assert got_dist.shape == (50, k) and got_dist.dtype == np.float32
    idx, ref = brute_force(data, queries, k, metric)
    want = np.array(keys, dtype=object)[idx]
    assert (got_keys == want).mean() > 0.99  # float32 near-ties may swap
    np.testing.assert_allclose(got_dist, ref, rtol=1e-4, atol=1e-4)


def test_default_nprobe_gives_good_recall(db):
    n, dim, k = 5000, 32, 10
    keys, data = make_keys(n), clustered(n, dim, n_clusters=20, seed=4)
    db.init(keys, data, replace=True)
    queries = clustered(100, dim, n_clusters=20, seed=4)[:100] + 0.01
    got, _ = db.get_closest(queries, k_nearest=k)
    idx, _ = brute_force(data, queries, k, "cosine")
    want = np.array(keys, dtype=object)[idx]
    recall = np.mean([len(set(g) & set(w)) / k for g, w in zip(got, want)])
    assert recall >= 0.8


def test_init_result_and_info(db):
    n, dim = 1500, 16
    res = db.init(make_keys(n), clustered(n, dim), n_shards=12, metric="l2",
                  replace=True, train_size=600, nprobe=5, seed=1)
    assert isinstance(res, npvdb.InitResult)
    assert res.trained and res.train_rows == 600 and res.inserted == n
    info = db.info()
    assert isinstance(info, npvdb.Info)
    assert info.initialized and info.trained
    assert (info.dim, info.metric, info.vectors) == (dim, "l2", n)
    # Trained with 12; inserting 1,500 rows splits the largest (the count
    # follows 12 * sqrt(n / 768)).
    assert info.n_shards >= 12 and info.default_nprobe == 5
    assert info.n_shards == 12 + info.splits - info.merges
    assert info.shard_sizes.shape == (info.n_shards,)
    assert int(info.shard_sizes.sum()) == n
    assert info.largest_shard == info.shard_sizes.max()
    assert info.smallest_shard == info.shard_sizes.min()
    assert info.memory_bytes >= n * dim * 4
    assert info.server_version


def test_init_default_sample_and_shards(db):
    n = 4000
    res = db.init(make_keys(n), clustered(n, 8), replace=True)
    assert res.n_shards == round(4 * math.sqrt(n))
    assert res.train_rows == n  # 64 per shard is more than n: all rows
    assert res.trained
    assert db.info().n_shards == res.n_shards


def test_init_without_sample_trains_later(db):
    # train_size=0 sends no sample: the server trains on arriving vectors.
    res = db.init(make_keys(100), clustered(100, 8), n_shards=2, replace=True,
                  train_size=0)
    assert res.train_rows == 0 and not res.trained
    keys, _ = db.get_closest(clustered(1, 8), k_nearest=5)
    assert keys.shape == (1, 5) and all(k is not None for k in keys[0])


def test_init_replace_reports_replaced(db):
    db.init(["a"], np.ones((1, 4)), n_shards=1, replace=True)
    res = db.init(["b"], np.ones((1, 4)), n_shards=1, replace=True)
    assert res.replaced
    assert db.info().vectors == 1


def test_insert_counts_new_and_replaced(db):
    dim = 8
    db.init(make_keys(100), clustered(100, dim), n_shards=4, replace=True)
    r = db.insert(make_keys(50, "n"), clustered(50, dim, seed=5))
    assert (r.inserted, r.replaced) == (50, 0) and r.messages == 1
    r = db.insert(make_keys(60, "n"), clustered(60, dim, seed=6))
    assert (r.inserted, r.replaced) == (10, 50)
    assert db.info().vectors == 160


def test_insert_streams_batches(db):
    dim = 8
    db.init(["x"], np.ones((1, dim)), n_shards=1, replace=True)
    r = db.insert(make_keys(1000), clustered(1000, dim), batch_size=70)
    assert r.messages == math.ceil(1000 / 70) and r.inserted == 1000
    assert db.info().vectors == 1001


def test_insert_splits_by_message_size(server):
    # A small max_message_bytes forces many messages, none over the limit.
    with npvdb.connect(server.address, max_message_bytes=64 * 1024) as small:
        n, dim = 3000, 32  # 384 KB of vectors
        r = small.init(make_keys(n), clustered(n, dim), n_shards=8, replace=True)
        assert r.inserted == n and r.messages >= 6
        assert small.info().vectors == n
        # queries are split the same way; results stay in query order
        keys, _ = small.get_closest(clustered(n, dim)[:1000], k_nearest=1, nprobe=8)
        assert list(keys[:, 0]) == make_keys(1000)


def test_get_returns_stored_vectors(db):
    data = clustered(200, 16)
    db.init(make_keys(200), data, metric="l2", n_shards=4, replace=True)
    got = db.get(["k5", "k0", "k5"])
    assert got.shape == (3, 16) and got.dtype == np.float32
    np.testing.assert_array_equal(got, data[[5, 0, 5]])
    one = db.get("k7")
    np.testing.assert_array_equal(one, data[7:8])


def test_get_cosine_returns_normalised(db):
    data = clustered(100, 16)
    db.init(make_keys(100), data, n_shards=2, replace=True)
    got = db.get(["k3"])[0]
    np.testing.assert_allclose(got, data[3] / np.linalg.norm(data[3]), rtol=1e-5, atol=1e-6)


def test_get_missing_keys(db):
    db.init(make_keys(10), clustered(10, 4), n_shards=1, replace=True)
    with pytest.raises(npvdb.NotFound) as e:
        db.get(["k1", "nope", "gone"])
    assert "'nope'" in str(e.value) and "'gone'" in str(e.value)
    got = db.get(["k1", "nope"], missing="nan")
    assert np.all(np.isfinite(got[0])) and np.all(np.isnan(got[1]))


def test_delete(db):
    data = clustered(300, 8)
    db.init(make_keys(300), data, metric="l2", n_shards=4, replace=True)
    assert db.delete(["k0", "k1", "never-there"]) == 2
    assert db.delete("k2") == 1
    assert db.delete(["k0"]) == 0
    assert db.info().vectors == 297
    keys, dist = db.get_closest(data[:3], k_nearest=5, nprobe=4)
    assert not {"k0", "k1", "k2"} & set(keys.ravel())
    assert np.all(dist[:, 0] > 0)


def test_snapshot(db, server):
    db.init(make_keys(500), clustered(500, 8), n_shards=4, replace=True)
    db.delete(["k0"])
    snap = db.snapshot()
    assert isinstance(snap, npvdb.SnapshotResult)
    assert snap.vectors == 499 and snap.bytes > 499 * 8 * 4
    assert snap.seconds >= 0 and snap.sequence > 0
    path = snap.path if os.path.isabs(snap.path) else os.path.join(server.data_dir, snap.path)
    assert os.path.realpath(path).startswith(os.path.realpath(server.data_dir))
    assert os.path.getsize(path) > 0


def test_fewer_hits_than_k_are_padded(db):
    # Two far clusters, one shard each: probing only the small one finds 3.
    small = np.full((3, 4), 100.0) + np.arange(12).reshape(3, 4) * 0.01
    big = np.full((40, 4), -100.0) + np.arange(160).reshape(40, 4) * 0.01
    data = np.vstack([small, big])
    db.init(make_keys(43), data, metric="l2", n_shards=2, replace=True)
    assert sorted(db.info().shard_sizes.tolist()) == [3, 40]
    keys, dist = db.get_closest(np.full(4, 100.0), k_nearest=10, nprobe=1)
    assert keys.shape == (10,)
    assert set(keys[:3]) == {"k0", "k1", "k2"}
    assert all(k is None for k in keys[3:])
    assert np.all(np.isfinite(dist[:3])) and np.all(np.isinf(dist[3:]))


def test_info_before_init(fresh_server):
    with npvdb.connect(fresh_server.address) as client:
        info = client.info()
        assert not info.initialized and info.vectors == 0
        assert info.metric is None and info.server_version


def test_key_types(db):
    dim = 4
    db.init(np.arange(10), clustered(10, dim), n_shards=1, replace=True)  # ints -> str
    assert db.get(["3"]).shape == (1, dim)
    db.insert(np.array(["a", "b"]), clustered(2, dim))
    db.insert([b"bytes-key", np.int64(42)], clustered(2, dim))
    db.insert("single", np.ones(dim))  # one key, one 1-D row
    assert db.delete(["a", "b", "bytes-key", "42", "single", 7]) == 6
    assert db.info().vectors == 9
    db.insert(["unicodé-ключ"], np.ones((1, dim)))
    assert db.get("unicodé-ключ").shape == (1, dim)


def test_vectordb_shim(server):
    keys, data = make_keys(800), clustered(800, 16)
    db = npvdb.VectorDB(n_workers=6, address=server.address)
    db.init(keys, data)
    db.init(keys, data)  # re-init replaces, as the original's did
    closest, _ = db.get_closest(data[:1], k_nearest=3)
    assert closest[0, 0] == "k0"
    assert db.info().n_shards >= 6  # one per worker, then splits
    db.close()


def test_context_manager_closes(server):
    with npvdb.connect(server.address) as client:
        assert client.info().server_version
    with pytest.raises(Exception):
        client.info()


def test_progress_bar(db, capsys):
    db.init(["x"], np.ones((1, 4)), n_shards=1, replace=True)
    db.insert(make_keys(100), clustered(100, 4), batch_size=10, progress=True)
    assert "npvdb insert" in capsys.readouterr().err
    # not a terminal under pytest: the default shows nothing
    db.insert(make_keys(100), clustered(100, 4), batch_size=10)
    db.insert(make_keys(100), clustered(100, 4), batch_size=10, progress=False)
    assert capsys.readouterr().err == ""


def test_empty_inputs(db):
    db.init([], np.zeros((0, 6)), replace=True)
    info = db.info()
    assert info.initialized and info.dim == 6 and info.vectors == 0
    assert db.insert([], np.zeros((0, 6))).messages == 0
    assert db.delete([]) == 0
    assert db.get([]).shape == (0, 6)
