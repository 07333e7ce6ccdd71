"""Issue 10 through a real server: the memory limit (--max-memory-mb and
NPVDB_MAX_MEMORY_MB), vectors at the edges of float32 (probe 5), and
memory given back after a large delete (probe 6)."""
import re
import time

import grpc
import numpy as np
import pytest

from wire import SERVER, Server, floats, pb

pytestmark = pytest.mark.skipif(not SERVER, reason="NPVDB_SERVER not set")


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def init(s, name, dim, metric="L2"):
    return s.call("Init", pb().InitRequest(dim=dim, metric=getattr(pb(), metric),
                                           collection=name))


def insert(s, name, keys, rows):
    return s.insert([pb().InsertRequest(keys=keys, vectors=floats(rows),
                                        collection=name)])


def info(s, name):
    return s.call("Info", pb().InfoRequest(collection=name))


def get(s, name, keys):
    return s.call("Get", pb().GetRequest(keys=keys, collection=name))


def delete(s, name, keys):
    return s.call("Delete", pb().DeleteRequest(keys=keys, collection=name))


def search_ok(s, name, dim):
    r = s.call("Search", pb().SearchRequest(queries=floats(np.zeros(dim)),
                                            k=3, collection=name))
    assert list(r.counts) == [3]


# ---- the memory limit ----

LIMIT_MB = 8
DIM = 16
BATCH = 2000


def fill(s, name, rng, start):
    """Inserts batches until one is refused; returns (stored, the refused
    batch's keys, its status details)."""
    i = start
    while True:
        keys = ["k%d" % j for j in range(i, i + BATCH)]
        try:
            insert(s, name, keys, rng.random((BATCH, DIM)))
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
            return i, keys, e.details()
        i += BATCH
        assert i < 10 ** 6, "the limit never bit"


def check_limit_message(msg):
    # Names the use, the estimate and the limit.
    assert "memory limit" in msg, msg
    m = re.search(r"holds ([\d.]+) MiB.*needs about ([\d.]+) KiB.*"
                  r"limit is ([\d.]+) MiB", msg)
    assert m, msg
    used, need, limit = (float(g) for g in m.groups())
    assert limit == LIMIT_MB
    assert used <= limit * 1.125 and used + need / 1024 > limit
    assert need > BATCH * DIM * 4 / 1024


