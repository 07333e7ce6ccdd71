#!/usr/bin/python3
"""Writes a clustered dataset in the ann-benchmarks HDF5 layout.

    train      N x d float32   the vectors to index
    test       Q x d float32   the queries (same distribution, not in train)
    neighbors  Q x 100 int32   exact nearest train rows, nearest first
    distances  Q x 100 float32 their distances (angular: 1 - cos; euclidean: L2)
    attr distance = "angular" | "euclidean"

The points come from a mixture of Gaussians: `--centres` centres drawn from a
standard normal, clusters of unequal sizes (Dirichlet weights) and unequal
spreads, each stretched along its own random `--rank`-dimensional subspace
(low intrinsic dimension, like real embeddings), so an IVF index sees dense and sparse regions and cell borders that
cut clusters, as on real data. Everything is seeded: the same options give the
same file. Exact neighbours come from FAISS IndexFlat when available (fast,
BLAS), otherwise numpy in blocks.

    /usr/bin/python3 bench/gen_dataset.py --n 200000 --q 10000 --dim 128 \
        --metric angular --out /tmp/clustered-200k-128-angular.hdf5
"""
import argparse
import os
import sys
import time

import h5py
import numpy as np

K_TRUTH = 100


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="train rows")
    p.add_argument("--q", type=int, default=10_000, help="test rows (queries)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--metric", choices=["angular", "euclidean"], default="angular")
    p.add_argument("--centres", type=int, default=256, help="mixture components")
    p.add_argument("--spread", type=float, default=1.0,
                   help="mean cluster std-dev relative to the centres' spread")
    p.add_argument("--rank", type=int, default=16,
                   help="intrinsic dimension of each cluster")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True, help="HDF5 file to write")
    a = p.parse_args(argv)
    if a.n < K_TRUTH or a.q < 1 or a.dim < 1 or a.centres < 1:
        p.error("need --n >= 100, --q >= 1, --dim >= 1, --centres >= 1")
    return a


def sample_points(rng, count, mix, chunk=4096):
    """count points from the mixture, generated in chunks to bound memory."""
    centres, weights, sigmas, bases = mix
    dim, rank = centres.shape[1], bases.shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    for lo in range(0, count, chunk):
        hi = min(count, lo + chunk)
        comp = rng.choice(len(centres), size=hi - lo, p=weights)
        z = rng.standard_normal((hi - lo, rank), dtype=np.float32)
        # Each cluster varies mostly inside its own random rank-r subspace,
        # plus a little isotropic noise: a low intrinsic dimension like real
        # embeddings, so that nearest neighbours are meaningful.
        inside = np.einsum("nr,nrd->nd", z, bases[comp])
        noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        out[lo:hi] = centres[comp] + sigmas[comp, None] * (inside + 0.1 * noise)
    return out


def make_mixture(rng, args):
    centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
    # Unequal sizes and spreads: a few big dense clusters, many small ones.
    weights = rng.dirichlet(np.full(args.centres, 2.0))
    sigmas = (args.spread * rng.uniform(0.5, 1.5, args.centres)).astype(np.float32)
    rank = min(args.rank, args.dim)
    bases = rng.standard_normal((args.centres, rank, args.dim), dtype=np.float32)
    # Unit variance per coordinate: a cluster's points lie about
    # sigma * sqrt(dim) from its centre, as with isotropic noise.
    bases *= np.float32(1 / np.sqrt(rank))
    return centres, weights, sigmas, bases


def normalise(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return (x / norms).astype(np.float32)


def exact_neighbors_faiss(train, test, metric):
    import faiss
    if metric == "angular":
        index = faiss.IndexFlatIP(train.shape[1])
        index.add(normalise(train))
        sims, ids = index.search(normalise(test), K_TRUTH)
        return ids, np.maximum(0, 1 - sims)
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    d2, ids = index.search(test, K_TRUTH)
    return ids, np.sqrt(np.maximum(d2, 0))


def exact_neighbors_numpy(train, test, metric, block=256):
    if metric == "angular":
        train, test = normalise(train), normalise(test)
    tn = (train * train).sum(1)
    ids = np.empty((len(test), K_TRUTH), dtype=np.int64)
    dist = np.empty((len(test), K_TRUTH), dtype=np.float32)
    for lo in range(0, len(test), block):
        q = test[lo:lo + block]
        if metric == "angular":
            d = 1 - q @ train.T
        else:
            d = (q * q).sum(1)[:, None] - 2 * q @ train.T + tn[None, :]
        part = np.argpartition(d, K_TRUTH, axis=1)[:, :K_TRUTH]
        pd = np.take_along_axis(d, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        ids[lo:lo + len(q)] = np.take_along_axis(part, order, 1)
        sd = np.take_along_axis(pd, order, 1)
        dist[lo:lo + len(q)] = (np.maximum(sd, 0) if metric == "angular"
                                else np.sqrt(np.maximum(sd, 0)))
    return ids, dist


def exact_neighbors(train, test, metric):
    try:
        return exact_neighbors_faiss(train, test, metric)
    except ImportError:
        print("faiss not found: exact neighbours with numpy (slower)", file=sys.stderr)
        return exact_neighbors_numpy(train, test, metric)


def write_file(path, train, test, ids, dist, metric, args):
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = metric
        f.attrs["type"] = "dense"
        f.attrs["point_type"] = "float"
        f.attrs["dimension"] = train.shape[1]
        f.attrs["generator"] = (
            f"npvdb bench/gen_dataset.py n={args.n} q={args.q} dim={args.dim} "
            f"centres={args.centres} spread={args.spread} rank={args.rank} "
            f"seed={args.seed}")
        f.create_dataset("train", data=train,
                         chunks=(min(len(train), 4096), train.shape[1]))
        f.create_dataset("test", data=test)
        f.create_dataset("neighbors", data=ids.astype(np.int32))
        f.create_dataset("distances", data=dist.astype(np.float32))


def main(argv=None):
    args = parse_args(argv)
    # Fail before the heavy work, not after it.
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "ab"):
        pass
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    mix = make_mixture(rng, args)
    train = sample_points(rng, args.n, mix)
    test = sample_points(rng, args.q, mix)
    print(f"sampled {args.n} + {args.q} x {args.dim} in {time.time() - t0:.1f}s",
          file=sys.stderr)
    t0 = time.time()
    ids, dist = exact_neighbors(train, test, args.metric)
    print(f"exact top-{K_TRUTH} ({args.metric}) in {time.time() - t0:.1f}s",
          file=sys.stderr)
    write_file(args.out, train, test, ids, dist, args.metric, args)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
