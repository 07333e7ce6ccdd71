"""Writes the seeds of fuzz_client_reply (corpus/reply/) by hand-encoding
protobuf: a payload of every value type, a SearchReply and a
GetClosestReply with payloads."""
import os
import struct


def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def field(num, wt, body):
    tag = varint(num << 3 | wt)
    if wt == 2:
        return tag + varint(len(body)) + body
    return tag + body


def entry(name, value):
    return field(1, 2, field(1, 2, name) + field(2, 2, value))


PAYLOAD = (entry(b"tenant", field(2, 0, varint(42))) +
           entry(b"neg", field(2, 0, varint(-7))) +
           entry(b"price", field(3, 1, struct.pack("<d", 5.5))) +
           entry(b"tag", field(1, 2, b"x\0y")) +
           entry(b"ok", field(4, 0, varint(1))) +
           entry(b"tags", field(5, 2, field(1, 2, b"a") + field(1, 2, b"bb"))))

INF = struct.pack("<f", float("inf"))
# 2 queries, k 2: counts 2, 1; payloads for all 3 keys.
SEARCH = (field(1, 0, varint(2)) + field(2, 2, varint(2) + varint(1)) +
          field(3, 2, b"a") + field(3, 2, b"b") + field(3, 2, b"c") +
          field(4, 2, struct.pack("<fff", 0.1, 0.2, 0.3) + INF) +
          field(5, 2, PAYLOAD) + field(5, 2, b"") +
          field(5, 2, entry(b"k", field(4, 0, varint(0)))))
CLOSEST = (field(1, 0, varint(0)) + field(2, 2, b"a") +
           field(3, 2, struct.pack("<f", 0.5)) + field(4, 2, PAYLOAD))

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                    "reply")
os.makedirs(here, exist_ok=True)
for name, data in [("payload", b"\x00\x00\x00" + PAYLOAD),
                   ("search", b"\x01\x20\x01" + SEARCH),
                   ("closest", b"\x02\x01\x01" + CLOSEST)]:
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
