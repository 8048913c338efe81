#!/usr/bin/env bash
# The daemon and the CLI from a shell, as an operator uses them. Each case starts
# its own daemon on a temporary socket and checks, when it stops, that nothing
# of it is left running.
#   daemon_test.sh BUILD_DIR [CASE...]
set -uo pipefail
build=$1
shift
source "$(dirname "${BASH_SOURCE[0]}")/daemon_case.sh"
PLUGIN=$build/examples/libparallelcode-example-plugin.so

pc() { "$C" --socket "$tmp/sock" "$@"; }

# The Python clients below speak the wire format through control_client.py.
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# The pids of the daemon's fork server and workers, as status shows them.
pool_pids() { pc status --json | json '" ".join(str(p) for p in [d["fork_server"]] + [w["pid"] for w in d["workers"]])'; }

start_daemon() {
  rm -f "$tmp/log"
  "$D" --socket "$tmp/sock" "$@" 2>"$tmp/log" &
  daemon_pid=$!
  wait_for "pc status >/dev/null 2>&1" 10 || { fail "the daemon did not come up"; return 1; }
  known_pids="$daemon_pid $(pool_pids)"
}

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != "Z" ]; }

# Stops the daemon with a signal (TERM unless given) and checks its exit status
# and that no process of it survives.
stop_daemon() {
  local sig=${1:-TERM}
  local seen
  seen="$known_pids $(pool_pids 2>/dev/null)"
  kill -"$sig" "$daemon_pid"
  wait_for "! kill -0 $daemon_pid 2>/dev/null" 10 || { fail "the daemon did not stop on SIG$sig"; return 1; }
  wait "$daemon_pid"
  local status=$?
  daemon_pid=""
  [ $status -eq 0 ] || { fail "the daemon exited with $status"; return 1; }
  for p in $seen; do
    wait_for "! alive $p" 2 ||
      { fail "pid $p outlived the daemon"; return 1; }
  done
  [ ! -e "$tmp/sock" ] || { fail "the socket file was left behind"; return 1; }
  # In a sanitized build UBSan writes to stderr (here the log) whatever log_path says; a worker it stops need not fail the case.
  ! grep -q "runtime error:" "$tmp/log" || { fail "UBSan reported in the daemon's log"; return 1; }
}

# --- the cases ---------------------------------------------------------------

case_submit_hello() {
  start_daemon --workers 2 || return 1
  [ "$(pc submit hello '{"text":"world"}')" = '"Hello world!"' ] || { fail "submit hello"; return 1; }
  [ "$(pc submit hello '{"text":"world"}' --raw)" = 'Hello world!' ] || { fail "submit --raw"; return 1; }
  [ "$(pc submit fnv '{"iters":1000}' --raw)" = '9ebd4ca7a79e5ddd' ] || { fail "fnv 1000"; return 1; }
  [ "$(pc submit echo '{"a":[1,2,{"b":null}]}')" = '{"a":[1,2,{"b":null}]}' ] || { fail "echo"; return 1; }
  stop_daemon
}

case_map_1000_lines_in_order() {
  start_daemon --workers 3 || return 1
  python3 -c 'import json
for i in range(1000): print(json.dumps({"n": i, "s": "x" * (i % 7)}))' > "$tmp/in.jsonl"
  pc map echo < "$tmp/in.jsonl" > "$tmp/out.jsonl" 2>/dev/null || { fail "map exited $?"; return 1; }
  python3 - "$tmp/in.jsonl" "$tmp/out.jsonl" <<'PY' || { fail "map output differs from its input"; return 1; }
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
sys.exit(0 if a == b and len(b) == 1000 else 1)
PY
  # A line that is not JSON gets an error line in its place; the others still run.
  printf '{"text":"a"}\nnot json\n{"text":"b"}\n' | pc map hello --raw > "$tmp/mixed" 2>/dev/null
  [ $? -eq 1 ] || { fail "map with a bad line should exit 1"; return 1; }
  [ "$(sed -n 1p "$tmp/mixed")" = "Hello a!" ] && [ "$(sed -n 3p "$tmp/mixed")" = "Hello b!" ] &&
    grep -q '"bad_request"' <(sed -n 2p "$tmp/mixed") || { fail "map with a bad line: $(cat "$tmp/mixed")"; return 1; }
  stop_daemon
}

