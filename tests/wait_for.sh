# Sourced by the shell tests: waiting on a condition with a deadline, never a fixed sleep.

# Polls CONDITION (a command line, run with eval) every 10 ms until it holds; fails
# once TIMEOUT seconds (fractions allowed) have passed without it.
wait_for() {
  local condition=$1 timeout_us deadline
  printf -v timeout_us '%.0f' "${2}e6"
  deadline=$(( ${EPOCHREALTIME//[!0-9]/} + timeout_us ))
  until eval "$condition"; do
    (( ${EPOCHREALTIME//[!0-9]/} >= deadline )) && return 1
    sleep 0.01
  done
}
