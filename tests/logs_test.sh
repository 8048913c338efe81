#!/usr/bin/env bash
# The daemon's log as an operator reads it: levels filter lines, JSON lines parse, the
# journal gets priority prefixes instead of timestamps, and a graceful stop says its
# workers stopped. Each case starts its own daemon on a temporary socket.
#   logs_test.sh BUILD_DIR [CASE...]
set -uo pipefail
build=$1
shift
source "$(dirname "${BASH_SOURCE[0]}")/daemon_case.sh"
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

pc() { "$C" --socket "$tmp/sock" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
worker_pid() { pc status --json | json 'd["workers"][0]["pid"]'; }

# The log goes to a file opened here, so that a case can name its device and inode.
start_daemon() {
  rm -f "$tmp/log"
  exec {log_fd}>"$tmp/log"
  "$D" --socket "$tmp/sock" "$@" 2>&"$log_fd" &
  daemon_pid=$!
  exec {log_fd}>&-
  wait_for "pc status >/dev/null 2>&1" 10 || { fail "the daemon did not come up"; return 1; }
}

stop_daemon() {
  kill -"${1:-TERM}" "$daemon_pid"
  wait "$daemon_pid"
  local status=$?
  daemon_pid=""
  [ $status -eq 0 ] || { fail "the daemon exited with $status"; return 1; }
}

# A frame that is no JSON: the daemon closes that connection, which is debug news.
send_garbage() {
  python3 - "$tmp/sock" <<'EOF'
import sys
from control_client import answer, connect, frame
s = connect(sys.argv[1])
s.sendall(frame(b"this is no json"))
assert answer(s)["error"]["type"] == "bad_frame"
EOF
}

case_warning_level_shows_a_worker_death_but_not_start_and_stop() {
  start_daemon --workers 1 --log-level warning || return 1
  local victim
  victim=$(worker_pid)
  kill -KILL "$victim"
  wait_for 'grep -q "killed by SIGKILL" "$tmp/log"' 10 || { fail "the death is not logged"; return 1; }
  stop_daemon || return 1
  ! grep -q "ready:\|started: pid\|SIGTERM\|stopped" "$tmp/log" || { fail "info lines at --log-level warning"; return 1; }
}

case_an_unreachable_queue_is_logged_as_a_warning() {
  "$D" --help | grep -q -- "--queue " || return 0  # built without Redis support
  # Port 1 on loopback: nothing listens, so the consumer says so and keeps trying.
  start_daemon --workers 1 --log-format json --queue redis://127.0.0.1:1 || return 1
  wait_for 'grep -q "retrying in the background" "$tmp/log"' 10 || { fail "no line about the queue"; return 1; }
  stop_daemon || return 1
  python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
queue = [d for d in lines if d["message"].startswith("queue: ")]
assert queue and all(d["level"] == "warning" for d in queue if "retrying" in d["message"]), queue
' "$tmp/log" || { fail "the queue line is not a warning: $(grep queue "$tmp/log")"; return 1; }
}

case_error_level_hides_warnings() {
  start_daemon --workers 1 --log-level error || return 1
  kill -KILL "$(worker_pid)"
  wait_for '[ "$(pc status --json | json "d[\"respawns\"]")" = 1 ]' 10 || { fail "no respawn"; return 1; }
  stop_daemon || return 1
  [ ! -s "$tmp/log" ] || { fail "lines at --log-level error with no error"; return 1; }
}

case_debug_level_shows_a_refused_client_and_info_does_not() {
  start_daemon --workers 1 --log-level debug || return 1
  send_garbage || { fail "the garbage was not refused"; return 1; }
  wait_for 'grep -q "bad_frame.*closing its connection" "$tmp/log"' 5 || { fail "no debug line"; return 1; }
  grep -q "ready:" "$tmp/log" || { fail "debug hides info lines"; return 1; }
  stop_daemon || return 1
  start_daemon --workers 1 || return 1
  send_garbage || { fail "the garbage was not refused"; return 1; }
  pc status >/dev/null || { fail "status"; return 1; }
  stop_daemon || return 1
  ! grep -q "closing its connection" "$tmp/log" || { fail "a debug line at the default level"; return 1; }
}

case_json_lines_each_parse_with_time_level_message_and_the_worker_pid() {
  start_daemon --workers 2 --log-format json || return 1
  local victim
  victim=$(worker_pid)
  kill -KILL "$victim"
  wait_for 'grep -q "killed by SIGKILL" "$tmp/log"' 10 || { fail "the death is not logged"; return 1; }
  stop_daemon || return 1
  python3 - "$tmp/log" "$victim" <<'EOF' || { fail "the JSON lines are not as they should be"; return 1; }
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 6, lines
levels = set()
for line in lines:
    d = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["time"]), d
    assert d["level"] in ("error", "warning", "info", "debug"), d
    assert isinstance(d["message"], str) and d["message"], d
    levels.add(d["level"])
death = [json.loads(l) for l in lines if "killed by SIGKILL" in l]
assert death and death[0]["level"] == "warning" and death[0]["pid"] == int(sys.argv[2]), death
assert levels == {"info", "warning"}, levels
EOF
}

