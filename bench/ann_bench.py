#!/usr/bin/python3
"""npvdb against FAISS and hnswlib on one ann-benchmarks HDF5 file.

Systems, each run in its own subprocess (clean peak-memory figures, no state
shared between libraries), all limited to the same number of threads:

  npvdb        npvdb-server started here (free loopback port, temporary data
               dir), driven through the Python client: db.init(...) then
               db.get_closest(...) batched (all queries: unary Search calls
               with packed replies, the client chunks them to fit the
               message limit) and one query per call (one Search each)
  faiss-ivf    FAISS IndexIVFFlat, same nlist (= npvdb's shards) and nprobe,
               FAISS's own training defaults on a sample of the same size
  faiss-flat   FAISS IndexFlat, exact (the ceiling of recall)
  hnswlib      HNSW, M=16, ef_construction=200, several ef values

For each system and setting: recall@k against the file's `neighbors`, queries
per second, build seconds, and memory. Memory: for npvdb the server's
resident size (VmRSS growth over its idle start, and its peak VmHWM); for the
in-process libraries the worker's VmRSS growth over its state after loading
the data, and its VmHWM growth (peak). Writes a CSV and a recall-vs-QPS plot
(log QPS over recall, ann-benchmarks style).

    /usr/bin/python3 bench/ann_bench.py /tmp/clustered-200k-128-angular.hdf5 \
        --out-csv ann.csv --out-png ann.png
"""
import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEMS = ["npvdb", "faiss-ivf", "faiss-flat", "hnswlib"]
CSV_FIELDS = ["dataset", "system", "mode", "param", "recall", "qps",
              "n_queries", "build_s", "mem_mib", "peak_mib", "threads", "k"]


# ---- shared helpers ---------------------------------------------------------

def proc_status(pid, field):
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def load(path, max_queries):
    with h5py.File(path, "r") as f:
        metric = f.attrs.get("distance", "euclidean")
        if isinstance(metric, bytes):
            metric = metric.decode()
        train = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        nq = len(f["test"]) if not max_queries else min(max_queries, len(f["test"]))
        test = np.ascontiguousarray(f["test"][:nq], dtype=np.float32)
        truth = f["neighbors"][:nq]
    if metric not in ("angular", "euclidean"):
        sys.exit(f"{path}: distance {metric!r} not supported (angular, euclidean)")
    return metric, train, test, truth


def recall(ids, truth, k):
    t = truth[:, :k]
    hits = 0
    for i in range(len(ids)):
        hits += len(np.intersect1d(ids[i, :k], t[i]))
    return hits / (len(ids) * k)