case_tiny_lines_go_to_the_pool_many_to_a_job_each_answered_as_alone() {
  python3 -c 'for i in range(2000): print({500: "{\"text\":5}", 1500: "{\"nope\":1}"}.get(i, "{\"text\":\"%d\"}" % i))' > "$tmp/in.jsonl"
  seq 1 40 | sed 's/.*/{"text":"warm"}/' > "$tmp/warm.jsonl"
  local batched
  for batched in 1s 0; do
    start_daemon --workers 2 --batch-below "$batched" || return 1
    pc map hello "$tmp/warm.jsonl" > /dev/null || { fail "the warm-up map failed"; return 1; }  # hello's runs are known now
    pc map hello "$tmp/in.jsonl" > "$tmp/out.$batched"
    [ $? -eq 1 ] || { fail "map with two bad lines should exit 1"; return 1; }
    local jobs
    jobs=$(( $(pc status --json | json 'd["completed"] + d["failed"]') - 40 ))
    if [ "$batched" = 0 ]; then
      [ "$jobs" -eq 2000 ] || { fail "--batch-below 0: 2000 lines made $jobs pool jobs"; return 1; }
    else
      [ "$jobs" -lt 1000 ] || { fail "2000 tiny lines made $jobs pool jobs: they were not batched"; return 1; }
    fi
    stop_daemon || return 1
  done
  cmp -s "$tmp/out.1s" "$tmp/out.0" || { fail "batched answers differ: $(diff "$tmp/out.1s" "$tmp/out.0" | head -5)"; return 1; }
  [ "$(sed -n 2p "$tmp/out.1s")" = '"Hello 1!"' ] && grep -q '"payload_error"' <(sed -n 501p "$tmp/out.1s") &&
    grep -q '"payload_error"' <(sed -n 1501p "$tmp/out.1s") || { fail "answers: $(sed -n '501p;1501p' "$tmp/out.1s")"; return 1; }
}

case_a_killed_worker_fails_the_lines_of_its_batch_and_no_others() {
  start_daemon --workers 1 --batch-below 1s || return 1
  seq 1 40 | sed 's/.*/{"ms":0}/' | pc map sleep > /dev/null || { fail "the warm-up map failed"; return 1; }
  { echo '{"ms":30000}'; seq 1 200 | sed 's/.*/{"ms":0}/'; } > "$tmp/in.jsonl"
  pc map sleep "$tmp/in.jsonl" > "$tmp/out" 2>/dev/null &
  local client=$!
  busy() { [ "$(pc status --json | json 'd["workers"][0]["running"]')" = 1 ]; }
  wait_for busy 5 || { fail "the batch never started"; return 1; }
  kill -9 "$(pc status --json | json 'd["workers"][0]["pid"]')"
  wait_for "! kill -0 $client 2>/dev/null" 20 || { kill $client; fail "map did not end after the kill"; return 1; }
  python3 - "$tmp/out" <<'PY' || { fail "answers after the kill: $(head -3 "$tmp/out")"; return 1; }
import json, sys
out = [json.loads(l) for l in open(sys.argv[1])]
lost = [i for i, a in enumerate(out) if isinstance(a, dict) and a["error"]["type"] == "worker_lost"]
assert len(out) == 201, len(out)
assert lost[:2] == [0, 1], lost          # the slow line and the next, one batch: lost together
assert lost == list(range(len(lost))), lost  # one batch, the first, and nothing after it
assert all(a == 0 for a in out[len(lost):]), out
assert out[0]["error"]["signal_name"] == "SIGKILL"
PY
  [ "$(pc submit hello '{"text":"after"}' --raw)" = 'Hello after!' ] || { fail "submit after the kill"; return 1; }
  stop_daemon
}

case_kill_9_from_the_shell_respawns_within_a_second() {
  start_daemon --workers 2 || return 1
  local victim
  victim=$(pc status --json | json 'd["workers"][0]["pid"]')
  kill -9 "$victim"
  new_pid() { [ "$(pc status --json | json '[w for w in d["workers"] if w["id"] == 0 and w["state"] == "ready"][0]["pid"]' 2>/dev/null)" -ne "$victim" ] 2>/dev/null; }
  wait_for new_pid 1 || { fail "worker 0 did not get a new pid within a second"; return 1; }
  [ "$(pc submit hello '{"text":"again"}' --raw)" = 'Hello again!' ] || { fail "submit after the kill"; return 1; }
  grep -q "killed by SIGKILL" "$tmp/log" || { fail "the log does not show the death"; return 1; }
  stop_daemon
}

case_a_job_on_a_killed_worker_fails_naming_the_signal() {
  start_daemon --workers 1 || return 1
  pc submit sleep '{"ms":30000}' > "$tmp/out" 2> "$tmp/err" &
  local client=$!
  busy() { [ "$(pc status --json | json 'd["workers"][0]["running"]')" = 1 ]; }
  wait_for busy 5 || { fail "the job never started"; return 1; }
  kill -9 "$(pc status --json | json 'd["workers"][0]["pid"]')"
  wait $client
  local status=$?
  [ $status -eq 1 ] || { fail "submit exited $status"; return 1; }
  grep -q "SIGKILL" "$tmp/err" || { fail "stderr does not name the signal: $(cat "$tmp/err")"; return 1; }
  stop_daemon
}