@pytest.mark.parametrize("how", ["flag", "env"])
def test_memory_limit(tmp_path, monkeypatch, how):
    P = pb()
    rng = np.random.default_rng(10)
    if how == "flag":
        # The flag wins over the environment.
        monkeypatch.setenv("NPVDB_MAX_MEMORY_MB", "100000")
        s = Server(str(tmp_path), sync="none",
                   extra=["--max-memory-mb", str(LIMIT_MB)])
    else:
        monkeypatch.setenv("NPVDB_MAX_MEMORY_MB", str(LIMIT_MB))
        s = Server(str(tmp_path), sync="none")
    try:
        init(s, "a", DIM)
        stored, refused, msg = fill(s, "a", rng, 0)
        check_limit_message(msg)
        assert stored > 10000
        # Nothing of the refused message: not counted, not stored.
        assert info(s, "a").vectors == stored
        g = get(s, "a", refused[:5] + ["k0"])
        assert list(g.keys) == ["k0"] and list(g.missing) == refused[:5]
        # Reads and deletes keep working.
        search_ok(s, "a", DIM)
        assert s.call("Count", P.CountRequest(collection="a")).count == stored
        # Another collection cannot take the room either.
        init(s, "b", DIM)
        code, _ = code_of(lambda: insert(s, "b", ["x"] * BATCH,
                                         rng.random((BATCH, DIM))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A delete makes room: the refused batch goes in now.
        half = ["k%d" % j for j in range(stored // 2)]
        assert delete(s, "a", half).deleted == len(half)
        insert(s, "a", refused, rng.random((BATCH, DIM)))
        n = stored - len(half) + BATCH
        assert info(s, "a").vectors == n
        # A restart keeps the same data and the same limit.
        s.restart()
        assert info(s, "a").vectors == n
        assert list(get(s, "a", refused[:1]).keys) == refused[:1]
        search_ok(s, "a", DIM)
        stored2, _, msg = fill(s, "a", rng, 10 ** 5)
        check_limit_message(msg)
        assert stored2 > 10 ** 5
    finally:
        s.stop()


# ---- probe 5: vectors at the edges of float32 ----

def test_huge_and_tiny_norms(tmp_path):
    s = Server(str(tmp_path))
    try:
        init(s, "c", 16, "COSINE")
        init(s, "l", 16, "L2")
        big = np.full(16, 3e38, dtype="<f4")  # |big| = 1.2e39 > FLT_MAX
        insert(s, "c", ["big"], big)
        insert(s, "c", ["tiny"], np.full(16, 1e-44, dtype="<f4"))
        g = get(s, "c", ["big", "tiny"])
        v = np.frombuffer(g.vectors, dtype="<f4").reshape(2, 16)
        assert np.allclose(v, 0.25, rtol=1e-6), v
        code, msg = code_of(lambda: insert(s, "c", ["z"], np.zeros(16)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "zero norm" in msg
        # L2: the norm expansion would overflow; refused, naming the row.
        rows = np.ones((3, 16), dtype="<f4")
        rows[2] = 3e38
        code, msg = code_of(lambda: insert(s, "l", ["a", "b", "c"], rows))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "vector 2 has norm" in msg and "2^62" in msg, msg
        assert info(s, "l").vectors == 0
        code, msg = code_of(lambda: s.call("Search", pb().SearchRequest(
            queries=floats(big), k=1, collection="l")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "query 0 has norm" in msg, msg
        # And a cosine query of huge floats finds the huge vector.
        r = s.call("Search", pb().SearchRequest(queries=floats(big), k=1,
                                                collection="c"))
        assert r.counts[0] == 1 and abs(r.distances[0]) < 1e-5
    finally:
        s.stop()


# ---- probe 6: memory given back ----

N_RSS = 1_500_000
D_RSS = 8


def rss_mb(s):
    return s.status("VmRSS") / 1024.0


def test_rss_returns_after_delete(tmp_path):
    """1.5M vectors of dim 8 in, all but 1,000 deleted, a Snapshot: the
    resident size comes back to within 40 MiB (and 15% of the peak's
    growth) of where it was before the inserts."""
    s = Server(str(tmp_path), sync="none")
    if s.sanitized():
        s.stop()
        pytest.skip("AddressSanitizer keeps freed memory in quarantine")
    t0 = time.time()
    try:
        init(s, "m", D_RSS)
        rng = np.random.default_rng(6)
        keys = ["key-%07d" % i for i in range(N_RSS)]
        search_ok_rows = rng.random((3, D_RSS))
        insert(s, "m", ["warm%d" % i for i in range(3)], search_ok_rows)
        delete(s, "m", ["warm%d" % i for i in range(3)])
        base = rss_mb(s)
        per = 100_000
        msgs = (pb().InsertRequest(
            keys=keys[i:i + per],
            vectors=floats(rng.random((per, D_RSS))), collection="m")
            for i in range(0, N_RSS, per))
        s.insert(msgs)
        peak = rss_mb(s)
        mem_peak = info(s, "m").memory_bytes / 2 ** 20
        for i in range(1000, N_RSS, per):
            delete(s, "m", keys[i:i + per])
        assert info(s, "m").vectors == 1000
        s.call("Snapshot", pb().SnapshotRequest(collection="m"))
        after = rss_mb(s)
        mem_after = info(s, "m").memory_bytes / 2 ** 20
        print("RSS MiB: start %.0f, 1.5M vectors %.0f (memory_bytes %.0f), "
              "after delete + snapshot %.0f (memory_bytes %.1f), %.1f s"
              % (base, peak, mem_peak, after, mem_after, time.time() - t0))
        assert peak - base > 150  # the data was there
        assert mem_after < 1
        assert after - base < 40 and after - base < 0.15 * (peak - base)
        search_ok(s, "m", D_RSS)
        # And it still takes writes.
        insert(s, "m", keys[1000:2000], rng.random((1000, D_RSS)))
        assert info(s, "m").vectors == 2000
    finally:
        s.stop()


def h2_frame(kind, flags, stream, payload):
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) +
            stream.to_bytes(4, "big") + payload)


def ping_flood(port, seconds):
    """One HTTP/2 connection sending PING frames without reading a byte."""
    import socket
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
    pings = h2_frame(6, 0, 0, b"12345678") * 512
    c.setblocking(False)
    end = time.time() + seconds
    while time.time() < end:
        try:
            c.send(pings)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break
    c.close()


def test_rss_returns_after_ping_flood(tmp_path):
    """Four connections flood PING frames for 3 s and close: within 15 s
    (the trimmer runs every 10 s) the resident size is back within 20 MiB
    of where it started."""
    import threading
    s = Server(str(tmp_path), sync="none")
    if s.sanitized():
        s.stop()
        pytest.skip("AddressSanitizer keeps freed memory in quarantine")
    try:
        init(s, "p", 4)
        base = rss_mb(s)
        ts = [threading.Thread(target=ping_flood, args=(s.port, 3.0))
              for _ in range(4)]
        for t in ts:
            t.start()
        peak = base
        while any(t.is_alive() for t in ts):
            peak = max(peak, rss_mb(s))
            time.sleep(0.1)
        end = time.time() + 15
        while rss_mb(s) - base >= 20 and time.time() < end:
            time.sleep(0.25)
        after = rss_mb(s)
        print("RSS MiB: start %.0f, flood peak %.0f, after %.0f" %
              (base, peak, after))
        assert after - base < 20
        search_ok_rows = np.ones((3, 4))
        insert(s, "p", ["a", "b", "c"], search_ok_rows)
        search_ok(s, "p", 4)  # still serving
    finally:
        s.stop()
