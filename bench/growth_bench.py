#!/usr/bin/python3
"""Growing a collection from empty under drift: online shard splits vs a collection built once.

Grows an L2 collection from empty to `--n` (2,000,000) vectors in insert()
calls of `--batch` (10,000) rows through npvdb-server, where the second half
comes from clusters absent from the first half (drift), and compares it at
each checkpoint (100k, 500k, 1M, 2M) with a collection built once on the same
vectors. Three servers, each with its own temporary data dir, `--sync none`
and `--snapshot-every-mb 0` (no automatic snapshot: the log holds everything):

  grown      rebalance on (the default): created empty (Init with no sample),
             trains itself at 65,536 vectors, then splits shards as it grows
  once       `--no-rebalance`: at each checkpoint a fresh collection
             (replace=True) built by db.init() on all the vectors so far
             (automatic shards, about 4*sqrt(n), trained on the client's
             default sample); its build time is measured
  norebal    `--no-rebalance`, grown like `grown` from the same batches: the
             server as it was before online splits (skip: --no-baseline)

Data: seeded Gaussian mixtures as bench/gen_dataset.py makes them
(`--centres` clusters of unequal sizes and spreads, each stretched along its
own random `--rank`-dimensional subspace): set A for the first half, set B
(other centres, their cloud moved by `--shift` times its radius) for the
second. Queries (`--queries`) are fresh draws from what was inserted so far
(A and B in proportion), fixed per checkpoint; the exact top-10 comes from
numpy brute force over every vector inserted so far.

At each checkpoint, for every collection: recall@10 and batched q/s (all the
queries in one get_closest() call, repeated for at least `--min-seconds`,
the collections timed in turn within each round so that load on the shared
machine hits them alike) for each `--nprobe`; the figures at the server's
default nprobe and at the smallest listed nprobe reaching recall@10 >= 0.95
(`--target`); shard count, largest, mean, smallest shard and largest/mean.
Per segment between checkpoints: insert vectors/s (grown, norebal), the
splits and merges made (Info.splits / merges when the server reports them),
the slowest insert() call. Log-only restart (`--restart-at`, default the
last checkpoint): SIGKILL, start again on the same data dir, seconds until
the port file exists and Info reports every vector, then a search.

Goal (issue): grown q/s at recall 0.95 within 10 % of once's at every
checkpoint (ratio >= 0.9), largest shard <= 3 x the mean.

    /usr/bin/python3 bench/growth_bench.py --n 200000 --checkpoints 50000,100000,200000
    /usr/bin/python3 bench/growth_bench.py --json bench/results/growth.json   # the issue's 2M

Heavy at full size: the vectors (512 MB at 2M x 64) in this process and in
each of the three servers, and tens of minutes on 2 cores.
"""
import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD_DIRS = ["build-bench", "build"]
K = 10
START_TIMEOUT_S = 1800.0


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def find_build(build_dir):
    dirs = [build_dir] if build_dir else [os.path.join(ROOT, d) for d in BUILD_DIRS]
    for d in dirs:
        server = os.path.join(d, "server", "npvdb-server")
        stage = os.path.join(d, "clients", "python", "stage")
        if os.access(server, os.X_OK) and os.path.isdir(os.path.join(stage, "npvdb")):
            return server, stage
    sys.exit("npvdb-server and the staged Python client (targets npvdb-server "
             f"npvdb_python) not found under {dirs}: build them or pass --build-dir")


