#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run here before a device call: builds Forge and copies into .carry/ what the
# GPU machine needs: the programs and library (.carry/build, without the
# object files), the Debian shared libraries they link (.carry/lib), and
# ../shared/bench/torch_ref.py, packed to fit what the device tool carries.
# Then call the device tool with
#   carry: [".carry"]   command: bash scripts/device.sh
# With --baseline REV it also builds commit REV (in a scratch worktree) and
# puts its forge, library and tile_bench into .carry/baseline, for
# scripts/ab-prefill.sh to time against this tree in the same call.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
baseline=""
[ "${1:-}" = --baseline ] && baseline=${2:?--baseline needs a commit}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
rm -rf .carry && mkdir -p .carry/lib
for bin in build/forge build/tests/test_*; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -E 'openblas|cjson|cmocka|gfortran|quadmath' | while read -r lib; do
  cp -L "$lib" .carry/lib/
done
mkdir -p .carry/build/tests
cp -P build/forge build/example_minimal build/libforge.so* .carry/build/
for b in seed_graph_parts tile_bench paged_stream_probe; do [ -x build/$b ] && cp build/$b .carry/build/; done
cp build/tests/test_* .carry/build/tests/ 2>/dev/null || true
rm -f .carry/build/tests/*.cmake
cp ../shared/bench/torch_ref.py .carry/
tar cJf .carry/lib.tar.xz -C .carry lib && rm -r .carry/lib  # device-env.sh unpacks it
if [ -n "$baseline" ]; then
  tree=$(mktemp -d)/forge-baseline
  git worktree add --detach "$tree" "$baseline" >/dev/null
  cmake -S "$tree" -B "$tree/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$tree/build" -j "$(nproc)" --target forge_cli tile_bench >/dev/null
  mkdir -p .carry/baseline
  cp -P "$tree"/build/forge "$tree"/build/libforge.so* "$tree"/build/tile_bench .carry/baseline/
  git -C "$tree" rev-parse --short HEAD >.carry/baseline/REV
  git worktree remove --force "$tree"
fi
du -sh .carry
