#!/usr/bin/env python3
"""The control protocol as a client sees it: strings and numbers arrive whole and
exact, echo answers its arguments byte for byte, and a mistyped field is a
bad_request that keeps the connection. One daemon (with the example plugin) serves
every case; the CLI is checked against it too.
    protocol_test.py BUILD_DIR [CASE...]
"""

import functools
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from control_client import answer, connect, frame  # noqa: E402

build = os.path.abspath(sys.argv[1])
daemon_exe = os.path.join(build, "supervisor/daemon/parallelcode-supervisor")
cli_exe = os.path.join(build, "supervisor/cli/parallelcode")
plugin = os.path.join(build, "examples/libparallelcode-example-plugin.so")
tmp = tempfile.mkdtemp(prefix="protocol_test.")
sock_path = os.path.join(tmp, "sock")


def raw_answer(s):
    """The next answer's bytes as the daemon wrote them."""
    head = s.recv(4, socket.MSG_WAITALL)
    assert len(head) == 4, "the daemon closed the connection"
    n = struct.unpack("<I", head)[0]
    body = s.recv(n, socket.MSG_WAITALL)
    assert len(body) == n, "the daemon closed the connection mid-answer"
    return body


def ask(s, request):
    s.sendall(frame(request if isinstance(request, bytes) else json.dumps(request).encode()))
    return answer(s)


def cli(*args, stdin=None):
    return subprocess.run([cli_exe, "--socket", sock_path, *args], input=stdin, capture_output=True, timeout=60)


def start_daemon():
    # The daemon says READY=1 on NOTIFY_SOCKET once every worker is up: wait for that, not for a guess.
    notify_path = os.path.join(tmp, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen([daemon_exe, "--socket", sock_path, "--workers", "2", "--plugin", plugin],
                            stderr=log, env=env)
    try:
        ready = notify.recv(4096).decode().splitlines()[0]
    except socket.timeout:
        proc.kill()
        raise AssertionError("the daemon did not say READY=1 within 30 s")
    finally:
        notify.close()
    assert ready == "READY=1", ready
    return proc


# --- the cases -----------------------------------------------------------------


def case_strings_keep_what_follows_a_nul():
    s = connect(sock_path)
    a = ask(s, b'{"op":"submit","task":"hello","args":{"text":"ab\\u0000cd"}}')
    assert a["ok"] and a["result"] == "Hello ab\x00cd!", a
    a = ask(s, b'{"op":"submit","task":"reverse","args":{"text":"ab\\u0000cd"}}')
    assert a["ok"] and a["result"] == "dc\x00ba", a
    a = ask(s, b'{"op":"submit","task":"echo","args":"ab\\u0000cd"}')
    assert a["ok"] and a["result"] == "ab\x00cd", a
    out = cli("submit", "hello", '{"text":"ab\\u0000cd"}')
    assert out.returncode == 0 and json.loads(out.stdout) == "Hello ab\x00cd!", out
    out = cli("submit", "hello", '{"text":"ab\\u0000cd"}', "--raw")
    assert out.returncode == 0 and out.stdout == b"Hello ab\x00cd!\n", out


def echo_texts():
    rng = random.Random(2002)
    doubles = [repr(rng.uniform(-1e6, 1e6)) for _ in range(1001)]
    doubles += [repr(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]) for _ in range(1001)]
    doubles = [d for d in doubles if d not in ("nan", "inf", "-inf")]
    return doubles + [
        "0.30000000000000004", "-0.0", "0.0", "1E-400", "1e400", "-1e400", "5e-324", "1.7976931348623157e308",
        "123456789012345678901234567890", "-123456789012345678901234567890", "18446744073709551616",
        "-9223372036854775809", "1" + "0" * 400,
        '"\\u00e9\\ud83d\\ude00\\u0000\\/\\"\\\\"', '"\\udc00"', '"caf\xc3\xa9"',
        '{ "a" : [ 1 , 2.50 , -0 ] ,\n\t"b" : { } }', "[" * 63 + "]" * 63, "null", "true", '""', "[]",
    ]


