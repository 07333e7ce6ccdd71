"""Helpers of the issue-10 tests: a started server with data (wire.Server),
raw Health/Info/Search calls that leave the reply undecoded (so Python's
GIL stays out of the latencies measured), the server's CPU time and memory
from /proc, and a hand-made HTTP/2 client on a raw socket for the hostile
cases (stdlib socket + struct, no HPACK compression: literal headers)."""
import os
import socket
import struct
import threading
import time

import grpc
import numpy as np

from wire import Server, floats, pb

HEALTH = "/grpc.health.v1.Health/Check"
SERVICE = "/npvdb.v1.VectorDB/"


def ident(b):
    return b


def unary_raw(ch, method, req_bytes, timeout=30):
    """A unary call whose reply stays bytes (nothing decoded in Python)."""
    return ch.unary_unary(method, request_serializer=ident,
                          response_deserializer=ident)(req_bytes,
                                                       timeout=timeout)


def health(ch, timeout=10):
    """Health/Check of the whole server; returns seconds taken."""
    t = time.perf_counter()
    rep = unary_raw(ch, HEALTH, b"", timeout)
    dt = time.perf_counter() - t
    assert rep == b"\x08\x01", rep  # status: SERVING
    return dt


def info(ch, timeout=10):
    t = time.perf_counter()
    unary_raw(ch, SERVICE + "Info", pb().InfoRequest().SerializeToString(),
              timeout)
    return time.perf_counter() - t


def channel(port):
    return grpc.insecure_channel(
        "127.0.0.1:%d" % port,
        options=[("grpc.max_receive_message_length", 1 << 30),
                 ("grpc.max_send_message_length", 1 << 30)])


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(srv, field="VmRSS"):
    return srv.status(field) / 1024.0


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(np.ceil(p * len(v))) - 1))]


def start(tmp_path, extra=()):
    return Server(str(tmp_path), sync="none", extra=list(extra))


def load(srv, n, dim, shards=16, seed=0, key="k%d", per=8000):
    """Init (L2, trained) and insert n random vectors; returns them."""
    P = pb()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    srv.call("Init", P.InitRequest(dim=dim, metric=P.L2, n_shards=shards,
                                   train_vectors=floats(x[:min(n, 2048)])))
    srv.insert([P.InsertRequest(keys=[key % j for j in range(i, min(n, i + per))],
                                vectors=floats(x[i:i + per]))
                for i in range(0, n, per)])
    return x


def wait_rss_below(srv, limit_mib, seconds=5):
    """Polls VmRSS until it is at most limit_mib; returns the last value."""
    end = time.time() + seconds
    while True:
        rss = mib(srv)
        if rss <= limit_mib or time.time() > end:
            return rss
        time.sleep(0.2)


# ---- HTTP/2 by hand ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = (
    0, 1, 3, 4, 6, 7, 8)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, stream, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream & 0x7FFFFFFF) + payload)


def _hpack_int(value, prefix_bits, first=0):
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    return (b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v)


def grpc_headers(method, port):
    return b"".join(_hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"),
        (":path", SERVICE + method), (":authority", "127.0.0.1:%d" % port),
        ("content-type", "application/grpc"), ("te", "trailers")])


def grpc_message(body, declared=None):
    """A gRPC length-prefixed message (uncompressed)."""
    return struct.pack(">BI", 0, len(body) if declared is None else
                       declared) + body