case_a_message_with_quotes_and_a_newline_stays_one_json_line() {
  # A plugin path is the daemon's only message taken from the user: it refuses this one.
  local weird=$tmp/'no "such"'$'\n''plugin.so'
  "$D" --socket "$tmp/sock" --log-format json --plugin "$weird" 2>"$tmp/log"
  [ $? -ne 0 ] || { fail "a missing plugin was loaded"; return 1; }
  [ "$(wc -l < "$tmp/log")" -eq 1 ] || { fail "not one line"; return 1; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["level"]=="error" and "\"such\"\n" in d["message"], d' \
    "$tmp/log" || { fail "the line does not parse back to the message"; return 1; }
}

case_journal_stream_gives_priority_prefixes_and_no_timestamp() {
  : >"$tmp/log"
  export JOURNAL_STREAM
  JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/log")
  start_daemon --workers 1 --kill-grace 100ms
  local started=$?
  unset JOURNAL_STREAM
  [ $started -eq 0 ] || return 1
  kill -KILL "$(worker_pid)"
  wait_for 'grep -q "^<4>worker 0 (pid [0-9]*) killed by SIGKILL" "$tmp/log"' 10 || { fail "no <4> death line"; return 1; }
  stop_daemon || return 1
  grep -q "^<6>ready: 1 workers" "$tmp/log" || { fail "no <6> ready line"; return 1; }
  ! grep -v '^<[3467]>' "$tmp/log" | grep -q . || { fail "a line without a priority prefix"; return 1; }
  ! grep -q "parallelcode-supervisor\[\|[0-9]T[0-9][0-9]:" "$tmp/log" || { fail "a timestamp or a name under the journal"; return 1; }
}

case_journal_stream_of_another_file_keeps_timestamps() {
  JOURNAL_STREAM=$(stat -c '%d:%i' /dev/null) start_daemon --workers 1 || return 1
  stop_daemon || return 1
  grep -q "^[0-9-]*T[0-9:]*Z parallelcode-supervisor\[$!\]: ready: 1 workers" "$tmp/log" ||
    { fail "stderr is not the journal: the text should keep its timestamps"; return 1; }
}

case_a_graceful_stop_logs_every_worker_stopped_and_no_signal() {
  start_daemon --workers 3 || return 1
  stop_daemon TERM || return 1
  [ "$(grep -c "worker [0-9] (pid [0-9]*) stopped after [0-9.]* s$" "$tmp/log")" -eq 3 ] ||
    { fail "not three workers stopped"; return 1; }
  ! grep -q "SIGKILL\|killed" "$tmp/log" || { fail "a graceful stop speaks of killing"; return 1; }
}

case_stop_now_logs_every_worker_stopped_and_no_signal() {
  start_daemon --workers 2 || return 1
  pc stop --now || { fail "stop --now"; return 1; }
  wait "$daemon_pid"
  daemon_pid=""
  [ "$(grep -c "stopped after" "$tmp/log")" -eq 2 ] || { fail "not two workers stopped"; return 1; }
  ! grep -q "SIGKILL\|SIGTERM (\|killed" "$tmp/log" || { fail "stop --now speaks of killing"; return 1; }
}

run_cases "$@"