case_kill_refuses_a_pid_that_is_no_worker() {
  start_daemon --workers 1 || return 1
  pc kill 1 2> "$tmp/err"
  [ $? -eq 2 ] || { fail "kill 1 should exit 2"; return 1; }
  grep -q "not a worker" "$tmp/err" || { fail "no clear message: $(cat "$tmp/err")"; return 1; }
  pc kill "$daemon_pid" 2>/dev/null
  [ $? -eq 2 ] || { fail "kill of the daemon's own pid should exit 2"; return 1; }
  local victim
  victim=$(pc status --json | json 'd["workers"][0]["pid"]')
  pc kill "$victim" || { fail "kill of a worker"; return 1; }
  wait_for "! kill -0 $victim 2>/dev/null" 2 || { fail "the worker survived"; return 1; }
  stop_daemon
}

case_garbage_on_the_socket_harms_nothing() {
  start_daemon --workers 2 --max-frame 1M || return 1
  python3 - "$tmp/sock" <<'PY' || { fail "the garbage client saw something wrong"; return 1; }
import struct, sys
from control_client import answer, closed, connect, frame
path = sys.argv[1]
def conn(): return connect(path)
quiet = conn()                                               # a client that says nothing, ever
s = conn(); s.sendall(struct.pack("<I", 1 << 30) + b"xx")     # oversize
a = answer(s); assert a["error"]["type"] == "bad_frame", a; assert closed(s)
s = conn(); s.sendall(struct.pack("<I", 0))                    # empty
assert answer(s)["error"]["type"] == "bad_frame"; assert closed(s)
s = conn(); s.sendall(frame(b"\xff\xfe not json"))             # not JSON
assert answer(s)["error"]["type"] == "bad_frame"; assert closed(s)
s = conn(); s.sendall(frame(b"[" * 200000))                   # nested past any stack
assert answer(s)["error"]["type"] == "bad_frame"; assert closed(s)
s = conn(); s.sendall(frame(b'{"op":"submit","task":"nope"}'))  # unknown task: an error, the connection lives
assert answer(s)["error"]["type"] == "unknown_task"
s.sendall(frame(b'{"op":"frobnicate"}')); assert answer(s)["error"]["type"] == "bad_request"
s.sendall(frame(b'{"op":"submit","task":"hello","args":{"txt":1}}'))
assert answer(s)["error"]["type"] == "payload_error"
s.sendall(frame(b'{"op":"submit","task":"hello","args":{"text":"ok"},"id":7}'))
a = answer(s); assert a["ok"] and a["id"] == 7 and a["result"] == "Hello ok!", a
s = conn(); s.sendall(struct.pack("<I", 100) + b'{"op":')     # half a frame, then gone
s.close()
s = conn(); s.sendall(frame(b'{"op":"submit","task":"sleep","args":{"ms":300}}'))
s.close()                                                     # gone while its job runs
for i in range(200):                                          # a flood of connections
    c = conn(); c.sendall(b"\x00\x01"); c.close()
quiet.close()
PY
  [ "$(pc submit hello '{"text":"world"}' --raw)" = 'Hello world!' ] || { fail "the daemon no longer serves"; return 1; }
  [ "$(pc status --json | json 'len([w for w in d["workers"] if w["state"] == "ready"])')" = 2 ] ||
    { fail "workers were harmed"; return 1; }
  stop_daemon
}

case_term_drains_and_exits_0() {
  start_daemon --workers 1 || return 1
  pc submit sleep '{"ms":700}' > "$tmp/out" 2>&1 &
  local client=$!
  busy() { [ "$(pc status --json | json 'd["workers"][0]["running"]')" = 1 ]; }
  wait_for busy 5 || { fail "the job never started"; return 1; }
  stop_daemon TERM || return 1
  wait $client || { fail "the job was not allowed to finish: $(cat "$tmp/out")"; return 1; }
  [ "$(cat "$tmp/out")" = 700 ] || { fail "the job's answer: $(cat "$tmp/out")"; return 1; }
  grep -q "SIGTERM: taking no new job" "$tmp/log" || { fail "no drain in the log"; return 1; }
}

case_int_stops_at_once() {
  start_daemon --workers 1 || return 1
  pc submit sleep '{"ms":30000}' > "$tmp/out" 2> "$tmp/err" &
  local client=$!
  busy() { [ "$(pc status --json | json 'd["workers"][0]["running"]')" = 1 ]; }
  wait_for busy 5 || { fail "the job never started"; return 1; }
  stop_daemon INT || return 1
  wait $client
  [ $? -eq 1 ] && grep -q "freed\|cancel" "$tmp/err" || { fail "the running job was not cancelled: $(cat "$tmp/err")"; return 1; }
}