def int_list(text):
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2_000_000, help="vectors at the end")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=10_000, help="rows per insert() call")
    p.add_argument("--queries", type=int, default=1000, help="queries per checkpoint")
    p.add_argument("--checkpoints", type=int_list,
                   default=[100_000, 500_000, 1_000_000, 2_000_000],
                   help="comma list; those above --n are dropped and --n is added")
    p.add_argument("--nprobe", type=int_list, default=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128],
                   help="nprobe values measured (the server's default is added)")
    p.add_argument("--target", type=float, default=0.95, help="recall@10 to reach")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="time each (collection, nprobe) for at least this long")
    p.add_argument("--centres", type=int, default=256, help="clusters per set (A, B)")
    p.add_argument("--rank", type=int, default=16, help="intrinsic dimension of a cluster")
    p.add_argument("--spread", type=float, default=1.0,
                   help="mean cluster std-dev relative to the centres' spread")
    p.add_argument("--shift", type=float, default=1.0,
                   help="B's centres are moved by this times the centres' RMS norm "
                        "(sqrt(dim)) in one random direction (0: same region as A)")
    p.add_argument("--restart-at", type=int_list, default=None,
                   help="checkpoints after which grown (and norebal) are SIGKILLed and "
                        "restarted from the log (default: the last; 0: none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the grown collection on a --no-rebalance server")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="npvdb-server --threads (each server)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--build-dir", help="a CMake build tree with npvdb-server and "
                   "clients/python/stage (default: " + ", ".join(BUILD_DIRS) + ")")
    p.add_argument("--tmp-dir", help="parent of the data dirs (default $TMPDIR or /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the data dirs")
    p.add_argument("--json", help="write every figure to this file")
    a = p.parse_args(argv)
    if a.n < 2 * a.batch or a.dim < 1 or a.batch < 1 or a.queries < 1:
        p.error("need --n >= 2 * --batch, --dim >= 1, --queries >= 1")
    cps = sorted({c for c in a.checkpoints if 0 < c <= a.n} | {a.n})
    a.checkpoints = cps
    if a.restart_at is None:
        a.restart_at = [cps[-1]]
    a.restart_at = [c for c in a.restart_at if c in cps]
    return a


# -- data ----------------------------------------------------------------------
class Mixture:
    """gen_dataset.py's mixture: unequal sizes (Dirichlet weights) and spreads,
    each cluster stretched along its own random rank-r subspace."""

    def __init__(self, rng, n_centres, dim, rank, spread, offset):
        self.centres = rng.standard_normal((n_centres, dim), dtype=np.float32) + offset
        self.weights = rng.dirichlet(np.full(n_centres, 2.0))
        self.sigmas = (spread * rng.uniform(0.5, 1.5, n_centres)).astype(np.float32)
        rank = min(rank, dim)
        self.bases = rng.standard_normal((n_centres, rank, dim), dtype=np.float32)
        self.bases *= np.float32(1 / np.sqrt(rank))

    def sample(self, rng, count, out=None, chunk=4096):
        dim, rank = self.centres.shape[1], self.bases.shape[1]
        if out is None:
            out = np.empty((count, dim), dtype=np.float32)
        for lo in range(0, count, chunk):
            hi = min(count, lo + chunk)
            comp = rng.choice(len(self.centres), size=hi - lo, p=self.weights)
            z = rng.standard_normal((hi - lo, rank), dtype=np.float32)
            inside = np.einsum("nr,nrd->nd", z, self.bases[comp])
            noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
            out[lo:hi] = self.centres[comp] + self.sigmas[comp, None] * (inside + 0.1 * noise)
        return out


def make_data(a):
    rng = np.random.default_rng(a.seed)
    direction = rng.standard_normal(a.dim)
    direction /= np.linalg.norm(direction)
    offset = (a.shift * math.sqrt(a.dim) * direction).astype(np.float32)
    mix_a = Mixture(rng, a.centres, a.dim, a.rank, a.spread, 0)
    mix_b = Mixture(rng, a.centres, a.dim, a.rank, a.spread, offset)
    half = a.n // 2
    data = np.empty((a.n, a.dim), dtype=np.float32)
    mix_a.sample(np.random.default_rng(a.seed + 1), half, data[:half])
    mix_b.sample(np.random.default_rng(a.seed + 2), a.n - half, data[half:])
    return data, half, mix_a, mix_b


def make_queries(a, ci, c, half, mix_a, mix_b):
    """Fresh draws from what is inserted at checkpoint c: A and B in proportion."""
    rng = np.random.default_rng([a.seed, 1000 + ci])
    n_b = int(round(a.queries * max(0, c - half) / c))
    q = np.empty((a.queries, a.dim), dtype=np.float32)
    mix_a.sample(rng, a.queries - n_b, q[:a.queries - n_b])
    if n_b:
        mix_b.sample(rng, n_b, q[a.queries - n_b:])
    return q[rng.permutation(a.queries)], n_b


