#!/usr/bin/env bash
# What an install puts beside the library for users of the two binaries: --version on
# each, their man pages (where help2man was found), the bash and zsh completions, LICENSE.
set -euo pipefail
build=$1 man_pages=$2  # man_pages: "man" when the build made them
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >/dev/null
option() { meson introspect "$build" --buildoptions | python3 -c "import json, sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == '$1'))"; }
prefix=$tmp/root$(option prefix)
bindir=$prefix/$(option bindir) datadir=$prefix/$(option datadir) mandir=$prefix/$(option mandir)
version=$(meson introspect "$build" --projectinfo | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
export LD_LIBRARY_PATH=$prefix/$(option libdir)

for program in parallelcode parallelcode-supervisor; do
  out=$("$bindir/$program" --version) || fail "$program --version exited $?"
  [ "$out" = "$program $version" ] || fail "$program --version printed '$out', not '$program $version'"
done
echo "ok: both binaries' --version say $version"

[ -f "$datadir/doc/parallelcode/LICENSE" ] && grep -q '^MIT License' "$datadir/doc/parallelcode/LICENSE" ||
  fail "no MIT LICENSE in share/doc/parallelcode"
echo "ok: LICENSE installed"

if [ "$man_pages" = man ]; then
  # Each page renders, and carries the version and options its --help has.
  check_page() {
    local page=$mandir/man1/$1.1 text
    [ -f "$page" ] || fail "no man page $page"
    grep -q '^\.TH' "$page" || fail "$page has no .TH"
    text=$(MANWIDTH=100 man -l "$page" 2>/dev/null | col -b) || fail "man -l $page failed"
    shift
    for want in "$version" "$@"; do
      grep -qF -- "$want" <<<"$text" || fail "the rendered $page lacks '$want'"
    done
  }
  check_page parallelcode --socket --version submit map status stop queue
  check_page parallelcode-supervisor --workers --socket --plugin --max-worker-rss --version
  echo "ok: both man pages render with their options"
else
  echo "skipped: man pages (no help2man)"
fi

bash_dir=$datadir/bash-completion/completions
for program in parallelcode parallelcode-supervisor; do
  [ -f "$bash_dir/$program" ] || fail "no bash completion $bash_dir/$program"
done
# COMPLETE asks the completion function for WORDS (the last being completed) and prints its answer.
complete_bash() {
  local file=$1 function=$2; shift 2
  bash --norc -c 'source "$1"; complete -p "$3" >/dev/null || exit 1; shift 2
                  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); "$0"; echo "${COMPREPLY[*]}"' \
    "$function" "$file" unused "$@"
}
out=$(complete_bash "$bash_dir/parallelcode" _parallelcode parallelcode st)
[ "$out" = "status stop" ] || fail "bash: 'parallelcode st<TAB>' gave '$out', not 'status stop'"
out=$(complete_bash "$bash_dir/parallelcode" _parallelcode parallelcode --socket /tmp/s queue d)
[ "$out" = dead ] || fail "bash: 'parallelcode --socket S queue d<TAB>' gave '$out', not 'dead'"
out=$(complete_bash "$bash_dir/parallelcode" _parallelcode parallelcode map --un)
[ "$out" = --unordered ] || fail "bash: 'parallelcode map --un<TAB>' gave '$out'"
out=$(complete_bash "$bash_dir/parallelcode-supervisor" _parallelcode_supervisor parallelcode-supervisor --max-worker)
[ "$out" = "--max-workers --max-worker-rss" ] || fail "bash: 'parallelcode-supervisor --max-worker<TAB>' gave '$out'"
echo "ok: bash completes subcommands and options of both binaries"

zsh_dir=$datadir/zsh/site-functions
for f in _parallelcode _parallelcode-supervisor; do
  [ -f "$zsh_dir/$f" ] || fail "no zsh completion $zsh_dir/$f"
  zsh -n "$zsh_dir/$f" || fail "zsh cannot parse $f"
done
# compinit finds both in fpath and binds each to its command (#compdef).
out=$(zsh -f -c 'fpath=("$1" $fpath); autoload -U compinit; compinit -u -d "$2"; print -r -- $_comps[parallelcode] $_comps[parallelcode-supervisor]' \
  zsh "$zsh_dir" "$tmp/zcompdump")
[ "$out" = "_parallelcode _parallelcode-supervisor" ] || fail "zsh compinit bound '$out'"
echo "ok: zsh's compinit loads both completions"
