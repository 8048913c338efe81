# Sourced by remote_test.sh and partition_test.sh: a redis-server of the case's own on
# a free port in a temp dir, daemons that consume its queue, and the polling they share.
# Expects $build set; sets D, C and tmp, and an EXIT trap that stops what it started.
D=$build/supervisor/daemon/parallelcode-supervisor
C=$build/supervisor/cli/parallelcode
tmp=$(mktemp -d)
case_name=""
case_dir=""
redis_pid=""
redis_port=""
redis_host=127.0.0.1
redis_args=()
declare -A daemon_pid=() daemon_seen=()
clients=""
started_pids=""  # every pid a case started (redis, daemons, their pools): none may outlive it

export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

fail() {
  echo "FAIL: $case_name: $*"
  local n
  for n in "${!daemon_pid[@]}"; do
    [ -f "$case_dir/d$n.log" ] && sed "s/^/    d$n log: /" "$case_dir/d$n.log" | tail -12
  done
  return 1
}

source "$(dirname "${BASH_SOURCE[0]}")/wait_for.sh"

now_ms() { echo $(( ${EPOCHREALTIME//[!0-9]/} / 1000 )); }

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != "Z" ]; }

# A TCP port nothing listens on now (the kernel's pick; redis_start retries if it is taken meanwhile).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rcli() {
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h "$redis_host" -p "$redis_port" "$@"
  else
    redis-cli -h "$redis_host" -p "$redis_port" "$@"
  fi
}

# Kills PID and, first, its descendants (a shell function run with & is a subshell
# whose child is the real process).
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -KILL "$1" 2>/dev/null
}

# Notes a background process the case started (a submitter, a map): end_case kills it.
track() { started_pids+=" $1"; clients+=" $1"; }

redis_url() { echo "redis://$redis_host:$redis_port"; }

# Starts redis-server in $case_dir on a free port (or $redis_port when set, for a
# restart), with ARGS after the defaults (later ones win), and waits for its PING.
redis_start() {
  [ $# -gt 0 ] && redis_args=("$@")
  local attempt fixed=${redis_port:+yes}
  for attempt in 1 2 3; do
    [ -n "$fixed" ] || redis_port=$(free_port)
    redis-server --port "$redis_port" --bind "$redis_host" --dir "$case_dir" --daemonize no \
      --save '' --appendonly no --logfile "$case_dir/redis.log" "${redis_args[@]}" &
    redis_pid=$!
    started_pids+=" $redis_pid"
    if wait_for '[ "$(rcli ping 2>/dev/null)" = PONG ] || ! alive $redis_pid' 10 &&
       alive "$redis_pid"; then
      return 0
    fi
    kill -KILL "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null
    redis_pid=""
    [ -n "$fixed" ] && break
  done
  fail "redis-server did not come up on port $redis_port: $(tail -3 "$case_dir/redis.log" 2>/dev/null)"
}

# Stops redis-server by pid (TERM unless a signal is given) and waits until it is gone.
redis_stop() {
  local sig=${1:-TERM}
  [ -n "$redis_pid" ] || return 0
  kill -"$sig" "$redis_pid" 2>/dev/null
  { wait_for "! alive $redis_pid" 10; } 2>/dev/null || { fail "redis-server $redis_pid did not stop on SIG$sig"; return 1; }
  wait "$redis_pid" 2>/dev/null
  redis_pid=""
}

sock() { echo "$case_dir/d$1.sock"; }
pcs() { local n=$1; shift; "$C" --socket "$(sock "$n")" "$@"; }
qstatus() { pcs "$1" status --json | json "d[\"queue\"]$2"; }

# The pids of daemon N's fork server and workers, as status shows them.
pool_pids() { pcs "$1" status --json | json '" ".join(str(p) for p in [d["fork_server"]] + [w["pid"] for w in d["workers"]])'; }

# Starts daemon N consuming the case's queue (flags after N, then --queue unless
# given; DAEMON_PREFIX runs it under a wrapper, DAEMON_URL replaces the URL) and waits
# until its socket answers and its log says it consumes.
start_qdaemon() {
  local n=$1; shift
  local queue_flag=(--queue "${DAEMON_URL:-$(redis_url)}")
  case " $* " in *" --queue "*) queue_flag=() ;; esac
  ${DAEMON_PREFIX:-} "$D" --socket "$(sock "$n")" "${queue_flag[@]}" "$@" 2>"$case_dir/d$n.log" &
  daemon_pid[$n]=$!
  started_pids+=" ${daemon_pid[$n]}"
  wait_for "pcs $n status >/dev/null 2>&1 || ! alive ${daemon_pid[$n]}" 10 && alive "${daemon_pid[$n]}" ||
    { fail "daemon $n did not come up"; return 1; }
  daemon_seen[$n]="${daemon_pid[$n]} $(pool_pids "$n")"
  started_pids+=" ${daemon_seen[$n]}"
  [ -n "${NO_CONSUMING_WAIT:-}" ] && return 0
  wait_for 'grep -q "queue: consuming" "$case_dir/d$n.log"' 10 || { fail "daemon $n never said it consumes"; return 1; }
}

