#!/usr/bin/env bash
# The daemon's Prometheus metrics: served over HTTP on --metrics (loopback unless told
# otherwise) and by `parallelcode status --prometheus`, counting what the test did.
#   metrics_test.sh BUILD_DIR HTTP   (HTTP: "http" when the daemon was built with cpp-httplib)
set -uo pipefail
build=$1 http=$2
source "$(dirname "${BASH_SOURCE[0]}")/daemon_case.sh"  # D, C, tmp, check, wait_for

if [ "$http" != http ]; then
  echo "SKIP: this daemon was built without cpp-httplib: no --metrics"
  exit 77
fi

"$D" --workers 2 --socket "$tmp/s.sock" --metrics 0 2>"$tmp/log" &
daemon_pid=$!
wait_for "grep -q 'serving metrics on' '$tmp/log'" 10 || { echo "FAIL: no metrics line"; cat "$tmp/log"; exit 1; }
url=$(grep -o 'http://[^ ]*/metrics' "$tmp/log" | head -1)
P=("$C" --socket "$tmp/s.sock")

loopback() { [[ $url == http://127.0.0.1:* ]]; }
check "--metrics with only a port serves on loopback" loopback

for i in 1 2 3; do "${P[@]}" submit hello '{"text":"m"}' >/dev/null; done
"${P[@]}" submit sleep '{"ms":"x"}' >/dev/null 2>&1

scrape() {
  python3 - "$url" "$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    open(sys.argv[2], "w").write(r.read().decode())
PY
}

# check_counts FILE: the families hold what this test did, and the histogram adds up.
check_counts() {
  python3 - "$1" <<'PY'
import re, sys
samples = {}
types = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ")
        types[name] = kind
    elif line and not line.startswith("#"):
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
def get(key):
    assert key in samples, f"no sample {key}"
    return samples[key]
assert get('parallelcode_jobs_submitted_total{task="hello"}') == 3
assert get('parallelcode_jobs_completed_total{task="hello"}') == 3
assert get('parallelcode_jobs_failed_total{task="sleep",reason="payload_error"}') == 1
assert get('parallelcode_workers{state="idle"}') + get('parallelcode_workers{state="busy"}') == 2
assert types.get("parallelcode_job_duration_seconds") == "histogram", types
buckets = sorted(((float(re.search(r'le="([^"]+)"', k).group(1).replace("+Inf", "inf")), v)
                  for k, v in samples.items() if k.startswith('parallelcode_job_duration_seconds_bucket{task="hello"')))
counts = [v for _, v in buckets]
assert counts == sorted(counts), counts
assert buckets[-1][0] == float("inf") and buckets[-1][1] == get('parallelcode_job_duration_seconds_count{task="hello"}') == 3
for name in ("parallelcode_worker_respawns_total", "parallelcode_queue_length"):
    assert name in samples, name
PY
}

over_http() { scrape "$tmp/http.txt" && check_counts "$tmp/http.txt"; }
check "GET /metrics counts jobs by task and outcome, workers by state, and a histogram that adds up" over_http

from_cli() {
  "${P[@]}" status --prometheus > "$tmp/cli.txt" && check_counts "$tmp/cli.txt" &&
    [ "$(grep '^# TYPE' "$tmp/cli.txt")" = "$(grep '^# TYPE' "$tmp/http.txt")" ]
}
check "status --prometheus prints the same families for a textfile collector" from_cli

respawn() {
  local pid
  pid=$("${P[@]}" status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["workers"][0]["pid"])')
  "${P[@]}" kill "$pid" >/dev/null || return 1
  wait_for "'${P[0]}' --socket '$tmp/s.sock' status --prometheus | grep -q '^parallelcode_worker_respawns_total 1$'" 10
}
check "a killed worker counts one respawn" respawn

bad_address() { "$D" --socket "$tmp/bad.sock" --metrics 127.0.0.1:99999 2>/dev/null; [ $? -eq 2 ]; }
check "a --metrics port out of range is a usage error (exit 2)" bad_address

kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
finish_cases