case_ttin_and_ttou_change_the_worker_count() {
  start_daemon --workers 2 --max-workers 3 || return 1
  count() { [ "$(pc status --json | json 'len([w for w in d["workers"] if w["state"] == "ready"])')" = "$1" ] &&
            [ "$(pc status --json | json 'len(d["workers"])')" = "$1" ]; }
  kill -TTIN "$daemon_pid"; wait_for "count 3" 3 || { fail "TTIN did not make 3 workers"; return 1; }
  kill -TTIN "$daemon_pid"; wait_for 'grep -q "staying at 3" "$tmp/log"' 1 || { fail "TTIN past --max-workers"; return 1; }
  kill -TTOU "$daemon_pid"; wait_for "count 2" 3 || { fail "TTOU did not make 2 workers"; return 1; }
  kill -TTOU "$daemon_pid"; wait_for "count 1" 3 || { fail "TTOU did not make 1 worker"; return 1; }
  kill -TTOU "$daemon_pid"; wait_for 'grep -q "never fewer than 1" "$tmp/log"' 1 || { fail "TTOU below 1"; return 1; }
  count 1 || { fail "TTOU went below 1"; return 1; }
  pc scale 3 && wait_for "count 3" 3 || { fail "scale 3"; return 1; }
  pc scale 0 2>/dev/null; [ $? -eq 2 ] || { fail "scale 0 should be refused"; return 1; }
  stop_daemon
}

case_hup_replaces_every_worker_keeping_capacity() {
  start_daemon --workers 3 || return 1
  local before
  before=$(pc status --json | json '" ".join(str(w["pid"]) for w in d["workers"])')
  kill -HUP "$daemon_pid"
  all_new() {
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); old=set(sys.argv[2].split())
ws=d["workers"]; sys.exit(0 if len(ws)==3 and all(w["state"]=="ready" and str(w["pid"]) not in old for w in ws) else 1)' \
      "$(pc status --json)" "$before"
  }
  wait_for all_new 5 || { fail "HUP did not replace every worker"; return 1; }
  [ "$(pc submit hello '{"text":"x"}' --raw)" = 'Hello x!' ] || { fail "submit after HUP"; return 1; }
  stop_daemon
}

case_ps_names_the_processes() {
  start_daemon --workers 2 || return 1
  ps -eo args | grep -q "^parallelcode: worker 0" || { fail "ps shows no 'parallelcode: worker 0'"; return 1; }
  ps -eo args | grep -q "^parallelcode: worker 1" || { fail "ps shows no 'parallelcode: worker 1'"; return 1; }
  ps -eo args | grep -q "^parallelcode: fork server" || { fail "ps shows no 'parallelcode: fork server'"; return 1; }
  stop_daemon
}

case_a_second_daemon_on_the_same_socket_refuses_to_start() {
  start_daemon --workers 1 || return 1
  "$D" --socket "$tmp/sock" --workers 1 2> "$tmp/err2"
  [ $? -ne 0 ] || { fail "the second daemon started"; return 1; }
  grep -q "another parallelcode-supervisor" "$tmp/err2" || { fail "no clear message: $(cat "$tmp/err2")"; return 1; }
  [ "$(pc submit hello '{"text":"first"}' --raw)" = 'Hello first!' ] || { fail "the first daemon was harmed"; return 1; }
  stop_daemon
}

case_the_socket_is_mode_0600_and_tasks_come_from_plugins_with_their_json_schemas() {
  start_daemon --workers 1 --plugin "$PLUGIN" --pidfile "$tmp/pid" || return 1
  [ "$(stat -c %a "$tmp/sock")" = 600 ] || { fail "socket mode $(stat -c %a "$tmp/sock")"; return 1; }
  [ "$(cat "$tmp/pid")" = "$daemon_pid" ] || { fail "pidfile"; return 1; }
  [ "$(pc submit reverse '{"text":"stressed"}' --raw)" = desserts ] || { fail "the plugin's reverse"; return 1; }
  [ "$(pc submit sum '{"values":[1,2,3.5]}')" = 6.5 ] || { fail "the plugin's sum"; return 1; }
  pc tasks | grep -q "^reverse *{text: string} -> string$" || { fail "tasks: $(pc tasks)"; return 1; }
  pc tasks | grep -q "^sum *{values: \[double\]} -> double$" || { fail "tasks: $(pc tasks)"; return 1; }
  pc tasks --json | python3 -c '
import json, sys
t = {t["name"]: t for t in json.load(sys.stdin)}
assert t["sum"]["argument_schema"]["properties"]["values"]["items"]["type"] == "number", t["sum"]
assert t["sum"]["argument_schema"]["required"] == ["values"], t["sum"]
assert t["echo"]["argument_schema"] == {} and t["sleep"]["result_schema"]["type"] == "integer", t
' || { fail "tasks --json has no schemas"; return 1; }
  pc submit nope '{}' 2>/dev/null; [ $? -eq 2 ] || { fail "an unknown task should exit 2"; return 1; }
  stop_daemon || return 1
  [ ! -e "$tmp/pid" ] || { fail "pidfile left behind"; return 1; }
}

