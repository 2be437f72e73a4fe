#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool): times the tree's whole layer
# (forge bench layer, the README's shapes, eager and graph) and its paged
# decode step (forge bench step, the README's shapes) against a baseline
# commit's (.carry/baseline, from `scripts/device-prepare.sh --baseline
# REV`) in one run, the two builds taking turns ROUNDS times at each point.
# JSON lines, each tagged "build": "baseline" or "tree", to
# $OUT/ab-layer.jsonl and $OUT/ab-step.jsonl; tables of medians to stdout.
#   bash scripts/ab-layer.sh [ROUNDS]   (default 3)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
rounds=${1:-3}
echo "== A/B layer and step: baseline $(cat .carry/baseline/REV) against this tree, $rounds rounds"
# run BUILD ARGS...: forge of that build, its JSON line tagged
run() {
  local build=$1 dir=.carry/build
  shift
  [ "$build" = baseline ] && dir=.carry/baseline
  LD_LIBRARY_PATH="$root/$dir:$libs" "$dir/forge" "$@" | sed "s/^{/{\"build\": \"$build\", /"
}
# layer points: dtype seq heads kv_heads head_dim hidden iters (scripts/device.sh bench)
layers=(
  "fp32 32 4 4 32 128 500" "fp32 1 32 8 128 4096 200" "fp32 128 32 8 128 4096 100" "fp32 2048 32 8 128 4096 30"
  "bf16 1 32 8 128 4096 200" "bf16 128 32 8 128 4096 100" "bf16 2048 32 8 128 4096 50" "bf16 8192 32 8 128 4096 20"
)
: >"$OUT/ab-layer.jsonl"
for p in "${layers[@]}"; do
  read -r dt seq h kv d hidden iters <<<"$p"
  for r in $(seq "$rounds"); do
    for build in baseline tree; do
      run $build bench layer --json --dtype "$dt" --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
        --hidden "$hidden" --iters "$iters" --warmup 10 >>"$OUT/ab-layer.jsonl"
    done
  done
done
# step points: batch kv_len (bf16, GQA 32/8, D 128, hidden 4096)
: >"$OUT/ab-step.jsonl"
for p in "1 1024" "16 8192" "64 8192"; do
  read -r batch len <<<"$p"
  for r in $(seq "$rounds"); do
    for build in baseline tree; do
      run $build bench step --json --dtype bf16 --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 \
        --head-dim 128 --hidden 4096 --iters 100 --warmup 10 >>"$OUT/ab-step.jsonl"
    done
  done
done
for metric in eager_us graph_us; do python3 bench/ab_table.py "$OUT/ab-layer.jsonl" $metric dtype seq heads hidden; done
for metric in eager_us graph_us; do python3 bench/ab_table.py "$OUT/ab-step.jsonl" $metric batch kv_len; done