def normalised(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return np.ascontiguousarray(x / n, dtype=np.float32)


def timed_single(search_one, queries, budget):
    """One query per call until all ran or `budget` seconds passed."""
    t0 = time.perf_counter()
    i = 0
    while i < len(queries) and (i == 0 or time.perf_counter() - t0 < budget):
        search_one(queries[i:i + 1])
        i += 1
    return i, i / (time.perf_counter() - t0)


def emit(rows, **kw):
    rows.append(kw)


def default_nlist(n):
    return max(1, min(65536, int(4 * np.sqrt(n) + 0.5)))


# ---- workers (each runs in its own subprocess) -------------------------------

def find_server(explicit):
    """(path of npvdb-server, build dir) in the given or a usual build dir."""
    dirs = [explicit] if explicit else [os.path.join(ROOT, "build-bench"),
                                        os.path.join(ROOT, "build")]
    for d in dirs:
        for sub in ("server", "."):
            p = os.path.join(d, sub, "npvdb-server")
            if os.access(p, os.X_OK):
                return p, d
    sys.exit("npvdb-server not found: build it (cmake --build build) or pass "
             "--build-dir")


def start_server(a, tmp):
    server, build = find_server(a.build_dir)
    port_file = os.path.join(tmp, "port")
    cmd = [server, "--listen", "127.0.0.1:0",
           "--port-file", port_file, "--data-dir", os.path.join(tmp, "data"),
           "--threads", str(a.threads), "--sync", a.npvdb_sync]
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, int(open(port_file).read()), build
        if proc.poll() is not None:
            sys.exit(f"npvdb-server exited ({proc.returncode}); see its log:\n"
                     + open(os.path.join(tmp, "server.log")).read())
        time.sleep(0.05)
    proc.kill()
    sys.exit("npvdb-server did not write its port within 10 s")


def keys_to_ids(keys):
    out = np.full(keys.shape, -1, dtype=np.int64)
    for idx, key in np.ndenumerate(keys):
        if key is not None:
            out[idx] = int(key)
    return out


def worker_npvdb(a, metric, train, test, truth, rows):
    tmp = tempfile.mkdtemp(prefix="npvdb-ann-bench-")
    proc, port, build = start_server(a, tmp)
    try:
        sys.path.insert(0, os.path.join(build, "clients", "python", "stage"))
        import npvdb
        db = npvdb.connect(f"127.0.0.1:{port}")
        base = proc_status(proc.pid, "VmRSS")
        keys = [str(i) for i in range(len(train))]
        t0 = time.perf_counter()
        db.init(keys, train, n_shards=a.nlist,
                metric="cosine" if metric == "angular" else "l2",
                progress=False)
        build_s = time.perf_counter() - t0
        mem = proc_status(proc.pid, "VmRSS") - base
        for nprobe in a.nprobes:
            t0 = time.perf_counter()
            got, _ = db.get_closest(test, k_nearest=a.k, nprobe=nprobe)
            qps = len(test) / (time.perf_counter() - t0)
            r = recall(keys_to_ids(got), truth, a.k)
            peak = proc_status(proc.pid, "VmHWM") - base
            emit(rows, system="npvdb", mode="batch", param=f"nprobe={nprobe}",
                 recall=r, qps=qps, n_queries=len(test), build_s=build_s,
                 mem_mib=mem / 2**20, peak_mib=peak / 2**20)
            n1, qps1 = timed_single(
                lambda q: db.get_closest(q, k_nearest=a.k, nprobe=nprobe),
                test, a.single_seconds)
            emit(rows, system="npvdb", mode="single", param=f"nprobe={nprobe}",
                 recall=r, qps=qps1, n_queries=n1, build_s=build_s,
                 mem_mib=mem / 2**20, peak_mib=peak / 2**20)
        db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def faiss_setup(a):
    import faiss
    faiss.omp_set_num_threads(a.threads)
    return faiss


def worker_faiss_ivf(a, metric, train, test, truth, rows):
    faiss = faiss_setup(a)
    dim = train.shape[1]
    if metric == "angular":
        train, test = normalised(train), normalised(test)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, a.nlist,
                                   faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, a.nlist)
    # The same sample size as npvdb's client draws (64 per list), at random.
    rng = np.random.default_rng(1)
    m = min(len(train), 64 * a.nlist)
    sample = train[np.sort(rng.choice(len(train), m, replace=False))]
    base = proc_status("self", "VmRSS")
    t0 = time.perf_counter()
    index.train(sample)
    index.add(train)
    build_s = time.perf_counter() - t0
    del sample
    mem = proc_status("self", "VmRSS") - base
    for nprobe in a.nprobes:
        index.nprobe = nprobe
        t0 = time.perf_counter()
        _, ids = index.search(test, a.k)
        qps = len(test) / (time.perf_counter() - t0)
        r = recall(ids, truth, a.k)
        peak = proc_status("self", "VmHWM") - base
        common = dict(system="faiss-ivf", param=f"nprobe={nprobe}", recall=r,
                      build_s=build_s, mem_mib=mem / 2**20, peak_mib=peak / 2**20)
        emit(rows, mode="batch", qps=qps, n_queries=len(test), **common)
        n1, qps1 = timed_single(lambda q: index.search(q, a.k), test,
                                a.single_seconds)
        emit(rows, mode="single", qps=qps1, n_queries=n1, **common)


