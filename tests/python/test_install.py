"""`pip install clients/python` works with Debian's python3, offline.

Each test builds from a copy of the sources (so the repo tree gets no build/
or .egg-info) and then imports the installed package in a fresh interpreter
outside the build tree. No PyPI: grpcio, protobuf, numpy and setuptools are
Debian's.
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
IMPORT_CHECK = ("import npvdb, npvdb.v1.npvdb_pb2 as pb; print(npvdb.__file__); "
                "print(pb.InitRequest(dim=3).dim)")


@pytest.fixture
def src(tmp_path):
    if subprocess.run([sys.executable, "-m", "pip", "--version"],
                      capture_output=True).returncode != 0:
        pytest.skip("pip is not installed for " + sys.executable)
    dst = tmp_path / "src"
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", "v1"))
    return dst


def clean_env(**extra):
    env = dict(os.environ, NPVDB_PROTO_ROOT=os.path.abspath(PROTOS),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def check_import(python, env, cwd, expect_file):
    r = subprocess.run([python, "-c", IMPORT_CHECK], env=env, cwd=str(cwd),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(expect_file), "3"]


def test_pip_install_target(src, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation",
         "--no-deps", "--target", str(target), str(src)],
        env=clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("npvdb/__init__.py", "npvdb/client.py", "npvdb/v1/npvdb_pb2.py",
              "npvdb/v1/npvdb_pb2_grpc.py"):
        assert (target / f).is_file(), f
    check_import(sys.executable, clean_env(PYTHONPATH=str(target)), tmp_path,
                 target / "npvdb" / "__init__.py")
    # the generated code went to the build, not into the source copy
    assert not (src / "npvdb" / "v1").exists()


README_VENV = "/usr/bin/python3 -m venv --system-site-packages .venv"


def test_readmes_make_the_venv_from_debians_python():
    # Another python3 first on the PATH would make a venv without Debian's
    # grpcio/numpy/setuptools; the READMEs name the interpreter.
    for readme in (os.path.join(SRC, "..", "..", "README.md"), os.path.join(SRC, "README.md")):
        text = " ".join(open(readme, encoding="utf-8").read().split())
        assert README_VENV in text, readme
        assert " python3 -m venv" not in text.replace("/usr/bin/python3 -m venv", ""), readme


def test_plain_pip_install_in_venv(src, tmp_path):
    # The README's way: a venv of Debian's python3 that sees Debian's
    # packages, then plain `pip install` (dependencies found installed,
    # nothing downloaded).
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    venv = tmp_path / "venv"
    r = subprocess.run([python, "-m", "venv", "--system-site-packages",
                        str(venv)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("python3-venv missing: " + r.stderr)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", str(src)], env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True).stdout.strip()
    check_import(py, clean_env(), tmp_path, os.path.join(site, "npvdb", "__init__.py"))
