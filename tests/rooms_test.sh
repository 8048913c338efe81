#!/usr/bin/env bash
# The rooms of the tree meet only where DESIGN.md lets them: each quoted #include of a
# folder must name a file of a folder it may use. usage: rooms_test.sh SOURCE_ROOT
set -uo pipefail
cd "$1" || exit 1

failed=0
# room: the folders its quoted includes may come from
declare -A may=(
  [worker]="worker lib/src"
  [supervisor/pool]="supervisor/pool lib/src"
  [supervisor/control]="supervisor/control lib/src"
  [supervisor/remote]="supervisor/remote supervisor/control lib/src"
  [supervisor/daemon]="supervisor/daemon supervisor/control supervisor/remote"
  [supervisor/cli]="supervisor/cli supervisor/control"
)
# Headers made at build time, by the file that makes them: in the room of their maker.
declare -A generated=(
  [supervisor/remote/scripts.hpp]=supervisor/remote/scripts/embed.py
)
for room in "${!may[@]}"; do
  while IFS=: read -r file _ name; do
    found=
    for dir in ${may[$room]}; do
      [ -e "$dir/$name" ] || [ -e "${generated[$dir/$name]:-/nonexistent}" ] && found=$dir && break
    done
    if [ -z "$found" ]; then
      echo "FAIL: $file includes \"$name\", which is in none of: ${may[$room]}"
      failed=1
    fi
  done < <(grep -rHo --include='*.cpp' --include='*.hpp' '^#include "[^"]*"' "$room" | sed 's/#include "\(.*\)"/\1/; s/:/::/')
done
# Public headers include only public headers.
if grep -rn '^#include "' lib/include; then echo "FAIL: a public header includes a private one"; failed=1; fi
[ "$failed" -eq 0 ] && echo "every room includes only what it may"
exit "$failed"
