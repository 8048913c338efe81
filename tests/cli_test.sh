#!/usr/bin/env bash
# What a shell user of `parallelcode` meets beyond the daemon's own suite: the socket
# from PARALLELCODE_SOCKET, options from --config, workers listed by id, durations
# with fractions, and map's input (FILE, --null), order (--unordered) and progress.
#   cli_test.sh BUILD_DIR
set -uo pipefail
build=$1
source "$(dirname "${BASH_SOURCE[0]}")/daemon_case.sh"  # D, C, tmp, check, wait_for

"$D" --workers 2 --socket "$tmp/s.sock" 2>"$tmp/log" &
daemon_pid=$!
wait_for "'$C' --socket '$tmp/s.sock' status >/dev/null 2>&1" 10 || { echo "FAIL: the daemon did not come up"; cat "$tmp/log"; exit 1; }

from_env() { [ "$(PARALLELCODE_SOCKET=$tmp/s.sock "$C" submit hello '{"text":"env"}')" = '"Hello env!"' ]; }
check "PARALLELCODE_SOCKET names the socket when --socket is not given" from_env

from_config() {
  printf 'socket = "%s"\n[submit]\nraw = true\n' "$tmp/s.sock" > "$tmp/cli.toml"
  [ "$("$C" --config "$tmp/cli.toml" submit hello '{"text":"config"}')" = 'Hello config!' ]
}
check "--config sets the socket and a verb's flags from a TOML file" from_config

unknown_key() {
  printf 'sockett = "%s"\n' "$tmp/s.sock" > "$tmp/bad.toml"
  "$C" --config "$tmp/bad.toml" status >/dev/null 2>"$tmp/err"
  [ $? -eq 2 ] && grep -q sockett "$tmp/err"
}
check "a misspelt key in --config is a usage error (exit 2) naming it" unknown_key

