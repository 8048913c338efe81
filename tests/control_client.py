# The daemon's wire format, for the shell tests' clients: a message is a 4-byte
# little-endian length, then that many bytes of JSON.

import json
import socket
import struct


def connect(path, timeout=5):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(timeout)
    return s


def frame(body):
    return struct.pack("<I", len(body)) + body


def _exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def answer(s):
    """The next answer, parsed; None if the daemon closed the connection first."""
    head = _exactly(s, 4)
    if head is None:
        return None
    body = _exactly(s, struct.unpack("<I", head)[0])
    return None if body is None else json.loads(body)


def closed(s):
    try:
        return s.recv(1) == b""
    except OSError:
        return True
