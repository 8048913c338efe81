#!/usr/bin/env bash
# Many daemons consuming one Redis queue, from a shell, as an operator runs them.
# Each case starts its own redis-server on a free loopback port in a temp dir and
# its own daemons, and checks, when they stop, that nothing of them is left running.
#   remote_test.sh BUILD_DIR [CASE...]
set -uo pipefail
build=$1
shift
source "$(dirname "$0")/redis_harness.sh"

JOBS='pc:{default}:jobs'
DEAD='pc:{default}:dead'

# Bounded, so that a submitter nobody answers fails its case instead of hanging the suite.
qsubmit() { timeout -k 1 60 "$C" submit --queue "$(redis_url)" "$@"; }
qmap() { timeout -k 1 90 "$C" map --queue "$(redis_url)" "$@"; }
qverb() { local verb=$1; shift; timeout -k 1 30 "$C" queue "$verb" --queue "$(redis_url)" "$@"; }
xlen() { rcli xlen "$1"; }
pending_count() { rcli --raw xpending "$JOBS" daemons | head -1; }

# The daemon (by number) whose workers are running a job, or nothing.
runner() {
  local n
  for n in "${!daemon_pid[@]}"; do
    [ "$(pcs "$n" status --json 2>/dev/null | json 'sum(w["running"] for w in d["workers"])' 2>/dev/null)" = 1 ] &&
      { echo "$n"; return 0; }
  done
  return 1
}

# The entry ids of a stream, one a line.
stream_ids() { rcli --raw xrange "$1" - + | grep -E '^[0-9]+-[0-9]+$'; }

# --- the cases ---------------------------------------------------------------

case_three_daemons_share_3000_jobs_each_answered_once_in_order() {
  redis_start || return 1
  local n
  for n in 1 2 3; do start_qdaemon $n --workers 2 || return 1; done
  seq 0 2999 | sed 's/.*/{"text":"&"}/' > "$case_dir/in"
  qmap hello --raw < "$case_dir/in" > "$case_dir/out" 2> "$case_dir/err" &
  local map=$!; track $map
  wait_for "! alive $map" 60 || { fail "map did not finish 3000 jobs in 60 s"; return 1; }
  wait $map || { fail "map exited $?: $(tail -3 "$case_dir/err")"; return 1; }
  cmp -s <(seq 0 2999 | sed 's/.*/Hello &!/') "$case_dir/out" ||
    { fail "the answers are not the 3000 inputs in order: $(wc -l < "$case_dir/out") lines, first difference" \
        "$(diff <(seq 0 2999 | sed 's/.*/Hello &!/') "$case_dir/out" | head -3 | tr '\n' ' ')"; return 1; }
  local total=0 c
  for n in 1 2 3; do
    c=$(qstatus $n '["completed"]') || { fail "daemon $n's status has no queue.completed"; return 1; }
    [ "$c" -gt 0 ] || { fail "daemon $n ran none of the 3000 jobs"; return 1; }
    total=$((total + c))
  done
  [ $total -eq 3000 ] || { fail "the daemons completed $total jobs, not 3000"; return 1; }
  [ "$(xlen "$JOBS")" = 0 ] || { fail "the stream still holds $(xlen "$JOBS") entries"; return 1; }
  [ "$(stray_answers)" = 0 ] || { fail "$(stray_answers) answers were left in reply lists"; return 1; }
  for n in 1 2 3; do stop_qdaemon $n || return 1; done
  redis_stop
}

