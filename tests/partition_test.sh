#!/usr/bin/env bash
# A real network partition: a daemon in a network namespace of its own reaches Redis
# over a veth pair; the link goes down past its lease and comes back. Needs root and
# `ip netns` (CI has both); exits 77 (skipped) without them.
#   partition_test.sh BUILD_DIR
set -uo pipefail
build=$1
shift
[ "$(id -u)" -eq 0 ] || { echo "skip: the partition test needs root (ip netns)"; exit 77; }
command -v ip >/dev/null || { echo "skip: no ip command (iproute2)"; exit 77; }
source "$(dirname "$0")/redis_harness.sh"

tag=$$
ns=pc-part-$tag
host_if=pcp${tag}h   # root namespace's end, where redis-server listens
ns_if=pcp${tag}n     # the partitioned daemon's end
net="10.$((200 + RANDOM % 50)).$((RANDOM % 256))"
host_addr=$net.1
ns_addr=$net.2

partition_cleanup() {
  harness_cleanup
  ip netns del "$ns" 2>/dev/null  # takes its end of the pair, and so the pair, with it
  ip link del "$host_if" 2>/dev/null
}
trap partition_cleanup EXIT

ip netns add "$ns" 2>/dev/null || { echo "skip: ip netns add failed (no network namespaces here)"; exit 77; }
ip link add "$host_if" type veth peer name "$ns_if" &&
  ip link set "$ns_if" netns "$ns" &&
  ip addr add "$host_addr/30" dev "$host_if" &&
  ip link set "$host_if" up &&
  ip netns exec "$ns" ip addr add "$ns_addr/30" dev "$ns_if" &&
  ip netns exec "$ns" ip link set "$ns_if" up &&
  ip netns exec "$ns" ip link set lo up || { echo "FAIL: could not build the veth pair"; exit 1; }

JOBS='pc:{default}:jobs'

case_a_partitioned_daemons_job_is_reclaimed_and_its_stale_completion_discarded() {
  # Loopback for the root namespace's clients, the veth address for the partitioned one.
  redis_start --bind "127.0.0.1 $host_addr" --protected-mode no || return 1
  local far_url=redis://$host_addr:$redis_port
  wait_for '[ "$(ip netns exec "$ns" redis-cli -h "$host_addr" -p "$redis_port" ping 2>/dev/null)" = PONG ]' 5 ||
    { fail "Redis is not reachable from the namespace"; return 1; }
  DAEMON_PREFIX="ip netns exec $ns" DAEMON_URL=$far_url start_qdaemon 1 --workers 1 --lease 1s || return 1
  "$C" submit --queue "$(redis_url)" sleep '{"ms":3000}' > "$case_dir/out" 2> "$case_dir/err" &
  local client=$!; track $client
  wait_for '[ "$(holder)" = 1 ]' 5 || { fail "the partitioned daemon never took the job"; return 1; }
  start_qdaemon 2 --workers 1 --lease 1s || return 1
  ip link set "$host_if" down || { fail "could not take the link down"; return 1; }
  local cut_at
  cut_at=$(now_ms)
  wait_for 'grep -q "queue: reclaimed job .*(delivery 2)" "$case_dir/d2.log"' 2 ||
    { fail "the other daemon did not reclaim the job within 2 s of the cut"; return 1; }
  echo "    reclaimed $(( $(now_ms) - cut_at )) ms after the cut"
  wait_for "! alive $client" 4 || { fail "no answer within 4 s of the reclaim"; return 1; }
  wait $client || { fail "submit exited $?: $(cat "$case_dir/err")"; return 1; }
  [ "$(cat "$case_dir/out")" = 3000 ] || { fail "the answer is not one 3000: $(cat "$case_dir/out")"; return 1; }
  ip link set "$host_if" up || { fail "could not bring the link back"; return 1; }
  local up_at
  up_at=$(now_ms)
  # TCP retransmits back off while the link is down: the stale daemon may take seconds to be heard.
  wait_for 'grep -q "queue: discarded the completion of job" "$case_dir/d1.log"' 20 ||
    { fail "the partitioned daemon did not log its stale completion as discarded"; return 1; }
  echo "    the stale completion discarded $(( $(now_ms) - up_at )) ms after the link came back"
  [ "$(qstatus 1 '["discarded"]')" = 1 ] && [ "$(qstatus 1 '["completed"]')" = 0 ] ||
    { fail "the partitioned daemon's status: $(pcs 1 status --json | json 'd["queue"]')"; return 1; }
  [ "$(qstatus 2 '["completed"]')" = 1 ] || { fail "the other daemon's status: $(pcs 2 status --json | json 'd["queue"]')"; return 1; }
  [ "$(stray_answers)" = 0 ] || { fail "$(stray_answers) extra answers in the reply lists"; return 1; }
  [ "$(rcli xlen "$JOBS")" = 0 ] || { fail "the job was left in the stream"; return 1; }
  # Back on the network, the partitioned daemon consumes again.
  wait_for '[ "$(qstatus 1 "[\"connected\"]")" = True ]' 10 || { fail "the partitioned daemon did not reconnect"; return 1; }
  stop_qdaemon 2 || return 1
  [ "$("$C" submit --queue "$(redis_url)" hello '{"text":"back"}' --raw)" = "Hello back!" ] ||
    { fail "the partitioned daemon does not take jobs after the link came back"; return 1; }
  stop_qdaemon 1 || return 1
  redis_stop
}

run_cases "$@"