def exact_topk(data, queries, k=K, extra=16, chunk_bytes=128 << 20):
    """Row numbers of the k nearest rows of `data` (L2) per query: float32
    matrix products in chunks keep the best k + extra candidates, which are
    then ranked again in float64."""
    nq = len(queries)
    kk = min(len(data), k + extra)
    rows = max(kk, chunk_bytes // (4 * nq))
    best_i = np.empty((nq, 0), dtype=np.int64)
    best_d = np.empty((nq, 0), dtype=np.float32)
    for lo in range(0, len(data), rows):
        x = data[lo:lo + rows]
        d = (x * x).sum(1)[None, :] - 2 * (queries @ x.T)
        m = min(kk, d.shape[1])
        part = np.argpartition(d, m - 1, axis=1)[:, :m]
        cand_i = np.concatenate([best_i, part + lo], axis=1)
        cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
        keep = np.argpartition(cand_d, min(kk, cand_d.shape[1]) - 1, axis=1)[:, :kk]
        best_i = np.take_along_axis(cand_i, keep, 1)
        best_d = np.take_along_axis(cand_d, keep, 1)
    exact = ((data[best_i].astype(np.float64) - queries[:, None, :].astype(np.float64)) ** 2).sum(2)
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best_i, order, 1)


def recall_at_k(keys, truth):
    got = np.array([[int(x) if x is not None else -1 for x in row] for row in keys],
                   dtype=np.int64)[:, :K]
    return float((got[:, :, None] == truth[:, None, :K]).any(2).sum()) / truth[:, :K].size


