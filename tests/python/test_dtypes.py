"""numpy dtype and shape handling, on the wire and back."""
import numpy as np
import pytest

import npvdb
from npvdb import client as npclient
from conftest import clustered, make_keys

DIM = 16


@pytest.fixture(scope="module")
def loaded(server):
    """A collection of l2 vectors whose stored values equal the float32 input."""
    data = clustered(500, DIM, seed=7)
    with npvdb.connect(server.address, timeout=60) as c:
        c.init(make_keys(500), data, metric="l2", n_shards=4, replace=True)
    return data


def test_float32_contiguous_is_not_copied():
    x = np.ones((5, 3), dtype=np.float32)
    assert npclient._matrix(x, "x") is x


def test_conversion_copies_once_to_little_endian_f4():
    for x in (np.ones((5, 3)), np.ones((5, 6), dtype=np.float32)[:, ::2],
              np.asfortranarray(np.ones((5, 3), dtype=np.float32)),
              np.ones((5, 3), dtype=">f4")):
        m = npclient._matrix(x, "x")
        assert m.dtype == np.dtype("<f4") and m.flags.c_contiguous
        assert m.shape == x.shape and not np.shares_memory(m, x)


def test_float64_input(db, loaded):
    keys, dist = db.get_closest(loaded[:4].astype(np.float64), k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == ["k0", "k1", "k2", "k3"]
    db.insert(["f64"], loaded[10:11].astype(np.float64) + 0.5)
    np.testing.assert_array_equal(db.get("f64")[0], (loaded[10] + 0.5).astype(np.float32))
    db.delete("f64")


def test_non_contiguous_queries(db, loaded):
    wide = np.zeros((8, 2 * DIM), dtype=np.float32)
    wide[:, ::2] = loaded[:8]
    view = wide[:, ::2]  # strided view: not C-contiguous
    assert not view.flags.c_contiguous
    keys, _ = db.get_closest(view, k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == make_keys(8)
    fortran = np.asfortranarray(loaded[:8])
    keys, _ = db.get_closest(fortran, k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == make_keys(8)
    every_other = loaded[::2][:4]  # row-strided
    keys, _ = db.get_closest(every_other, k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == ["k0", "k2", "k4", "k6"]


def test_non_contiguous_insert(db, loaded):
    t = np.ascontiguousarray(loaded[:3].T).T  # Fortran-ordered copy of 3 rows
    assert not t.flags.c_contiguous
    db.insert(["t0", "t1", "t2"], t)
    np.testing.assert_array_equal(db.get(["t0", "t1", "t2"]), loaded[:3])
    db.delete(["t0", "t1", "t2"])


def test_big_endian_input(db, loaded):
    be = loaded[:2].astype(">f4")
    keys, _ = db.get_closest(be, k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == ["k0", "k1"]


def test_one_dimensional_query(db, loaded):
    keys, dist = db.get_closest(loaded[3], k_nearest=4, nprobe=4)
    assert keys.shape == (4,) and dist.shape == (4,)
    assert keys[0] == "k3" and dist[0] == pytest.approx(0, abs=1e-3)


def test_list_input(db, loaded):
    keys, _ = db.get_closest(loaded[:2].tolist(), k_nearest=1, nprobe=4)
    assert list(keys[:, 0]) == ["k0", "k1"]


def test_wrong_query_dim_is_refused(db, loaded):
    # (2, 8) has the byte count of one 16-d query: the client must refuse it.
    with pytest.raises(npvdb.InvalidArgument) as e:
        db.get_closest(loaded[:2, :8].copy(), k_nearest=1)
    assert "16" in str(e.value)
    with pytest.raises(npvdb.InvalidArgument):
        db.get_closest(np.ones(DIM + 1), k_nearest=1)


def test_wrong_insert_dim_is_refused_by_server(db, loaded):
    with pytest.raises(npvdb.InvalidArgument) as e:
        db.insert(["bad"], np.ones((1, DIM + 2)))
    assert e.value.message


def test_bad_shapes(db, loaded):
    with pytest.raises(npvdb.InvalidArgument):
        db.get_closest(np.ones((2, 2, DIM)), k_nearest=1)
    with pytest.raises(npvdb.InvalidArgument):
        db.insert(["a", "b"], np.ones((3, DIM)))
    with pytest.raises(npvdb.InvalidArgument):
        db.insert(["a"], np.ones((1, 0)))
    with pytest.raises(npvdb.InvalidArgument):
        db.insert(["a"], [["x"] * DIM])
    with pytest.raises(npvdb.InvalidArgument):
        db.insert([1.5], np.ones((1, DIM)))
