#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Forge's main job: installs what the build needs (scripts/setup.sh), builds
# Forge and runs `forge run` (the seed layer on the best backend present,
# checked against the float64 reference). Arguments go to forge run. The
# build's output is shown when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
[ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null && export PATH="/usr/local/cuda/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j "$(nproc 2>/dev/null || echo 2)"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "forge: the build failed (its output is above)" >&2
  exit 1
fi
exec ./build/forge run "$@"