case_a_sigkilled_daemons_job_is_finished_by_another_within_its_lease_plus_the_job() {
  redis_start || return 1
  start_qdaemon 1 --workers 1 --lease 1s || return 1
  qsubmit sleep '{"ms":2000}' > "$case_dir/out" 2> "$case_dir/err" &
  local client=$!; track $client
  wait_for '[ "$(holder)" = 1 ]' 5 || { fail "daemon 1 never took the job"; return 1; }
  start_qdaemon 2 --workers 1 --lease 1s || return 1
  local killed_at
  killed_at=$(now_ms)
  stop_qdaemon 1 KILL || return 1
  # The other daemon takes it once it has been idle a lease, found by a sweep every lease/4.
  wait_for '[ "$(holder)" = 2 ]' 1.75 || { fail "daemon 2 did not take the job within 1.75 s of the kill"; return 1; }
  local taken_ms=$(( $(now_ms) - killed_at ))
  local entry
  entry=$(pending_entries)
  [ "$(echo "$entry" | awk '{print $4}')" = 2 ] || { fail "XPENDING does not show delivery 2: $entry"; return 1; }
  [ "$(echo "$entry" | awk '{print $2}')" = "$(qstatus 2 '["consumer"]')" ] || { fail "XPENDING's owner is not daemon 2: $entry"; return 1; }
  grep -q "queue: reclaimed job .*(delivery 2)" "$case_dir/d2.log" || { fail "daemon 2 does not log the reclaim with delivery 2"; return 1; }
  wait_for "! alive $client" 3 || { fail "no answer within 3 s of the reclaim ($taken_ms ms after the kill)"; return 1; }
  local done_ms=$(( $(now_ms) - killed_at ))
  wait $client || { fail "submit exited $?: $(cat "$case_dir/err")"; return 1; }
  [ "$(cat "$case_dir/out")" = 2000 ] || { fail "the answer is not one 2000: $(cat "$case_dir/out")"; return 1; }
  [ $done_ms -le 3600 ] || { fail "answered $done_ms ms after the kill (reclaimed after $taken_ms ms)"; return 1; }
  echo "    reclaimed $taken_ms ms and answered $done_ms ms after the kill"
  [ "$(qstatus 2 '["reclaims"]')" = 1 ] || { fail "daemon 2's status does not count the reclaim"; return 1; }
  [ "$(stray_answers)" = 0 ] && [ "$(xlen "$JOBS")" = 0 ] || { fail "a second answer or a job was left over"; return 1; }
  stop_qdaemon 2 || return 1
  redis_stop
}

case_a_stopped_daemon_past_its_lease_has_its_late_completion_discarded() {
  redis_start || return 1
  start_qdaemon 1 --workers 1 --lease 1s || return 1
  qsubmit sleep '{"ms":1500}' > "$case_dir/out" 2> "$case_dir/err" &
  local client=$!; track $client
  wait_for '[ "$(holder)" = 1 ]' 5 || { fail "daemon 1 never took the job"; return 1; }
  start_qdaemon 2 --workers 1 --lease 1s || return 1
  stop_qdaemon 1 STOP
  # Its worker finishes the job while it is stopped; the daemon cannot renew or answer.
  wait_for 'grep -q "queue: reclaimed job .*(delivery 2)" "$case_dir/d2.log"' 3 ||
    { fail "daemon 2 did not reclaim the stopped daemon's job"; return 1; }
  kill -CONT "${daemon_pid[1]}"
  wait_for 'grep -q "queue: discarded the completion of job" "$case_dir/d1.log"' 5 ||
    { fail "daemon 1 did not log its late completion as discarded"; return 1; }
  wait_for "! alive $client" 5 || { fail "no answer"; return 1; }
  wait $client || { fail "submit exited $?: $(cat "$case_dir/err")"; return 1; }
  [ "$(cat "$case_dir/out")" = 1500 ] || { fail "the answer is not one 1500: $(cat "$case_dir/out")"; return 1; }
  [ "$(qstatus 1 '["discarded"]')" = 1 ] && [ "$(qstatus 1 '["completed"]')" = 0 ] ||
    { fail "daemon 1's status: $(pcs 1 status --json | json 'd["queue"]')"; return 1; }
  wait_for '[ "$(qstatus 2 "[\"completed\"]")" = 1 ]' 2 || { fail "daemon 2 did not complete the job"; return 1; }
  [ "$(stray_answers)" = 0 ] || { fail "$(stray_answers) extra answers in the reply list"; return 1; }
  [ "$(xlen "$JOBS")" = 0 ] && [ "$(pending_count)" = 0 ] || { fail "the job was left in the stream"; return 1; }
  pcs 1 submit hello '{"text":"alive"}' >/dev/null || { fail "daemon 1's socket does not serve after SIGCONT"; return 1; }
  stop_qdaemon 1 || return 1
  stop_qdaemon 2 || return 1
  redis_stop
}