case_stop_now_and_systemd_notify() {
  python3 - "$tmp/notify" > "$tmp/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(10)
print(s.recv(4096).decode().splitlines()[0], flush=True)
PY
  local listener=$!
  wait_for 'test -S "$tmp/notify"' 5 || { fail "no notify socket"; return 1; }
  NOTIFY_SOCKET=$tmp/notify start_daemon --workers 1 || return 1
  wait $listener
  [ "$(cat "$tmp/notified")" = "READY=1" ] || { fail "systemd heard '$(cat "$tmp/notified")'"; return 1; }
  pc stop --now || { fail "stop --now"; return 1; }
  wait_for "! kill -0 $daemon_pid 2>/dev/null" 5 || { fail "stop --now did not stop it"; return 1; }
  wait "$daemon_pid"; local status=$?; daemon_pid=""
  [ $status -eq 0 ] || { fail "exit status $status after stop --now"; return 1; }
  for p in $known_pids; do alive "$p" && { fail "pid $p outlived the daemon"; return 1; }; done
  return 0
}

case_help_documents_the_options() {
  "$D" --help > "$tmp/help" || { fail "--help failed"; return 1; }
  for opt in --workers --concurrency --tick --socket --plugin --pidfile --job-timeout --max-jobs-per-worker \
             --max-worker-rss --drain-timeout; do
    grep -q -- "$opt" "$tmp/help" || { fail "--help does not mention $opt"; return 1; }
  done
  "$C" --help | grep -q "submit" || { fail "the CLI's --help"; return 1; }
  pc status 2>/dev/null; [ $? -eq 3 ] || { fail "no daemon should exit 3"; return 1; }
}

case_a_client_that_leaves_takes_its_queued_jobs_with_it() {
  start_daemon --workers 1 || return 1
  python3 - "$tmp/sock" <<'PY' || { fail "could not submit"; return 1; }
import sys
from control_client import connect, frame
s = connect(sys.argv[1], timeout=None)
s.sendall(frame(b'{"op":"submit","task":"sleep","args":{"ms":600000}}') * 500)
PY
  # Its one running job runs on; the 499 queued behind it go.
  drained() { [ "$(pc status --json | json 'd["queued"]')" = 0 ]; }
  wait_for drained 3 || { fail "the queued jobs of a client that left stayed: $(pc status --json)"; return 1; }
  pc kill "$(pc status --json | json 'd["workers"][0]["pid"]')" >/dev/null
  [ "$(pc submit hello '{"text":"next"}' --raw)" = 'Hello next!' ] || { fail "the daemon no longer serves"; return 1; }
  stop_daemon
}

case_a_client_that_half_closes_after_its_requests_gets_every_answer() {
  start_daemon --workers 2 || return 1
  python3 - "$tmp/sock" <<'PY' || { fail "answers after a half-close: see above"; return 1; }
import socket, sys
from control_client import connect, frame, answer
s = connect(sys.argv[1], timeout=10)
s.sendall(frame(b'{"op":"submit","id":1,"task":"sleep","args":{"ms":300}}') +
          frame(b'{"op":"submit","id":2,"task":"hello","args":{"text":"a"}}') +
          frame(b'{"op":"submit","id":3,"task":"sleep","args":{"ms":200}}') + b"\x05\x00")  # and half a frame
s.shutdown(socket.SHUT_WR)  # what socat does at the end of its input
got = {}
for _ in range(3):
    a = answer(s)
    if a is None: sys.exit("the daemon closed after %d answers: %r" % (len(got), got))
    got[a["id"]] = a
if got != {1: {"id": 1, "ok": True, "result": 300}, 2: {"id": 2, "ok": True, "result": "Hello a!"},
           3: {"id": 3, "ok": True, "result": 200}}:
    sys.exit("answers: %r" % got)
if s.recv(1) != b"": sys.exit("the daemon did not close once it had answered")
PY
  [ "$(pc status --json | json 'd["completed"]')" = 3 ] || { fail "not every job completed"; return 1; }
  stop_daemon
}

case_unfinished_frames_of_many_clients_stay_within_max_request_bytes() {
  start_daemon --workers 1 --max-request-bytes 8M || return 1
  # 20 clients, each 3 MB into a 4 MB frame: 60 MB if nothing counts them together.
  # With 8 MB for all, two fit; the other 18 are answered busy as they would pass it.
  python3 - "$tmp/sock" > "$tmp/busy" <<'PY' &
import select, struct, sys, time
from control_client import connect, answer
held, busy = [], 0
for i in range(20):
    s = connect(sys.argv[1], timeout=10)
    try:
        s.sendall(struct.pack("<I", 4 << 20) + b'{"op":"submit","task":"echo","args":"' + b"x" * (3 << 20))
    except OSError:
        pass
    held.append(s)
until = time.time() + 10
while held and busy < 18 and time.time() < until:
    ready, _, _ = select.select(held, [], [], max(0, until - time.time()))
    for s in ready:
        a = answer(s)
        busy += a is not None and a.get("error", {}).get("type") == "busy"
        held.remove(s)
print(busy, flush=True)
time.sleep(60)  # the two that fit stay, unfinished, while the daemon is checked: until killed
PY
  local holders=$!
  wait_for 'test -s "$tmp/busy"' 20 || { kill $holders; fail "the clients did not send"; return 1; }
  [ "$(cat "$tmp/busy")" -ge 18 ] || { kill $holders; fail "$(cat "$tmp/busy") of 20 clients were answered busy, not 18"; return 1; }
  [ "$(pc submit hello '{"text":"still"}' --raw)" = 'Hello still!' ] || { kill $holders; fail "the daemon no longer serves"; return 1; }
  kill $holders; wait $holders 2>/dev/null
  stop_daemon
}

