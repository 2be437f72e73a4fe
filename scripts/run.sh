#!/usr/bin/env bash
# Forge's main job: builds Forge and runs `forge run` (the seed layer on the
# best backend present, checked against the float64 reference). Arguments go
# to forge run.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
exec ./build/forge run "$@"
