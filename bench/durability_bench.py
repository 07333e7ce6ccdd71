#!/usr/bin/python3
"""What durability costs: streaming load with --sync always vs none, snapshot and restart times.

Issue 5's speed goals, measured against the real npvdb-server through the
Python client:

1. Streaming load: N x dim float32 vectors (seeded random normal, keys
   "0".."N-1") inserted with `db.insert(keys, data)` into a fresh server,
   once with `--sync always` and once with `--sync none`. The index is
   trained by the Init call before the clock starts (the training sample is
   sent in Init's message, as `db.init()` does), so only the insert stream
   is timed. Goal: always / none >= 0.5.
2. With the N vectors loaded (the `always` server): Snapshot (seconds, bytes),
   SIGTERM, start again on the same data dir; restart time = from the
   process's start until the port file exists AND Info reports N vectors.
   Goal: < 5 s. Then `--extra` more vectors after the snapshot, SIGKILL and
   restart: the time to serve everything again (snapshot + log replay).
   The `none` server is also SIGKILLed after its load, with no snapshot, and
   restarted: recovery from the log alone.
3. A table on stdout, the same rows as CSV with --out-csv.

    /usr/bin/python3 bench/durability_bench.py --out-csv bench/results/durability.csv
    /usr/bin/python3 bench/durability_bench.py --n 100000 --extra 10000   # quick

Heavy at full size: about 1 GB of RAM in this process (the vectors and their
keys) plus the server's, and a minute or two of CPU per load.
"""
import argparse
import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Where a build tree may be, first match wins (--build-dir overrides).
BUILD_DIRS = ["build-bench", "build"]
MAX_MESSAGE = 64 << 20  # npvdb-server's default --max-message-mb
RESTART_TIMEOUT_S = 600.0


# -- finding and importing the build -----------------------------------------
def find_build(build_dir):
    dirs = [build_dir] if build_dir else [os.path.join(ROOT, d) for d in BUILD_DIRS]
    for d in dirs:
        server = os.path.join(d, "server", "npvdb-server")
        stage = os.path.join(d, "clients", "python", "stage")
        if os.access(server, os.X_OK) and os.path.isdir(os.path.join(stage, "npvdb")):
            return server, stage
    sys.exit("npvdb-server and the staged Python client (targets npvdb-server "
             f"npvdb_python) not found under {dirs}: build them or pass --build-dir")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors loaded")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--metric", default="cosine", choices=["cosine", "l2", "inner_product"])
    p.add_argument("--shards", type=int, default=0,
                   help="0: the client's default, round(4*sqrt(n))")
    p.add_argument("--train-rows", type=int, default=0,
                   help="Init's training sample; 0: the client's default, "
                        "min(n, 64*shards, what fits in one message)")
    p.add_argument("--extra", type=int, default=100_000,
                   help="vectors inserted after the snapshot, replayed from the "
                        "log at the restart after SIGKILL (0: skip)")
    p.add_argument("--rows-per-call", type=int, default=0,
                   help="split the load into insert() calls of this many rows, "
                        "each acknowledged after its own fsync (0: one call)")
    p.add_argument("--skip-log-only", action="store_true",
                   help="skip the restart of the 'none' server from its log alone "
                        "(it replays Init's k-means and every insert: minutes at 1M)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="npvdb-server --threads")
    p.add_argument("--modes", default="none,always",
                   help="--sync modes loaded, in this order; the restart "
                        "measurements run on the 'always' one")
    p.add_argument("--build-dir", help="a CMake build tree with npvdb-server "
                   "and clients/python/stage (default: " + ", ".join(BUILD_DIRS) + ")")
    p.add_argument("--tmp-dir", help="parent of the data dirs (default: $TMPDIR "
                   "or /tmp; should be a real disk, not tmpfs, or fsync is free)")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs")
    p.add_argument("--out-csv")
    return p.parse_args(argv)


# -- small helpers --------------------------------------------------------------
def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def proc_cpu_s(pid):
    """User + system CPU seconds of a live process (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def say(*a):
    print(*a, file=sys.stderr, flush=True)


class Server:
    """One npvdb-server process on a free loopback port."""

    def __init__(self, binary, data_dir, work, sync, threads, tag):
        self.port_file = os.path.join(work, f"port-{tag}")
        self.log_path = os.path.join(work, f"server-{tag}.log")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        cmd = [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
               "--data-dir", data_dir, "--sync", sync, "--threads", str(threads)]
        self.log = open(self.log_path, "w")
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.address = None

    def wait_port(self, timeout=RESTART_TIMEOUT_S):
        """Seconds from the process's start until the port file holds a port."""
        deadline = self.t_start + timeout
        while True:
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.address = f"127.0.0.1:{int(text)}"
                    return time.perf_counter() - self.t_start
            except (FileNotFoundError, ValueError):
                pass
            if self.proc.poll() is not None:
                sys.exit(f"npvdb-server exited ({self.proc.returncode}):\n" + self.log_text())
            if time.perf_counter() > deadline:
                self.kill()
                sys.exit(f"npvdb-server did not write its port file in {timeout} s")
            time.sleep(0.002)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=120.0):
        """Sends `sig`, waits for the exit; returns (seconds, exit code)."""
        if self.proc.poll() is not None:
            return 0.0, self.proc.returncode
        t0 = time.perf_counter()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return time.perf_counter() - t0, rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