case_a_job_whose_daemon_dies_on_every_delivery_is_dead_lettered_then_retried() {
  redis_start || return 1
  local n=1 h
  start_qdaemon $n --workers 1 --lease 1s --max-deliveries 2 || return 1
  qsubmit sleep '{"ms":1200}' > "$case_dir/out" 2> "$case_dir/err" &
  local client=$!; track $client
  local kills=0
  while alive $client; do
    wait_for '[ -n "$(runner)" ] || ! alive $client' 5 || { fail "no daemon ran the job (delivery $((kills + 1)))"; return 1; }
    alive $client || break
    h=$(runner)
    stop_qdaemon "$h" KILL || return 1
    kills=$((kills + 1))
    [ $kills -le 3 ] || { fail "the job was delivered a 4th time with --max-deliveries 2"; return 1; }
    n=$((n + 1))
    start_qdaemon $n --workers 1 --lease 1s --max-deliveries 2 || return 1
  done
  wait $client
  local status=$?
  [ $status -eq 5 ] || { fail "submit exited $status, not 5: $(cat "$case_dir/err")"; return 1; }
  [ $kills -eq 2 ] || { fail "$kills kills before the dead letter, not 2"; return 1; }
  grep -Eqi "dead|delivered" "$case_dir/err" || { fail "submit's stderr does not say why it was buried: $(cat "$case_dir/err")"; return 1; }
  grep -q "queue: dead-lettered job" "$case_dir/d$n.log" || { fail "daemon $n does not log the dead letter"; return 1; }
  [ "$(xlen "$DEAD")" = 1 ] && [ "$(xlen "$JOBS")" = 0 ] || { fail "dead $(xlen "$DEAD"), jobs $(xlen "$JOBS")"; return 1; }
  local dead_id
  dead_id=$(rcli --raw xrange "$DEAD" - + count 1 | head -1)
  qverb dead > "$case_dir/dead" 2>&1 || { fail "queue dead exited $?: $(cat "$case_dir/dead")"; return 1; }
  grep -q "$dead_id" "$case_dir/dead" && grep -q sleep "$case_dir/dead" ||
    { fail "queue dead does not list $dead_id: $(cat "$case_dir/dead")"; return 1; }
  local error
  error=$(rcli --raw xrange "$DEAD" - + | grep -A1 -x error | tail -1)
  [ -n "$error" ] || { fail "the dead letter has no error field: $(rcli --raw xrange "$DEAD" - + | tr '\n' ' ')"; return 1; }
  grep -qF "$error" "$case_dir/dead" || { fail "queue dead does not give the error '$error': $(cat "$case_dir/dead")"; return 1; }
  timeout 10 "$C" queue retry --queue "$(redis_url)" "$dead_id" --wait > "$case_dir/retry" 2>&1 ||
    { fail "queue retry --wait exited $?: $(cat "$case_dir/retry")"; return 1; }
  grep -qx 1200 "$case_dir/retry" || { fail "the retried job's result: $(cat "$case_dir/retry")"; return 1; }
  [ "$(xlen "$DEAD")" = 0 ] && [ "$(xlen "$JOBS")" = 0 ] || { fail "after retry: dead $(xlen "$DEAD"), jobs $(xlen "$JOBS")"; return 1; }
  [ "$(qstatus $n '["completed"]')" = 1 ] || { fail "daemon $n did not run the retried job"; return 1; }
  stop_qdaemon $n || return 1
  redis_stop
}

