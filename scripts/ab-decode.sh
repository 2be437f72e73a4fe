#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool): times the tree's forge bench decode
# (.carry/build) against a baseline commit's (.carry/baseline, from
# `scripts/device-prepare.sh --baseline REV`) in one run, the two builds
# taking turns ROUNDS times at each point: issue 6's sweep (bf16, GQA 32/8,
# D = 128) and a few other head dims and dtypes. JSON lines, each tagged
# "build": "baseline" or "tree", to $OUT/ab-decode.jsonl; a table of
# medians (TB/s) to stdout.
#   bash scripts/ab-decode.sh [ROUNDS] [PAGE_SIZE]   (default 3, 16)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
rounds=${1:-3}
page=${2:-16}
echo "== A/B decode: baseline $(cat .carry/baseline/REV) against this tree, $rounds rounds, pages of $page"
# points: dtype B L H K D
points=(
  "bf16 1 1024 32 8 128" "bf16 1 8192 32 8 128" "bf16 1 32768 32 8 128" "bf16 16 1024 32 8 128"
  "bf16 16 8192 32 8 128" "bf16 16 32768 32 8 128" "bf16 64 1024 32 8 128" "bf16 64 8192 32 8 128"
  "bf16 16 8192 32 8 64" "bf16 16 8192 16 4 256" "fp16 16 8192 32 8 96" "fp16 16 8192 32 32 128"
)
: >"$OUT/ab-decode.jsonl"
for p in "${points[@]}"; do
  read -r dt b l h k d <<<"$p"
  for r in $(seq "$rounds"); do
    for build in baseline tree; do
      dir=.carry/build
      [ $build = baseline ] && dir=.carry/baseline
      LD_LIBRARY_PATH="$root/$dir:$libs" "$dir/forge" bench decode --json --dtype "$dt" --batch "$b" --kv-len "$l" \
        --heads "$h" --kv-heads "$k" --head-dim "$d" --page-size "$page" |
        sed "s/^{/{\"build\": \"$build\", /" >>"$OUT/ab-decode.jsonl"
    done
  done
done
python3 bench/ab_table.py "$OUT/ab-decode.jsonl" TBps dtype batch kv_len heads kv_heads head_dim