case_a_flooding_client_does_not_starve_the_others() {
  start_daemon --workers 1 || return 1
  python3 - "$tmp/sock" "$tmp/flooding" <<'PY' &
import sys, time
from control_client import connect, frame
s = connect(sys.argv[1], timeout=None)
flood = frame(b'{"op":"kill","pid":0,"pad":"' + b"x" * 1000000 + b'"}')
s.sendall(flood)
open(sys.argv[2], "w").close()
end = time.time() + 4
while time.time() < end: s.sendall(flood)
PY
  local flooder=$!
  wait_for 'test -e "$tmp/flooding"' 10 || { kill $flooder; fail "the flood did not start"; return 1; }
  local t0=$SECONDS
  timeout 2 "$C" --socket "$tmp/sock" status >/dev/null || { kill $flooder; fail "status waited behind the flood"; return 1; }
  wait $flooder
  stop_daemon
}

case_idle_clients_make_room_and_limits_answer_busy() {
  start_daemon --workers 1 --max-clients 4 --max-jobs 3 || return 1
  python3 - "$tmp/sock" "$tmp/idle" <<'PY' &
import socket, sys, time
held = []
for i in range(4):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); held.append(s)
open(sys.argv[2], "w").close()
time.sleep(60)  # until killed
PY
  local idlers=$!
  wait_for 'test -e "$tmp/idle"' 10 || { kill $idlers; fail "the idle clients did not connect"; return 1; }
  pc status >/dev/null || { kill $idlers; fail "idle clients locked status out"; return 1; }
  local sleepers=()
  for i in 1 2 3; do pc submit sleep '{"ms":1500}' >/dev/null 2>&1 & sleepers+=($!); done
  three() { [ "$(pc status --json | json 'd["submitted"]')" = 3 ]; }
  wait_for three 2 || { kill $idlers; fail "the three jobs did not arrive"; return 1; }
  pc submit hello '{"text":"x"}' 2> "$tmp/err"
  [ $? -eq 2 ] && grep -q "try again later" "$tmp/err" || { kill $idlers; fail "a fourth job should be answered busy: $(cat "$tmp/err")"; return 1; }
  wait "${sleepers[@]}"
  kill $idlers; wait $idlers 2>/dev/null
  stop_daemon
}

case_timeouts_under_a_second_and_absurd_ones() {
  start_daemon --workers 1 || return 1
  local t0=$SECONDS
  pc submit sleep '{"ms":5000}' --timeout 150ms 2> "$tmp/err"
  [ $? -eq 1 ] && grep -q "timeout of 150 ms" "$tmp/err" || { fail "--timeout 150ms: $(cat "$tmp/err")"; return 1; }
  [ $((SECONDS - t0)) -le 2 ] || { fail "the timeout fired late"; return 1; }
  python3 - "$tmp/sock" <<'PY' || { fail "an absurd timeout_ms was not refused"; return 1; }
import sys
from control_client import answer, connect, frame
s = connect(sys.argv[1])
s.sendall(frame(b'{"op":"submit","task":"hello","args":{"text":"x"},"timeout_ms":9223372036854775807}'))
a = answer(s)
sys.exit(0 if a["error"]["type"] == "bad_request" else 1)
PY
  pc submit hello '{"txt":1}' 2>/dev/null; [ $? -eq 2 ] || { fail "arguments that do not fit should exit 2"; return 1; }
  stop_daemon
}

case_the_daemon_refuses_paths_it_must_not_touch() {
  echo precious > "$tmp/precious"
  "$D" --socket "$tmp/precious" --workers 1 2> "$tmp/err"
  [ $? -ne 0 ] && [ "$(cat "$tmp/precious")" = precious ] || { fail "--socket on a regular file"; return 1; }
  grep -q "not a socket" "$tmp/err" || { fail "no clear message: $(cat "$tmp/err")"; return 1; }
  "$D" --socket "$tmp/sock" --workers 1 --pidfile /nonexistent/dir/pid 2> "$tmp/err"
  [ $? -ne 0 ] && grep -q "pidfile" "$tmp/err" || { fail "an unwritable --pidfile was accepted"; return 1; }
  [ ! -e "$tmp/sock" ] || { fail "the socket was left behind"; return 1; }
  "$D" --socket "$tmp/sock" --job-timeout 999999999999m 2>/dev/null; [ $? -ne 0 ] || { fail "an absurd --job-timeout"; return 1; }
}