ids() { "$C" --socket "$tmp/s.sock" status | awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' | tr '\n' ' '; }
by_id() {
  "$C" --socket "$tmp/s.sock" scale 4 || return 1
  wait_for "[ \"\$(ids)\" = '0 1 2 3 ' ]" 10 || { echo "    ids: $(ids)"; return 1; }
  # A job on each of workers 0 and 1 moves them to the back of the pool's order.
  "$C" --socket "$tmp/s.sock" submit sleep '{"ms":1}' >/dev/null && "$C" --socket "$tmp/s.sock" submit sleep '{"ms":1}' >/dev/null
  local json_order
  json_order=$("$C" --socket "$tmp/s.sock" status --json | python3 -c 'import json, sys; print(" ".join(str(w["id"]) for w in json.load(sys.stdin)["workers"]))')
  [ "$(ids)" = '0 1 2 3 ' ] || { echo "    ids: $(ids), pool order: $json_order"; return 1; }
  "$C" --socket "$tmp/s.sock" scale 2 || return 1
  wait_for "[ \"\$(ids)\" = '0 1 ' ]" 10
}
check "status lists the workers by id whatever the pool's order" by_id

fraction() { [ "$("$C" --socket "$tmp/s.sock" submit sleep '{"ms":5}' --timeout 1.5s)" = 5 ]; }
check "--timeout takes a fraction of a second (1.5s)" fraction

bad_duration() {
  "$C" --socket "$tmp/s.sock" submit sleep '{"ms":5}' --timeout 5x >/dev/null 2>"$tmp/err"
  [ $? -eq 2 ] && grep -q "1m30s" "$tmp/err"
}
check "a duration the CLI cannot read is refused (exit 2), saying what it takes" bad_duration

S=(--socket "$tmp/s.sock")
printf '{"ms":300}\n{"ms":1}\n\n{"ms":2}\n' > "$tmp/slow_first"
from_file() {
  [ "$("$C" "${S[@]}" map sleep "$tmp/slow_first" | tr '\n' ' ')" = "300 1 2 " ] &&
    [ "$("$C" "${S[@]}" map sleep - < "$tmp/slow_first" | tr '\n' ' ')" = "300 1 2 " ]
}
check "map reads a FILE as it reads standard input ('-')" from_file

missing_file() { "$C" "${S[@]}" map sleep "$tmp/none" 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "cannot read" "$tmp/err"; }
check "map of a file that cannot be read is refused (exit 2), saying so" missing_file

unordered() { [ "$("$C" "${S[@]}" map sleep --unordered "$tmp/slow_first" | tr '\n' ' ')" = "1 2 300 " ]; }
check "map --unordered prints fast lines before a slow earlier one" unordered

null_separated() {
  [ "$(printf '{"ms":3}\0{"ms":\n4}\0\0' | "$C" "${S[@]}" map sleep --null | tr '\n' ' ')" = "3 4 " ]
}
check "map --null reads NUL-separated records, newlines inside them included" null_separated

throttled() {
  seq 1 20000 | sed 's/.*/{"text":"x"}/' > "$tmp/many"
  "$C" "${S[@]}" map hello "$tmp/many" --progress > "$tmp/out" 2> "$tmp/err" || return 1
  [ "$(wc -l < "$tmp/out")" -eq 20000 ] && [ "$(wc -l < "$tmp/err")" -lt 200 ] &&
    tail -1 "$tmp/err" | grep -q "20000/20000 done, 0 failed, 0 running, [0-9]* jobs/s in" ||
    { echo "    $(wc -l < "$tmp/err") progress lines, the last: $(tail -1 "$tmp/err")"; return 1; }
}
check "map --progress to a file is a few throttled lines with the total, rate and a final line" throttled

on_terminal() {
  seq 1 30 | sed 's/.*/{"ms":15}/' > "$tmp/paced"
  python3 - "$C" "$tmp/s.sock" "$tmp/paced" <<'PY'
import os, pty, sys
c, sock, paced = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.execv(c, [c, "--socket", sock, "map", "sleep", paced, "--window", "2"])
out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
text = out.decode()
bars = text.count("jobs/s")
results = 0
for line in text.split("\n"):
    shown = line.split("\x1b[K")[-1].strip("\r")  # what the terminal shows once every clear ran
    if shown == "15":
        results += 1
    elif shown and not shown.startswith("["):
        sys.exit(f"a line mixes the bar and a result: {line!r}")
if results != 30 or bars < 2:
    sys.exit(f"{results} results, {bars} bars drawn in {text!r}")
PY
}
check "map on a terminal clears its progress bar before each result it prints there" on_terminal

type_error() {
  "$C" "${S[@]}" submit sleep '{"ms":"x"}' >/dev/null 2>"$tmp/err"
  [ $? -eq 2 ] && grep -q 'ms: expected an integer, got a string' "$tmp/err" && ! grep -qi rapidjson "$tmp/err" ||
    { echo "    $(cat "$tmp/err")"; return 1; }
  "$C" "${S[@]}" submit sleep '{}' >/dev/null 2>"$tmp/err"
  [ $? -eq 2 ] && grep -q '"ms" is missing' "$tmp/err"
}
check "arguments of the wrong type name the field and the type it needs (exit 2)" type_error

joblog() {
  printf '{"ms":1}\n{"ms":"x"}\n{"ms":2}\n' > "$tmp/mixed"
  "$C" "${S[@]}" map sleep "$tmp/mixed" --joblog "$tmp/joblog" > /dev/null 2>&1
  [ $? -eq 1 ] || return 1
  python3 - "$tmp/joblog" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
assert rows[0] == ["Seq", "Starttime", "JobRuntime", "Worker", "Outcome"], rows[0]
body = sorted(rows[1:], key=lambda r: int(r[0]))
assert [r[0] for r in body] == ["1", "2", "3"], body
for r in body:
    float(r[1]); float(r[2])
assert body[0][4] == "ok" and body[2][4] == "ok" and body[1][4] not in ("ok", ""), body
assert body[0][3].isdigit() and body[2][3].isdigit(), body
PY
}
check "map --joblog writes a header and a row per job: line, start, runtime, worker pid, outcome" joblog

halt() {
  { echo '{"ms":"x"}'; seq 1 50 | sed 's/.*/{"ms":1}/'; } > "$tmp/fails_first"
  "$C" "${S[@]}" map sleep "$tmp/fails_first" --window 1 --halt now,fail=1 > "$tmp/out" 2> "$tmp/err"
  [ $? -eq 1 ] && [ "$(wc -l < "$tmp/out")" -lt 51 ] && grep -q -- "--halt" "$tmp/err" ||
    { echo "    $(wc -l < "$tmp/out") results; $(tail -1 "$tmp/err")"; return 1; }
  "$C" "${S[@]}" map sleep "$tmp/fails_first" --halt sometimes >/dev/null 2>&1
  [ $? -eq 2 ]
}
check "map --halt now,fail=1 stops at the first failed line and exits 1; a bad --halt is refused" halt

busy() {
  "$D" --workers 1 --max-jobs 2 --socket "$tmp/busy.sock" 2>"$tmp/busy.log" &
  local busy_pid=$!
  wait_for "'$C' --socket '$tmp/busy.sock' status >/dev/null 2>&1" 10 || return 1
  seq 1 200 | sed 's/.*/{"ms":0}/' > "$tmp/two_hundred"
  "$C" --socket "$tmp/busy.sock" map sleep "$tmp/two_hundred" --window 64 > "$tmp/out" 2>&1
  local status=$?
  kill -TERM "$busy_pid"
  wait "$busy_pid"
  [ $status -eq 0 ] && [ "$(grep -c '^0$' "$tmp/out")" -eq 200 ] && ! grep -q busy "$tmp/out" ||
    { echo "    exit $status, $(grep -c busy "$tmp/out") busy lines"; return 1; }
}
check "map waits out a daemon that answers busy and sends those lines again: every line answered" busy

kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
finish_cases
