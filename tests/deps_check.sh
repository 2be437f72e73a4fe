#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The dependency rules of docs/ARCHITECTURE.md, checked on the sources and on
# the object files of a build (what each calls, from nm):
# - no two source files include each other in a loop, and no two object
#   files call each other in a loop;
# - the backends (src/cpu, src/cuda) neither include core.h nor call any
#   function of the core (src/core); the model engine (src/model) sits above
#   the core and the backends, and nothing of theirs calls it; the tokenizer
#   calls neither; the leaves (src/util) call only leaves;
# - no file name appears twice under src/, and none there is over 600 lines.
#   deps_check.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
cd "$src" || exit 1
status=0
fail() { echo "FAILED: $*"; status=1; }

# loops EDGES WHAT: edges "a b" (a depends on b) with a loop among them
loops() {
  local out
  out=$(tsort 2>&1 >/dev/null <<<"$1") || true
  [ -z "$out" ] || fail "$2 in a loop: $(grep -v 'input contains a loop' <<<"$out" | sed 's/^tsort: //' | sort -u | tr '\n' ' ')"
}

sources=$(find src -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
dups=$(for f in $sources; do basename "$f"; done | sort | uniq -d)
[ -z "$dups" ] || fail "file names used twice under src/: $dups"
for f in $sources; do
  lines=$(wc -l <"$f")
  [ "$lines" -le 600 ] || fail "$f has $lines lines, over 600"
done

# includes: "name" resolved against the file's folder, then by file name under src/
edges=""
for f in $sources; do
  for inc in $(sed -n 's/^#include "\(.*\)"/\1/p' "$f"); do
    to=""
    if [ -f "$(dirname "$f")/$inc" ]; then
      to=$(realpath --relative-to=. "$(dirname "$f")/$inc")
    elif [ -f "src/$inc" ]; then
      to=src/$inc
    else
      to=$(grep -m1 "/$(basename "$inc")\$" <<<"$sources" || true)
    fi
    [ -n "$to" ] && edges+="$f $to"$'\n'
  done
  case $f in src/cpu/* | src/cuda/*) grep -q '^#include "core.h"' "$f" && fail "$f (a backend) includes core.h" ;; esac
done
loops "$edges" "includes"

# calls: each object's undefined symbols, resolved to the object defining them
source_of() { sed 's#.*\.dir/\(src/.*\)\.o$#\1#' <<<"$1"; }
# the objects of the library and of the CUDA backend, as CMake lists them
objects=$(cat "$build"/CMakeFiles/{forge_objects,forge_cuda_objects,forge_sm90a}.dir/DependInfo.cmake 2>/dev/null |
  grep -o '"CMakeFiles/[a-z_0-9]*\.dir/src/[^"]*\.o"' | tr -d '"' | sed "s#^#$build/#" | sort -u)
[ -n "$objects" ] || fail "no object files under $build/CMakeFiles"
defs=$(for o in $objects; do nm -g --defined-only "$o" | awk -v s="$(source_of "$o")" 'NF == 3 {print $3, s}'; done | sort -u)
edges=""
for o in $objects; do
  from=$(source_of "$o")
  while read -r sym to; do
    [ "$to" = "$from" ] && continue
    edges+="$from $to"$'\n'
    case $from:$to in
      src/cpu/*:src/core/* | src/cuda/*:src/core/*) fail "$from (a backend) calls $sym of the core ($to)" ;;
      src/cpu/*:src/model/* | src/cuda/*:src/model/* | src/core/*:src/model/*)
        fail "$from calls $sym of the model engine ($to), which sits above it" ;;
      src/tokenizer/*:src/core/* | src/tokenizer/*:src/model/*) fail "$from (the tokenizer) calls $sym of $to" ;;
      src/util/*:src/util/*) ;;
      src/util/*:*) fail "$from (a leaf) calls $sym of $to" ;;
    esac
  done < <(nm -u "$o" | awk '{print $2}' | sort -u | join - <(echo "$defs"))
done
loops "$edges" "object files that call each other"
[ $status = 0 ] && echo "ok: $(wc -l <<<"$sources") sources, $(wc -l <<<"$objects") objects: no loops, backends call no core function"
exit $status
