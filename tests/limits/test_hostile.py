"""Issue 10, hostile clients, each on loopback and bounded in time: garbage
bytes, HTTP/1.1, a truncated HTTP/2 frame, hundreds of streams never read,
a slow insert, a PING flood. Each asserts that the server stays up, that a
well-behaved client (its own grpcio connection) keeps getting answers during
and after, and that VmRSS comes back near its level once the hostile client
is gone. HTTP/2 frames are made by hand (limits.H2)."""
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from limits import (H2, PING_FLOOD, SERVICE, channel, closed_by_peer, frame,
                    grpc_headers, grpc_message, health, load, mib, start,
                    unary_raw, wait_rss_below, HEADERS, END_HEADERS, PREFACE,
                    SETTINGS)
from wire import SERVER, floats, pb

pytestmark = pytest.mark.skipif(not SERVER, reason="NPVDB_SERVER not set")

N, DIM = 20_000, 16
KEY = "key-%06d-" + "x" * 90  # 100-byte keys: big GetClosest replies
# RSS the server may keep over its level before a hostile client came and
# went (glibc arenas, gRPC's slab caches).
RSS_BACK_MIB = 24


class Wellbehaved:
    """A client on its own connection calling Health, Info and a small
    Search in a loop (thread) while a hostile client acts; every call must
    succeed within its 1 s deadline."""

    def __init__(self, srv):
        self.srv = srv
        self.ch = channel(srv.port)
        q = np.random.default_rng(5).standard_normal((2, DIM),
                                                      dtype=np.float32)
        self.search = pb().SearchRequest(queries=floats(q), k=10,
                                         nprobe=4).SerializeToString()
        self.errors, self.calls, self.worst = [], 0, 0.0
        self.stop = threading.Event()
        self.t = None

    def once(self):
        t = time.perf_counter()
        try:
            health(self.ch, 1)
            unary_raw(self.ch, SERVICE + "Info",
                      pb().InfoRequest().SerializeToString(), 1)
            rep = pb().SearchReply.FromString(
                unary_raw(self.ch, SERVICE + "Search", self.search, 1))
            assert list(rep.counts) == [10, 10]
        except grpc.RpcError as e:
            self.errors.append("%s: %s" % (e.code(), e.details()))
        self.calls += 1
        self.worst = max(self.worst, time.perf_counter() - t)

    def __enter__(self):
        def loop():
            while not self.stop.is_set():
                self.once()
                time.sleep(0.05)
        self.t = threading.Thread(target=loop, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(timeout=30)

    def check(self, what, known=""):
        print("%s: well-behaved client: %d rounds, worst %.0f ms, %d errors"
              % (what, self.calls, self.worst * 1e3, len(self.errors)))
        assert self.calls > 0
        assert not self.errors, "%s%s: the well-behaved client got %s" % (
            known, what, self.errors[:3])


@pytest.fixture
def srv(tmp_path):
    s = start(tmp_path)
    load(s, N, DIM, key=KEY)
    # Warm up what a normal client uses (connections, a big reply).
    w = Wellbehaved(s)
    for _ in range(5):
        w.once()
    q = np.zeros((4, DIM), dtype=np.float32)
    list(s.ch.unary_stream(SERVICE + "GetClosest",
                           request_serializer=lambda m: m.SerializeToString(),
                           response_deserializer=lambda b: b)(
        pb().GetClosestRequest(queries=floats(q), k=1000, nprobe=16),
        timeout=30))
    time.sleep(0.3)
    s.base = mib(s)
    s.good = w
    yield s
    w.ch.close()
    assert s.proc.poll() is None, "the server died"
    s.stop()


def after(srv, what, tolerance=RSS_BACK_MIB, known=""):
    """The server is up, answers, and gives its memory back."""
    assert srv.proc.poll() is None, "%s: the server died" % what
    w = Wellbehaved(srv)
    w.once()
    w.check(what + ", after")
    w.ch.close()
    rss = wait_rss_below(srv, srv.base + tolerance)
    print("%s: VmRSS %.1f MiB before, %.1f MiB after (peak %.1f MiB)"
          % (what, srv.base, rss, mib(srv, "VmHWM")))
    assert rss <= srv.base + tolerance, (
        "%s%s: VmRSS %.1f MiB stays above %.1f + %d MiB" % (
            known, what, rss, srv.base, tolerance))


def test_garbage_bytes(srv):
    rng = np.random.default_rng(1)
    with Wellbehaved(srv) as w:
        socks = []
        for i in range(8):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            try:
                s.sendall(rng.bytes(256 << 10))
            except OSError:
                pass  # the server hung up first: fine
            socks.append(s)
        # Each one is hung up on, promptly.
        for s in socks:
            assert closed_by_peer(s, 5), "garbage connection kept open"
            s.close()
    w.check("garbage")
    after(srv, "garbage")


def test_http1_request(srv):
    reqs = [b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"POST /npvdb.v1.VectorDB/Info HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/grpc\r\nContent-Length: 5\r\n\r\n"
            b"\x00\x00\x00\x00\x00",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: "
            b"Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
            b"\r\n"]
    with Wellbehaved(srv) as w:
        for r in reqs:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(r)
            assert closed_by_peer(s, 5), "HTTP/1.1 connection kept open: %r" % r
            s.close()
    w.check("http1")
    after(srv, "http1")


def test_truncated_http2_frame(srv):
    socks = []
    with Wellbehaved(srv) as w:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            hdrs = grpc_headers("Info", srv.port)
            # A HEADERS frame that says 300 bytes and brings 40; or half a
            # frame header; or a DATA frame cut short.
            cut = [frame(HEADERS, END_HEADERS, 1, hdrs + b"\0" * 300)[:49],
                   frame(HEADERS, END_HEADERS, 1, hdrs)[:5],
                   frame(HEADERS, END_HEADERS, 1, hdrs) +
                   frame(0, 1, 1, grpc_message(b"x" * 1000))[:300]][i % 3]
            s.sendall(PREFACE + frame(SETTINGS, 0, 0) + cut)
            socks.append(s)
        time.sleep(2.0)  # they hang; the server goes on serving
        w.once()
        for s in socks[:10]:
            s.close()  # half of them just close
        for s in socks[10:]:
            s.shutdown(socket.SHUT_WR)  # the rest half-close, then close
        time.sleep(0.5)
        for s in socks[10:]:
            s.close()
    w.check("truncated frame")
    after(srv, "truncated frame")


def test_streams_never_read(srv):
    """Hundreds of GetClosest streams with big replies (4 queries x k 1000 x
    100-byte keys: about 420 KB each) on one connection that never reads a
    byte."""
    P = pb()
    q = np.random.default_rng(2).standard_normal((4, DIM), dtype=np.float32)
    body = grpc_message(P.GetClosestRequest(queries=floats(q), k=1000,
                                            nprobe=16).SerializeToString())
    h = H2(srv.port, read=False)
    with Wellbehaved(srv) as w:
        for _ in range(300):
            try:
                h.open("GetClosest", body)
            except OSError:
                break  # the server stopped reading us: fine
        time.sleep(3.0)
        during = mib(srv)
    h.close()
    print("300 unread GetClosest streams: VmRSS %.1f -> %.1f MiB"
          % (srv.base, during))
    # gRPC enforces MAX_CONCURRENT_STREAMS only once the client ACKs our
    # SETTINGS, which this one never does: --max-calls-per-connection (64)
    # keeps its unread calls from taking every one of
    # --max-concurrent-calls, so the well-behaved client is served.
    w.check("streams never read")
    # What the server holds for an unread connection stays bounded.
    assert during - srv.base < 256
    after(srv, "streams never read", 48)


def test_slow_insert(srv):
    P = pb()
    # (a) A valid insert trickled over about 3 s is served, and others are
    # served meanwhile.
    keys = ["slow-%d" % i for i in range(200)]
    rows = np.random.default_rng(3).standard_normal((200, DIM),
                                                     dtype=np.float32)
    msg = grpc_message(P.InsertRequest(keys=keys,
                                       vectors=floats(rows))
                       .SerializeToString())
    h = H2(srv.port)
    with Wellbehaved(srv) as w:
        sid = h.open("Insert", end=False)
        step = (len(msg) + 59) // 60
        for i in range(0, len(msg), step):
            assert h.send_data(sid, msg[i:i + step])
            time.sleep(0.05)
        assert h.send_data(sid, b"", end=True)
        assert h.wait_end(sid, 10) == "end", "the slow insert got no answer"
    w.check("slow insert")
    got = pb().GetReply.FromString(unary_raw(
        srv.ch, SERVICE + "Get",
        P.GetRequest(keys=keys).SerializeToString()))
    assert list(got.keys) == keys, "the slow insert was not applied"
    h.close()
    after(srv, "slow insert")


def test_slow_announced_insert(srv):
    # Four streams each announcing a 48 MiB message and trickling it
    # for 3 s, then the client goes away: the server holds what came, not
    # what was announced.
    h = H2(srv.port)
    sids = [h.open("Insert", end=False) for _ in range(4)]
    with Wellbehaved(srv) as w:
        for sid in sids:
            assert h.send_data(sid, grpc_message(b"", 48 << 20))
        end = time.time() + 3
        chunk = b"\x0a" + b"\x7f" * 2047
        while time.time() < end:
            for sid in sids:
                h.send_data(sid, chunk, timeout=1)
            time.sleep(0.05)
        during = mib(srv)
    print("4 x 48 MiB announced, trickled: VmRSS %.1f -> %.1f MiB"
          % (srv.base, during))
    assert during - srv.base < 64
    h.close()
    w.check("slow announced insert")
    after(srv, "slow announced insert")


def test_gigabyte_message_is_refused(srv):
    """A stream announcing a 1 GiB message (past --max-message-mb, 64) and
    sending its bytes as fast as the server takes them, up to 160 MiB: the
    server must refuse it (end the stream or the connection) before it
    holds much more than the message limit."""
    h = H2(srv.port)
    sid = h.open("Insert", end=False)
    with Wellbehaved(srv) as w:
        h.send_data(sid, grpc_message(b"", 1 << 30))
        sent, peak, mb = 0, 0.0, b"\x0a" * (1 << 20)
        t0 = time.time()
        while sent < 160 and time.time() - t0 < 8:
            if h.wait_end(sid, 0) or not h.send_data(sid, mb, timeout=2):
                break
            sent += 1
            peak = max(peak, mib(srv))
        ended = h.wait_end(sid, 2)
    print("1 GiB announced: %d MiB taken in %.1f s; VmRSS %.1f -> %.1f MiB;"
          " stream %s" % (sent, time.time() - t0, srv.base, peak, ended))
    h.close()
    w.check("gigabyte message")
    # gRPC 1.51 checks the message limit only on a whole message; the
    # server's resource quota (--receive-buffer-mb, 64 + 16) resets it.
    assert peak - srv.base < 64 + 32, (
        "the server buffered %d MiB of a message announced as 1 GiB, past "
        "the 64 MiB limit (VmRSS +%.0f MiB), stream %s" % (
            sent, peak - srv.base, ended))
    assert ended is not None
    after(srv, "gigabyte message")


def test_ping_flood(srv):
    """Four connections send PING frames as fast as they can for 3 s and
    never read the acks; a connection the server closes is opened again.
    The flood runs in a process of its own (limits.PING_FLOOD)."""
    with Wellbehaved(srv) as w:
        flood = subprocess.Popen([sys.executable, "-c", PING_FLOOD,
                                  str(srv.port), "4", "3"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(2.8)
        during = mib(srv)
        out, _ = flood.communicate(timeout=30)
    pings, reopened = out.split()
    print("PING flood: %s pings sent, %s reconnects; VmRSS %.1f -> %.1f MiB"
          % (pings, reopened, srv.base, during))
    # gRPC 1.51's ping strikes (GOAWAY after 3) starved the others and held
    # +100 MiB under this flood; the server turns them off
    # (GRPC_ARG_HTTP2_MAX_PING_STRIKES 0) and TCP holds the flooder back.
    # The flood itself is not what starves: against a dummy socket server
    # the well-behaved client (on npvdb) stayed under 110 ms.
    w.check("ping flood")
    after(srv, "ping flood")