def worker_faiss_flat(a, metric, train, test, truth, rows):
    faiss = faiss_setup(a)
    dim = train.shape[1]
    if metric == "angular":
        train, test = normalised(train), normalised(test)
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexFlatL2(dim)
    base = proc_status("self", "VmRSS")
    t0 = time.perf_counter()
    index.add(train)
    build_s = time.perf_counter() - t0
    mem = proc_status("self", "VmRSS") - base
    t0 = time.perf_counter()
    _, ids = index.search(test, a.k)
    qps = len(test) / (time.perf_counter() - t0)
    r = recall(ids, truth, a.k)
    peak = proc_status("self", "VmHWM") - base
    common = dict(system="faiss-flat", param="exact", recall=r, build_s=build_s,
                  mem_mib=mem / 2**20, peak_mib=peak / 2**20)
    emit(rows, mode="batch", qps=qps, n_queries=len(test), **common)
    n1, qps1 = timed_single(lambda q: index.search(q, a.k), test, a.single_seconds)
    emit(rows, mode="single", qps=qps1, n_queries=n1, **common)


def worker_hnswlib(a, metric, train, test, truth, rows):
    import hnswlib
    dim = train.shape[1]
    index = hnswlib.Index(space="cosine" if metric == "angular" else "l2", dim=dim)
    base = proc_status("self", "VmRSS")
    t0 = time.perf_counter()
    index.init_index(max_elements=len(train), ef_construction=a.hnsw_efc,
                     M=a.hnsw_m, random_seed=1)
    index.set_num_threads(a.threads)
    index.add_items(train, np.arange(len(train)), num_threads=a.threads)
    build_s = time.perf_counter() - t0
    mem = proc_status("self", "VmRSS") - base
    for ef in a.efs:
        index.set_ef(max(ef, a.k))
        t0 = time.perf_counter()
        ids, _ = index.knn_query(test, k=a.k, num_threads=a.threads)
        qps = len(test) / (time.perf_counter() - t0)
        r = recall(ids.astype(np.int64), truth, a.k)
        peak = proc_status("self", "VmHWM") - base
        common = dict(system="hnswlib", param=f"ef={ef}", recall=r,
                      build_s=build_s, mem_mib=mem / 2**20, peak_mib=peak / 2**20)
        emit(rows, mode="batch", qps=qps, n_queries=len(test), **common)
        n1, qps1 = timed_single(lambda q: index.knn_query(q, k=a.k, num_threads=1),
                                test, a.single_seconds)
        emit(rows, mode="single", qps=qps1, n_queries=n1, **common)


WORKERS = {"npvdb": worker_npvdb, "faiss-ivf": worker_faiss_ivf,
           "faiss-flat": worker_faiss_flat, "hnswlib": worker_hnswlib}


def run_worker(a):
    metric, train, test, truth = load(a.file, a.queries)
    if a.nlist == 0:
        a.nlist = default_nlist(len(train))
    rows = []
    WORKERS[a.worker](a, metric, train, test, truth, rows)
    for r in rows:
        print("RESULT " + json.dumps(r), flush=True)
    return 0


# ---- parent: run each system, write CSV and PNG ------------------------------

def worker_cmd(a, system):
    cmd = [sys.executable, os.path.abspath(__file__), a.file, "--worker", system,
           "--threads", str(a.threads), "--nprobe", a.nprobe, "--ef", a.ef,
           "--k", str(a.k), "--queries", str(a.queries), "--nlist", str(a.nlist),
           "--hnsw-m", str(a.hnsw_m), "--hnsw-efc", str(a.hnsw_efc),
           "--single-seconds", str(a.single_seconds), "--npvdb-sync", a.npvdb_sync]
    if a.build_dir:
        cmd += ["--build-dir", a.build_dir]
    return cmd


