#!/usr/bin/python3
"""Crash test: nothing acknowledged is ever lost (issues 5 and 9).

Starts the real npvdb-server with several collections (different dims),
streams inserts with payloads (and some deletes) from concurrent clients
that record every acknowledged call, SIGKILLs the server at random moments
-- during inserts, during a Snapshot, during recovery itself -- restarts it
and checks, per collection:
  * every acknowledged vector is present in its collection with exactly the
    value and the payload sent, and found by an exact search;
  * every acknowledged delete stays deleted;
  * a vector of a call that was cut off is present with exactly its value, or
    absent: never torn, never another value.
Rounds run until the time budget is spent. Seeded and reproducible:
  NPVDB_CRASH_SEED=<n>     the seed (printed at start; random by default)
  NPVDB_CRASH_SECONDS=<s>  the time budget (default 60)
  NPVDB_CRASH_KEEP=1       keep the data directory and server log
Stubs are generated at run time with protoc + grpc_python_plugin into a temp
directory under a module name that cannot shadow anything.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

# (name, dim): every collection is L2, so a vector's own search finds it.
COLLECTIONS = [("default", 8), ("c1", 4), ("c2.x", 16)]
DIMS = dict(COLLECTIONS)
ABSENT = None


def gen_stubs(proto, protoc, plugin, out):
    # Copy under a flat, unique name: the generated modules are then
    # npvdb_crash_pb2 / npvdb_crash_pb2_grpc, which shadow nothing.
    shutil.copy(proto, os.path.join(out, "npvdb_crash.proto"))
    subprocess.check_call([
        protoc, "-I", out, "--python_out=" + out, "--grpc_out=" + out,
        "--plugin=protoc-gen-grpc=" + plugin,
        os.path.join(out, "npvdb_crash.proto")])
    sys.path.insert(0, out)


class Server:
    def __init__(self, binary, data_dir, workdir):
        self.binary, self.data_dir, self.workdir = binary, data_dir, workdir
        self.proc = None
        self.port_file = os.path.join(workdir, "port")
        self.log_path = os.path.join(workdir, "server.log")
        self.starts = 0

    def spawn(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.starts += 1
        log = open(self.log_path, "a")
        log.write("---- start %d\n" % self.starts)
        log.flush()
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:0", "--port-file",
             self.port_file, "--data-dir", self.data_dir, "--threads", "2",
             "--keep-snapshots", "2"],
            stdout=log, stderr=log)
        log.close()

    def wait_port(self, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %d" % self.proc.returncode)
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        raise RuntimeError("server did not write its port file")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def log_tail(self, n=40):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Model:
    """Allowed states per (collection, key): a set of (vector bytes,
    payload repr) and/or ABSENT."""

    def __init__(self):
        self.allowed = {}
        self.lock = threading.Lock()
        self.acked_calls = 0
        self.cut_calls = 0

    def insert_sent(self, keys, rows):
        with self.lock:
            for k, r in zip(keys, rows):
                self.allowed[k] = {r, ABSENT}

    def insert_acked(self, keys, rows):
        with self.lock:
            self.acked_calls += 1
            for k, r in zip(keys, rows):
                self.allowed[k] = {r}

    def delete_sent(self, keys):
        with self.lock:
            for k in keys:
                self.allowed[k] = self.allowed[k] | {ABSENT}

    def delete_acked(self, keys):
        with self.lock:
            self.acked_calls += 1
            for k in keys:
                self.allowed[k] = {ABSENT}


def stub_for(port, pb2_grpc, grpc):
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    return ch, pb2_grpc.VectorDBStub(ch)


def payload_repr(p):
    """A wire Payload as a hashable value: sorted (name, value) pairs."""
    out = []
    for k, v in p.fields.items():
        kind = v.WhichOneof("kind")
        val = (tuple(v.strings_value.values) if kind == "strings_value"
               else getattr(v, kind))
        out.append((k, kind, val))
    return tuple(sorted(out))


def make_payload(pb2, d):
    """A dict (str -> int | str | list of str) as a wire Payload."""
    fields = {}
    for k, v in d.items():
        if isinstance(v, int):
            fields[k] = pb2.Value(int_value=v)
        elif isinstance(v, str):
            fields[k] = pb2.Value(string_value=v)
        else:
            fields[k] = pb2.Value(strings_value=pb2.StringList(values=v))
    return pb2.Payload(fields=fields)


def verify(stub, pb2, model, rng, round_no):
    """Checks every key of every collection against the model; collapses
    states to what is observed (it is durable now: recovery fsyncs what it
    replayed). A state is (vector bytes, payload repr)."""
    live_total = 0
    for coll, dim in COLLECTIONS:
        keys = sorted(k for c, k in model.allowed if c == coll)
        present = {}
        for i in range(0, len(keys), 2000):
            batch = keys[i:i + 2000]
            rep = stub.Get(pb2.GetRequest(keys=batch, collection=coll,
                                          with_payload=True), timeout=30)
            vecs = rep.vectors
            if len(vecs) != len(rep.keys) * dim * 4 or \
                    len(rep.payloads) != len(rep.keys):
                raise AssertionError("Get returned %d bytes, %d payloads for "
                                     "%d keys" % (len(vecs), len(rep.payloads),
                                                  len(rep.keys)))
            for j, k in enumerate(rep.keys):
                present[k] = (vecs[j * dim * 4:(j + 1) * dim * 4],
                              payload_repr(rep.payloads[j]))
        bad = []
        for k in keys:
            got = present.get(k, ABSENT)
            allowed = model.allowed[(coll, k)]
            if got not in allowed:
                def show(a):
                    return "absent" if a is ABSENT else "%s %s" % (
                        np.frombuffer(a[0], np.float32), a[1])
                bad.append("%s/%s: got %s, allowed %s" % (
                    coll, k, show(got), [show(a) for a in allowed]))
            model.allowed[(coll, k)] = {got}
        if bad:
            raise AssertionError("round %d: %d keys wrong, e.g.\n  %s"
                                 % (round_no, len(bad), "\n  ".join(bad[:5])))
        # Found by an exact search (nprobe past the shard count).
        live = [k for k in keys if present.get(k) is not None]
        live_total += len(live)
        sample = rng.sample(live, min(20, len(live)))
        if sample:
            q = b"".join(present[k][0] for k in sample)
            replies = list(stub.GetClosest(
                pb2.GetClosestRequest(queries=q, k=3, nprobe=1 << 16,
                                      collection=coll), timeout=30))
            if len(replies) != len(sample):
                raise AssertionError("GetClosest gave %d replies for %d "
                                     "queries" % (len(replies), len(sample)))
            for rep in replies:
                k = sample[rep.query_index]
                if k not in rep.keys:
                    raise AssertionError("round %d: %s/%s not found by "
                                         "searching its own vector: %s"
                                         % (round_no, coll, k, list(rep.keys)))
    return live_total


def writer(stub, pb2, model, rng, tag, stop, errors):
    """Streams insert calls (and a few deletes) into random collections
    until stop or the server dies. Every call is recorded as sent before
    and acked after."""
    import grpc
    call = 0
    while not stop.is_set():
        call += 1
        coll, dim = rng.choice(COLLECTIONS)
        if rng.random() < 0.1:
            with model.lock:
                cands = [k for (c, k), a in model.allowed.items()
                         if c == coll and len(a) == 1 and ABSENT not in a]
            if cands:
                ks = rng.sample(cands, min(len(cands), rng.randint(1, 20)))
                model.delete_sent([(coll, k) for k in ks])
                try:
                    stub.Delete(pb2.DeleteRequest(keys=ks, collection=coll),
                                timeout=10)
                except grpc.RpcError:
                    return
                model.delete_acked([(coll, k) for k in ks])
                continue
        msgs, all_keys, all_states = [], [], []
        for m in range(rng.randint(1, 4)):
            n = rng.randint(1, 60)
            keys = ["%s-c%d-m%d-%d" % (tag, call, m, i) for i in range(n)]
            arr = np.array([[rng.uniform(-10, 10) for _ in range(dim)]
                            for _ in range(n)], dtype=np.float32)
            # The first message names the collection; later ones may too.
            name = coll if m == 0 or rng.random() < 0.5 else ""
            msg = pb2.InsertRequest(keys=keys, vectors=arr.tobytes(),
                                    collection=name)
            with_payloads = rng.random() < 0.7
            for i in range(n):
                p = pb2.Payload()
                if with_payloads and rng.random() < 0.9:
                    p = make_payload(pb2, {"w": tag, "i": call * 1000 + i,
                                           "tags": ["m%d" % m, "x"][:i % 3]})
                if with_payloads:
                    msg.payloads.append(p)
                all_states.append((arr[i].tobytes(), payload_repr(p)))
            msgs.append(msg)
            all_keys += [(coll, k) for k in keys]
        model.insert_sent(all_keys, all_states)
        try:
            rep = stub.Insert(iter(msgs), timeout=10)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.CANCELLED,
                                grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.INTERNAL):
                errors.append("Insert failed: %s %s" % (e.code(), e.details()))
            return
        if rep.inserted + rep.replaced != len(all_keys):
            errors.append("Insert reply counts %d+%d for %d keys"
                          % (rep.inserted, rep.replaced, len(all_keys)))
        model.insert_acked(all_keys, all_states)


def ensure_init(stub, pb2, grpc):
    for coll, dim in COLLECTIONS:
        try:
            stub.Init(pb2.InitRequest(dim=dim, metric=pb2.L2, n_shards=4,
                                      collection=coll), timeout=10)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--protoc", default="protoc")
    ap.add_argument("--plugin", default="/usr/bin/grpc_python_plugin")
    args = ap.parse_args()
    seed = int(os.environ.get("NPVDB_CRASH_SEED", random.SystemRandom().randrange(1 << 31)))
    budget = float(os.environ.get("NPVDB_CRASH_SECONDS", "60"))
    print("crash test: seed %d (NPVDB_CRASH_SEED=%d to repeat), %.0f s"
          % (seed, seed, budget), flush=True)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="npvdb-crash-")
    gen_stubs(args.proto, args.protoc, args.plugin, work)
    import grpc
    import npvdb_crash_pb2 as pb2
    import npvdb_crash_pb2_grpc as pb2_grpc

    data_dir = os.path.join(work, "data")
    srv = Server(args.server, data_dir, work)
    model = Model()
    t_end = time.time() + budget
    rounds = kills = recovery_kills = snapshot_kills = 0
    snapshots_done = [0]
    ok = False
    try:
        while time.time() < t_end:
            rounds += 1
            # Sometimes kill the server while it recovers.
            if rounds > 1 and rng.random() < 0.25:
                srv.spawn()
                time.sleep(rng.uniform(0, 0.05))
                srv.kill()
                recovery_kills += 1
            srv.spawn()
            port = srv.wait_port()
            ch, stub = stub_for(port, pb2_grpc, grpc)
            ensure_init(stub, pb2, grpc)
            live = verify(stub, pb2, model, rng, rounds)
            stop = threading.Event()
            errors = []
            threads = [threading.Thread(
                target=writer,
                args=(stub, pb2, model, random.Random(rng.random()),
                      "r%d-w%d" % (rounds, w), stop, errors))
                for w in range(rng.randint(1, 3))]
            for t in threads:
                t.start()
            delay = rng.uniform(0.02, 0.6)
            if rng.random() < 0.3:
                # A snapshot that completes while inserts go on: the next
                # recovery starts from it and replays the log after it.
                time.sleep(delay / 2)
                _snapshot(stub, pb2, grpc)
                snapshots_done[0] += 1
            if rng.random() < 0.4:
                # Kill during a snapshot: start one, kill a moment later.
                time.sleep(delay / 2)
                snap = threading.Thread(target=lambda: _snapshot(stub, pb2, grpc))
                snap.start()
                time.sleep(rng.uniform(0, 0.15))
                srv.kill()
                snap.join()
                snapshot_kills += 1
            else:
                time.sleep(delay)
                srv.kill()
            kills += 1
            stop.set()
            for t in threads:
                t.join()
            ch.close()
            if errors:
                raise AssertionError("; ".join(errors[:3]))
            print("round %d: %d live keys verified, %d calls acked so far"
                  % (rounds, live, model.acked_calls), flush=True)
        # A last clean restart and check.
        srv.spawn()
        port = srv.wait_port()
        ch, stub = stub_for(port, pb2_grpc, grpc)
        live = verify(stub, pb2, model, rng, rounds + 1)
        parts = partitions(stub, pb2)
        ch.close()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=30)
        if rc != 0:
            raise AssertionError("SIGTERM exit status %d" % rc)
        # The collections split as they grew, and kills landed meanwhile;
        # a restart rebuilds the same partition.
        splits = sum(p[2] for p in parts.values())
        if all(p[0] <= 4 for p in parts.values()):  # Init asked for 4
            raise AssertionError("no collection split: %r" % parts)
        srv.spawn()
        ch, stub = stub_for(srv.wait_port(), pb2_grpc, grpc)
        again = partitions(stub, pb2)
        ch.close()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=30)
        for name in parts:
            if parts[name][:2] != again[name][:2]:
                raise AssertionError("collection %s: shards %r before the "
                                     "restart, %r after"
                                     % (name, parts[name][:2],
                                        again[name][:2]))
        print("crash test passed: seed %d, %d rounds, %d kills (%d during "
              "recovery, %d during a snapshot), %d snapshots completed, %d "
              "acknowledged calls, %d live keys in %s shards (%d splits and %d "
              "merges replayed at the end)"
              % (seed, rounds, kills + recovery_kills, recovery_kills,
                 snapshot_kills, snapshots_done[0], model.acked_calls, live,
                 "+".join(str(p[0]) for p in parts.values()), splits,
                 sum(p[3] for p in parts.values())), flush=True)
        ok = True
    except Exception as e:  # report with the seed and the server's log
        print("crash test FAILED (seed %d): %s" % (seed, e), flush=True)
        print("server log tail:\n" + srv.log_tail(), flush=True)
    finally:
        srv.kill()
        if ok and not os.environ.get("NPVDB_CRASH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("data kept in " + work, flush=True)
    return 0 if ok else 1


def partitions(stub, pb2):
    """Per collection: (n_shards, shard sizes, splits, merges), checked
    against its vector count."""
    out = {}
    for coll, _ in COLLECTIONS:
        r = stub.Info(pb2.InfoRequest(collection=coll), timeout=10)
        sizes = tuple(r.shard_sizes)
        if r.trained and (len(sizes) != r.n_shards or sum(sizes) != r.vectors
                          or max(sizes) != r.largest_shard
                          or min(sizes) != r.smallest_shard):
            raise AssertionError("collection %s: Info %r" % (coll, r))
        out[coll] = (r.n_shards, sizes, r.splits, r.merges)
    return out


def _snapshot(stub, pb2, grpc):
    try:
        stub.Snapshot(pb2.SnapshotRequest(), timeout=30)
    except grpc.RpcError:
        pass


if __name__ == "__main__":
    sys.exit(main())
