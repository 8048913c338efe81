#!/usr/bin/env python3
"""Writes the seed corpus: a few tiny valid inputs per target (fuzz/corpus/<target>/).
Rerun after a change to a wire format; the files are small enough to keep in git."""

import json
import os
import struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def write(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

# cereal's binary format, as lib's archives write it: little-endian numbers,
# 64-bit size prefixes, a bool as one byte.
def u64(n): return struct.pack("<Q", n)
def i64(n): return struct.pack("<q", n)
def i32(n): return struct.pack("<i", n)
def f64(x): return struct.pack("<d", x)
def string(s): b = s.encode(); return u64(len(b)) + b
def seq(items): return u64(len(items)) + b"".join(items)
def optional(x): return b"\x01" if x is None else b"\x00" + x  # cereal writes "nullopt" first
def variant(index, x): return i32(index) + x

# frame: byte 0 picks the ring (4 KiB << (b & 3)), byte 1 the writer's chunk (0: all
# that fits), then what a worker writes: 48-byte headers (lib/src/frame.hpp), payloads padded to 8.
MAGIC, JOB, READY, RESULT, FAILED, PAYLOAD_ERROR = 0x31464350, 1, 2, 3, 4, 5

def frame(kind, job, payload=b"", rss=0):
    header = struct.pack("<IHHQQQQQ", MAGIC, kind, 0, len(payload), job, 0, 0, rss)
    return header + payload + b"\0" * (-len(payload) % 8)

write("frame", "ready", b"\0\0" + frame(READY, 0, rss=8 << 20))
write("frame", "result", b"\0\0" + frame(RESULT, 1, string("Hello world!")))
write("frame", "failed", b"\0\0" + frame(FAILED, 2, string("std::out_of_range") + string("vector::_M_range_check")))
write("frame", "payload_error", b"\0\0" + frame(PAYLOAD_ERROR, 3, string("cannot decode: truncated")))
write("frame", "several_split", b"\0\x07" + frame(READY, 0) + frame(RESULT, 4, string("x" * 40)) + frame(FAILED, 5, string("e") + string("")))
write("frame", "streamed", b"\0\0" + frame(RESULT, 6, string("y" * 6000)))  # larger than the 4 KiB ring

# codec: byte 0 picks the type (the switch in codec_fuzz.cpp), the rest is its encoding.
record = (string("name") + seq([string("a"), string("bc")]) + seq([f64(1.5), f64(-2.0)]) +
          seq([string("k") + i64(3)]) + optional(string("note")) + variant(2, string("v")) +
          i64(42) + b"\x01" + i32(2))
write("codec", "string", b"\x00" + string("Hello world!"))
write("codec", "vector_int", b"\x01" + seq([i32(1), i32(-2), i32(3)]))
write("codec", "record", b"\x02" + record)
write("codec", "record_job", b"\x03" + record)
write("codec", "map", b"\x04" + seq([string("a") + i64(1), string("b") + i64(2)]))
write("codec", "optional", b"\x05" + optional(string("x")))
write("codec", "variant", b"\x06" + variant(2, seq([i32(7)])))
write("codec", "failed_report", b"\x07" + string("std::runtime_error") + string("boom"))
write("codec", "tuple", b"\x0e" + i32(1) + string("t") + optional(f64(0.5)))
write("codec", "vector_bool", b"\x0f" + seq([b"\x01", b"\x00", b"\x01"]))
write("codec", "json_call", b"\x12" + string("hello") + string('{"text":"world"}'))
write("codec", "nested_optional_records", b"\x14" + seq([optional(record), optional(None)]))

# control: what a client sends, frames of a 4-byte little-endian length and a JSON object.
def request(**fields):
    body = json.dumps(fields, separators=(",", ":")).encode()
    return struct.pack("<I", len(body)) + body

order = {"customer": "ada", "items": [{"label": "tea", "weight": 0.25}],
         "counts": [{"key": "tea", "value": 2}], "note": {"nullopt": False, "data": "hot"},
         "ref": {"index": 1, "data": "A-1"}, "priority": 3, "urgent": True}
write("control", "submit_hello", request(op="submit", id=1, task="hello", args={"text": "world"}))
write("control", "submit_echo", request(op="submit", id=2, task="echo", args=[1, "two", {"three": None}], timeout_ms=1000, retries=1))
write("control", "submit_sleep_fnv", request(op="submit", task="sleep", args={"ms": 5}) + request(op="submit", task="fnv", args={"iters": 1000}))
write("control", "submit_plugin", request(op="submit", task="sum", args={"values": [1, 2, 3.5]}) + request(op="submit", task="reverse", args={"text": "stressed"}))
write("control", "submit_order", request(op="submit", id=3, task="fuzz.order", args=order))
write("control", "ops", b"".join(request(**r) for r in [
    {"op": "tasks"}, {"op": "status", "id": 7}, {"op": "kill", "pid": 12345},
    {"op": "scale", "workers": 4}, {"op": "metrics", "id": 8}, {"op": "stop", "now": True}]))