case_redis_killed_and_restarted_with_aof_loses_no_submitted_job() {
  redis_start --appendonly yes --appendfsync always || return 1
  local n
  for n in 1 2; do start_qdaemon $n --workers 2 || return 1; done
  for n in $(seq 500); do echo '{"ms":5}'; done > "$case_dir/in"
  qmap sleep < "$case_dir/in" > "$case_dir/out" 2> "$case_dir/err" &
  local map=$!; track $map
  wait_for '[ $(( $(qstatus 1 "[\"completed\"]") + $(qstatus 2 "[\"completed\"]") )) -ge 50 ]' 20 ||
    { fail "the daemons did not complete 50 jobs"; return 1; }
  alive $map || { fail "map finished before Redis could be killed: make the run longer"; return 1; }
  redis_stop KILL || return 1
  for n in 1 2; do
    wait_for 'grep -q "queue: lost Redis" "$case_dir/d$n.log"' 5 || { fail "daemon $n did not log the loss of Redis"; return 1; }
    [ "$(pcs $n submit hello '{"text":"down"}' --raw)" = "Hello down!" ] ||
      { fail "daemon $n's socket does not serve while Redis is down"; return 1; }
    [ "$(qstatus $n '["connected"]')" = False ] || { fail "daemon $n's status says connected while Redis is down"; return 1; }
  done
  redis_start || return 1
  for n in 1 2; do
    wait_for 'grep -q "queue: reconnected" "$case_dir/d$n.log"' 10 || { fail "daemon $n did not reconnect"; return 1; }
  done
  wait_for "! alive $map" 30 || {
    fail "map did not finish after the restart: $(wc -l < "$case_dir/out") lines; the stream holds $(xlen "$JOBS")," \
      "$(pending_count) pending, $(stray_answers) answers unread, the daemons hold $(qstatus 1 '["held"]') and" \
      "$(qstatus 2 '["held"]') and completed $(qstatus 1 '["completed"]') and $(qstatus 2 '["completed"]');" \
      "pending: $(pending_entries) (daemons $(qstatus 1 '["consumer"]') $(qstatus 2 '["consumer"]'))"
    return 1
  }
  wait $map || {
    local status=$? done_by_daemons
    wait_for '[ "$(xlen "$JOBS")" = 0 ]' 10
    done_by_daemons=$(( $(qstatus 1 '["completed"]') + $(qstatus 2 '["completed"]') ))
    fail "map exited $status after $(wc -l < "$case_dir/out") answers: $(tail -1 "$case_dir/err")" \
      "(the daemons completed $done_by_daemons jobs; the stream holds $(xlen "$JOBS"))"
    return 1
  }
  [ "$(wc -l < "$case_dir/out")" = 500 ] && [ "$(sort -u "$case_dir/out")" = 5 ] ||
    { fail "not 500 answers of 5: $(wc -l < "$case_dir/out") lines, $(sort "$case_dir/out" | uniq -c | head -3 | tr '\n' ' ')"; return 1; }
  [ "$(grep -c "queue: lost Redis" "$case_dir/d1.log")" = 1 ] || { fail "daemon 1 logged the loss more than once"; return 1; }
  wait_for '[ "$(xlen "$JOBS")" = 0 ]' 5 || { fail "$(xlen "$JOBS") jobs left in the stream"; return 1; }
  for n in 1 2; do stop_qdaemon $n || return 1; done
  redis_stop
}

# Pushes an entry straight to the stream: FIELD VALUE pairs; prints its id.
xadd() { rcli --raw xadd "$JOBS" '*' "$@"; }

# The answer to job ID in reply list KEY within 5 s, as its JSON, or nothing.
answer_of() {
  local id=$1 key=$2 seconds=${3:-5} line
  line=$(rcli --raw blpop "$key" "$seconds" | tail -n +2)
  [ "${line%% *}" = "$id" ] && echo "${line#* }"
}