case_a_planted_pidfile_symlink_is_replaced_never_followed() {
  echo precious > "$tmp/precious"
  ln -s "$tmp/precious" "$tmp/pid.new"  # the name the daemon once wrote through
  ln -s "$tmp/precious" "$tmp/pid"
  start_daemon --workers 1 --pidfile "$tmp/pid" || return 1
  [ "$(cat "$tmp/precious")" = precious ] || { fail "the pidfile was written through a symlink"; return 1; }
  [ ! -L "$tmp/pid" ] && [ "$(cat "$tmp/pid")" = "$daemon_pid" ] || { fail "the pidfile does not hold the daemon's pid"; return 1; }
  stop_daemon || return 1
  [ ! -e "$tmp/pid" ] || { fail "the pidfile was left behind"; return 1; }
  [ "$(cat "$tmp/precious")" = precious ] || { fail "the symlink's target changed"; return 1; }
  rm -f "$tmp/pid.new"
}

case_at_exit_the_daemon_removes_only_its_own_socket_and_pidfile() {
  start_daemon --workers 1 --pidfile "$tmp/pid" || return 1
  local seen="$known_pids"
  mv "$tmp/sock" "$tmp/sock.moved"
  echo mine > "$tmp/sock"
  echo other > "$tmp/pid.other" && mv "$tmp/pid.other" "$tmp/pid"
  kill -TERM "$daemon_pid"
  wait_for "! kill -0 $daemon_pid 2>/dev/null" 10 || { fail "the daemon did not stop"; return 1; }
  wait "$daemon_pid"; local status=$?; daemon_pid=""
  [ $status -eq 0 ] || { fail "exit status $status"; return 1; }
  for p in $seen; do alive "$p" && { fail "pid $p outlived the daemon"; return 1; }; done
  [ "$(cat "$tmp/sock" 2>/dev/null)" = mine ] || { fail "the daemon removed a file that replaced its socket"; return 1; }
  [ "$(cat "$tmp/pid" 2>/dev/null)" = other ] || { fail "the daemon removed a pidfile that was not its own"; return 1; }
  grep -q "no longer the file this daemon made" "$tmp/log" || { fail "the log does not say why it left them"; return 1; }
  rm -f "$tmp/sock" "$tmp/sock.moved" "$tmp/pid"
}

case_a_low_fd_limit_costs_clients_never_watched_workers() {
  local real=$D
  printf '#!/bin/sh\nulimit -n 256 && exec "%s" "$@"\n' "$real" > "$tmp/limited"
  chmod +x "$tmp/limited"
  D=$tmp/limited
  timeout 10 "$D" --socket "$tmp/sock" --workers 2 --max-workers 90 2> "$tmp/err"
  [ $? -ne 0 ] && grep -q "raise ulimit -n or lower --max-workers" "$tmp/err" ||
    { D=$real; fail "90 workers in 256 fds were accepted: $(cat "$tmp/err")"; return 1; }
  start_daemon --workers 2 --max-workers 60
  local started=$?
  D=$real
  [ $started -eq 0 ] || return 1
  grep -q -- "--max-clients lowered to" "$tmp/log" || { fail "--max-clients was not lowered"; return 1; }
  # 200 idle clients at once, as many as the limit lets in, while the pool grows to 60.
  python3 - "$tmp/sock" "$tmp/held" <<'PY' &
import socket, sys, time
held = []
for i in range(200):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); held.append(s)
open(sys.argv[2], "w").close()
time.sleep(60)  # until killed
PY
  local holders=$!
  wait_for 'test -e "$tmp/held"' 10 || { kill $holders; fail "the clients did not connect"; return 1; }
  pc scale 60 >/dev/null || { kill $holders; fail "scale 60"; return 1; }
  sixty() { [ "$(pc status --json | json 'len([w for w in d["workers"] if w["state"] == "ready"])')" = 60 ]; }
  wait_for sixty 20 || { kill $holders; fail "60 workers did not become ready"; return 1; }
  local server
  server=$(pc status --json | json 'd["fork_server"]')
  [ "$(cat /proc/"$server"/task/*/children | wc -w)" -eq 60 ] || { kill $holders; fail "$(cat /proc/"$server"/task/*/children | wc -w) processes for 60 slots"; return 1; }
  for p in $(pc status --json | json '" ".join(str(w["pid"]) for w in d["workers"])'); do
    pc kill "$p" >/dev/null || { kill $holders; fail "kill refused worker $p"; return 1; }
  done
  kill $holders; wait $holders 2>/dev/null
  stop_daemon
}

