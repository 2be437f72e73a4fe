#!/usr/bin/env bash
# Run here before a device call: builds Forge and copies into .carry/ what the
# GPU machine needs: the programs and library (.carry/build, without the
# object files), the Debian shared libraries they link (.carry/lib), and
# ../shared/bench/torch_ref.py. Then call the device tool with
#   carry: [".carry"]   command: bash scripts/device.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
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
for b in seed_graph_parts tile_bench; do [ -x build/$b ] && cp build/$b .carry/build/; done
cp build/tests/test_* .carry/build/tests/ 2>/dev/null || true
rm -f .carry/build/tests/*.cmake
cp ../shared/bench/torch_ref.py .carry/
du -sh .carry
