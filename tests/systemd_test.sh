#!/usr/bin/env bash
# The daemon as systemd runs it, with the test playing systemd: a socket passed as
# fd 3 (LISTEN_FDS), a NOTIFY_SOCKET the test reads, a watchdog; and the options an
# operator's unit uses: --socket-group, --socket-mode, --config, PARALLELCODE_SOCKET.
#   systemd_test.sh BUILD_DIR
set -uo pipefail
build=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=$build/supervisor/daemon/parallelcode-supervisor
C=$build/supervisor/cli/parallelcode
HELPER=$here/systemd_helper.py
tmp=$(mktemp -d)
failed=0
n_case=0
daemon_pid=""
reader_pid=""

cleanup() {
  [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
  [ -n "$reader_pid" ] && kill -KILL "$reader_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

source "$here/wait_for.sh"

fail() {
  echo "FAIL: $case_name: $*"
  [ -f "$tmp/log" ] && sed 's/^/    log: /' "$tmp/log" | tail -15
  [ -f "$tmp/notified" ] && sed 's/^/    notified: /' "$tmp/notified" | tail -8
  failed=$((failed + 1))
  return 1
}

# Stops the daemon started last with TERM; fails unless it exits 0 in time.
stop_daemon() {
  kill -TERM "$daemon_pid" 2>/dev/null  # a case may have sent it already
  wait_for "! kill -0 $daemon_pid 2>/dev/null" 10 || { fail "the daemon did not stop on TERM"; return 1; }
  wait "$daemon_pid"
  local status=$?
  daemon_pid=""
  [ $status -eq 0 ] || { fail "the daemon exited with $status"; return 1; }
}

# The daemon's exit status for these arguments (it must exit by itself, quickly).
usage_status() {
  timeout 10 "$D" --socket "$tmp/usage.sock" "$@" 2>"$tmp/log"
  echo $?
}

start_reader() {
  rm -f "$tmp/notify" "$tmp/notified"
  touch "$tmp/notified"
  python3 "$HELPER" notifications "$tmp/notify" "$tmp/notified" &
  reader_pid=$!
  wait_for "[ -S '$tmp/notify' ]" 10
}

# Runs one case; whatever a failed case left running is killed, by pid.
run_case() {
  case_name=$1
  "$2" || {
    [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    daemon_pid=""
  }
  [ -n "$reader_pid" ] && kill -KILL "$reader_pid" 2>/dev/null && wait "$reader_pid" 2>/dev/null
  reader_pid=""
  rm -f "$tmp/notified" "$tmp/log"
  return 0
}

notified() { grep -c -- "$1" "$tmp/notified"; }

case_0() {
  start_reader
  NOTIFY_SOCKET=$tmp/notify WATCHDOG_USEC=200000 python3 "$HELPER" activate "$tmp/act.sock" \
    "$D" --workers 2 --socket "$tmp/unused.sock" 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "grep -q READY=1 '$tmp/notified'" 10 || { fail "no READY=1"; return 1; }
  grep "READY=1" "$tmp/notified" | grep -q "STATUS=serving 2 workers, 0 jobs in flight" || { fail "no STATUS= with READY=1"; return 1; }
  grep -q "MAINPID=$daemon_pid" "$tmp/notified" || { fail "MAINPID is not the daemon's pid"; return 1; }
  out=$("$C" --socket "$tmp/act.sock" submit hello '{"text":"systemd"}' --raw 2>&1) || { fail "submit through the passed socket: $out"; return 1; }
  [ -e "$tmp/unused.sock" ] && { fail "the daemon bound --socket although systemd passed one"; return 1; }
  wait_for "[ \$(notified WATCHDOG=1) -ge 4 ]" 5 || { fail "WATCHDOG=1 is not sent every 100 ms"; return 1; }
  kill -TTIN "$daemon_pid"
  wait_for "grep -q 'STATUS=serving 3 workers' '$tmp/notified'" 10 || { fail "no STATUS= after TTIN"; return 1; }
  kill -HUP "$daemon_pid"
  wait_for "grep -q 'RELOADING=1 | MONOTONIC_USEC=[0-9]' '$tmp/notified'" 10 || { fail "no RELOADING=1 with MONOTONIC_USEC on HUP"; return 1; }
  wait_for "sed -n '/RELOADING=1/,\$p' '$tmp/notified' | grep -q READY=1" 15 || { fail "no READY=1 after the reload"; return 1; }
  grep -q "every worker replaced" "$tmp/log" || { fail "READY=1 came before the workers were replaced"; return 1; }
  kill -TERM "$daemon_pid"
  wait_for "grep -q STOPPING=1 '$tmp/notified'" 10 || { fail "no STOPPING=1 on TERM"; return 1; }
  stop_daemon || return 1
  # systemd's socket stays systemd's: neither unlinked nor locked by the daemon.
  [ -S "$tmp/act.sock" ] || { fail "the daemon removed the socket systemd owns"; return 1; }
  [ -e "$tmp/act.sock.lock" ] && { fail "the daemon took a lock beside systemd's socket"; return 1; }
  return 0
}
run_case "a passed socket is served, and systemd hears ready, status, watchdog, scale, reload and stop" case_0

case_1() {
  python3 "$HELPER" activate --listen-pid other "$tmp/other.sock" "$D" --workers 1 --socket "$tmp/own.sock" 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "'$C' --socket '$tmp/own.sock' status >/dev/null 2>&1" 10 || { fail "the daemon did not serve its own --socket"; return 1; }
  grep -q "socket systemd passed" "$tmp/log" && { fail "it took a socket meant for pid 1"; return 1; }
  stop_daemon || return 1
  return 0
}
run_case "a socket passed to another pid (LISTEN_PID) is not taken" case_1

passed_file() {
  LISTEN_FDS=1 timeout 10 bash -c 'exec 3<"$1"; shift; LISTEN_PID=$$ exec "$@"' - /dev/null \
    "$D" --socket "$tmp/file.sock" 2>"$tmp/log"
  [ $? -eq 1 ] && grep -q "not a listening Unix stream socket" "$tmp/log" || { fail "exit and message"; return 1; }
}
run_case "a passed fd that is no listening socket stops the start (exit 1)" passed_file

case_2() {
  group=$(id -gn)
  [ "$(id -u)" -eq 0 ] && getent group daemon >/dev/null && group=daemon  # root may give it any group
  "$D" --workers 1 --socket "$tmp/g.sock" --socket-group "$group" --socket-mode 0660 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "'$C' --socket '$tmp/g.sock' status >/dev/null 2>&1" 10 || { fail "the daemon did not come up"; return 1; }
  [ "$(stat -c '%G %a' "$tmp/g.sock")" = "$group 660" ] || { fail "socket is $(stat -c '%G %a' "$tmp/g.sock"), not $group 660"; return 1; }
  stop_daemon || return 1
  return 0
}
run_case "--socket-group and --socket-mode give the socket that group and mode" case_2

case_3() {
  [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && getent group daemon >/dev/null || { echo "SKIP: $case_name (needs root, setpriv)"; return 0; }
  # The daemon runs as a uid of its own (65533) in group daemon; the clients as 65534.
  # Both from a copy of the binaries and libraries they can read (the build may be in a 0700 directory).
  gid=$(getent group daemon | cut -d: -f3)
  mkdir -m 0755 "$tmp/shared" "$tmp/bin"
  cp "$D" "$C" "$build"/libparallelcode.so* "$tmp/bin/"
  cp "$build"/supervisor/remote/libparallelcode-remote.so* "$tmp/bin/" 2>/dev/null
  chmod -R a+rX "$tmp/bin"
  chown 65533 "$tmp/shared"
  chmod 0711 "$tmp"
  local d=$tmp/bin/parallelcode-supervisor c=$tmp/bin/parallelcode
  setpriv --reuid=65533 --regid="$gid" --clear-groups env LD_LIBRARY_PATH="$tmp/bin" "$d" --workers 1 \
    --socket "$tmp/shared/s.sock" --socket-group daemon --socket-mode 0660 2>"$tmp/log" &
  daemon_pid=$!
  member="setpriv --reuid=65534 --regid=65534 --groups=$gid env LD_LIBRARY_PATH=$tmp/bin"
  wait_for "$member '$c' --socket '$tmp/shared/s.sock' status >/dev/null 2>&1" 10 || { fail "the daemon did not come up: $(tail -2 "$tmp/log")"; return 1; }
  # Root's CLI is no member: it refuses a daemon of another uid, which could be a stranger's.
  out=$("$C" --socket "$tmp/shared/s.sock" status 2>&1)
  echo "$out" | grep -q "refusing to use it" || { fail "root's CLI used another uid's daemon: $out"; return 1; }
  # The CLI of a group member trusts a daemon of another uid that gave its socket our group.
  out=$($member "$c" --socket "$tmp/shared/s.sock" submit hello '{"text":"you"}' 2>&1)
  [ "$out" = '"Hello you!"' ] || { fail "a group member's CLI was not served: $out"; return 1; }
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env LD_LIBRARY_PATH="$tmp/bin" "$c" --socket "$tmp/shared/s.sock" status 2>&1)
  echo "$out" | grep -q "Permission denied\|refusing" || { fail "a CLI outside the group was served: $out"; return 1; }
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, sys
socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$tmp/shared/s.sock" 2>&1)
  echo "$out" | grep -q "Permission denied" || { fail "a user outside the group could connect: $out"; return 1; }
  stop_daemon || return 1
  return 0
}
run_case "a member of the socket's group is served by another user's daemon" case_3

case_4() {
  [ "$(usage_status --socket-group no-such-group-pc14)" -eq 2 ] && grep -q "no such group" "$tmp/log" || { fail "an unknown group"; return 1; }
  [ "$(usage_status --socket-mode 0666)" -eq 2 ] || { fail "--socket-mode 0666 is refused"; return 1; }
  [ "$(usage_status --socket-mode 66x)" -eq 2 ] || { fail "--socket-mode 66x is refused"; return 1; }
  [ -e "$tmp/usage.sock" ] && { fail "a refused daemon left a socket"; return 1; }
  return 0
}
run_case "an unknown group, or a socket mode open to others, is a usage error (exit 2)" case_4

case_5() {
  printf 'workers = 3\nsocket = "%s"\n' "$tmp/conf.sock" > "$tmp/daemon.toml"
  "$D" --config "$tmp/daemon.toml" 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "'$C' --socket '$tmp/conf.sock' status >/dev/null 2>&1" 10 || { fail "the daemon did not serve the config's socket"; return 1; }
  n=$("$C" --socket "$tmp/conf.sock" status --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))')
  [ "$n" = 3 ] || { fail "$n workers, not the config's 3"; return 1; }
  stop_daemon || return 1
  printf 'workers = 3\nworkerz = 4\n' > "$tmp/bad.toml"
  [ "$(usage_status --config "$tmp/bad.toml")" -eq 2 ] && grep -q "workerz" "$tmp/log" || { fail "an unknown key: $(cat "$tmp/log")"; return 1; }
  [ "$(usage_status --config "$tmp/missing.toml")" -eq 2 ] || { fail "a missing config file"; return 1; }
  return 0
}
run_case "--config sets options, and an unknown key in it is a usage error" case_5

case_6() {
  PARALLELCODE_SOCKET=$tmp/env.sock "$D" --workers 1 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "'$C' --socket '$tmp/env.sock' status >/dev/null 2>&1" 10 || { fail "the daemon did not serve PARALLELCODE_SOCKET"; return 1; }
  stop_daemon || return 1
  return 0
}
run_case "PARALLELCODE_SOCKET is the daemon's --socket" case_6

case_7() {
  [ "$(usage_status --tick 5x)" -eq 2 ] && grep -q "5x" "$tmp/log" || { fail "--tick 5x: $(cat "$tmp/log")"; return 1; }
  [ "$(usage_status --workers 0)" -eq 2 ] || { fail "--workers 0"; return 1; }
  return 0
}
run_case "a bad option value is a usage error (exit 2)" case_7

[ $failed -eq 0 ] && echo "all systemd cases passed"
exit $((failed > 0))
