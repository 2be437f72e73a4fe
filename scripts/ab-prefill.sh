#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool): times the tree's build (.carry/build)
# against a baseline commit's (.carry/baseline, from
# `scripts/device-prepare.sh --baseline REV`) in one run, so that clocks
# and power draw are shared: the kernels alone (tile_bench), then forge
# bench prefill at each point, the two builds taking turns ROUNDS times.
# JSON lines, each tagged "build": "baseline" or "tree", to $OUT/ab.jsonl;
# a table of medians over the rounds to stdout.
#   [KERNELS="auto portable"] bash scripts/ab-prefill.sh [ROUNDS]   (default 2)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
rounds=${1:-2}
echo "== A/B: baseline $(cat .carry/baseline/REV) against this tree, $rounds rounds"
# points: B S H K D causal(1|0)
points=(
  "2 8192 16 16 128 1" "32 512 16 16 128 0" "16 1024 16 16 128 0" "8 2048 16 16 128 0"
  "1 16384 16 16 128 0" "1 16384 32 8 128 1" "8 2048 16 16 128 1" "2 8192 16 16 128 0"
  "2 8192 32 32 64 1" "16 1024 32 32 64 1"
)
: >"$OUT/ab.jsonl"
dir_of() { if [ "$1" = tree ]; then echo .carry/build; else echo .carry/baseline; fi; }
for r in $(seq "$rounds"); do
  for build in baseline tree; do
    dir=$(dir_of $build)
    echo "-- tile_bench, $build, round $r"
    LD_LIBRARY_PATH="$root/$dir:$libs" "$dir/tile_bench"
  done
done
for p in "${points[@]}"; do
  read -r b s h k d causal <<<"$p"
  flag=""
  [ "$causal" = 0 ] && flag=--no-causal
  for r in $(seq "$rounds"); do
    for build in baseline tree; do
      dir=$(dir_of $build)
      for kernel in ${KERNELS:-auto portable}; do
        LD_LIBRARY_PATH="$root/$dir:$libs" "$dir/forge" bench prefill --json --dtype bf16 --batch "$b" --seq "$s" \
          --heads "$h" --kv-heads "$k" --head-dim "$d" $flag --kernel $kernel --iters 20 --warmup 3 |
          sed "s/^{/{\"build\": \"$build\", /" >>"$OUT/ab.jsonl"
      done
    done
  done
done
python3 bench/ab_table.py "$OUT/ab.jsonl" TFLOPs impl head_dim heads kv_heads causal seq