case_bad_stream_entries_are_answered_or_dead_lettered_and_consuming_goes_on() {
  redis_start || return 1
  start_qdaemon 1 --workers 2 || return 1
  local r='pc:{default}:reply:shelltest' id a kind
  declare -A expect=(
    [no_task]="bad_request"
    [not_json]="bad_request payload_error"
    [unknown_task]="unknown_task"
    [bad_args]="payload_error"
    [bad_timeout]="bad_request"
  )
  declare -A ids=()
  ids[no_task]=$(xadd args '{"text":"x"}' reply "$r:no_task")
  ids[not_json]=$(xadd task hello args '{"text": nope' reply "$r:not_json")
  ids[unknown_task]=$(xadd task no_such_task args null reply "$r:unknown_task")
  ids[bad_args]=$(xadd task hello args '[1,2]' reply "$r:bad_args")
  ids[bad_timeout]=$(xadd task hello args '{"text":"x"}' reply "$r:bad_timeout" timeout_ms soon)
  local no_reply huge
  no_reply=$(xadd task hello args '{"text":"x"}')
  # 10 MB: more than argv takes in one argument, so the value comes on stdin (-x).
  huge=$(python3 -c 'print("{\"text\":\"" + "x" * 10_000_000 + "\"}", end="")' |
    rcli --raw -x xadd "$JOBS" '*' task hello reply "$r:huge" args)
  local good
  good=$(xadd task hello args '{"text":"good"}' reply "$r:good")
  a=$(answer_of "$good" "$r:good")
  [ "$(echo "$a" | json 'd["result"]' 2>/dev/null)" = "Hello good!" ] ||
    { fail "the good job after the bad ones was not answered: ${a:0:200}"; return 1; }
  for kind in "${!ids[@]}"; do
    a=$(answer_of "${ids[$kind]}" "$r:$kind")
    local type
    type=$(echo "$a" | json 'd["error"]["type"] if not d["ok"] else "ok"' 2>/dev/null)
    case " ${expect[$kind]} " in
      *" $type "*) ;;
      *) fail "entry $kind got '${a:0:200}', not an error ${expect[$kind]}"; return 1 ;;
    esac
  done
  a=$(answer_of "$huge" "$r:huge" 60)  # 10 MB through JSON both ways: seconds under TSan on a busy machine
  local huge_answer
  huge_answer=$(echo "$a" | json '"ok" if d["ok"] and len(d["result"]) == 10_000_007 else d["error"]["type"]' 2>/dev/null)
  [ -n "$huge_answer" ] || rcli --raw xrange "$DEAD" - + | grep -qx "$huge" ||
    { fail "the 10 MB entry was neither answered nor dead-lettered: ${a:0:200}"; return 1; }
  echo "    the 10 MB entry: ${huge_answer:-dead-lettered}"
  # An entry nobody can be told about is dead-lettered or dropped, never left pending.
  wait_for '[ "$(xlen "$JOBS")" = 0 ] && [ "$(pending_count)" = 0 ]' 5 ||
    { fail "entries left in the stream: $(stream_ids "$JOBS" | tr '\n' ' ') pending: $(pending_entries)"; return 1; }
  rcli --raw xrange "$DEAD" - + | grep -qx "$no_reply" && echo "    the entry with no reply: dead-lettered"
  [ "$(qsubmit hello '{"text":"after"}' --raw)" = "Hello after!" ] || { fail "submit after the bad entries"; return 1; }
  alive "${daemon_pid[1]}" || { fail "the daemon died"; return 1; }
  stop_qdaemon 1 || return 1
  redis_stop
}

