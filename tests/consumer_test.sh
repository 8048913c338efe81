#!/usr/bin/env bash
# A program outside the tree uses parallelcode two ways: built against the
# installed headers, library and parallelcode.pc, and as a meson subproject.
set -euo pipefail
src=$1 build=$2
# The build's -Db_sanitize (none by default): an instrumented library needs an instrumented program.
sanitize=${PARALLELCODE_SANITIZE:-none}
sanitize_flags=() setup_flags=()
if [ "$sanitize" != none ]; then
  sanitize_flags=("-fsanitize=$sanitize")
  setup_flags=("-Db_sanitize=$sanitize" -Db_lundef=false)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_hello() {
  local out
  out=$("$@" 2>/dev/null)
  [ "$out" = "Hello world!" ] || { echo "FAIL: $* printed '$out'"; exit 1; }
}

# 1. meson install, then the README's one-line compile with pkg-config.
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >/dev/null
pcdir=$(dirname "$(find "$tmp/root" -name parallelcode.pc)")
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$tmp/root
# The installed headers alone compile: none of them reaches back into the tree.
c++ -std=c++20 "${sanitize_flags[@]}" -o "$tmp/hello" "$src/examples/hello.cpp" $(pkg-config --cflags --libs parallelcode)
check_hello env LD_LIBRARY_PATH="$libdir" "$tmp/hello"
echo "ok: built with pkg-config against the installed tree"

# 1b. The remote library through its own pkg-config file, where it was built: a queue at
# a port nobody serves is a queue_error, which shows the headers and both libraries linked.
if [ -f "$pcdir/parallelcode-remote.pc" ]; then
  cat > "$tmp/remote.cpp" <<'CPP'
#include <parallelcode/remote.hpp>
#include <cstdio>
int main() {
  try {
    parallelcode::remote_queue q{"redis://127.0.0.1:1", {.name = "default"}};
  } catch (const parallelcode::queue_error& e) {
    std::puts("queue_error");
    return 0;
  }
  return 1;
}
CPP
  c++ -std=c++20 "${sanitize_flags[@]}" -o "$tmp/remote" "$tmp/remote.cpp" $(pkg-config --cflags --libs parallelcode-remote)
  out=$(env LD_LIBRARY_PATH="$libdir" "$tmp/remote" 2>/dev/null)
  [ "$out" = queue_error ] || { echo "FAIL: the remote consumer printed '$out'"; exit 1; }
  echo "ok: parallelcode-remote built with its pkg-config file against the installed tree"
fi

# 2. dependency('parallelcode') with the source tree as a subproject.
mkdir -p "$tmp/consumer/subprojects"
ln -s "$src" "$tmp/consumer/subprojects/parallelcode"
cp "$src/examples/hello.cpp" "$tmp/consumer/"
cat > "$tmp/consumer/meson.build" <<'MESON'
project('consumer', 'cpp', default_options: ['cpp_std=c++20'])
executable('hello', 'hello.cpp', dependencies: dependency('parallelcode', fallback: 'parallelcode'))
MESON
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
meson setup "${setup_flags[@]}" "$tmp/consumer/build" "$tmp/consumer" >/dev/null
ninja -C "$tmp/consumer/build" >/dev/null
check_hello "$tmp/consumer/build/hello"
echo "ok: built as a meson subproject"
