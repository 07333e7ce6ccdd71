"""A real npvdb-server driven with grpcio's generic calls and messages that
protoc generates from the .proto at test time: no client library involved.
Shared by the issue-9 integration tests (collections, payloads, filters)."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "..", "protos")
SERVER = os.environ.get("NPVDB_SERVER")

_pb = None


def pb():
    """The generated npvdb.v1 module (made once per process)."""
    global _pb
    if _pb is None:
        out = tempfile.mkdtemp(prefix="npvdb-pb-")
        subprocess.run([os.environ.get("PROTOC", "protoc"), "--python_out",
                        out, "-I", PROTO_ROOT, "npvdb/v1/npvdb.proto"],
                       check=True)
        sys.path.insert(0, out)
        from npvdb.v1 import npvdb_pb2
        _pb = npvdb_pb2
    return _pb


class Server:
    def __init__(self, data_dir, sync="always", extra=()):
        self.data_dir = data_dir
        self.sync = sync
        self.extra = list(extra)
        self.start()

    def start(self):
        port_file = os.path.join(self.data_dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(self.data_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--data-dir",
             os.path.join(self.data_dir, "data"), "--port-file", port_file,
             "--threads", "2", "--sync", self.sync] + self.extra,
            stderr=self.log)
        deadline = time.time() + 120
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            assert self.proc.poll() is None, "server exited"
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        self.port = int(open(port_file).read())
        self.ch = grpc.insecure_channel(
            "127.0.0.1:%d" % self.port,
            options=[("grpc.max_receive_message_length", 1 << 30),
                     ("grpc.max_send_message_length", 1 << 30)])

    def _reply(self, name):
        names = {"Init": "InitReply", "Insert": "InsertReply",
                 "GetClosest": "GetClosestReply", "Snapshot": "SnapshotReply",
                 "Delete": "DeleteReply", "Info": "InfoReply",
                 "Get": "GetReply", "Search": "SearchReply",
                 "ListCollections": "ListCollectionsReply",
                 "DropCollection": "DropCollectionReply",
                 "Count": "CountReply", "Scroll": "ScrollReply"}
        return getattr(pb(), names[name])

    def call(self, name, req):
        return self.ch.unary_unary(
            "/npvdb.v1.VectorDB/" + name,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self._reply(name).FromString)(req, timeout=120)

    def closest(self, req):
        return list(self.ch.unary_stream(
            "/npvdb.v1.VectorDB/GetClosest",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb().GetClosestReply.FromString)(
                req, timeout=120))

    def insert(self, msgs):
        return self.ch.stream_unary(
            "/npvdb.v1.VectorDB/Insert",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb().InsertReply.FromString)(
                iter(msgs), timeout=120)

    def status(self, field):
        """A line of /proc/<pid>/status as an int (kB for sizes)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def sanitized(self):
        """The server runs under AddressSanitizer (memory is not its own)."""
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return "libasan" in f.read()

    def stop(self, sig=signal.SIGTERM):
        self.ch.close()
        self.proc.send_signal(sig)
        assert self.proc.wait(timeout=120) == (0 if sig == signal.SIGTERM
                                               else -sig)
        self.log.close()

    def restart(self):
        self.stop()
        self.start()


def floats(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def value(v):
    """A Python value as a wire Value."""
    V = pb().Value
    if isinstance(v, bool):
        return V(bool_value=v)
    if isinstance(v, int):
        return V(int_value=v)
    if isinstance(v, float):
        return V(double_value=v)
    if isinstance(v, str):
        return V(string_value=v)
    return V(strings_value=pb().StringList(values=list(v)))


def payload(d):
    return pb().Payload(fields={k: value(v) for k, v in d.items()})


def unpayload(p):
    """A wire Payload back as a dict."""
    out = {}
    for k, v in p.fields.items():
        kind = v.WhichOneof("kind")
        if kind == "strings_value":
            out[k] = list(v.strings_value.values)
        else:
            out[k] = getattr(v, kind)
    return out


def distances(metric, q, x):
    """The server's distance of query q to rows x (x as stored)."""
    if metric == "L2":
        return np.sqrt(((x - q) ** 2).sum(1))
    if metric == "INNER_PRODUCT":
        return -(x @ q)
    qn = q / np.linalg.norm(q)
    return 1 - x @ qn  # x is stored normalised
