#!/usr/bin/env bash
# Each installed header compiles alone, with nothing but -std=c++20 and the
# installed include directory; what is installed is exactly the tree's public
# headers plus the generated version.hpp, and that one carries the project's version.
set -euo pipefail
src=$1 build=$2 version=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >/dev/null
inc=$(dirname "$(find "$tmp/root" -type d -name parallelcode -path '*/include/*' | head -1)")
[ -d "$inc/parallelcode" ] || { echo "FAIL: no include/parallelcode installed"; exit 1; }

installed=$(cd "$inc" && find parallelcode -type f | sort)
expected=$( (cd "$src/lib/include" && find parallelcode -name '*.hpp'; echo parallelcode/version.hpp) | sort)
# remote.hpp goes with libparallelcode-remote, built only where hiredis is.
[ -d "$build/supervisor/remote" ] || expected=$(echo "$expected" | grep -vx parallelcode/remote.hpp)
if [ "$installed" != "$expected" ]; then
  echo "FAIL: the installed files are not the public headers:"
  diff <(echo "$expected") <(echo "$installed") || true
  exit 1
fi

bad=0 count=0
for header in $installed; do
  count=$((count + 1))
  printf '#include <%s>\n' "$header" >"$tmp/tu.cpp"
  if ! c++ -std=c++20 -Wall -Wextra -Werror -fsyntax-only -I"$inc" "$tmp/tu.cpp" 2>"$tmp/err"; then
    echo "FAIL: <$header> does not compile alone:"
    head -20 "$tmp/err"
    bad=1
  fi
done
[ $bad = 0 ] || exit 1
echo "ok: $count installed headers each compile alone"

IFS=. read -r major minor patch <<<"$version"
cat >"$tmp/version.cpp" <<CPP
#include <parallelcode/parallelcode.hpp>
#include <string_view>
static_assert(PARALLELCODE_VERSION_MAJOR == $major && PARALLELCODE_VERSION_MINOR == $minor &&
              PARALLELCODE_VERSION_PATCH == $patch);
static_assert(std::string_view(PARALLELCODE_VERSION_STRING) == "$version");
CPP
c++ -std=c++20 -fsyntax-only -I"$inc" "$tmp/version.cpp" || { echo "FAIL: the umbrella header's version is not $version"; exit 1; }
echo "ok: <parallelcode/parallelcode.hpp> says version $version"
