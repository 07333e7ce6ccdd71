"""The C CLI's collection commands (collections, drop, count --where,
--collection) against a real server, with data written by the Python
client."""
import os
import subprocess

import numpy as np
import pytest

import npvdb


def cli(server, *args):
    binary = os.environ.get("NPVDB_CLI")
    if not binary:
        pytest.skip("no npvdb CLI: set NPVDB_CLI (CTest does)")
    p = subprocess.run([binary, "--server", server.address, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_cli_collections_count_drop(fresh_server):
    with npvdb.connect(fresh_server.address, timeout=60) as db:
        db.collection("docs").init(
            ["a", "b", "c", "d"], np.eye(4),
            [{"tenant": 42, "price": 5.0}, {"tenant": 7, "tag": "x"}, None,
             {"tenant": 42, "ok": True, "price": 30}], n_shards=1)
        db.init(["z"], np.ones((1, 2)), n_shards=1, metric="l2")
    rc, out, _ = cli(fresh_server, "collections")
    assert rc == 0 and out.splitlines() == [
        "default\tdim 2\tl2\t1 vectors", "docs\tdim 4\tcosine\t4 vectors"]
    for where, want in [((), 4), (("tenant=42",), 2), (("tenant!=42",), 2),
                        (("has:tenant", "price<=5"), 1), (("price>5",), 1),
                        (("ok=true",), 1), (('tenant="42"',), 0), (("tag=x",), 1)]:
        args = [a for w in where for a in ("--where", w)]
        rc, out, err = cli(fresh_server, "--collection", "docs", "count", *args)
        assert (rc, out.strip()) == (0, str(want)), (where, err)
    assert cli(fresh_server, "count")[1].strip() == "1"  # "default"
    rc, _, err = cli(fresh_server, "--collection", "docs", "count", "--where", "x")
    assert rc == 2 and "FIELD=VALUE" in err
    rc, _, err = cli(fresh_server, "--collection", "bad name", "count")
    assert rc == 1 and "collection name 'bad name'" in err
    rc, _, err = cli(fresh_server, "--collection", "nope", "count")
    assert rc == 1 and "NOT_FOUND" in err and "nope" in err
    rc, out, _ = cli(fresh_server, "drop", "docs")
    assert rc == 0 and "4 vectors" in out
    rc, _, err = cli(fresh_server, "drop", "docs")
    assert rc == 1 and "NOT_FOUND" in err
    assert [c.name for c in npvdb.connect(fresh_server.address).collections()] == ["default"]
