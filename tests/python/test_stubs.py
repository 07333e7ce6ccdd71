"""The generated stubs in the package under test agree with the .proto.

Stubs are generated at build time; a stale build tree or installed package
(the .proto changed, the stubs did not) fails here. Two checks: the
descriptor compiled into npvdb_pb2 equals a fresh protoc parse of the .proto,
and a fresh generation is byte-identical to the files the package holds.
"""
import filecmp
import os
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pb2

import npvdb
from npvdb.v1 import npvdb_pb2, npvdb_pb2_grpc

PROTO = "npvdb/v1/npvdb.proto"


def proto_root():
    root = os.environ.get("NPVDB_PROTO_ROOT") or os.path.join(
        os.path.dirname(__file__), "..", "..", "protos")
    if not os.path.isfile(os.path.join(root, PROTO)):
        pytest.skip("no npvdb.proto: set NPVDB_PROTO_ROOT")
    return root


def generator():
    src = os.environ.get("NPVDB_PYTHON_SRC") or os.path.join(
        os.path.dirname(__file__), "..", "..", "clients", "python")
    sys.path.insert(0, src)
    try:
        import gen_stubs
    finally:
        sys.path.remove(src)
    return gen_stubs


def strip_json_names(messages):
    for m in messages:
        for f in m.field:
            f.ClearField("json_name")
        strip_json_names(m.nested_type)


def test_descriptor_matches_proto(tmp_path):
    out = tmp_path / "set.pb"
    protoc = os.environ.get("PROTOC", "protoc")
    subprocess.run([protoc, "-I", proto_root(), "--descriptor_set_out", str(out),
                    os.path.join(proto_root(), PROTO)], check=True)
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    # --descriptor_set_out adds json_name to every field; the Python
    # generator embeds the descriptor without them.
    strip_json_names(fresh.message_type)
    built = descriptor_pb2.FileDescriptorProto.FromString(
        npvdb_pb2.DESCRIPTOR.serialized_pb)
    assert built.name == PROTO
    assert built == fresh, "npvdb_pb2 is stale: rebuild (the .proto changed)"
    assert npvdb_pb2.DESCRIPTOR.serialized_pb == fresh.SerializeToString()


def test_generated_files_are_current(tmp_path):
    generator().generate(str(tmp_path), proto_root(),
                         os.environ.get("PROTOC"), os.environ.get("GRPC_PYTHON_PLUGIN"))
    pkg = os.path.dirname(npvdb_pb2.__file__)
    for name in ("__init__.py", "npvdb_pb2.py", "npvdb_pb2_grpc.py"):
        assert filecmp.cmp(os.path.join(pkg, name),
                           str(tmp_path / "npvdb" / "v1" / name), shallow=False), \
            "{} differs from a fresh generation: rebuild".format(name)


def test_every_rpc_has_a_stub():
    service = npvdb_pb2.DESCRIPTOR.services_by_name["VectorDB"]
    stub = npvdb_pb2_grpc.VectorDBStub(grpc.insecure_channel("127.0.0.1:1"))
    for method in service.methods:
        assert hasattr(stub, method.name), method.name


def test_grpc_module_not_shadowed():
    # Generated code must never land in a folder named grpc/ inside the
    # package root, where it would hide the real grpc module.
    root = os.path.dirname(os.path.dirname(npvdb.__file__))
    assert not os.path.exists(os.path.join(root, "grpc"))
    assert hasattr(grpc, "insecure_channel")
    assert npvdb_pb2_grpc.grpc is grpc
