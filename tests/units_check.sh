#!/usr/bin/env bash
# The systemd units as configured for this build: ExecStart names the installed
# binary, `systemd-analyze verify` accepts both units, and `systemd-analyze security`
# rates the service's exposure under 3. Offline: no systemd needs to run.
#   units_check.sh UNIT_DIR BINDIR DAEMON_BINARY
set -uo pipefail
units=$1
bindir=$2
daemon=$3
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

service=$units/parallelcode-supervisor.service
grep -q "^ExecStart=$bindir/parallelcode-supervisor " "$service" ||
  fail "ExecStart is not in the install prefix's $bindir: $(grep ^ExecStart= "$service")"

# verify wants the binary to exist: a copy of the units pointing at the build's.
sed "s#^ExecStart=$bindir/parallelcode-supervisor#ExecStart=$daemon#" "$service" > "$tmp/parallelcode-supervisor.service"
cp "$units/parallelcode-supervisor.socket" "$tmp/"
# --man=no: the man page is installed, not in the build tree.
out=$(cd "$tmp" && systemd-analyze verify --man=no ./parallelcode-supervisor.service ./parallelcode-supervisor.socket 2>&1) ||
  fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complains: $out"

report=$(cd "$tmp" && systemd-analyze security --offline=true ./parallelcode-supervisor.service 2>&1)
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
if [ -z "$level" ]; then
  fail "no exposure level in: $report"
elif ! awk -v l="$level" 'BEGIN { exit !(l < 3) }'; then
  fail "exposure $level, not under 3:"
  grep '✗' <<<"$report"
else
  echo "exposure $level"
fi
[ $failed -eq 0 ] && echo "units check passed"
exit $((failed > 0))