def case_echo_answers_its_arguments_byte_for_byte():
    s = connect(sock_path, timeout=60)
    texts = echo_texts()
    # Pipelined, each with its id: answers come as jobs end, in any order.
    s.sendall(b"".join(frame(b'{"op":"submit","task":"echo","id":%d,"args":%s}' % (i, t.encode()))
                       for i, t in enumerate(texts)))
    wrong = []
    for _ in texts:
        body = raw_answer(s)
        i = json.loads(body)["id"]
        if body != b'{"id":%d,"ok":true,"result":%s}' % (i, texts[i].encode()):
            wrong.append((texts[i], body))
    assert not wrong, "%d of %d came back different, e.g. %r" % (len(wrong), len(texts), wrong[:3])
    # The member the daemon parsed is the one whose text it passes on: a key escaped, or given twice.
    s.sendall(frame(b'{"op":"submit","task":"echo","\\u0061rgs" : [1, {"args":2}] ,"args":3,"id":1}'))
    assert raw_answer(s) == b'{"id":1,"ok":true,"result":[1, {"args":2}]}'


def case_a_typed_task_reads_doubles_exactly_and_writes_them_shortest():
    s = connect(sock_path, timeout=60)
    rng = random.Random(317)
    lists = [[rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20) for _ in range(rng.randint(1, 5))] for _ in range(400)]
    lists += [[0.1, 0.2], [8.5744025984476e+19], [6.0], [1e22]]
    s.sendall(b"".join(frame(b'{"op":"submit","task":"sum","id":%d,"args":{"values":[%s]}}' %
                             (i, ",".join(repr(v) for v in values).encode()))
                       for i, values in enumerate(lists)))
    wrong = []
    for _ in lists:
        body = raw_answer(s)
        i = json.loads(body)["id"]
        want = functools.reduce(lambda a, b: a + b, lists[i], 0.0)  # as std::accumulate adds
        prefix = b'{"id":%d,"ok":true,"result":' % i
        text = body[len(prefix):-1].decode() if body.startswith(prefix) else body.decode()
        # Python's repr is the shortest round trip too, but may pick another notation: ".0" is 2 more.
        if float(text) != want or len(text) > len(repr(want)) + 2:
            wrong.append((lists[i], text, repr(want)))
    assert not wrong, "%d of %d sums came back different, e.g. %r" % (len(wrong), len(lists), wrong[:3])
    s.sendall(frame(b'{"op":"submit","task":"sum","args":{"values":[0.1,0.2]},"id":1}'))
    body = raw_answer(s)
    assert body == b'{"id":1,"ok":true,"result":0.30000000000000004}', body


def case_the_cli_prints_results_as_the_daemon_wrote_them():
    out = cli("submit", "sum", '{"values":[0.1,0.2]}')
    assert out.returncode == 0 and out.stdout == b"0.30000000000000004\n", out
    args = '[0.30000000000000004, 1e400, 123456789012345678901234567890, -0.0, "\\u00e9 \\u0000", {"a" : 1E5}]'
    out = cli("submit", "echo", args)
    want = b'[0.30000000000000004,1e400,123456789012345678901234567890,-0.0,"\\u00e9 \\u0000",{"a":1E5}]\n'
    assert out.returncode == 0 and out.stdout == want, out
    out = cli("map", "echo", stdin=b"[0.30000000000000004]\n-0.0\n1e400\n")
    assert out.returncode == 0 and out.stdout == b"[0.30000000000000004]\n-0.0\n1e400\n", out
    out = cli("map", "sum", stdin=b'{"values":[0.1,0.2]}\n{"values":[1e308,1e308]}\n')
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 1 and lines[0] == "0.30000000000000004", out
    assert json.loads(lines[1])["error"]["type"] == "payload_error", out


def case_a_result_the_encoder_cannot_write_is_said_to_be_so():
    s = connect(sock_path)
    a = ask(s, b'{"op":"submit","task":"sum","args":{"values":[1e308,1e308]}}')
    assert not a["ok"] and a["error"]["type"] == "payload_error", a
    assert "the result cannot be written as JSON: inf is not a JSON number" in a["error"]["message"], a
    a = ask(s, b'{"op":"submit","task":"reverse","args":{"text":"\\ud83d\\ude00"}}')  # its bytes reversed
    assert not a["ok"] and "the result cannot be written as JSON: a string is not UTF-8" in a["error"]["message"], a
    out = cli("submit", "sum", '{"values":[1e308,1e308]}')
    assert out.returncode == 2 and b"inf is not a JSON number" in out.stderr, out


