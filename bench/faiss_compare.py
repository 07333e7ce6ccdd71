#!/usr/bin/python3
"""npvdb's engine against FAISS IndexIVFFlat on one ann-benchmarks HDF5 file.

Runs npvdb-engine-bench (C, in a subprocess) and FAISS IndexIVFFlat (in this
process) one after the other in the same run, with the same settings:

- nlist = npvdb's shard count (default: 4*sqrt(n), the engine's automatic one);
- the same k-means sample (the same strided rows of `train`) and the same
  number of Lloyd iterations (the engine's default, 10; --faiss-niter to
  change, FAISS's own default is 25);
- the same nprobe values, k and queries;
- the same number of threads (engine --threads, faiss.omp_set_num_threads);
- metric: angular -> FAISS on normalised vectors with inner product,
  euclidean -> L2.

Prints both tables and the ratios: npvdb q/s / FAISS q/s per nprobe (above
1.0 means npvdb is faster) and FAISS build seconds / npvdb build seconds.

    /usr/bin/python3 bench/faiss_compare.py /tmp/clustered-200k-128-angular.hdf5
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENGINE_ITERS = 10  # npvdb_config.kmeans_iters default


def find_engine_bench(explicit):
    if explicit:
        return explicit
    for d in ("build-bench", "build"):
        p = os.path.join(ROOT, d, "bench", "npvdb-engine-bench")
        if os.access(p, os.X_OK):
            return p
    p = shutil.which("npvdb-engine-bench")
    if p:
        return p
    sys.exit("npvdb-engine-bench not found: build it (cmake --build build "
             "--target npvdb-engine-bench) or pass --engine-bench PATH")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file", help="ann-benchmarks HDF5 file")
    p.add_argument("--shards", type=int, default=0, help="nlist (0: 4*sqrt(n))")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64")
    p.add_argument("--queries", type=int, default=0, help="limit (0: all)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--train-sample", type=int, default=0,
                   help="k-means sample rows (0: 64 * nlist, capped at n)")
    p.add_argument("--faiss-niter", type=int, default=ENGINE_ITERS)
    p.add_argument("--single-seconds", type=float, default=3.0,
                   help="time budget per nprobe for one query per call")
    p.add_argument("--engine-bench", help="path of npvdb-engine-bench")
    a = p.parse_args(argv)
    a.nprobes = [int(x) for x in a.nprobe.split(",") if x]
    return a


def parse_kv(line):
    kind, *fields = line.strip().split(",")
    out = {}
    for f in fields:
        k, v = f.split("=", 1)
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v
    return kind, out


def run_engine(a, n, shards, sample):
    cmd = [find_engine_bench(a.engine_bench), a.file, "--csv",
           "--shards", str(shards), "--threads", str(a.threads),
           "--nprobe", a.nprobe, "--k", str(a.k), "--queries", str(a.queries),
           "--train-sample", str(sample),
           "--single-seconds", str(a.single_seconds)]
    print("running:", " ".join(cmd), file=sys.stderr)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"npvdb-engine-bench failed ({res.returncode}):\n{res.stderr}")
    build, rows = None, []
    for line in res.stdout.splitlines():
        kind, kv = parse_kv(line)
        if kind == "build":
            build = kv
        elif kind == "search":
            rows.append(kv)
    return build, rows


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall_at(ids, truth, k):
    t = truth[:, :k]
    hits = sum(len(np.intersect1d(ids[i, :k], t[i], assume_unique=False))
               for i in range(len(ids)))
    return hits / (len(ids) * k)


def faiss_build(a, train, metric, nlist, sample_idx):
    import faiss
    faiss.omp_set_num_threads(a.threads)
    dim = train.shape[1]
    if metric == "angular":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L2)
    index.cp.niter = a.faiss_niter
    index.cp.seed = 42
    sample = np.ascontiguousarray(train[sample_idx])
    t0 = time.perf_counter()
    index.train(sample)
    t1 = time.perf_counter()
    index.add(train)
    t2 = time.perf_counter()
    del sample
    return index, quantizer, t1 - t0, t2 - t1


def faiss_search(a, index, queries, truth):
    rows = []
    for nprobe in a.nprobes:
        index.nprobe = nprobe
        t0 = time.perf_counter()
        _, ids = index.search(queries, a.k)
        batch_qps = len(queries) / (time.perf_counter() - t0)
        rec = recall_at(ids, truth, a.k)
        t0 = time.perf_counter()
        i = 0
        while i < len(queries) and (i == 0 or time.perf_counter() - t0 < a.single_seconds):
            index.search(queries[i:i + 1], a.k)
            i += 1
        single_qps = i / (time.perf_counter() - t0)
        rows.append(dict(nprobe=nprobe, recall=rec, batch_qps=batch_qps,
                         single_qps=single_qps, single_n=i))
    return rows


def run_faiss(a, shards, sample_n):
    with h5py.File(a.file, "r") as f:
        metric = f.attrs.get("distance", "euclidean")
        if isinstance(metric, bytes):
            metric = metric.decode()
        train = f["train"][:].astype(np.float32, copy=False)
        nq = len(f["test"]) if not a.queries else min(a.queries, len(f["test"]))
        queries = f["test"][:nq].astype(np.float32, copy=False)
        truth = f["neighbors"][:nq]
    if metric == "angular":
        # Normalising is part of npvdb's insert; FAISS gets it done up front
        # (not timed), which only favours FAISS.
        train /= np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-30)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
    n = len(train)
    sample_idx = (np.arange(sample_n, dtype=np.int64) * n) // sample_n
    base = rss_bytes()
    index, quantizer, train_s, add_s = faiss_build(a, train, metric, shards, sample_idx)
    grow = rss_bytes() - base
    rows = faiss_search(a, index, queries, truth)
    build = dict(train_s=train_s, insert_s=add_s, rss_growth_bytes=grow,
                 maxrss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return metric, build, rows


def print_report(a, n, dim, nq, metric, shards, sample_n, eb, er, fb, fr):
    mib = 1 / 1048576
    print(f"file {a.file}: {n} x {dim} {metric}, {nq} queries, nlist = shards = {shards}, threads = {a.threads}, k = {a.k}")
    print(f"k-means sample {sample_n} rows; iterations npvdb {ENGINE_ITERS}, "
          f"FAISS {a.faiss_niter}")
    print()
    eb_total = eb["train_s"] + eb["insert_s"]
    fb_total = fb["train_s"] + fb["insert_s"]
    print(f"{'build':10} {'train s':>9} {'insert s':>9} {'total s':>9} {'RSS growth MiB':>15}")
    print(f"{'npvdb':10} {eb['train_s']:9.2f} {eb['insert_s']:9.2f} {eb_total:9.2f} "
          f"{eb['rss_growth_bytes'] * mib:15.1f}")
    print(f"{'FAISS':10} {fb['train_s']:9.2f} {fb['insert_s']:9.2f} {fb_total:9.2f} "
          f"{fb['rss_growth_bytes'] * mib:15.1f}")
    print(f"build ratio FAISS/npvdb = {fb_total / eb_total:.2f} "
          f"(above 1: npvdb builds faster); raw vectors+keys "
          f"{eb['raw_bytes'] * mib:.1f} MiB, npvdb's count "
          f"{eb['memory_bytes'] * mib:.1f} MiB ({eb['memory_bytes'] / eb['raw_bytes']:.2f}x), "
          f"RSS growth {eb['rss_growth_bytes'] / eb['raw_bytes']:.2f}x")
    print()
    hdr = (f"{'nprobe':>6} | {'recall npvdb':>12} {'FAISS':>6} | {'batch q/s npvdb':>15} "
           f"{'FAISS':>8} {'ratio':>6} | {'single q/s npvdb':>16} {'FAISS':>8} {'ratio':>6}")
    print(hdr)
    print("-" * len(hdr))
    for e, f in zip(er, fr):
        print(f"{e['nprobe']:>6} | {e['recall']:12.4f} {f['recall']:6.4f} | "
              f"{e['batch_qps']:15.0f} {f['batch_qps']:8.0f} "
              f"{e['batch_qps'] / f['batch_qps']:6.2f} | {e['single_qps']:16.0f} "
              f"{f['single_qps']:8.0f} {e['single_qps'] / f['single_qps']:6.2f}")


def main(argv=None):
    a = parse_args(argv)
    with h5py.File(a.file, "r") as f:
        n, dim = f["train"].shape
        nq = min(a.queries, len(f["test"])) if a.queries else len(f["test"])
        if "neighbors" not in f:
            sys.exit(f"{a.file}: no 'neighbors' dataset")
    shards = a.shards or max(1, min(65536, int(4 * np.sqrt(n) + 0.5)))
    sample_n = min(n, a.train_sample or 64 * shards)
    eb, er = run_engine(a, n, shards, sample_n)
    metric, fb, fr = run_faiss(a, shards, sample_n)
    print_report(a, n, dim, nq, metric, shards, sample_n, eb, er, fb, fr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