# Stops daemon N with a signal (TERM unless given); after TERM it must exit 0. Its
# fork server and workers must go with it whatever the signal.
stop_qdaemon() {
  local n=$1 sig=${2:-TERM} status p
  [ -n "${daemon_pid[$n]:-}" ] || return 0
  local pid=${daemon_pid[$n]}
  kill -"$sig" "$pid" 2>/dev/null
  [ "$sig" = STOP ] && return 0
  { wait_for "! alive $pid" 10; } 2>/dev/null || { fail "daemon $n did not stop on SIG$sig"; return 1; }
  wait "$pid" 2>/dev/null
  status=$?
  unset "daemon_pid[$n]"
  [ "$sig" != TERM ] || [ $status -eq 0 ] || { fail "daemon $n exited with $status after SIGTERM"; return 1; }
  for p in ${daemon_seen[$n]}; do
    wait_for "! alive $p" 3 || { fail "pid $p outlived daemon $n"; return 1; }
  done
  ! grep -q "runtime error:" "$case_dir/d$n.log" || { fail "UBSan reported in daemon $n's log"; return 1; }
}

# The daemon (by number) whose queue status says it holds a job, or nothing.
holder() {
  local n
  for n in "${!daemon_pid[@]}"; do
    [ "$(qstatus "$n" '["held"]' 2>/dev/null)" -gt 0 ] 2>/dev/null && { echo "$n"; return 0; }
  done
  return 1
}

# XPENDING's entries, one "id consumer idle_ms deliveries" a line.
pending_entries() {
  rcli --raw xpending "pc:{${QUEUE_NAME:-default}}:jobs" daemons - + 100 2>/dev/null | paste - - - - 
}

# Every answer left waiting in a reply list of the queue (there should be none).
stray_answers() {
  local k total=0
  for k in $(rcli --raw --scan --pattern "pc:{${QUEUE_NAME:-default}}:reply:*"); do
    total=$((total + $(rcli llen "$k")))
  done
  echo $total
}

# New temp dir for a case; called by the runner.
begin_case() {
  case_dir=$(mktemp -d -p "$tmp" c.XXXX)  # short: a socket path holds 108 bytes
  redis_port=""
  redis_args=()
  started_pids=""
  clients=""
  daemon_pid=()
  daemon_seen=()
}

# Kills whatever the case left, then checks no pid it started survives.
end_case() {
  local n p left=""
  {
    for n in "${!daemon_pid[@]}"; do
      kill -CONT "${daemon_pid[$n]}"
      kill -KILL "${daemon_pid[$n]}"
    done
    [ -n "$redis_pid" ] && kill -KILL "$redis_pid"
    for p in $clients; do kill_tree "$p"; done
    for p in $started_pids; do
      wait_for "! alive $p" 3 || left+=" $p($(ps -o comm= -p "$p"))"
    done
    for p in $started_pids; do wait "$p"; done
  } 2>/dev/null
  daemon_pid=()
  redis_pid=""
  [ -z "$left" ] || { echo "FAIL: $case_name: left running:$left"; return 1; }
}

harness_cleanup() {
  end_case >/dev/null 2>&1
  rm -rf "$tmp"
}
trap harness_cleanup EXIT

# Runs the cases named (all case_* functions when none), each in a temp dir of its own.
run_cases() {
  local cases=("$@") passed=0 failed=0 ok
  [ ${#cases[@]} -gt 0 ] || mapfile -t cases < <(declare -F | awk '{print $3}' | grep '^case_')
  for case_name in "${cases[@]}"; do
    begin_case "$case_name"
    local t0=$SECONDS
    "$case_name"; ok=$?
    end_case || ok=1
    if [ $ok -eq 0 ]; then
      echo "ok: $case_name ($((SECONDS - t0)) s)"
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
  echo "[shell] test cases: $((passed + failed)) | $passed passed | $failed failed"
  [ $failed -eq 0 ]
}
