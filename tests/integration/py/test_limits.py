"""Issue 10's limits at the door and in flight, over the wire: the
stalled-reader watchdog, the bound on concurrent calls (cheap calls exempt),
and a cancelled or expired call stopping its work."""
import threading
import time

import grpc
import numpy as np
import pytest

from wire import Server, floats, pb


def check_health(s):
    # grpc.health.v1.HealthCheckRequest{} is the empty message.
    return s.ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=lambda b: b,
                            response_deserializer=lambda b: b)(b"", timeout=10)


def long_keys(s, n=16384, key_len=1000):
    """dim 1, n keys of key_len bytes: a k=n reply is n * key_len bytes."""
    P = pb()
    s.call("Init", P.InitRequest(dim=1, metric=P.L2, replace=True))
    keys = ["%0*d" % (key_len, i) for i in range(n)]
    rows = np.zeros((n, 1), np.float32)
    msgs = [P.InsertRequest(keys=keys[i:i + 2048],
                            vectors=floats(rows[i:i + 2048]))
            for i in range(0, n, 2048)]
    s.insert(msgs)


def unread_closest(s, nq=200, k=16384):
    """A GetClosest whose replies the client never reads."""
    P = pb()
    it = s.ch.unary_stream(
        "/npvdb.v1.VectorDB/GetClosest",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=P.GetClosestReply.FromString)(
            P.GetClosestRequest(queries=floats(np.zeros((nq, 1))), k=k),
            timeout=60)
    return it


def log_text(s):
    s.log.flush()
    with open(s.log.name, "rb") as f:
        return f.read().decode(errors="replace")


def test_stalled_reader_is_cancelled(tmp_path):
    s = Server(str(tmp_path), extra=["--stall-timeout-ms", "1000"])
    try:
        long_keys(s)
        it = unread_closest(s)
        first = next(it)  # the call runs; then the client stops reading
        assert len(first.keys) == 16384
        deadline = time.time() + 20
        while "read nothing" not in log_text(s):
            assert time.time() < deadline, "the stalled call was not cancelled"
            time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as e:
            for _ in it:
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stopped reading" in e.value.details()
        # The server serves on, and a reader that keeps reading is not cut.
        assert s.call("Info", pb().InfoRequest()).vectors == 16384
        n = sum(1 for _ in unread_closest(s, nq=8))
        assert n == 8
    finally:
        s.stop()


def test_concurrent_call_bound(tmp_path):
    s = Server(str(tmp_path), extra=["--max-concurrent-calls", "2",
                                     "--stall-timeout-ms", "3000"])
    try:
        long_keys(s)
        held = []
        deadline = time.time() + 10
        while len(held) < 2:  # the load's calls may not be freed yet
            it = unread_closest(s)
            try:
                next(it)  # the call is running and holds its slot
                held.append(it)
            except grpc.RpcError as x:
                assert x.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.time() < deadline
                time.sleep(0.05)
        P = pb()
        with pytest.raises(grpc.RpcError) as e:
            s.call("Search", P.SearchRequest(queries=floats(np.zeros((1, 1))),
                                             k=1))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-concurrent-calls" in e.value.details()
        # Cheap calls are not counted.
        check_health(s)
        assert s.call("Info", P.InfoRequest()).vectors == 16384
        assert len(s.call("ListCollections",
                          P.ListCollectionsRequest()).collections) == 1
        # Once the stalled calls are cancelled, their slots come back.
        deadline = time.time() + 20
        while True:
            try:
                r = s.call("Search", P.SearchRequest(
                    queries=floats(np.zeros((1, 1))), k=1))
                assert list(r.counts) == [1]
                break
            except grpc.RpcError as x:
                assert x.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.time() < deadline
                time.sleep(0.2)
    finally:
        s.stop()


