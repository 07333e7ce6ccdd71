"""Issue 11's server side, through a real server: the /metrics endpoint
(calls by method and code, latency histograms, collections, log, fsync,
snapshots), every flag also an environment variable (--print-config), and
JSON log lines."""
import json
import os
import re
import subprocess
import time
import urllib.request

import grpc
import numpy as np
import pytest

from wire import SERVER, Server, floats, pb

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')


def scrape(url):
    """{(name, frozenset(labels)): value}, checking every line's syntax."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = LINE.match(line)
        assert m, "not Prometheus text: %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    for name in {n for n, _ in out}:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name.startswith("npvdb_"), name
        assert name in types or base in types, "no TYPE for " + name
    return out


def metrics_url(s):
    deadline = time.time() + 10
    while time.time() < deadline:
        s.log.flush()
        m = re.search(rb"metrics on (http://\S+/metrics)",
                      open(s.log.name, "rb").read())
        if m:
            return m.group(1).decode()
        time.sleep(0.05)
    raise AssertionError("the server did not log its metrics address")


def hist(m, name, **labels):
    """Cumulative buckets (le -> count), sum, count of one histogram."""
    want = set(labels.items())
    buckets = {dict(l)["le"]: v for (n, l), v in m.items()
               if n == name + "_bucket" and want <= set(l)}
    key = frozenset(want)
    return buckets, m[(name + "_sum", key)], m[(name + "_count", key)]


def test_metrics(tmp_path):
    s = Server(str(tmp_path), extra=["--metrics-listen", "127.0.0.1:0"])
    try:
        url = metrics_url(s)
        P = pb()
        s.call("Init", P.InitRequest(dim=4, metric=P.L2, collection="docs"))
        x = np.random.default_rng(0).standard_normal((300, 4))
        s.insert([P.InsertRequest(collection="docs", vectors=floats(x),
                                  keys=["k%d" % i for i in range(300)])])
        for _ in range(3):
            s.call("Search", P.SearchRequest(collection="docs", k=5,
                                             queries=floats(x[:2])))
        with pytest.raises(grpc.RpcError):
            s.call("Search", P.SearchRequest(collection="nope", k=5,
                                             queries=floats(x[:2])))
        s.call("Snapshot", P.SnapshotRequest())
        m = scrape(url)
        calls = lambda meth, code: m.get(("npvdb_calls_total", frozenset(
            {("method", meth), ("code", code)})), 0)
        assert calls("Search", "OK") == 3
        assert calls("Search", "NOT_FOUND") == 1
        assert calls("Init", "OK") == 1 and calls("Insert", "OK") == 1
        b, total, n = hist(m, "npvdb_call_duration_seconds", method="Search")
        assert n == 4 and b["+Inf"] == 4 and total > 0
        les = sorted((float(k), v) for k, v in b.items() if k != "+Inf")
        assert les[0][0] == 0.0001 and les[-1][0] == 10
        assert all(a[1] <= c[1] for a, c in zip(les, les[1:]))  # cumulative
        coll = frozenset({("collection", "docs")})
        assert m[("npvdb_collection_vectors", coll)] == 300
        assert m[("npvdb_collection_shards", coll)] >= 1
        assert m[("npvdb_collection_shard_size_max", coll)] >= \
            m[("npvdb_collection_shard_size_mean", coll)] > 0
        assert m[("npvdb_collections", frozenset())] == 1
        _, _, fsyncs = hist(m, "npvdb_fsync_duration_seconds")
        assert fsyncs >= 2  # Init and Insert each waited for the log
        assert m[("npvdb_last_snapshot_timestamp_seconds", frozenset())] > \
            time.time() - 60
        assert m[("npvdb_log_bytes_since_snapshot", frozenset())] == 0
        rss = m[("npvdb_resident_memory_bytes", frozenset())]
        assert rss == pytest.approx(s.status("VmRSS") * 1024, rel=0.5)
        assert ("npvdb_build_info", frozenset({("version", "0.1.0")})) in m
        # A write after the snapshot shows in the log gauge.
        s.insert([P.InsertRequest(collection="docs", vectors=floats(x[:1]),
                                  keys=["again"])])
        assert scrape(url)[("npvdb_log_bytes_since_snapshot",
                            frozenset())] > 0
        # Anything but GET /metrics.
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace("/metrics", "/x"), timeout=10)
        assert e.value.code == 404
    finally:
        s.stop()


# A valid value for every option (a new option without one fails here).
SAMPLES = {
    "listen": "127.0.0.1:7000", "data-dir": "/tmp/d", "port-file": "/tmp/p",
    "threads": "3", "call-threads": "5", "max-concurrent-calls": "17",
    "stall-timeout-ms": "2500", "max-calls-per-connection": "9",
    "receive-buffer-mb": "100", "sync": "interval:40",
    "keep-snapshots": "4", "max-message-mb": "9", "snapshot-every-mb": "7",
    "grace-ms": "123", "max-memory-mb": "512", "no-rebalance": None,
    "token-file": "/tmp/t",
    "tls-cert": "/tmp/c", "tls-key": "/tmp/k", "tls-client-ca": "/tmp/ca",
    "insecure": None, "metrics-listen": "127.0.0.1:9090",
    "log-format": "json",
}


def run(args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("NPVDB_")}
    e.update(env or {})
    return subprocess.run([SERVER] + args, env=e, capture_output=True,
                          text=True, timeout=30)


def config(args, env=None):
    r = run(args + ["--print-config"], env)
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines())


def test_every_flag_has_its_variable():
    help_text = run(["--help"]).stdout
    flags = re.findall(r"^  --([a-z-]+)(?: [A-Z]+)?  \((NPVDB_[A-Z_]+)\)$",
                       help_text, re.M)
    names = [f for f, _ in flags]
    assert sorted(names) == sorted(config([]).keys())
    assert sorted(names) == sorted(SAMPLES), "a sample per option"
    defaults = config([])
    for flag, var in flags:
        assert var == "NPVDB_" + flag.upper().replace("-", "_")
        v = SAMPLES[flag]
        extra = ["--tls-cert", "/tmp/c", "--tls-key", "/tmp/k"] \
            if flag in ("tls-cert", "tls-key", "tls-client-ca") else []
        by_flag = config(extra + (["--" + flag] if v is None
                                  else ["--" + flag, v]))
        by_env = config(extra, {var: "1" if v is None else v})
        assert by_flag == by_env, flag
        assert by_flag[flag] != defaults[flag], flag
    # The flag wins over the variable.
    assert config(["--threads", "2"], {"NPVDB_THREADS": "7"})["threads"] == "2"
    # A bad value in a variable names it; exit status 2.
    r = run([], {"NPVDB_GRACE_MS": "soon"})
    assert r.returncode == 2 and "NPVDB_GRACE_MS" in r.stderr
    assert run(["--version"]).stdout.startswith("npvdb-server ")


def test_json_log_lines(tmp_path):
    s = Server(str(tmp_path), extra=["--log-format", "json"])
    try:
        s.call("Init", pb().InitRequest(dim=2, metric=pb().L2))
    finally:
        s.stop()
    lines = open(s.log.name, "rb").read().decode().splitlines()
    objs = [json.loads(l) for l in lines if l.startswith("{")]
    assert len(objs) >= 3  # serving, init, stopping
    for o in objs:
        assert set(o) >= {"ts", "level", "msg"} and o["level"] in (
            "info", "warn", "error")
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", o["ts"])
    assert any(o["msg"].startswith("serving on") for o in objs)
