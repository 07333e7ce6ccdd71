#!/usr/bin/python3
"""Runs the built image (scripts/build-image.sh) far enough to trust it.

With buildah (chroot isolation, vfs storage: no daemon; `podman run` does not
work on this kind of machine, see README, Deploy) it:
  1. checks the image's config: entrypoint, default args, non-root user
     10001, port 50051, volume /data;
  2. starts the image's npvdb-server as user 10001 with the image's default
     args, the listen address moved to 127.0.0.1:<free port> and a token
     file copied into the container (--token-file);
  3. calls Health with the image's own CLI (`npvdb health`, no token), and
     sees that a call without a token is refused (UNAUTHENTICATED);
  4. with the host's Python client and the write token: Init of a small
     collection, Insert of more vectors, Search, Get, Info: the answers are
     the exact ones; a read token may search but not insert;
  5. sends SIGTERM to the server (buildah run itself does not forward it:
     it kills its child), which must stop cleanly (exit 0, "stopped").

Exit 0: passed; 1: failed; 77: skipped (no buildah, not root, or no image:
build it with scripts/build-image.sh).

Environment: NPVDB_IMAGE (default npvdb:<appVersion of helm/npvdb>),
NPVDB_PYTHON_STAGE (the staged Python client, from the build tree),
BUILDAH_STORAGE_DRIVER (default vfs).
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
SKIP = 77


def app_version():
    with open(os.path.join(SOURCE, "helm", "npvdb", "Chart.yaml")) as f:
        return re.search(r'^appVersion:\s*"?([^"\n]+)"?', f.read(), re.M).group(1)


IMAGE = os.environ.get("NPVDB_IMAGE") or "npvdb:" + app_version()
STORAGE = os.environ.get("BUILDAH_STORAGE_DRIVER") or "vfs"
BUILDAH = ["buildah", "--storage-driver", STORAGE]


def log(msg):
    print("check_image: " + msg, flush=True)


def buildah(*args, check=True, timeout=120):
    r = subprocess.run(BUILDAH + list(args), capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("buildah %s: %s" % (" ".join(args), r.stderr))
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """Pids of every process below pid (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    if shutil.which("buildah") is None:
        log("SKIP: no buildah (scripts/install-deps.sh installs it)")
        return SKIP
    if os.geteuid() != 0:
        log("SKIP: needs root (buildah chroot isolation)")
        return SKIP
    r = buildah("inspect", "--type", "image", IMAGE, check=False)
    if r.returncode != 0:
        log("SKIP: no image %s: build it with scripts/build-image.sh" % IMAGE)
        return SKIP
    config = json.loads(r.stdout)["OCIv1"]["config"]
    log("image %s: %s" % (IMAGE, json.dumps(
        {k: config.get(k) for k in ("Entrypoint", "Cmd", "User")})))
    built_from = (config.get("Labels") or {}).get(
        "org.opencontainers.image.revision", "unknown")
    head = subprocess.run(["git", "-C", SOURCE, "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    log("built from revision %s; this tree is at %s%s" % (
        built_from, head or "?", "" if built_from.startswith(head or "-")
        else " (not the same: rebuild with scripts/build-image.sh to test "
             "this tree's image)"))
    assert config["Entrypoint"] == ["/usr/local/bin/npvdb-server"], config
    assert "--listen=0.0.0.0:50051" in config["Cmd"], config
    assert "--data-dir=/data" in config["Cmd"], config
    assert config["User"] == "10001:10001", config
    assert "50051/tcp" in config["ExposedPorts"], config
    assert "/data" in config["Volumes"], config

    stage = os.environ.get("NPVDB_PYTHON_STAGE")
    if stage:
        sys.path.insert(0, stage)
    import numpy as np
    import npvdb

    write_tok, read_tok = secrets.token_hex(20), secrets.token_hex(20)
    tmp = tempfile.mkdtemp()
    ctr = "npvdb-check-%d" % os.getpid()
    buildah("from", "--name", ctr, "--pull=false", IMAGE)
    proc = None
    try:
        tokens = os.path.join(tmp, "tokens")
        with open(tokens, "w") as f:
            f.write("%s write\n%s read\n" % (write_tok, read_tok))
        buildah("copy", "--chown", "10001:10001", "--chmod", "0400", ctr,
                tokens, "/etc/npvdb/tokens")
        port = free_port()
        addr = "127.0.0.1:%d" % port
        args = [("--listen=" + addr) if a.startswith("--listen=") else a
                for a in config["Cmd"]]
        args += ["--token-file=/etc/npvdb/tokens", "--threads=2",
                 "--grace-ms=2000"]
        log("buildah run --user 10001:10001 %s -- %s %s" % (
            ctr, config["Entrypoint"][0], " ".join(args)))
        server_log = open(os.path.join(tmp, "server.log"), "w+")
        proc = subprocess.Popen(
            BUILDAH + ["run", "--isolation", "chroot", "--user", "10001:10001",
                       ctr, "--"] + config["Entrypoint"] + args,
            stdout=server_log, stderr=subprocess.STDOUT)

        def cli(*a, timeout=30):
            return buildah("run", "--isolation", "chroot", "--user",
                           "10001:10001", ctr, "--", "/usr/local/bin/npvdb",
                           "--server", addr, "--timeout", "10", *a,
                           check=False, timeout=timeout)

        deadline = time.monotonic() + 60
        while True:
            r = cli("health")
            if r.returncode == 0:
                break
            assert proc.poll() is None, "server exited: " + open(
                server_log.name).read()
            assert time.monotonic() < deadline, "no Health: " + r.stderr
            time.sleep(0.5)
        assert r.stdout.strip() == "SERVING", r.stdout
        log("npvdb health (the image's CLI) -> %s" % r.stdout.strip())
        r = cli("info")
        refused = [ln for ln in (r.stdout + r.stderr).splitlines()
                   if "UNAUTHENTICATED" in ln.upper()]
        assert r.returncode != 0 and refused, r
        log("npvdb info without a token -> %s" % refused[0].strip())

        rng = np.random.default_rng(11)
        data = rng.standard_normal((300, 16)).astype(np.float32)
        keys = ["k%d" % i for i in range(len(data))]
        with npvdb.connect(addr, token=write_tok, timeout=30) as db:
            db.init(keys[:200], data[:200], n_shards=4, metric="l2")
            db.insert(keys[200:], data[200:])
            got, dist = db.get_closest(data[[7, 250]], k_nearest=3)
            assert list(got[:, 0]) == ["k7", "k250"], got
            assert float(dist[0][0]) < 1e-4 and float(dist[1][0]) < 1e-4, dist
            back = db.get(["k123"])
            assert np.array_equal(back[0], data[123]), back
            info = db.info()
            assert info.vectors == 300 and info.dim == 16, info
        log("Init 200 + Insert 100 vectors (dim 16), Search: nearest of k7 "
            "and k250 are themselves, Get k123 exact, Info: %d vectors in %d "
            "shards, server %s" % (info.vectors, info.n_shards,
                                   info.server_version))
        with npvdb.connect(addr, token=read_tok, timeout=30) as db:
            got, _ = db.get_closest(data[5], k_nearest=1)
            assert list(got) == ["k5"], got
            try:
                db.insert(["x"], data[:1])
                raise AssertionError("a read token inserted")
            except npvdb.PermissionDenied:
                pass
        log("read token: Search ok, Insert -> PermissionDenied")

        pids = [p for p in descendants(proc.pid) if comm(p) == "npvdb-server"]
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while os.path.exists("/proc/%d" % pids[0]) and comm(pids[0]):
            assert time.monotonic() < deadline, "server did not stop"
            time.sleep(0.1)
        rc = proc.wait(timeout=30)
        server_log.seek(0)
        out = server_log.read()
        assert rc == 0, "buildah run exited %d:\n%s" % (rc, out)
        assert "SIGTERM: shutting down" in out and "stopped" in out, out
        log("SIGTERM -> exit 0; the server's log:")
        for line in out.splitlines():
            print("    " + line)
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        buildah("rm", ctr, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