def thread_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_all(a):
    rows = []
    for system in a.systems:
        print(f"== {system}", file=sys.stderr, flush=True)
        t0 = time.time()
        res = subprocess.run(worker_cmd(a, system), capture_output=True, text=True,
                             env=thread_env(a.threads))
        if res.returncode != 0:
            print(f"{system} failed ({res.returncode}):\n{res.stderr[-3000:]}",
                  file=sys.stderr)
            continue
        for line in res.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[7:])
                r.update(dataset=os.path.basename(a.file), threads=a.threads, k=a.k)
                rows.append(r)
        print(f"   done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                        for k, v in r.items() if k in CSV_FIELDS})


def plot(path, rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6))
    styles = {"batch": "-", "single": "--"}
    markers = {"npvdb": "o", "faiss-ivf": "s", "faiss-flat": "*", "hnswlib": "^"}
    colours = {"npvdb": "tab:red", "faiss-ivf": "tab:blue",
               "faiss-flat": "tab:green", "hnswlib": "tab:purple"}
    for system in SYSTEMS:
        for mode in ("batch", "single"):
            pts = [r for r in rows if r["system"] == system and r["mode"] == mode]
            if not pts:
                continue
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts],
                    styles[mode], color=colours[system], marker=markers[system],
                    markersize=12 if system == "faiss-flat" else 6,
                    markerfacecolor="white" if mode == "single" else colours[system],
                    label=f"{system} ({'batched' if mode == 'batch' else 'one query per call'})")
    ax.set_yscale("log")
    ax.set_xlabel("recall@{}".format(rows[0]["k"] if rows else 10))
    ax.set_ylabel("queries per second (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows):
    print(f"{'system':11} {'mode':6} {'param':11} {'recall':>7} {'q/s':>9} "
          f"{'build s':>8} {'mem MiB':>8} {'peak MiB':>9}")
    for r in rows:
        print(f"{r['system']:11} {r['mode']:6} {r['param']:11} {r['recall']:7.4f} "
              f"{r['qps']:9.0f} {r['build_s']:8.1f} {r['mem_mib']:8.1f} "
              f"{r['peak_mib']:9.1f}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64")
    p.add_argument("--ef", default="10,20,40,80,160,320")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=0, help="limit (0: all)")
    p.add_argument("--nlist", type=int, default=0, help="0: 4*sqrt(n)")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--hnsw-efc", type=int, default=200)
    p.add_argument("--single-seconds", type=float, default=3.0)
    p.add_argument("--npvdb-sync", default="always",
                   help="npvdb-server --sync mode (always, interval, none)")
    p.add_argument("--build-dir", help="CMake build dir with npvdb-server")
    p.add_argument("--out-csv", default="ann_bench.csv")
    p.add_argument("--out-png", default="ann_bench.png")
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.nprobes = [int(x) for x in a.nprobe.split(",") if x]
    a.efs = [int(x) for x in a.ef.split(",") if x]
    a.systems = [s for s in a.systems.split(",") if s]
    bad = set(a.systems) - set(SYSTEMS)
    if bad:
        p.error(f"unknown systems {sorted(bad)}; choose from {SYSTEMS}")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.worker:
        return run_worker(a)
    with h5py.File(a.file, "r") as f:
        n, dim = f["train"].shape
        nq = len(f["test"]) if not a.queries else min(a.queries, len(f["test"]))
    if a.nlist == 0:
        a.nlist = default_nlist(n)
    rows = run_all(a)
    if not rows:
        return 1
    write_csv(a.out_csv, rows)
    title = (f"{os.path.basename(a.file)}: {n} x {dim}, {nq} queries, "
             f"{a.threads} threads, k={a.k}, nlist={a.nlist}")
    plot(a.out_png, rows, title)
    print(title)
    print_table(rows)
    print(f"wrote {a.out_csv} and {a.out_png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
