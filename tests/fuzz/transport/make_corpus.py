#!/usr/bin/python3
"""Writes the seed corpus of the transport fuzz targets (corpus/<target>/).

Run from anywhere with Debian's python3:
  protoc --python_out=D -I protos protos/npvdb/v1/npvdb.proto
  PYTHONPATH=D /usr/bin/python3 tests/fuzz/transport/make_corpus.py
Seeds for insert and query start with one byte choosing the dimension
(byte % 16 + 1; for query, bit 4 set picks the Search decoder); seeds for keys start with one byte choosing the decoder
(0 delete, 1 get, 2 empty request, 3 health check). Seeds for filter are a
Filter (also read as a Count and a Scroll request); seeds for payloads start
with one byte giving the key count (byte % 8), then an InsertRequest.
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

    def value(**kw):
        return pb.Value(**kw)
    pl = pb.Payload(fields={
        "tenant": value(int_value=42), "lang": value(string_value="en"),
        "price": value(double_value=9.5), "ok": value(bool_value=True),
        "tags": value(strings_value=pb.StringList(values=["a", "b"]))})
    write("insert", "payloads", dim3 + pb.InsertRequest(
        keys=["a"], vectors=floats(1, 2, 3), collection="c",
        payloads=[pl]).SerializeToString())
    write("payloads", "one", b"\x01" + pb.InsertRequest(
        keys=["a"], vectors=floats(1), payloads=[pl]).SerializeToString())
    write("payloads", "two", b"\x02" + pb.InsertRequest(
        keys=["a", "b"], vectors=floats(1, 2),
        payloads=[pl, pb.Payload()]).SerializeToString())
    write("payloads", "unset", b"\x01" + pb.InsertRequest(
        keys=["a"], vectors=floats(1),
        payloads=[pb.Payload(fields={"x": pb.Value()})]).SerializeToString())

    filt = pb.Filter(
        must=[pb.Condition(key="tenant", match=pb.Match(integer=42)),
              pb.Condition(key="price", range=pb.Range(gte=10, lt=20))],
        should=[pb.Condition(key="lang", match=pb.Match(
                    keywords=pb.StringList(values=["en", "de"]))),
                pb.Condition(has_field="x")],
        must_not=[pb.Condition(filter=pb.Filter(must=[pb.Condition(
            key="n", match=pb.Match(integers=pb.IntList(values=[1, 2])))]))])
    write("filter", "all", filt.SerializeToString())
    write("filter", "empty_cond", pb.Filter(must=[pb.Condition()]).SerializeToString())
    write("filter", "count", pb.CountRequest(collection="c", filter=filt).SerializeToString())
    write("filter", "scroll", pb.ScrollRequest(
        collection="c", filter=filt, limit=10, with_vectors=True).SerializeToString())
    write("query", "search_filter", search3 + pb.SearchRequest(
        queries=floats(1, 2, 3), k=3, collection="c", filter=filt,
        with_payload=True).SerializeToString())

    write("keys", "delete", b"\x00" + pb.DeleteRequest(keys=["a", "bb"]).SerializeToString())
    write("keys", "get", b"\x01" + pb.GetRequest(keys=["x"]).SerializeToString())
    write("keys", "empty", b"\x02")
    # HealthCheckRequest {service = 1}, by hand: Python code generated from
    # health.proto would live in a package named grpc and clash with grpcio.
    svc = b"npvdb.v1.VectorDB"
    write("keys", "health", b"\x03\x0a" + bytes([len(svc)]) + svc)


if __name__ == "__main__":
    main()