def case_a_number_out_of_range_anywhere_is_a_bad_request_or_no_matter():
    s = connect(sock_path)
    for value in (b"1e400", b"-1e400", b"1" + b"0" * 400, b"1e-400", b"1.5", b"-1", b'"5"'):
        a = ask(s, b'{"op":"submit","task":"hello","args":{"text":"x"},"timeout_ms":%s,"id":3}' % value)
        assert not a["ok"] and a["error"]["type"] == "bad_request" and "timeout_ms" in a["error"]["message"], (value, a)
        assert a.get("id") == 3, a
    a = ask(s, b'{"op":"submit","task":"hello","args":{"text":"x"},"retries":1e400}')
    assert not a["ok"] and a["error"]["type"] == "bad_request" and "retries" in a["error"]["message"], a
    a = ask(s, b'{"op":"scale","workers":1e400}')
    assert not a["ok"] and a["error"]["type"] == "bad_request", a
    a = ask(s, b'{"op":"submit","task":"sum","args":{"values":[1e400]}}')
    assert not a["ok"] and a["error"]["type"] == "payload_error" and "range" in a["error"]["message"], a
    a = ask(s, b'{"op":"status","pad":[1e400,-1e999999999999999999999,1e-400]}')  # ignored fields: no matter
    assert a["ok"], a
    a = ask(s, b'{"op":"submit","task":"hello","args":{"text":"still here"},"timeout_ms":1e3}')
    assert not a["ok"] and a["error"]["type"] == "bad_request", a  # 1e3 is a double, not an integer
    a = ask(s, b'{"op":"submit","task":"hello","args":{"text":"still here"},"timeout_ms":1000}')
    assert a["ok"] and a["result"] == "Hello still here!", a


def case_an_id_that_is_no_integer_is_a_bad_request_that_keeps_the_connection():
    s = connect(sock_path)
    for bad in (b'"x"', b"1.5", b"18446744073709551615", b"9223372036854775808", b"null", b"true", b"[]", b"{}",
                b"1e400", b"1e2"):
        for op in (b'"op":"submit","task":"hello","args":{"text":"x"}', b'"op":"status"', b'"op":"nope"'):
            a = ask(s, b"{%s,\"id\":%s}" % (op, bad))
            assert not a["ok"] and a["error"]["type"] == "bad_request", (bad, op, a)
            assert "id" not in a and '"id"' in a["error"]["message"] and "integer" in a["error"]["message"], (bad, a)
    for good in (b"-9223372036854775808", b"9223372036854775807", b"0"):
        s.sendall(frame(b'{"op":"submit","task":"hello","args":{"text":"x"},"id":%s}' % good))
        assert raw_answer(s) == b'{"id":%s,"ok":true,"result":"Hello x!"}' % good
    a = ask(s, b'{"op":"stop","now":"yes"}')
    assert not a["ok"] and a["error"]["type"] == "bad_request" and "now" in a["error"]["message"], a
    assert ask(s, b'{"op":"status","id":5}')["id"] == 5


def case_a_request_with_several_faults_is_refused_for_the_first_the_daemon_checks():
    s = connect(sock_path)
    a = ask(s, b'{"op":"submit","task":"nope","timeout_ms":-1,"retries":1000,"id":4}')
    assert a == {"id": 4, "ok": False, "error": {"type": "unknown_task",
                                                 "message": "no task is named 'nope': see 'parallelcode tasks'"}}, a
    a = ask(s, b'{"op":"submit","task":7,"timeout_ms":-1,"id":4}')
    assert a["error"]["type"] == "bad_request" and "task" in a["error"]["message"] and a["id"] == 4, a
    a = ask(s, b'{"op":"submit","task":"hello","timeout_ms":-1,"retries":1000}')
    assert a["error"]["type"] == "bad_request" and "timeout_ms" in a["error"]["message"], a
    a = ask(s, b'{"op":"nope","id":1.5}')
    assert "id" not in a and a["error"]["type"] == "bad_request" and '"id"' in a["error"]["message"], a
    assert ask(s, b'{"op":"status","id":6}')["id"] == 6  # and the connection stays


def main():
    cases = sys.argv[2:] or [name for name in globals() if name.startswith("case_")]
    proc = start_daemon()
    failed = 0
    try:
        for name in cases:
            try:
                globals()[name]()
                print("ok:", name)
            except Exception as e:  # a case's failure is reported, and the others still run
                failed += 1
                print("FAIL: %s: %s: %s" % (name, type(e).__name__, str(e)[:2000]))
        s = connect(sock_path)
        assert ask(s, b'{"op":"stop"}')["ok"]
        assert proc.wait(timeout=30) == 0, "the daemon exited with %s" % proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if failed:
            with open(os.path.join(tmp, "log"), "rb") as log:
                sys.stdout.write("".join("    log: " + line for line in log.read().decode(errors="replace").splitlines(True)[-20:]))
        subprocess.run(["rm", "-rf", tmp])
    print("%d passed, %d failed" % (len(cases) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