def test_calls_per_connection_bound(tmp_path):
    """--max-calls-per-connection: one connection holding its share gets
    RESOURCE_EXHAUSTED naming the flag; another connection is served."""
    s = Server(str(tmp_path), extra=["--max-calls-per-connection", "2",
                                     "--stall-timeout-ms", "3000"])
    other = None
    try:
        long_keys(s)
        held = []
        deadline = time.time() + 10
        while len(held) < 2:  # the load's calls may not be freed yet
            it = unread_closest(s)
            try:
                next(it)  # the call runs and holds one of s.ch's two
                held.append(it)
            except grpc.RpcError as x:
                assert x.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.time() < deadline
                time.sleep(0.05)
        P = pb()
        search = P.SearchRequest(queries=floats(np.zeros((1, 1))), k=1)
        with pytest.raises(grpc.RpcError) as e:
            s.call("Search", search)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-calls-per-connection" in e.value.details()
        # A connection of its own (no subchannel shared with s.ch).
        other = grpc.insecure_channel(
            "127.0.0.1:%d" % s.port,
            options=[("grpc.use_local_subchannel_pool", 1)])
        r = P.SearchReply.FromString(other.unary_unary(
            "/npvdb.v1.VectorDB/Search",
            request_serializer=lambda m: m.SerializeToString())(
                search, timeout=10))
        assert list(r.counts) == [1]
    finally:
        if other:
            other.close()
        s.stop()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime


def heavy(s, n=200000, dim=64):
    P = pb()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    s.call("Init", P.InitRequest(dim=dim, metric=P.L2, replace=True))
    s.insert([P.InsertRequest(keys=[str(i) for i in range(j, j + 20000)],
                              vectors=floats(x[j:j + 20000]))
              for j in range(0, n, 20000)])
    return rng.standard_normal((2000, dim)).astype(np.float32)


def test_deadline_stops_the_work(tmp_path):
    """An exact search (nprobe past the shards) of 2,000 queries over 200k
    vectors takes seconds; with a 50 ms deadline it must stop soon after."""
    s = Server(str(tmp_path), extra=["--call-threads", "2"])
    try:
        P = pb()
        q = heavy(s)
        req = P.SearchRequest(queries=floats(q), k=10, nprobe=65535)
        c0, t0 = cpu_seconds(s.proc.pid), time.time()
        s.call("Search", req)
        full = cpu_seconds(s.proc.pid) - c0
        assert full > 0.5, "the full search is too cheap to tell (%.2fs)" % full
        c0 = cpu_seconds(s.proc.pid)
        calls = [s.ch.unary_unary(
            "/npvdb.v1.VectorDB/Search",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=P.SearchReply.FromString).future(
                req, timeout=0.05) for _ in range(10)]
        for f in calls:
            assert f.exception().code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.0)  # what is left of them runs out
        spent = cpu_seconds(s.proc.pid) - c0
        # Ten full searches would cost 10 * full; the expired ones stop
        # within a shard's scan (or never start).
        assert spent < 2 * full, (spent, full)
        t = time.time()
        check_health(s)
        assert time.time() - t < 1.0
    finally:
        s.stop()


def test_failed_insert_says_what_was_applied(tmp_path):
    """Issue 10, probe 8: a stream failing at message 3 has applied messages
    0..2; the status says so in trailing metadata, so a client resumes."""
    s = Server(str(tmp_path))
    try:
        P = pb()
        s.call("Init", P.InitRequest(dim=4, metric=P.L2))
        good = [P.InsertRequest(keys=["m%d-%d" % (m, i) for i in range(5)],
                                vectors=floats(np.ones((5, 4))))
                for m in range(3)]
        bad = P.InsertRequest(keys=["bad"], vectors=floats(np.ones((1, 3))))
        with pytest.raises(grpc.RpcError) as e:
            s.insert(good + [bad] + good)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        md = dict(e.value.trailing_metadata())
        assert md["npvdb-applied-messages"] == "3"
        assert md["npvdb-applied-vectors"] == "15"
        assert "Insert message 3" in e.value.details()
        assert s.call("Info", P.InfoRequest()).vectors == 15
    finally:
        s.stop()
