#!/usr/bin/python3
"""What approximate shard assignment costs in recall: the engine's router
(server/engine/router.c) simulated in numpy on an ann-benchmarks file.

Centroids: FAISS k-means, 4*sqrt(n) of them (the engine's default). Each row
is assigned three ways:

  exact     nearest centroid;
  groups    nearest centroid among the members of the PROBE groups (of
            sqrt(nc) groups of centroids, a second k-means) whose centres
            score best;
  router    `groups`, except that a row whose found centroid is not clearly
            nearer than its best group centre (squared distance above KEEP
            times) is assigned exactly: what the engine does.

For each it prints the agreement with exact assignment, the dot products per
row relative to exact, and recall@10 of an IVF search at several nprobe
(a true neighbour is found when its cell is among the query's nprobe best).

    /usr/bin/python3 bench/assign_routing.py bench/data/clustered-200k-128-angular.hdf5
"""
import argparse
import math
import sys

import faiss
import h5py
import numpy as np

PROBE, KEEP = 3, 2.0 / 3.0


def load(path):
    with h5py.File(path, "r") as f:
        x = np.ascontiguousarray(f["train"][:], dtype="float32")
        q = np.ascontiguousarray(f["test"][:], dtype="float32")
        nn = f["neighbors"][:, :10]
        angular = f.attrs.get("distance", "euclidean") == "angular"
    if angular:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q, nn, angular


def sqdist(a, b):
    """Squared L2 distances, a (n x d) against b (m x d), in blocks."""
    return ((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :])


def kmeans(data, k, spherical, iters):
    km = faiss.Kmeans(data.shape[1], k, niter=iters, spherical=spherical,
                      seed=1, min_points_per_centroid=1,
                      max_points_per_centroid=256)
    km.train(data)
    return km.centroids


def assign(x, cent, gcent, members, block=20000):
    """exact, groups and router assignments, and the router's work per row."""
    n = len(x)
    out = {k: np.empty(n, dtype=np.int64) for k in ("exact", "groups", "router")}
    work = 0.0
    for lo in range(0, n, block):
        xs = x[lo:lo + block]
        d = sqdist(xs, cent)
        gd = sqdist(xs, gcent)
        top = np.argsort(gd, axis=1)[:, :PROBE]
        mask = np.full(d.shape, np.inf, dtype=np.float32)
        for g, mem in enumerate(members):
            rows = np.where((top == g).any(1))[0]
            mask[np.ix_(rows, mem)] = 0
            work += len(rows) * len(mem)
        ex = d.argmin(1)
        gr = (d + mask).argmin(1)
        found = d[np.arange(len(xs)), gr]
        g1 = gd[np.arange(len(xs)), top[:, 0]]
        fall = ~(found <= KEEP * g1)
        work += fall.sum() * len(cent) + len(xs) * len(gcent)
        out["exact"][lo:lo + block] = ex
        out["groups"][lo:lo + block] = gr
        out["router"][lo:lo + block] = np.where(fall, ex, gr)
        out.setdefault("fallback", 0)
        out["fallback"] += int(fall.sum())
    return out, work / n


def recall(asg, qorder, nn, nprobe):
    cells = qorder[:, :nprobe]
    return (asg[nn][:, :, None] == cells[:, None, :]).any(2).mean()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64")
    a = p.parse_args(argv)
    x, q, nn, angular = load(a.file)
    nc = int(4 * math.sqrt(len(x)) + 0.5)
    G = int(math.sqrt(nc) + 0.5)
    cent = kmeans(x, nc, angular, a.iters)
    gcent = kmeans(cent, G, angular, 20)
    gid = sqdist(cent, gcent).argmin(1)
    members = [np.where(gid == g)[0] for g in range(G)]
    out, work = assign(x, cent, gcent, members)
    probes = [int(v) for v in a.nprobe.split(",")]
    qorder = np.argsort(sqdist(q, cent), axis=1)[:, :max(probes)]
    print(f"{len(x)} rows, {nc} centroids, {G} groups, probe {PROBE}, "
          f"keep {KEEP:.3f}")
    print(f"router: {out['fallback'] / len(x):.3f} of rows assigned exactly; "
          f"{work:.0f} dot products per row against {nc} exact "
          f"({nc / work:.1f}x less)")
    print("%-7s %8s  " % ("", "agree") +
          "  ".join("np%-5d" % n for n in probes))
    for k in ("exact", "groups", "router"):
        agree = (out[k] == out["exact"]).mean()
        print("%-7s %8.4f  " % (k, agree) + "  ".join(
            "%.4f " % recall(out[k], qorder, nn, n) for n in probes))


if __name__ == "__main__":
    main(sys.argv[1:])
