"""Fixtures: a real npvdb-server on a free loopback port, and clients to it.

The server binary comes from $NPVDB_SERVER (CTest sets it to the built
target). It is started with `--listen 127.0.0.1:0 --port-file F --data-dir D`:
port 0 lets the kernel pick a free port, which the server writes to F once it
listens. Teardown sends SIGTERM and requires a clean exit, so a server that
crashes, hangs or (under the sanitizer build) leaks fails the tests that used
it.
"""
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import npvdb

START_SECONDS = 30  # generous: the sanitizer build starts slowly
STOP_SECONDS = 30


def _server_binary():
    path = os.environ.get("NPVDB_SERVER") or shutil.which("npvdb-server")
    if not path:
        pytest.skip("no npvdb-server: set NPVDB_SERVER (CTest does)")
    return path


class Server:
    """One npvdb-server process with its own data directory."""

    def __init__(self, binary, workdir, args=()):
        """args: extra npvdb-server flags (e.g. --max-message-mb 1)."""
        self.data_dir = os.path.join(workdir, "data")
        os.makedirs(self.data_dir)
        port_file = os.path.join(workdir, "port")
        self.log_path = os.path.join(workdir, "server.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", port_file,
             "--data-dir", self.data_dir, *args],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.port = self._wait_port(port_file)
        self.address = "127.0.0.1:{}".format(self.port)

    def _wait_port(self, port_file):
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("npvdb-server exited with {} at start:\n{}".format(
                    self.proc.returncode, self.log()))
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            except (FileNotFoundError, ValueError):
                pass  # not written yet, or written half-way
            time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError("npvdb-server wrote no port file in {} s:\n{}".format(
            START_SECONDS, self.log()))

    def log(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """SIGTERM, then wait; returns the exit code (kills on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise RuntimeError("npvdb-server did not stop on SIGTERM:\n" + self.log())
        self._log.close()
        return self.proc.returncode


def start_server(workdir, args=()):
    """A Server of the binary under test (skips the test without one)."""
    return Server(_server_binary(), str(workdir), args)


def stop_checked(server):
    """Stops `server` and requires a clean exit."""
    code = server.stop()
    assert code == 0, "npvdb-server exited with {}:\n{}".format(code, server.log())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server shared by the tests of one module (each test re-inits)."""
    s = Server(_server_binary(), str(tmp_path_factory.mktemp("npvdb")))
    yield s
    stop_checked(s)


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own, for tests that need one never initialised."""
    s = Server(_server_binary(), str(tmp_path))
    yield s
    stop_checked(s)


@pytest.fixture
def db(server):
    with npvdb.connect(server.address, timeout=60) as client:
        yield client


def clustered(n, dim, n_clusters=8, seed=0, dtype=np.float32):
    """n vectors around n_clusters random centres (a realistic IVF case)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 4
    labels = rng.integers(0, n_clusters, size=n)
    return (centres[labels] + rng.normal(size=(n, dim))).astype(dtype)


def make_keys(n, prefix="k"):
    return ["{}{}".format(prefix, i) for i in range(n)]
