#!/usr/bin/env python3
"""What systemd does for a daemon, played by the test (no systemd needed).

  systemd_helper.py activate [--listen-pid other] SOCKET PROGRAM ARGS...
      binds and listens on SOCKET, puts it at fd 3, sets LISTEN_FDS=1 and LISTEN_PID
      (this pid, which exec keeps; 'other' names pid 1 instead), and execs PROGRAM.
  systemd_helper.py notifications SOCKET LOG
      receives sd_notify datagrams on SOCKET, one per line in LOG (newlines as ' | ').
"""
import os
import socket
import sys


def activate(args):
    other = args[:2] == ["--listen-pid", "other"]
    if other:
        args = args[2:]
    path, program = args[0], args[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)  # dup2 clears close-on-exec: the daemon inherits it
        s.close()
    else:
        os.set_inheritable(3, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = "1" if other else str(os.getpid())
    os.execvp(program[0], program)


def notifications(path, log):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    with open(log, "a", buffering=1) as out:
        while True:
            message = s.recv(4096).decode()
            out.write(message.replace("\n", " | ") + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "activate":
        activate(sys.argv[2:])
    elif sys.argv[1] == "notifications":
        notifications(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
