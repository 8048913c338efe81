#!/usr/bin/env bash
# A program outside the tree uses parallelcode three ways: built against the installed
# headers, library and parallelcode.pc, as a meson subproject, and with CMake's
# find_package against the installed tree (moved: installed with --destdir).
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
# Runs a command quietly; on failure shows what it said.
quiet() {
  "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log"; echo "FAIL: $*"; exit 1; }
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

# 3. find_package(parallelcode CONFIG) from the installed tree, found through CMAKE_PREFIX_PATH
# though it sits under the --destdir, not at the prefix it was built for.
prefix=$(meson introspect "$build" --buildoptions | python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
version=$(meson introspect "$build" --projectinfo | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
mkdir -p "$tmp/cmake"
cp "$src/examples/hello.cpp" "$tmp/cmake/"
cat > "$tmp/cmake/version.cpp" <<'CPP'
#include <parallelcode/parallelcode.hpp>
#include <cstdio>
int main() {
  const auto v = parallelcode::version();
  std::printf("%.*s\n", static_cast<int>(v.size()), v.data());
  return v == PARALLELCODE_VERSION_STRING ? 0 : 1;
}
CPP
remote=OFF
if [ -f "$pcdir/parallelcode-remote.pc" ]; then
  remote=ON
  cp "$tmp/remote.cpp" "$tmp/cmake/"
fi
cat > "$tmp/cmake/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(consumer CXX)
option(WITH_REMOTE "parallelcode::remote too" OFF)
if(WITH_REMOTE)
  find_package(parallelcode CONFIG REQUIRED COMPONENTS remote)
else()
  find_package(parallelcode CONFIG REQUIRED)
endif()
add_executable(hello hello.cpp)
target_link_libraries(hello PRIVATE parallelcode::parallelcode)
set_target_properties(hello PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
# No CXX_STANDARD: the imported target asks for C++20 itself.
add_executable(version version.cpp)
target_link_libraries(version PRIVATE parallelcode::parallelcode)
if(WITH_REMOTE)
  add_executable(remote remote.cpp)
  target_link_libraries(remote PRIVATE parallelcode::remote)
  set_target_properties(remote PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
endif()
CMAKE
quiet cmake -S "$tmp/cmake" -B "$tmp/cmake/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/root$prefix" \
  -DWITH_REMOTE=$remote -DCMAKE_CXX_FLAGS="${sanitize_flags[*]}"
quiet cmake --build "$tmp/cmake/build"
check_hello env LD_LIBRARY_PATH="$libdir" "$tmp/cmake/build/hello"
out=$(env LD_LIBRARY_PATH="$libdir" "$tmp/cmake/build/version" 2>/dev/null) ||
  { echo "FAIL: parallelcode::version() '$out' is not the headers' PARALLELCODE_VERSION_STRING"; exit 1; }
[ "$out" = "$version" ] || { echo "FAIL: parallelcode::version() is '$out', the project's version $version"; exit 1; }
echo "ok: built with CMake's find_package(parallelcode) against the installed tree; version() is $out"
if [ $remote = ON ]; then
  out=$(env LD_LIBRARY_PATH="$libdir" "$tmp/cmake/build/remote" 2>/dev/null)
  [ "$out" = queue_error ] || { echo "FAIL: the CMake-built remote consumer printed '$out'"; exit 1; }
  echo "ok: parallelcode::remote built with CMake against the installed tree"
fi

# The version file: this version is found; the next minor one, which before 1.0 may break the API, is not.
mkdir -p "$tmp/cmake-version"
cat > "$tmp/cmake-version/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(wants CXX)  # a language: CMake searches lib/<multiarch>/cmake only then
find_package(parallelcode ${WANT} CONFIG REQUIRED)
CMAKE
IFS=. read -r major minor _ <<<"$version"
next=$major.$((minor + 1))
[ "$major" = 0 ] || next=$((major + 1)).0
quiet cmake -S "$tmp/cmake-version" -B "$tmp/cmake-version/ok" -DCMAKE_PREFIX_PATH="$tmp/root$prefix" -DWANT="$version"
if cmake -S "$tmp/cmake-version" -B "$tmp/cmake-version/next" -DCMAKE_PREFIX_PATH="$tmp/root$prefix" -DWANT="$next" >"$tmp/log" 2>&1; then
  echo "FAIL: find_package(parallelcode $next) accepted version $version"; exit 1
fi
grep -q 'compatible with requested version' "$tmp/log" || { cat "$tmp/log"; echo "FAIL: find_package(parallelcode $next) failed for another reason"; exit 1; }
echo "ok: find_package(parallelcode $version) is found, $next is not"
