#!/usr/bin/env bash
# Forge's test command: builds Forge twice, as released and under
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs every test in both
# through ctest. GPU tests say they were skipped where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

# The sanitizer build leaves CUDA out: the sanitizers check host code.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFORGE_SANITIZE=ON -DFORGE_CUDA=OFF
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
