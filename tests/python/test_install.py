"""`pip install` of clients/python works with Debian's python3, offline.

Builds from a copy of the sources (so the repo tree gets no build/ or
.egg-info) with --no-build-isolation (setuptools from Debian, no PyPI) and
--no-deps (grpcio, protobuf, numpy come from Debian), into a --target dir;
then imports the installed package in a fresh interpreter.
"""
import os
import shutil
import subprocess
import sys

import pytest

SRC = os.environ.get("NPVDB_PYTHON_SRC") or os.path.join(
    os.path.dirname(__file__), "..", "..", "clients", "python")
PROTOS = os.environ.get("NPVDB_PROTO_ROOT") or os.path.join(
    os.path.dirname(__file__), "..", "..", "protos")


def test_pip_install_target(tmp_path):
    if subprocess.run([sys.executable, "-m", "pip", "--version"],
                      capture_output=True).returncode != 0:
        pytest.skip("pip is not installed for " + sys.executable)
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", "v1"))
    target = tmp_path / "site"
    env = dict(os.environ, NPVDB_PROTO_ROOT=os.path.abspath(PROTOS),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation",
         "--no-deps", "--target", str(target), str(src)],
        env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("npvdb/__init__.py", "npvdb/client.py", "npvdb/v1/npvdb_pb2.py",
              "npvdb/v1/npvdb_pb2_grpc.py"):
        assert (target / f).is_file(), f
    r = subprocess.run(
        [sys.executable, "-c",
         "import npvdb, npvdb.v1.npvdb_pb2 as pb; print(npvdb.__file__); "
         "print(pb.InitRequest(dim=3).dim)"],
        env=dict(env, PYTHONPATH=str(target)), capture_output=True, text=True,
        cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(target / "npvdb" / "__init__.py"), "3"]
    # the generated code went to the build, not into the source copy
    assert not (src / "npvdb" / "v1").exists()
