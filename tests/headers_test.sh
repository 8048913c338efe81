#!/usr/bin/env bash
# Each installed header compiles alone, with nothing but -std=c++20 and the
# installed include directory; what is installed is exactly the tree's public
# headers plus the generated version.hpp, and that one carries the project's version;
# without C++20 they stop at once with one #error that names the flag.
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

# Without -std=c++20: the #error naming the flag is the first error, and compilation ends there.
if c++ -std=c++17 -fsyntax-only -I"$inc" "$tmp/version.cpp" 2>"$tmp/err"; then
  echo "FAIL: <parallelcode/parallelcode.hpp> compiled with -std=c++17"; exit 1
fi
first=$(grep -m1 'error:' "$tmp/err" || true)
# The #error, then the fatal missing include that ends compilation: two errors at most.
if [[ $first != *'"parallelcode needs C++20: compile with -std=c++20 (or later)"'* ]] || [ "$(grep -c 'error:' "$tmp/err")" -gt 2 ]; then
  echo "FAIL: with -std=c++17 the first error is not the one #error naming the flag:"
  head -20 "$tmp/err"; exit 1
fi
echo "ok: with -std=c++17, one #error: $(grep -o 'parallelcode needs C++20[^"]*' "$tmp/err")"
