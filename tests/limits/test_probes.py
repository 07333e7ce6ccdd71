"""Regression tests of issue 10's hostile-probe findings 1, 2 and 7 (3 and 4
are in test_responsive.py).

Findings 1 and 2 use the probe's data: dim 1, L2, 16,384 keys of 1,000
bytes, so a reply of k 16,384 carries about 16 MB of keys per query."""
import os
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

from limits import SERVICE, channel, mib, start, unary_raw
from wire import SERVER, floats, pb

pytestmark = pytest.mark.skipif(not SERVER, reason="NPVDB_SERVER not set")

NKEYS, KEYLEN = 16_384, 1000


@pytest.fixture
def probe(tmp_path):
    s = start(tmp_path)
    P = pb()
    s.call("Init", P.InitRequest(dim=1, metric=P.L2))
    keys = [("%05d" % i) + "k" * (KEYLEN - 5) for i in range(NKEYS)]
    rows = np.arange(NKEYS, dtype=np.float32)
    s.insert([P.InsertRequest(keys=keys[i:i + 2048],
                              vectors=floats(rows[i:i + 2048]))
              for i in range(0, NKEYS, 2048)])
    time.sleep(0.3)
    yield s
    s.stop()


def test_probe1_big_search_reply_refused_before_the_work(probe):
    """A 256-byte Search (64 zero queries, k 16,384) would answer about
    1 GB: RESOURCE_EXHAUSTED, without the server's RSS peak jumping by
    hundreds of MB; also three at once."""
    req = pb().SearchRequest(queries=floats(np.zeros(64)), k=NKEYS,
                             nprobe=1024).SerializeToString()
    assert len(req) < 300
    hwm0, rss0 = mib(probe, "VmHWM"), mib(probe)
    codes, msgs = [], []

    def one(ch):
        try:
            unary_raw(ch, SERVICE + "Search", req, 60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            msgs.append(e.details())

    one(probe.ch)
    hwm_one = mib(probe, "VmHWM")
    chans = [channel(probe.port) for _ in range(3)]
    ts = [threading.Thread(target=one, args=(c,)) for c in chans]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    for c in chans:
        c.close()
    hwm1 = mib(probe, "VmHWM")
    print("probe 1: %s; VmRSS %.1f MiB, peak %.1f -> %.1f (one call) -> "
          "%.1f MiB (three more at once); %s"
          % ([c.name for c in codes], rss0, hwm0, hwm_one, hwm1, msgs[:1]))
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
    # The probe saw +1,028 MiB for one call and 2.7 GB for three.
    assert hwm_one - hwm0 < 64, "the refused search took %.0f MiB" % (
        hwm_one - hwm0)
    assert hwm1 - hwm0 < 160, "three refused searches took %.0f MiB" % (
        hwm1 - hwm0)
    # Smaller asks still work.
    r = pb().SearchReply.FromString(unary_raw(
        probe.ch, SERVICE + "Search",
        pb().SearchRequest(queries=floats(np.zeros(2)), k=100,
                           nprobe=1024).SerializeToString()))
    assert list(r.counts) == [100, 100]


def test_probe2_unread_getclosest_does_not_pin_a_gigabyte(probe):
    """GetClosest of 200 queries, k 16,384 (about 3.3 GB of replies), three
    of them, never read for 3 s: the server holds a bounded amount (its
    per-call chunk, 16 MiB), not the replies; it goes on answering; and
    cancelling gives the memory back to the calls' level."""
    req = pb().GetClosestRequest(queries=floats(np.zeros(200)), k=NKEYS,
                                 nprobe=1024)
    hwm0, rss0 = mib(probe, "VmHWM"), mib(probe)
    chans = [channel(probe.port) for _ in range(3)]
    calls = [c.unary_stream(SERVICE + "GetClosest",
                            request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=lambda b: b)(req, timeout=60)
             for c in chans]
    time.sleep(3.0)
    during, hwm1 = mib(probe), mib(probe, "VmHWM")
    # The server still answers meanwhile.
    info = pb().InfoReply.FromString(unary_raw(
        probe.ch, SERVICE + "Info", pb().InfoRequest().SerializeToString(),
        2))
    assert info.vectors == NKEYS
    for c in calls:
        c.cancel()
    for c in chans:
        c.close()
    time.sleep(1.0)
    print("probe 2: 3 unread GetClosest: VmRSS %.1f -> %.1f MiB (peak %.1f "
          "-> %.1f MiB), %.1f MiB after cancel"
          % (rss0, during, hwm0, hwm1, mib(probe)))
    # Three calls, each a 16 MiB chunk unsent plus one being searched.
    # Peak: the chunk of one query (16 MiB of keys) is copied once more
    # into its packed replies before the results are freed.
    assert hwm1 - hwm0 < 3 * 2 * 17 + 48, (
        "unread GetClosest calls took %.0f MiB" % (hwm1 - hwm0))
    assert probe.proc.poll() is None


def test_probe7_second_server_on_a_taken_address(tmp_path):
    """A second npvdb-server on the address of a running one exits non-zero
    with a clear error; the first keeps every connection."""
    os.makedirs(tmp_path / "a")
    first = start(tmp_path / "a")
    P = pb()
    first.call("Init", P.InitRequest(dim=2, metric=P.L2))
    first.insert([P.InsertRequest(keys=["only-in-first"],
                                  vectors=floats([1, 2]))])
    addr = "127.0.0.1:%d" % first.port
    os.makedirs(tmp_path / "b")
    try:
        second = subprocess.run(
            [SERVER, "--listen", addr, "--data-dir",
             str(tmp_path / "b" / "data"), "--threads", "1"],
            capture_output=True, text=True, timeout=30)
        print("second server: exit %d, stderr: %s"
              % (second.returncode, second.stderr.strip()))
        assert second.returncode != 0, "a second server served on " + addr
        assert addr in second.stderr and (
            "in use" in second.stderr or "cannot listen" in second.stderr), \
            second.stderr
        # Fresh connections all reach the first server's data.
        for _ in range(20):
            ch = channel(first.port)
            rep = pb().InfoReply.FromString(unary_raw(
                ch, SERVICE + "Info", P.InfoRequest().SerializeToString(), 5))
            ch.close()
            assert rep.initialized and rep.vectors == 1
    finally:
        first.stop()