# -- the measurements -------------------------------------------------------------
class Bench:
    def __init__(self, a):
        self.a = a
        self.binary, stage = find_build(a.build_dir)
        sys.path.insert(0, stage)
        import npvdb  # noqa: E402  (from the build tree)
        from npvdb.v1 import npvdb_pb2, npvdb_pb2_grpc
        self.npvdb, self.pb, self.pb_grpc = npvdb, npvdb_pb2, npvdb_pb2_grpc
        self.rows = []  # (measure, sync, value, unit, goal, note)
        self.servers = []

    def row(self, measure, sync, value, unit, goal="", note=""):
        self.rows.append((measure, sync, value, unit, goal, note))
        say(f"  {measure} [{sync}]: {fmt(value)} {unit} {note}")

    def start(self, data_dir, work, sync, tag):
        srv = Server(self.binary, data_dir, work, sync, self.a.threads, tag)
        self.servers.append(srv)
        return srv

    def init_trained(self, db_address, n_shards, train):
        """Init with the training sample in its message, as db.init() sends
        it, but without streaming the rows afterwards (db.init() does both in
        one call, and its insert would then be inside no clock at all)."""
        pb = self.pb
        metric = {"cosine": pb.COSINE, "l2": pb.L2,
                  "inner_product": pb.INNER_PRODUCT}[self.a.metric]
        opts = [("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1)]
        with grpc.insecure_channel(db_address, opts) as ch:
            stub = self.pb_grpc.VectorDBStub(ch)
            reply = stub.Init(pb.InitRequest(dim=train.shape[1], metric=metric,
                                             n_shards=n_shards,
                                             train_vectors=train.tobytes()))
        if not reply.trained:
            sys.exit("Init did not train the index (sample too small?)")

    def load(self, srv, keys, data, sync):
        """Init (trained, not timed) then the timed insert stream."""
        a = self.a
        n = len(keys)
        shards = a.shards or max(1, min(n, round(4 * math.sqrt(n))))
        fits = (MAX_MESSAGE - 16 * 1024) // (4 * a.dim)
        n_train = a.train_rows or min(n, 64 * shards, fits)
        rng = np.random.default_rng(a.seed + 1)
        train = data[np.sort(rng.choice(n, size=n_train, replace=False))]
        t0 = time.perf_counter()
        self.init_trained(srv.address, shards, train)
        t_init = time.perf_counter() - t0
        del train
        self.row("init_train_s", sync, t_init, "s", note=f"{n_train} rows, {shards} shards")

        db = self.npvdb.connect(srv.address)
        step = a.rows_per_call or n
        la0 = loadavg()
        cpu_srv0 = proc_cpu_s(srv.proc.pid)
        cpu_cli0 = time.process_time()
        t0 = time.perf_counter()
        inserted = 0
        for i in range(0, n, step):
            r = db.insert(keys[i:i + step], data[i:i + step], progress=False)
            inserted += r.inserted
        dt = time.perf_counter() - t0
        cpu_srv = proc_cpu_s(srv.proc.pid) - cpu_srv0
        cpu_cli = time.process_time() - cpu_cli0
        if inserted != n:
            sys.exit(f"insert reported {inserted} new vectors, expected {n}")
        info = db.info()
        if info.vectors != n:
            sys.exit(f"Info reports {info.vectors} vectors after the load, expected {n}")
        calls = math.ceil(n / step)
        self.row("load_vectors_per_s", sync, n / dt, "vec/s",
                 note=f"{dt:.1f} s, {calls} insert() call(s), loadavg {la0} -> {loadavg()}")
        self.row("load_server_cpu_s", sync, cpu_srv, "s")
        self.row("load_client_cpu_s", sync, cpu_cli, "s")
        self.row("server_rss_after_load", sync, proc_rss(srv.proc.pid), "bytes")
        return db, n / dt

    def restart(self, data_dir, work, sync, tag, expect):
        """Starts a server on `data_dir`; seconds until the port file exists
        and until Info reports `expect` vectors."""
        srv = self.start(data_dir, work, sync, tag)
        t_port = srv.wait_port()
        db = self.npvdb.connect(srv.address)
        while True:
            try:
                v = db.info().vectors
            except self.npvdb.Unavailable:
                v = -1
            t_all = time.perf_counter() - srv.t_start
            if v == expect:
                break
            if v > expect or t_all > RESTART_TIMEOUT_S:
                sys.exit(f"restart: Info reports {v} vectors, expected {expect}\n"
                         + srv.log_text())
            time.sleep(0.002)
        return srv, db, t_port, t_all

    def check_values(self, db, keys, data, sample=2000):
        """The restarted server returns the exact vectors (normalised for
        cosine) of a sample of keys."""
        rng = np.random.default_rng(self.a.seed + 2)
        idx = np.sort(rng.choice(len(keys), size=min(sample, len(keys)), replace=False))
        got = db.get([keys[i] for i in idx])
        want = data[idx]
        if self.a.metric == "cosine":
            want = want / np.linalg.norm(want, axis=1, keepdims=True)
        if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            sys.exit("restart: stored vectors differ from the ones inserted")

    def run_mode(self, sync, keys, data, extra_keys, extra):
        a = self.a
        work = tempfile.mkdtemp(prefix=f"npvdb-durability-{sync}-", dir=a.tmp_dir)
        data_dir = os.path.join(work, "data")
        n = len(keys)
        try:
            say(f"== --sync {sync}: load {n} x {a.dim} (loadavg {loadavg()})")
            srv = self.start(data_dir, work, sync, "load")
            srv.wait_port()
            db, rate = self.load(srv, keys, data, sync)
            if sync != "always":
                self.row("log_bytes", sync, dir_bytes(data_dir), "bytes")
                if a.skip_log_only:
                    db.close()
                    srv.stop()
                    return rate
                # Recovery from the log alone (no snapshot was ever taken).
                db.close()
                srv.stop(signal.SIGKILL)
                srv, db, t_port, t_all = self.restart(data_dir, work, sync, "replay-all", n)
                self.row("restart_log_only_s", sync, t_all, "s",
                         note=f"SIGKILL, no snapshot: {n} vectors replayed; port file at {t_port:.2f} s")
                db.close()
                srv.stop()
                return rate

            la = loadavg()
            t0 = time.perf_counter()
            snap = db.snapshot()
            t_snap = time.perf_counter() - t0
            self.row("snapshot_s", sync, snap.seconds, "s",
                     note=f"server's figure; call {t_snap:.2f} s; loadavg {la}")
            self.row("snapshot_bytes", sync, snap.bytes, "bytes",
                     note=f"{snap.bytes / (n * a.dim * 4):.2f}x raw vectors")
            self.row("data_dir_bytes_after_snapshot", sync, dir_bytes(data_dir), "bytes")
            db.close()
            t_stop, rc = srv.stop(signal.SIGTERM)
            if rc != 0:
                sys.exit(f"npvdb-server exited {rc} at SIGTERM:\n" + srv.log_text())
            self.row("sigterm_exit_s", sync, t_stop, "s")

            la = loadavg()
            srv, db, t_port, t_all = self.restart(data_dir, work, sync, "restart", n)
            self.row("restart_snapshot_s", sync, t_all, "s", goal="< 5",
                     note=f"port file at {t_port:.2f} s; loadavg {la}")
            self.check_values(db, keys, data)

            if len(extra_keys):
                t0 = time.perf_counter()
                db.insert(extra_keys, extra, progress=False)
                self.row("extra_load_vectors_per_s", sync,
                         len(extra_keys) / (time.perf_counter() - t0), "vec/s")
                db.close()
                srv.stop(signal.SIGKILL)
                la = loadavg()
                srv, db, t_port, t_all = self.restart(
                    data_dir, work, sync, "replay", n + len(extra_keys))
                self.row("restart_snapshot_plus_log_s", sync, t_all, "s",
                         note=f"SIGKILL; {len(extra_keys)} vectors replayed from the log; "
                              f"port file at {t_port:.2f} s; loadavg {la}")
                self.check_values(db, extra_keys, extra)
            db.close()
            srv.stop()
            return rate
        finally:
            for s in self.servers:
                s.kill()
            self.servers = []
            if a.keep:
                say(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)


def fmt(v):
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def main(argv):
    a = parse_args(argv)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    b = Bench(a)
    say(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    say(f"server: {b.binary}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(a.seed)
    data = rng.standard_normal((a.n, a.dim), dtype=np.float32)
    keys = [str(i) for i in range(a.n)]
    extra = rng.standard_normal((a.extra, a.dim), dtype=np.float32)
    extra_keys = [str(a.n + i) for i in range(a.extra)]
    say(f"generated {a.n} x {a.dim} (+{a.extra}) in {time.perf_counter() - t0:.1f} s")

    rates = {}
    for m in modes:
        rates[m] = b.run_mode(m, keys, data, extra_keys, extra)
    if "always" in rates and "none" in rates:
        b.row("load_ratio_always_over_none", "", rates["always"] / rates["none"], "",
              goal=">= 0.5")

    print(f"\nnpvdb durability bench: {a.n:,} x {a.dim} {a.metric}, "
          f"{a.threads} server threads, loadavg at the end {loadavg()}")
    w = max(len(r[0]) for r in b.rows)
    print(f"{'measure':<{w}}  {'sync':<6}  {'value':>14}  {'unit':<6}  {'goal':<7}  note")
    for measure, sync, value, unit, goal, note in b.rows:
        print(f"{measure:<{w}}  {sync:<6}  {fmt(value):>14}  {unit:<6}  {goal:<7}  {note}")
    if a.out_csv:
        os.makedirs(os.path.dirname(os.path.abspath(a.out_csv)), exist_ok=True)
        with open(a.out_csv, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["measure", "sync", "value", "unit", "goal", "note",
                         "n", "dim", "metric", "threads", "rows_per_call"])
            for r in b.rows:
                wr.writerow(list(r) + [a.n, a.dim, a.metric, a.threads,
                                     a.rows_per_call or a.n])
        say(f"wrote {a.out_csv}")


if __name__ == "__main__":
    main(sys.argv[1:])
