# Sourced by the shell tests that start daemons: a temporary directory, counters, and
# an EXIT trap that kills the daemon a case left running ($daemon_pid) and removes it.
# Expects $build; sets D, C, tmp, passed, failed, daemon_pid.

D=$build/supervisor/daemon/parallelcode-supervisor
C=$build/supervisor/cli/parallelcode
tmp=$(mktemp -d)
passed=0
failed=0
daemon_pid=""

cleanup() {
  [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# fail WHY: says which case failed and the end of its daemon's log ($tmp/log).
fail() {
  echo "FAIL: $case_name: $*"
  [ -f "$tmp/log" ] && sed 's/^/    log: /' "$tmp/log" | tail -20
  return 1
}

# check NAME FUNCTION: one case, counted.
check() {
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

source "$(dirname "${BASH_SOURCE[0]}")/wait_for.sh"

# The summary line .ci/count reads; the script's exit status.
finish_cases() {
  echo "[shell] test cases: $((passed + failed)) | $passed passed | $failed failed"
  [ "$failed" -eq 0 ]
}

# run_cases [CASE...]: the named case_ functions, or every one defined; after each,
# whatever a failed case left running is killed and its socket removed.
run_cases() {
  local cases=("$@")
  [ ${#cases[@]} -gt 0 ] || mapfile -t cases < <(declare -F | awk '{print $3}' | grep '^case_')
  for case_name in "${cases[@]}"; do
    if "$case_name"; then
      echo "ok: $case_name"
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
      [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
      daemon_pid=""
    fi
    rm -f "$tmp/sock" "$tmp/sock.lock"
  done
  finish_cases
}