# -- servers -------------------------------------------------------------------
class Server:
    """One npvdb-server on a free loopback port (restartable on its data dir)."""

    def __init__(self, bench, tag, extra_flags):
        self.bench, self.tag, self.extra = bench, tag, list(extra_flags)
        self.work = tempfile.mkdtemp(prefix=f"npvdb-growth-{tag}-", dir=bench.a.tmp_dir)
        self.data_dir = os.path.join(self.work, "data")
        self.proc = None
        self.db = None
        self.starts = 0

    def cmd(self):
        a = self.bench.a
        return [self.bench.binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--data-dir", self.data_dir, "--sync", "none", "--snapshot-every-mb", "0",
                # db.init() of 1M rows streams faster than the server applies
                # it: with the default budget (64 + 16 MiB) gRPC reset the
                # stream (RESOURCE_EXHAUSTED) at the 1M checkpoint.
                "--receive-buffer-mb", "1024",
                "--threads", str(a.threads)] + self.extra

    def start(self, expect_vectors=None):
        """Starts the process; returns (seconds to the port file, seconds
        until Info reports `expect_vectors`, or None)."""
        self.starts += 1
        self.port_file = os.path.join(self.work, f"port-{self.starts}")
        self.log_path = os.path.join(self.work, f"server-{self.starts}.log")
        self.log = open(self.log_path, "w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd(), stdout=self.log, stderr=subprocess.STDOUT)
        while True:
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.address = f"127.0.0.1:{int(text)}"
                    break
            except (FileNotFoundError, ValueError):
                pass
            if self.proc.poll() is not None:
                sys.exit(f"npvdb-server ({self.tag}) exited {self.proc.returncode}:\n"
                         + self.log_text())
            if time.perf_counter() - t0 > START_TIMEOUT_S:
                sys.exit(f"npvdb-server ({self.tag}) wrote no port file in {START_TIMEOUT_S} s")
            time.sleep(0.002)
        t_port = time.perf_counter() - t0
        self.db = self.bench.npvdb.connect(self.address)
        if expect_vectors is None:
            return t_port, None
        while True:
            try:
                v = self.db.info().vectors
            except self.bench.npvdb.Unavailable:
                v = -1
            t_all = time.perf_counter() - t0
            if v == expect_vectors:
                return t_port, t_all
            if v > expect_vectors or t_all > START_TIMEOUT_S:
                sys.exit(f"{self.tag} after restart: Info reports {v} vectors, "
                         f"expected {expect_vectors}\n" + self.log_text())
            time.sleep(0.005)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def kill(self):
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None and not self.log.closed:
            self.log.close()

    def cleanup(self):
        self.kill()
        if self.bench.a.keep:
            say(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def shard_stats(info):
    """Shard figures from Info, with the server's own fields when it has them."""
    sizes = np.asarray(getattr(info, "shard_sizes", []), dtype=np.int64)
    n_sh = int(info.n_shards or len(sizes))
    largest = getattr(info, "largest_shard", None)
    smallest = getattr(info, "smallest_shard", None)
    if largest is None or (largest == 0 and len(sizes)):
        largest = int(sizes.max()) if len(sizes) else None
    if smallest is None or (smallest == 0 and len(sizes) and sizes.min() > 0):
        smallest = int(sizes.min()) if len(sizes) else None
    mean = info.vectors / n_sh if n_sh else None
    return {
        "vectors": int(info.vectors), "trained": bool(info.trained), "n_shards": n_sh,
        "largest": None if largest is None else int(largest),
        "smallest": None if smallest is None else int(smallest),
        "mean": mean,
        "largest_over_mean": (largest / mean) if (largest is not None and mean) else None,
        "splits": getattr(info, "splits", None), "merges": getattr(info, "merges", None),
        "retrains": getattr(info, "retrains", None),
        "default_nprobe": int(info.default_nprobe),
    }


# -- the run -------------------------------------------------------------------
class Bench:
    def __init__(self, a):
        self.a = a
        self.binary, stage = find_build(a.build_dir)
        sys.path.insert(0, stage)
        import npvdb  # noqa: E402  (from the build tree)
        self.npvdb = npvdb
        self.servers = {}

    def grown_names(self):
        return ["grown"] + ([] if self.a.no_baseline else ["norebal"])

    def measure_queries(self, queries, truth, nprobes):
        """recall@10 and batched q/s per (collection, nprobe), interleaved."""
        a = self.a
        names = list(self.servers)
        out = {nm: {} for nm in names}
        for npb in nprobes:
            spent = {nm: 0.0 for nm in names}
            reps = {nm: 0 for nm in names}
            rnd = 0
            while min(spent.values()) < a.min_seconds or min(reps.values()) < 2:
                order = names if rnd % 2 == 0 else names[::-1]
                for nm in order:
                    if spent[nm] >= a.min_seconds and reps[nm] >= 2:
                        continue
                    db = self.servers[nm].db
                    t0 = time.perf_counter()
                    keys, _ = db.get_closest(queries, k_nearest=K, nprobe=npb)
                    spent[nm] += time.perf_counter() - t0
                    if reps[nm] == 0:
                        out[nm][npb] = {"recall": recall_at_k(keys, truth)}
                    reps[nm] += 1
                rnd += 1
            for nm in names:
                out[nm][npb]["qps"] = reps[nm] * len(queries) / spent[nm]
                out[nm][npb]["reps"] = reps[nm]
        return out

    def restart(self, nm, expect, queries, truth, nprobe):
        srv = self.servers[nm]
        before = shard_stats(srv.db.info())
        keys, _ = srv.db.get_closest(queries, k_nearest=K, nprobe=nprobe)
        rec_before = recall_at_k(keys, truth)
        log_bytes = sum(os.path.getsize(os.path.join(r, f))
                        for r, _, fs in os.walk(srv.data_dir) for f in fs)
        srv.kill()
        la = loadavg()
        t_port, t_all = srv.start(expect)
        after = shard_stats(srv.db.info())
        keys, _ = srv.db.get_closest(queries, k_nearest=K, nprobe=nprobe)
        rec_after = recall_at_k(keys, truth)
        r = {"collection": nm, "vectors": expect, "seconds": t_all, "port_file_s": t_port,
             "vectors_per_s": expect / t_all, "data_dir_bytes": log_bytes,
             "n_shards_before": before["n_shards"], "n_shards_after": after["n_shards"],
             "largest_before": before["largest"], "largest_after": after["largest"],
             "recall_before": rec_before, "recall_after": rec_after, "nprobe": nprobe,
             "loadavg": la}
        say(f"  restart {nm}: {t_all:.2f} s ({expect / t_all:,.0f} vectors/s replayed), "
            f"shards {before['n_shards']} -> {after['n_shards']}, recall@{nprobe} "
            f"{rec_before:.3f} -> {rec_after:.3f}")
        return r

    def run(self):
        a = self.a
        t_gen = time.perf_counter()
        data, half, mix_a, mix_b = make_data(a)
        keys = [str(i) for i in range(a.n)]
        t_gen = time.perf_counter() - t_gen
        say(f"generated {a.n:,} x {a.dim} in {t_gen:.1f} s (A: rows 0..{half - 1}, "
            f"B: {half}..{a.n - 1})")
        res = {"settings": {k: v for k, v in vars(a).items()}, "command": sys.argv,
               "server": self.binary, "generate_s": t_gen, "half": half,
               "checkpoints": [], "segments": [], "restarts": []}
        try:
            self.servers["grown"] = Server(self, "grown", [])
            self.servers["once"] = Server(self, "once", ["--no-rebalance"])
            if not a.no_baseline:
                self.servers["norebal"] = Server(self, "norebal", ["--no-rebalance"])
            for srv in self.servers.values():
                srv.start()
            for nm in self.grown_names():
                # Created empty: no training sample; trains itself at 65,536.
                self.servers[nm].db.init([], np.zeros((0, a.dim), np.float32),
                                         metric="l2", replace=True)
            default_np = self.servers["grown"].db.info().default_nprobe or 8
            nprobes = sorted(set(a.nprobe) | {default_np})
            res["default_nprobe"] = default_np
            res["nprobe"] = nprobes
            done = 0
            for ci, c in enumerate(a.checkpoints):
                seg = self.grow(done, c, data, keys)
                res["segments"].append(seg)
                done = c
                cp = self.checkpoint(ci, c, data, keys, half, mix_a, mix_b, nprobes, default_np)
                res["checkpoints"].append(cp)
                if c in a.restart_at:
                    say(f"== log-only restart at {c:,} (loadavg {loadavg()})")
                    for nm in self.grown_names():
                        r = self.restart(nm, c, cp["_queries"], cp["_truth"], default_np)
                        r["checkpoint"] = c
                        res["restarts"].append(r)
                del cp["_queries"], cp["_truth"]
                if a.json:
                    write_json(a.json, res)
        finally:
            for srv in self.servers.values():
                srv.cleanup()
        res["loadavg_end"] = loadavg()
        return res

    def grow(self, lo, hi, data, keys):
        """Inserts rows lo..hi in batches into the grown collections (in turn)."""
        a = self.a
        names = self.grown_names()
        info0 = {nm: shard_stats(self.servers[nm].db.info()) for nm in names}
        spent = {nm: 0.0 for nm in names}
        lat = {nm: [] for nm in names}
        la = loadavg()
        say(f"== insert {lo:,}..{hi:,} (loadavg {la})")
        for i in range(lo, hi, a.batch):
            j = min(hi, i + a.batch)
            for nm in names:
                t0 = time.perf_counter()
                r = self.servers[nm].db.insert(keys[i:j], data[i:j], progress=False)
                dt = time.perf_counter() - t0
                if r.inserted != j - i:
                    sys.exit(f"{nm}: insert reported {r.inserted} new keys, expected {j - i}")
                spent[nm] += dt
                lat[nm].append(dt)
        seg = {"from": lo, "to": hi, "loadavg": la}
        for nm in names:
            info1 = shard_stats(self.servers[nm].db.info())
            ms = np.array(lat[nm]) * 1000
            d = {"vectors_per_s": (hi - lo) / spent[nm], "seconds": spent[nm],
                 "batch_ms_p50": float(np.percentile(ms, 50)),
                 "batch_ms_p99": float(np.percentile(ms, 99)), "batch_ms_max": float(ms.max()),
                 "n_shards_before": info0[nm]["n_shards"], "n_shards_after": info1["n_shards"]}
            for f in ("splits", "merges", "retrains"):
                v0, v1 = info0[nm][f], info1[f]
                d[f] = (v1 - v0) if (v0 is not None and v1 is not None) else None
            seg[nm] = d
            say(f"  {nm}: {d['vectors_per_s']:,.0f} vectors/s, shards {d['n_shards_before']} -> "
                f"{d['n_shards_after']}, splits {fmt(d['splits'])}, slowest call "
                f"{d['batch_ms_max']:.0f} ms")
        return seg

    def checkpoint(self, ci, c, data, keys, half, mix_a, mix_b, nprobes, default_np):
        a = self.a
        say(f"== checkpoint {c:,} (loadavg {loadavg()})")
        once = self.servers["once"].db
        t0 = time.perf_counter()
        r = once.init(keys[:c], data[:c], metric="l2", replace=True, progress=False)
        t_build = time.perf_counter() - t0
        say(f"  once: built in {t_build:.1f} s ({r.n_shards} shards, {r.train_rows} training rows)")
        queries, n_b = make_queries(a, ci, c, half, mix_a, mix_b)
        t0 = time.perf_counter()
        truth = exact_topk(data[:c], queries)
        t_truth = time.perf_counter() - t0
        say(f"  exact top-{K} of {a.queries} queries ({n_b} from B) in {t_truth:.1f} s")
        cp = {"n": c, "queries_from_b": n_b, "truth_s": t_truth, "loadavg": loadavg(),
              "once_build_s": t_build, "once_train_rows": r.train_rows, "collections": {}}
        stats = {nm: shard_stats(self.servers[nm].db.info()) for nm in self.servers}
        for nm, st in stats.items():
            if st["vectors"] != c:
                sys.exit(f"{nm}: Info reports {st['vectors']} vectors, expected {c}")
        per = self.measure_queries(queries, truth, nprobes)
        for nm in self.servers:
            curve = per[nm]
            hit = next((p for p in nprobes if curve[p]["recall"] >= a.target), None)
            cp["collections"][nm] = {
                "shards": stats[nm],
                "curve": {str(p): curve[p] for p in nprobes},
                "default": dict(nprobe=default_np, **curve[default_np]),
                "at_target": (dict(nprobe=hit, **curve[hit]) if hit is not None
                              else {"nprobe": None, "recall": None, "qps": None}),
                "qps_at_target_interp": interp_qps(curve, nprobes, a.target),
            }
        g, o = cp["collections"]["grown"]["at_target"], cp["collections"]["once"]["at_target"]
        cp["ratio_qps_at_target"] = (g["qps"] / o["qps"]) if g["qps"] and o["qps"] else None
        gi = cp["collections"]["grown"]["qps_at_target_interp"]
        oi = cp["collections"]["once"]["qps_at_target_interp"]
        cp["ratio_qps_at_target_interp"] = (gi / oi) if gi and oi else None
        cp["_queries"], cp["_truth"] = queries, truth
        print_checkpoint(cp, nprobes, a.target)
        return cp


def interp_qps(curve, nprobes, target):
    """q/s at exactly `target` recall: log q/s linear in recall between the
    two listed nprobe values around it (None if no listed one reaches it)."""
    prev = None
    for p in nprobes:
        r, q = curve[p]["recall"], curve[p]["qps"]
        if r >= target:
            if prev is None or prev[0] >= r:
                return q
            t = (target - prev[0]) / (r - prev[0])
            return math.exp(math.log(prev[1]) + t * (math.log(q) - math.log(prev[1])))
        if prev is None or r > prev[0]:
            prev = (r, q)
    return None


# -- output --------------------------------------------------------------------
def fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.{nd}f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def table(header, rows):
    cols = [header] + [[fmt(x) if not isinstance(x, str) else x for x in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    lines = ["  ".join(s.rjust(w[i]) if i else s.ljust(w[i]) for i, s in enumerate(r))
             for r in cols]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def print_checkpoint(cp, nprobes, target):
    names = list(cp["collections"])
    print(f"\n### {cp['n']:,} vectors ({cp['queries_from_b']} of the queries from B; "
          f"once built in {cp['once_build_s']:.1f} s; loadavg {cp['loadavg']})")
    hdr = ["nprobe"]
    for nm in names:
        hdr += [f"{nm} recall", f"{nm} q/s"]
    rows = []
    for p in nprobes:
        row = [str(p)]
        for nm in names:
            c = cp["collections"][nm]["curve"][str(p)]
            row += [c["recall"], c["qps"]]
        rows.append(row)
    print(table(hdr, rows))
    rows = []
    for nm in names:
        c = cp["collections"][nm]
        s, d, t = c["shards"], c["default"], c["at_target"]
        rows.append([nm, s["n_shards"], s["largest"], s["mean"], s["smallest"],
                     s["largest_over_mean"], d["recall"], d["qps"], fmt(t["nprobe"]),
                     t["recall"], t["qps"], c["qps_at_target_interp"]])
    print()
    print(table(["collection", "shards", "largest", "mean", "smallest", "lg/mean",
                 f"recall@{d['nprobe']}", f"q/s@{d['nprobe']}", f"nprobe@{target}",
                 "recall", "q/s", "q/s interp"], rows))
    if not cp["collections"]["grown"]["shards"]["trained"]:
        print("grown is not trained yet (it trains at 65,536 vectors): exact search")
    print(f"grown / once q/s at recall {target}: {fmt(cp['ratio_qps_at_target'])} "
          f"(interpolated: {fmt(cp['ratio_qps_at_target_interp'])}); goal >= 0.9, lg/mean <= 3",
          flush=True)


def print_summary(res):
    a = res["settings"]
    names = list(res["checkpoints"][0]["collections"])
    print(f"\n## Summary: {a['n']:,} x {a['dim']} L2, batches of {a['batch']:,}, drift at "
          f"{res['half']:,}, {a['queries']} queries, server threads {a['threads']}, "
          f"recall target {a['target']}")
    rows = []
    for cp in res["checkpoints"]:
        row = [f"{cp['n']:,}"]
        for nm in names:
            c = cp["collections"][nm]
            row += [c["shards"]["n_shards"], c["shards"]["largest_over_mean"],
                    fmt(c["at_target"]["nprobe"]), c["at_target"]["qps"]]
        ok_ratio = cp["ratio_qps_at_target"] is not None and cp["ratio_qps_at_target"] >= 0.9
        lgm = cp["collections"]["grown"]["shards"]["largest_over_mean"]
        ok_lg = lgm is not None and lgm <= 3
        trained = cp["collections"]["grown"]["shards"]["trained"]
        row += [cp["ratio_qps_at_target"], cp["ratio_qps_at_target_interp"],
                ("yes" if ok_ratio and ok_lg else "NO") if trained else "untrained"]
        rows.append(row)
    hdr = ["n"]
    for nm in names:
        hdr += [f"{nm} shards", "lg/mean", "nprobe", "q/s"]
    hdr += ["grown/once", "interp", "goal met"]
    print(table(hdr, rows))

    print("\nInserts per segment (insert() calls of one batch each):")
    grown = [nm for nm in ("grown", "norebal") if nm in res["segments"][0]]
    rows = []
    for s in res["segments"]:
        row = [f"{s['from']:,}..{s['to']:,}"]
        for nm in grown:
            d = s[nm]
            row += [d["vectors_per_s"], f"{d['n_shards_before']}->{d['n_shards_after']}",
                    fmt(d["splits"]), fmt(d["merges"]), d["batch_ms_p99"], d["batch_ms_max"]]
        rows.append(row)
    hdr = ["rows"]
    for nm in grown:
        hdr += [f"{nm} vec/s", "shards", "splits", "merges", "p99 ms", "max ms"]
    print(table(hdr, rows))

    if res["restarts"]:
        print("\nLog-only restart (SIGKILL, no snapshot; until Info reports every vector):")
        rows = [[f"{r['checkpoint']:,}", r["collection"], r["seconds"], r["port_file_s"],
                 r["vectors_per_s"], f"{r['data_dir_bytes'] / 2**20:,.0f}",
                 f"{r['n_shards_before']}->{r['n_shards_after']}",
                 f"{r['recall_before']:.3f}->{r['recall_after']:.3f}"] for r in res["restarts"]]
        print(table(["n", "collection", "seconds", "port file s", "vectors/s", "log MiB",
                     "shards", f"recall@{res['default_nprobe']}"], rows))
    print(f"\ntotal {res['total_s']:.0f} s; loadavg at the end {res['loadavg_end']}")


def write_json(path, res):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(res, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    os.replace(path + ".tmp", path)


def main(argv):
    a = parse_args(argv)
    t0 = time.perf_counter()
    b = Bench(a)
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable] + sys.argv))
    print(f"server: {b.binary} --sync none --snapshot-every-mb 0 --receive-buffer-mb 1024 --threads {a.threads}"
          f" (once{'' if a.no_baseline else ', norebal'}: --no-rebalance)")
    print(f"settings: n {a.n:,}, dim {a.dim}, batch {a.batch:,}, queries {a.queries}, "
          f"checkpoints {','.join(map(str, a.checkpoints))}, restart at "
          f"{','.join(map(str, a.restart_at)) or 'none'}, centres {a.centres}/set, rank {a.rank}, "
          f"spread {a.spread}, shift {a.shift}, seed {a.seed}, min {a.min_seconds} s per timing; "
          f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}",
          flush=True)
    res = b.run()
    res["total_s"] = time.perf_counter() - t0
    print_summary(res)
    if a.json:
        write_json(a.json, res)
        say(f"wrote {a.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
