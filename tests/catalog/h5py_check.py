"""Reads the snapshot h5py_sample wrote, as the README tells users to."""
import sys

import h5py

def text(a):
    """String attributes are fixed-length UTF-8: h5py gives bytes."""
    return a.decode() if isinstance(a, bytes) else str(a)


f = h5py.File(sys.argv[1], "r")
assert f.attrs["format_version"] == 2
assert f.attrs["n_collections"] == 2
assert sorted(f["collections"].keys()) == ["docs", "e"]
g = f["collections/docs"]
assert text(g.attrs["name"]) == "docs"
keys = [k.decode() for k in g["keys"][:]]
vectors = g["vectors"][:]
assert sorted(keys) == ["k%d" % i for i in range(10)]
for k, v in zip(keys, vectors):
    i = int(k[1:])
    assert list(v) == [i, -i], (k, v)
cols = {}
for c in g["payload"].values():
    cols[(text(c.attrs["field"]), text(c.attrs["type"]))] = c
assert set(cols) == {("tenant", "int"), ("name", "string"), ("tags", "strings")}
tenant = dict(zip(cols["tenant", "int"]["rows"][:], cols["tenant", "int"]["values"][:]))
assert {keys[r]: int(v) for r, v in tenant.items()} == {"k%d" % i: i for i in range(10)}
name = cols["name", "string"]
got = {keys[r]: v.decode() for r, v in zip(name["rows"][:], name["values"][:])}
assert got == {"k%d" % i: "n%d" % i for i in range(0, 10, 2)}
tags = cols["tags", "strings"]
off = tags["offsets"][:]
vals = [v.decode() for v in tags["values"][:]]
got = {keys[r]: vals[off[j]:off[j + 1]] for j, r in enumerate(tags["rows"][:])}
assert got == {"k%d" % i: ["a", "b%d" % i] for i in range(0, 10, 3)}
assert f["collections/e/vectors"].shape == (0, 2)
assert "payload" not in f["collections/e"]
print("h5py reads the snapshot: ok")
