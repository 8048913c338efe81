#!/usr/bin/env bash
# The shared library exports namespace parallelcode only, and of its detail
# namespace only what the installed headers' templates and inline code call.
set -euo pipefail
lib=$1

# detail:: entities allowed out, by prefix of their demangled name, each with its caller.
allowed_detail=(
  'parallelcode::detail::job_state_base'      # job_state<R> derives from it; job_handle calls it
  'parallelcode::detail::allocate_bytes('     # byte_buffer (buffer.hpp)
  'parallelcode::detail::free_bytes('         # byte_buffer (buffer.hpp)
  'parallelcode::detail::codec_error'         # thrown by encode/decode in the user's code, caught in ours
  'parallelcode::detail::json_input_archive'  # from_json, in every task's invoke_json (json.hpp)
  'parallelcode::detail::compact_json_value(' # to_json (json.hpp)
  'parallelcode::detail::json_string[abi:cxx11](' # to_json (json.hpp)
  'parallelcode::detail::schema_archive'      # json_schema<T>, in every task's entry (schema.hpp)
  'parallelcode::detail::readable_type_name'  # run_map_chunk, in the worker (map.hpp)
  'parallelcode::detail::map_chunk_size('     # pool::map (pool.hpp)
  'parallelcode::detail::register_task('      # PARALLELCODE_TASK (task.hpp)
  'parallelcode::detail::checked_task('       # pool::task<R> (pool.hpp)
  'parallelcode::detail::trim_buffer_cache('  # tests/soak.cpp's leak check
  'parallelcode::detail::track_fd('           # the daemon's unique_fd, from lib/src
  'parallelcode::detail::untrack_fd('         # the daemon's unique_fd, from lib/src
  'parallelcode::detail::pin_scope::'         # pool::enqueue pins a job's shared_bytes (pool.hpp)
  'parallelcode::detail::prefer_huge_pages('  # decoding big vectors (archive.hpp)
)

[ -e "$lib" ] || { echo "FAIL: no library at $lib"; exit 1; }
case $lib in *.a) echo "skipped: a static build exports nothing"; exit 77 ;; esac
mangled=$(nm -D --defined-only "$lib" | awk '{ print $NF }')
[ -n "$mangled" ] || { echo "FAIL: $lib exports nothing"; exit 1; }

bad=0 count=0
while read -r sym; do
  count=$((count + 1))
  # Functions, data, typeinfo and vtables of namespace parallelcode; nothing else.
  case $sym in
    _ZN12parallelcode* | _ZNK12parallelcode* | _ZT[ISV]N12parallelcode*) ;;
    *) echo "outside namespace parallelcode: $sym ($(c++filt "$sym"))"; bad=1; continue ;;
  esac
  case $sym in
    _ZN12parallelcode6detail* | _ZNK12parallelcode6detail* | _ZT[ISV]N12parallelcode6detail*) ;;
    *) continue ;;  # the API itself
  esac
  name=$(c++filt "$sym")
  name=${name#typeinfo name for }
  name=${name#typeinfo for }
  name=${name#vtable for }
  # A function template's demangled name starts with its return type.
  [[ $name == parallelcode::detail::* ]] || name=parallelcode::detail::${name#* parallelcode::detail::}
  ok=0
  for prefix in "${allowed_detail[@]}"; do
    [[ $name == "$prefix"* ]] && { ok=1; break; }
  done
  [ $ok = 1 ] || { echo "detail symbol no header needs: $name"; bad=1; }
done <<<"$mangled"

[ $bad = 0 ] || { echo "FAIL: $lib exports symbols beyond the API"; exit 1; }
echo "ok: $count symbols, all of namespace parallelcode, detail ones only as the headers need"
