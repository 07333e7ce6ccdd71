#!/usr/bin/env python3
"""Generates the npvdb gRPC stubs from protos/npvdb/v1/npvdb.proto.

Used by CMake (into the build tree) and by setup.py (into the wheel's build
dir); never run into the source tree, so no generated code is committed.

The proto package is `npvdb.v1`, so protoc writes `npvdb/v1/npvdb_pb2.py` and
`npvdb/v1/npvdb_pb2_grpc.py`, and the grpc file imports `from npvdb.v1 import
npvdb_pb2`. Generating into the directory that holds our `npvdb` package makes
that import resolve to our own subpackage `npvdb.v1` as it is, so the
generated code needs no patching. The gRPC health stubs are not generated:
the Python client does not use them, and their `grpc/` folder would shadow the
grpc module.

Debian's grpc_tools bundles a protoc too old for this file, so the system
`protoc` and `grpc_python_plugin` (package protobuf-compiler-grpc) are used.
"""
import argparse
import os
import shutil
import subprocess
import sys

PROTO = "npvdb/v1/npvdb.proto"
INIT_TEXT = '"""Generated from {} by gen_stubs.py: do not edit."""\n'.format(PROTO)


def find_proto_root(hint=None):
    """The directory holding npvdb/v1/npvdb.proto: `hint`, $NPVDB_PROTO_ROOT,
    or the repo's protos/ next to clients/python."""
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (hint, os.environ.get("NPVDB_PROTO_ROOT"),
                 os.path.join(here, "..", "..", "protos")):
        if cand and os.path.isfile(os.path.join(cand, PROTO)):
            return os.path.abspath(cand)
    raise FileNotFoundError(
        "cannot find {} (set NPVDB_PROTO_ROOT to the repo's protos/ dir)".format(PROTO))


def find_tool(name, env, default):
    path = os.environ.get(env) or shutil.which(name) or default
    if not path or not os.access(path, os.X_OK):
        raise FileNotFoundError(
            "{} not found (Debian: protobuf-compiler, protobuf-compiler-grpc; "
            "or set {})".format(name, env))
    return path


def generate(out_dir, proto_root=None, protoc=None, plugin=None):
    """Writes npvdb/v1/{__init__,npvdb_pb2,npvdb_pb2_grpc}.py under out_dir.
    Returns the list of written files."""
    proto_root = find_proto_root(proto_root)
    protoc = protoc or find_tool("protoc", "PROTOC", "/usr/bin/protoc")
    plugin = plugin or find_tool("grpc_python_plugin", "GRPC_PYTHON_PLUGIN",
                                 "/usr/bin/grpc_python_plugin")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(
        [protoc, "-I", proto_root, "--python_out", out_dir,
         "--grpc_python_out", out_dir,
         "--plugin=protoc-gen-grpc_python=" + plugin,
         os.path.join(proto_root, PROTO)],
        check=True)
    pkg = os.path.join(out_dir, "npvdb", "v1")
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(INIT_TEXT)
    return [os.path.join(pkg, n)
            for n in ("__init__.py", "npvdb_pb2.py", "npvdb_pb2_grpc.py")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True,
                    help="directory that holds (or will hold) the npvdb package")
    ap.add_argument("--proto-root", help="directory holding npvdb/v1/npvdb.proto")
    ap.add_argument("--protoc")
    ap.add_argument("--plugin", help="grpc_python_plugin")
    a = ap.parse_args(argv)
    generate(a.out, a.proto_root, a.protoc, a.plugin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
