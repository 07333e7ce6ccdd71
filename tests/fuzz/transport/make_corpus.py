#!/usr/bin/python3
"""Writes the seed corpus of the transport fuzz targets (corpus/<target>/).

Run from anywhere with Debian's python3:
  protoc --python_out=D -I protos protos/npvdb/v1/npvdb.proto
  PYTHONPATH=D /usr/bin/python3 tests/fuzz/transport/make_corpus.py
Seeds for insert and query start with one byte choosing the dimension
(byte % 16 + 1; for query, bit 4 set picks the Search decoder); seeds for keys start with one byte choosing the decoder
(0 delete, 1 get, 2 empty request, 3 health check).
"""
import os
import struct

from npvdb.v1 import npvdb_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))


def floats(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    write("init", "dim4_l2", pb.InitRequest(dim=4, metric=pb.L2).SerializeToString())
    write("init", "train", pb.InitRequest(
        dim=2, metric=pb.COSINE, n_shards=2, replace=True, default_nprobe=2,
        train_vectors=floats(1, 0, 0, 1, 1, 1, -1, 0)).SerializeToString())
    write("init", "nan", pb.InitRequest(dim=1, train_vectors=floats(float("nan"))).SerializeToString())

    dim3 = bytes([2])  # 2 % 16 + 1 = 3
    write("insert", "two", dim3 + pb.InsertRequest(
        keys=["a", "b"], vectors=floats(1, 2, 3, 4, 5, 6)).SerializeToString())
    write("insert", "utf8", dim3 + pb.InsertRequest(
        keys=["\u00e9t\u00e9"], vectors=floats(0, 0, 1)).SerializeToString())
    write("insert", "short", dim3 + pb.InsertRequest(
        keys=["a"], vectors=floats(1, 2)).SerializeToString())
    write("insert", "nul_key", dim3 + b"\x0a\x03a\x00b\x12\x0c" + floats(1, 2, 3))

    write("query", "two", dim3 + pb.GetClosestRequest(
        queries=floats(1, 2, 3, 4, 5, 6), k=10, nprobe=4).SerializeToString())
    write("query", "k0", dim3 + pb.GetClosestRequest(
        queries=floats(1, 2, 3), k=0).SerializeToString())
    search3 = bytes([0x12])  # Search decoder, dim 3
    write("query", "search_two", search3 + pb.SearchRequest(
        queries=floats(1, 2, 3, 4, 5, 6), k=10, nprobe=4, dim=3).SerializeToString())
    write("query", "search_dim_mismatch", search3 + pb.SearchRequest(
        queries=floats(1, 2, 3, 4, 5, 6), k=10, dim=6).SerializeToString())
    write("query", "closest_dim", dim3 + pb.GetClosestRequest(
        queries=floats(1, 2, 3), k=1, dim=3).SerializeToString())

    write("keys", "delete", b"\x00" + pb.DeleteRequest(keys=["a", "bb"]).SerializeToString())
    write("keys", "get", b"\x01" + pb.GetRequest(keys=["x"]).SerializeToString())
    write("keys", "empty", b"\x02")
    # HealthCheckRequest {service = 1}, by hand: Python code generated from
    # health.proto would live in a package named grpc and clash with grpcio.
    svc = b"npvdb.v1.VectorDB"
    write("keys", "health", b"\x03\x0a" + bytes([len(svc)]) + svc)


if __name__ == "__main__":
    main()