case_the_cli_refuses_a_socket_served_by_another_user() {
  [ "$(id -u)" -eq 0 ] || { echo "skip: only root can serve a socket as another user"; return 0; }
  local open
  open=$(mktemp -d)  # outside our own 0700 directory: uid 65534 must reach it
  chmod 0777 "$open"
  # /usr/bin/python3: uid 65534 may not run a per-user python that PATH finds first
  setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, sys, os
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(1)
c, _ = s.accept(); c.recv(100)' "$open/sock" &
  local impostor=$!
  wait_for 'test -S "$open/sock"' 5 || { fail "no impostor socket"; return 1; }
  "$C" --socket "$open/sock" submit hello '{"text":"secret"}' 2> "$tmp/err"
  local status=$?
  kill $impostor 2>/dev/null; wait $impostor 2>/dev/null
  rm -rf "$open"
  [ $status -eq 3 ] && grep -q "neither you nor root" "$tmp/err" || { fail "the CLI talked to uid 65534: $(cat "$tmp/err")"; return 1; }
}

# The daemon's open fds, one "fd target" a line.
daemon_fds() { for f in /proc/"$daemon_pid"/fd/*; do echo "${f##*/} $(readlink "$f")"; done; }

# 200 clients that come and go, each a different way (a submit answered, a submit
# left while its job runs, garbage, half a frame, silence), then 20 from the CLI.
churn_clients() {
  python3 - "$tmp/sock" <<'PY' || return 1
import struct, sys
from control_client import answer, connect, frame
path = sys.argv[1]
for i in range(200):
    s = connect(path, timeout=10)
    k = i % 5
    if k == 0:
        s.sendall(frame(b'{"op":"submit","task":"hello","args":{"text":"x"},"id":%d}' % i))
        a = answer(s); assert a and a.get("ok") and a["id"] == i and a["result"] == "Hello x!", a
    elif k == 1:
        s.sendall(frame(b'{"op":"submit","task":"sleep","args":{"ms":20}}'))
    elif k == 2:
        s.sendall(b"\xff\xfe garbage")
        a = answer(s); assert a and a["error"]["type"] == "bad_frame", a
    elif k == 3:
        s.sendall(struct.pack("<I", 100) + b'{"op":')
    s.close()
PY
  local i
  for i in $(seq 1 20); do
    [ "$(pc submit hello '{"text":"cli"}' --raw)" = 'Hello cli!' ] || return 1
  done
}

# Starts a daemon, puts 200 clients and a worker's SIGKILL through it, checks it
# holds no more fds than it did once started, then stops it ($1: TERM or now) and
# checks that no pid of it survives, its socket is gone and /dev/shm is as it was.
churn_then_stop_leaves_nothing() {
  local how=$1
  ls -A /dev/shm | sort > "$tmp/shm.before"
  start_daemon --workers 2 || return 1
  daemon_fds > "$tmp/fds.start"
  churn_clients || { fail "the clients saw something wrong"; return 1; }
  local victim
  victim=$(pc status --json | json 'd["workers"][0]["pid"]')
  kill -9 "$victim"
  replaced() {
    python3 -c 'import json,sys; ws=json.loads(sys.argv[1])["workers"]
sys.exit(0 if len(ws)==2 and all(w["state"]=="ready" and w["pid"]!=int(sys.argv[2]) for w in ws) else 1)' \
      "$(pc status --json)" "$victim"
  }
  wait_for replaced 5 || { fail "the killed worker was not replaced"; return 1; }
  # Clients close on their own time: the daemon may not have seen every end of file yet.
  same_fd_count() { [ "$(daemon_fds | wc -l)" -eq "$(wc -l < "$tmp/fds.start")" ]; }
  wait_for same_fd_count 10 || {
    daemon_fds > "$tmp/fds.end"
    fail "$(wc -l < "$tmp/fds.start") fds after start, $(wc -l < "$tmp/fds.end") before stop:" \
      "$(diff "$tmp/fds.start" "$tmp/fds.end" | grep '^[<>]' | tr '\n' ' ')"
    return 1
  }
  if [ "$how" = now ]; then
    local seen status p
    seen="$known_pids $(pool_pids)"
    pc stop --now >/dev/null || { fail "stop --now"; return 1; }
    wait_for "! kill -0 $daemon_pid 2>/dev/null" 10 || { fail "stop --now did not stop it"; return 1; }
    wait "$daemon_pid"
    status=$?
    daemon_pid=""
    [ $status -eq 0 ] || { fail "exit status $status after stop --now"; return 1; }
    gone() { ! alive "$1"; }
    for p in $seen; do wait_for 'gone "$p"' 2 || { fail "pid $p outlived the daemon"; return 1; }; done
    [ ! -e "$tmp/sock" ] || { fail "the socket file was left behind"; return 1; }
  else
    stop_daemon TERM || return 1
  fi
  ls -A /dev/shm | sort > "$tmp/shm.after"
  cmp -s "$tmp/shm.before" "$tmp/shm.after" ||
    { fail "new in /dev/shm: $(comm -13 "$tmp/shm.before" "$tmp/shm.after" | tr '\n' ' ')"; return 1; }
}

case_term_after_200_clients_leaves_no_process_socket_fd_or_shm_behind() { churn_then_stop_leaves_nothing TERM; }

case_stop_now_after_200_clients_leaves_no_process_socket_fd_or_shm_behind() { churn_then_stop_leaves_nothing now; }

run_cases "$@"