case_a_wrong_password_exits_3_with_a_clear_message_and_the_right_one_works() {
  REDIS_PASSWORD=s3cret redis_start --requirepass s3cret || return 1
  local url status
  url=$(redis_url)
  PARALLELCODE_QUEUE_PASSWORD=n0t-th1s-one "$C" submit --queue "$url" hello '{"text":"x"}' 2> "$case_dir/err"
  status=$?
  [ $status -eq 3 ] || { fail "submit with a wrong password exited $status, not 3: $(cat "$case_dir/err")"; return 1; }
  grep -Eqi "password|credential|auth" "$case_dir/err" || { fail "no clear message: $(cat "$case_dir/err")"; return 1; }
  ! grep -q n0t-th1s-one "$case_dir/err" || { fail "the message shows the password: $(cat "$case_dir/err")"; return 1; }
  env -u PARALLELCODE_QUEUE_PASSWORD "$C" submit --queue "$url" hello '{"text":"x"}' 2> "$case_dir/err"
  status=$?
  [ $status -eq 3 ] || { fail "submit with no password exited $status, not 3: $(cat "$case_dir/err")"; return 1; }
  # The daemon: a clear message, and either it exits non-zero or it keeps its socket and retries.
  PARALLELCODE_QUEUE_PASSWORD=n0t-th1s-one "$D" --socket "$(sock 1)" --queue "$url" --workers 1 2> "$case_dir/d1.log" &
  daemon_pid[1]=$!; started_pids+=" ${daemon_pid[1]}"
  wait_for '! alive ${daemon_pid[1]} || pcs 1 status >/dev/null 2>&1' 10 || { fail "the daemon neither exited nor served"; return 1; }
  wait_for 'grep -Eqi "password|credential|auth" "$case_dir/d1.log"' 5 ||
    { fail "the daemon with a wrong password gives no clear message: $(cat "$case_dir/d1.log")"; return 1; }
  if alive "${daemon_pid[1]}"; then
    echo "    a daemon with a wrong password keeps running: $(grep -Ei 'password|credential|auth' "$case_dir/d1.log" | head -1)"
    daemon_seen[1]="${daemon_pid[1]} $(pool_pids 1)"; started_pids+=" ${daemon_seen[1]}"
    [ "$(qstatus 1 '["connected"]')" = False ] || { fail "its status says connected"; return 1; }
    stop_qdaemon 1 || return 1
  else
    wait "${daemon_pid[1]}"; status=$?; unset "daemon_pid[1]"
    [ $status -ne 0 ] || { fail "the daemon with a wrong password exited 0"; return 1; }
    echo "    a daemon with a wrong password exits $status: $(grep -Ei 'password|credential|auth' "$case_dir/d1.log" | head -1)"
  fi
  ! grep -q n0t-th1s-one "$case_dir/d1.log" || { fail "the daemon's log shows the password"; return 1; }
  # The right one: from the environment, and from a file for the daemon.
  echo s3cret > "$case_dir/pw"; chmod 600 "$case_dir/pw"
  start_qdaemon 2 --workers 1 --queue-password-file "$case_dir/pw" || return 1
  [ "$(PARALLELCODE_QUEUE_PASSWORD=s3cret "$C" submit --queue "$url" hello '{"text":"env"}' --raw)" = "Hello env!" ] ||
    { fail "the right password from PARALLELCODE_QUEUE_PASSWORD"; return 1; }
  pcs 2 status --json > "$case_dir/status"
  ! grep -q s3cret "$case_dir/status" || { fail "status shows the password"; return 1; }
  # In the URL it works, with a warning that ps shows it.
  local secret_url="redis://default:s3cret@127.0.0.1:$redis_port"
  [ "$(env -u PARALLELCODE_QUEUE_PASSWORD "$C" submit --queue "$secret_url" hello '{"text":"url"}' --raw 2> "$case_dir/err")" = "Hello url!" ] ||
    { fail "a password in the URL: $(cat "$case_dir/err")"; return 1; }
  grep -qi "warn\|ps\b\|visible" "$case_dir/err" || { fail "no warning about the password in the URL: $(cat "$case_dir/err")"; return 1; }
  stop_qdaemon 2 || return 1
  DAEMON_URL=$secret_url start_qdaemon 3 --workers 1 || return 1
  grep -qi "warn\|ps\b\|visible" "$case_dir/d3.log" || { fail "the daemon does not warn about the password in its URL"; return 1; }
  ! grep -q s3cret "$case_dir/d3.log" || { fail "the daemon's log shows the password"; return 1; }
  ! pcs 3 status --json | grep -q s3cret || { fail "the daemon's status shows the password"; return 1; }
  stop_qdaemon 3 || return 1
  redis_stop
}