class H2:
    """One HTTP/2 connection on a raw socket. With read=True a thread reads
    what the server sends: it acknowledges SETTINGS and PING, tracks the
    flow-control windows, and records per stream whether it ended (END_STREAM
    or RST_STREAM) and whether GOAWAY came. With read=False nothing is ever
    read: the server's writes pile up."""

    def __init__(self, port, read=True, window=65535, settings=True):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.lock = threading.Condition()
        self.conn_win = 65535
        self.init_win = 65535
        self.win = {}
        self.ended = {}
        self.goaway = False
        self.closed = False
        self.received = 0
        self.next_id = 1
        if settings:
            # Our SETTINGS: INITIAL_WINDOW_SIZE (id 4) for the server's sends.
            self.s.sendall(PREFACE + frame(SETTINGS, 0, 0,
                                           struct.pack(">HI", 4, window)))
        if read:
            self.t = threading.Thread(target=self._reader, daemon=True)
            self.t.start()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            b = self.s.recv(n - len(buf))
            if not b:
                raise EOFError
            buf += b
        return buf

    def _reader(self):
        try:
            while True:
                hdr = self._recv(9)
                ln = int.from_bytes(hdr[:3], "big")
                ftype, flags = hdr[3], hdr[4]
                sid = int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF
                payload = self._recv(ln)
                with self.lock:
                    self.received += 9 + ln
                    if ftype == SETTINGS and not flags & ACK:
                        for i in range(0, len(payload), 6):
                            k, v = struct.unpack(">HI", payload[i:i + 6])
                            if k == 4:
                                for s in self.win:
                                    self.win[s] += v - self.init_win
                                self.init_win = v
                        self._send(frame(SETTINGS, ACK, 0))
                    elif ftype == PING and not flags & ACK:
                        self._send(frame(PING, ACK, 0, payload))
                    elif ftype == WINDOW_UPDATE:
                        inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                        if sid == 0:
                            self.conn_win += inc
                        else:
                            self.win[sid] = self.win.get(sid, 0) + inc
                    elif ftype == GOAWAY:
                        self.goaway = True
                    elif ftype == RST_STREAM:
                        self.ended[sid] = "rst"
                    elif ftype in (HEADERS, DATA) and flags & END_STREAM:
                        self.ended[sid] = "end"
                    if ftype == DATA and ln:
                        # Give the server its window back at once.
                        upd = struct.pack(">I", ln)
                        self._send(frame(WINDOW_UPDATE, 0, 0, upd) +
                                   frame(WINDOW_UPDATE, 0, sid, upd))
                    self.lock.notify_all()
        except (EOFError, OSError):
            pass
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def _send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            pass

    def open(self, method, body=None, end=True):
        """Opens a stream calling `method`; sends `body` (a whole gRPC
        message) when given, ending the stream when `end`."""
        sid = self.next_id
        self.next_id += 2
        with self.lock:
            self.win.setdefault(sid, self.init_win)
        self.s.sendall(frame(HEADERS, END_HEADERS | (END_STREAM if end and
                                                     body is None else 0),
                             sid, grpc_headers(method, self.port)))
        if body is not None:
            self.s.sendall(frame(DATA, END_STREAM if end else 0, sid, body))
        return sid

    def send_data(self, sid, data, end=False, timeout=10):
        """DATA within the flow-control windows (needs read=True)."""
        while data or end:
            with self.lock:
                ok = self.lock.wait_for(
                    lambda: self.closed or (min(self.conn_win,
                                                self.win[sid]) > 0),
                    timeout)
                if self.closed or not ok:
                    return False
                n = min(len(data), self.conn_win, self.win[sid], 16384)
                self.conn_win -= n
                self.win[sid] -= n
            last = end and n == len(data)
            self.s.sendall(frame(DATA, END_STREAM if last else 0, sid,
                                 data[:n]))
            data = data[n:]
            if last:
                break
        return True

    def wait_end(self, sid, timeout):
        with self.lock:
            self.lock.wait_for(lambda: sid in self.ended or self.closed or
                               self.goaway, timeout)
            return self.ended.get(sid) or ("goaway" if self.goaway else
                                           "closed" if self.closed else None)

    def wait_closed(self, timeout):
        with self.lock:
            return self.lock.wait_for(lambda: self.closed, timeout)

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


def closed_by_peer(sock, timeout):
    """Reads (discarding) until the peer closes; True if it did in time."""
    sock.settimeout(0.2)
    end = time.time() + timeout
    while time.time() < end:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


# A PING flood run in a process of its own (so the flooding threads do not
# hold this process's GIL while the well-behaved client is timed): argv is
# port, connections, seconds; prints "pings reconnects".
PING_FLOOD = r'''
import socket, struct, sys, threading, time
port, conns, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
def frame(t, f, s, p=b""):
    return struct.pack(">I", len(p))[1:] + bytes([t, f]) + struct.pack(">I", s) + p
burst = frame(6, 0, 0, b"12345678") * 512
end = time.time() + seconds
sent, reopened = [0] * conns, [0] * conns
def flood(i):
    while time.time() < end:
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(PREFACE + frame(4, 0, 0))
            while time.time() < end:
                s.sendall(burst)
                sent[i] += 512
        except OSError:
            reopened[i] += 1
        finally:
            if s:
                s.close()
ts = [threading.Thread(target=flood, args=(i,)) for i in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(sent), sum(reopened))
'''