case_a_job_nobody_takes_before_its_deadline_is_deadline_exceeded_and_never_runs() {
  redis_start || return 1
  qsubmit sleep '{"ms":1}' --deadline 300ms > "$case_dir/out" 2> "$case_dir/err" &
  local client=$!; track $client
  wait_for '[ "$(xlen "$JOBS")" = 1 ]' 5 || { fail "the job never reached the stream"; return 1; }
  local job_deadline
  job_deadline=$(rcli --raw xrange "$JOBS" - + | grep -A1 -x deadline | tail -1)
  [ -n "$job_deadline" ] || { fail "the entry has no deadline field: $(rcli --raw xrange "$JOBS" - + | tr '\n' ' ')"; return 1; }
  redis_ms() { local t; t=($(rcli --raw time)); echo $(( t[0] * 1000 + 10#${t[1]} / 1000 )); }
  wait_for '[ "$(redis_ms)" -gt "$job_deadline" ]' 2 || { fail "Redis's clock never passed $job_deadline"; return 1; }
  start_qdaemon 1 --workers 1 || return 1
  wait_for "! alive $client" 5 || { fail "no answer"; return 1; }
  wait $client
  local status=$?
  [ $status -eq 4 ] && grep -qi deadline "$case_dir/err" || { fail "submit exited $status: $(cat "$case_dir/err")"; return 1; }
  wait_for '[ "$(xlen "$JOBS")" = 0 ]' 5 || { fail "the late job stays in the stream"; return 1; }
  [ "$(pcs 1 status --json | json 'd["submitted"]')" = 0 ] || { fail "the late job ran"; return 1; }
  stop_qdaemon 1 || return 1
  redis_stop
}

case_two_submits_with_one_idempotency_key_get_one_answer_from_one_run() {
  redis_start || return 1
  start_qdaemon 1 --workers 2 || return 1
  local a b
  a=$(qsubmit hello '{"text":"once"}' --idempotency-key k1 --raw) || { fail "first submit"; return 1; }
  b=$(qsubmit hello '{"text":"once"}' --idempotency-key k1 --raw) || { fail "second submit"; return 1; }
  [ "$a" = "Hello once!" ] && [ "$b" = "$a" ] || { fail "answers '$a' and '$b'"; return 1; }
  [ "$(pcs 1 status --json | json 'd["submitted"]')" = 1 ] || { fail "the task ran $(pcs 1 status --json | json 'd["submitted"]') times"; return 1; }
  # Two at once, while the first still runs.
  qsubmit sleep '{"ms":400}' --idempotency-key k2 > "$case_dir/a" 2>&1 &
  local p1=$!; track $p1
  qsubmit sleep '{"ms":400}' --idempotency-key k2 > "$case_dir/b" 2>&1 &
  local p2=$!; track $p2
  wait $p1 && wait $p2 || { fail "the concurrent submits: $(cat "$case_dir/a" "$case_dir/b")"; return 1; }
  [ "$(cat "$case_dir/a")" = 400 ] && [ "$(cat "$case_dir/b")" = 400 ] || { fail "answers $(cat "$case_dir/a" "$case_dir/b")"; return 1; }
  [ "$(pcs 1 status --json | json 'd["submitted"]')" = 2 ] || { fail "the concurrent pair ran more than once"; return 1; }
  [ "$(qsubmit hello '{"text":"twice"}' --idempotency-key k3 --raw)" = "Hello twice!" ] || { fail "a new key"; return 1; }
  [ "$(pcs 1 status --json | json 'd["submitted"]')" = 3 ] || { fail "a new key did not run"; return 1; }
  stop_qdaemon 1 || return 1
  redis_stop
}

case_map_through_the_queue_writes_a_joblog_naming_each_daemon_and_halts_on_failures() {
  redis_start || return 1
  start_qdaemon 1 --workers 1 || return 1
  start_qdaemon 2 --workers 1 || return 1
  { seq 1 20 | sed 's/.*/{"ms":1}/'; echo '{"ms":"x"}'; } > "$case_dir/in"
  qmap sleep "$case_dir/in" --joblog "$case_dir/joblog" > "$case_dir/out" 2> "$case_dir/err"
  [ $? -eq 1 ] || { fail "map with one bad line should exit 1: $(tail -1 "$case_dir/err")"; return 1; }
  python3 - "$case_dir/joblog" "$(qstatus 1 '["consumer"]')" "$(qstatus 2 '["consumer"]')" <<'PY' ||
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
assert rows[0] == ["Seq", "Starttime", "JobRuntime", "Worker", "Outcome"], rows[0]
body = sorted(rows[1:], key=lambda r: int(r[0]))
assert [r[0] for r in body] == [str(i) for i in range(1, 22)], body
assert all(r[4] == "ok" for r in body[:20]) and body[20][4] == "payload_error", body
for r in body[:20]:
    consumer, pid = r[3].rsplit("/", 1)
    assert consumer in sys.argv[2:] and pid.isdigit(), r
PY
    { fail "the joblog: $(cat "$case_dir/joblog")"; return 1; }
  { echo '{"ms":"x"}'; seq 1 50 | sed 's/.*/{"ms":1}/'; } > "$case_dir/fails_first"
  qmap sleep "$case_dir/fails_first" --window 1 --halt soon,fail=1 > "$case_dir/out" 2> "$case_dir/err"
  [ $? -eq 1 ] && [ "$(wc -l < "$case_dir/out")" -lt 51 ] && grep -q -- "--halt" "$case_dir/err" ||
    { fail "--halt soon,fail=1: $(wc -l < "$case_dir/out") results; $(tail -1 "$case_dir/err")"; return 1; }
  stop_qdaemon 1 && stop_qdaemon 2 || return 1
  redis_stop
}

case_queue_stats_shows_the_queue_and_purge_answers_the_waiting_jobs() {
  redis_start || return 1
  start_qdaemon 1 --workers 1 || return 1  # makes the consumer group, then leaves
  stop_qdaemon 1 || return 1
  local clients_=() i
  for i in 1 2 3; do
    qsubmit hello "{\"text\":\"$i\"}" > "$case_dir/out$i" 2> "$case_dir/err$i" &
    clients_+=($!); track $!
  done
  wait_for '[ "$(xlen "$JOBS")" = 3 ]' 5 || { fail "the three jobs never reached the stream"; return 1; }
  qverb stats --json > "$case_dir/stats" || { fail "queue stats --json exited $?"; return 1; }
  [ "$(json 'd["length"], d["waiting"], d["pending"]' < "$case_dir/stats")" = "3 3 0" ] ||
    { fail "stats with three waiting: $(cat "$case_dir/stats")"; return 1; }
  qverb purge > "$case_dir/purge" 2>&1 || { fail "queue purge exited $?: $(cat "$case_dir/purge")"; return 1; }
  grep -q 3 "$case_dir/purge" || { fail "purge does not say it dropped 3: $(cat "$case_dir/purge")"; return 1; }
  for i in 0 1 2; do
    wait_for "! alive ${clients_[$i]}" 5 || { fail "submitter $((i + 1)) got no answer after purge"; return 1; }
    wait "${clients_[$i]}" && { fail "submitter $((i + 1)) exited 0 after purge"; return 1; }
    grep -Eqi "purged|cancel" "$case_dir/err$((i + 1))" || { fail "submitter $((i + 1)): $(cat "$case_dir/err$((i + 1))")"; return 1; }
  done
  [ "$(xlen "$JOBS")" = 0 ] || { fail "purge left $(xlen "$JOBS") jobs"; return 1; }
  start_qdaemon 2 --workers 1 || return 1
  qsubmit sleep '{"ms":800}' > "$case_dir/out" 2>&1 &
  local client=$!; track $client
  wait_for '[ "$(holder)" = 2 ]' 5 || { fail "daemon 2 never took the job"; return 1; }
  qverb stats --json > "$case_dir/stats" || { fail "queue stats --json exited $?"; return 1; }
  python3 - "$case_dir/stats" "$(qstatus 2 '["consumer"]')" <<'PY' || { fail "stats with one job held: $(cat "$case_dir/stats")"; return 1; }
import json, sys
d = json.load(open(sys.argv[1]))
mine = [c for c in d["consumers"] if c["name"] == sys.argv[2]]
assert d["length"] == 1 and d["pending"] == 1 and d["waiting"] == 0, d
assert len(mine) == 1 and mine[0]["pending"] == 1, d
assert all("idle" in c or "idle_ms" in c for c in d["consumers"]), d
PY
  qverb stats > "$case_dir/stats.txt" || { fail "queue stats exited $?"; return 1; }
  grep -q "$(qstatus 2 '["consumer"]')" "$case_dir/stats.txt" && grep -qi waiting "$case_dir/stats.txt" &&
    grep -qi pending "$case_dir/stats.txt" && grep -qi idle "$case_dir/stats.txt" ||
    { fail "queue stats does not show waiting, pending and the consumer's idle time: $(cat "$case_dir/stats.txt")"; return 1; }
  wait $client && [ "$(cat "$case_dir/out")" = 800 ] || { fail "the held job: $(cat "$case_dir/out")"; return 1; }
  stop_qdaemon 2 || return 1
  redis_stop
}

run_cases "$@"
