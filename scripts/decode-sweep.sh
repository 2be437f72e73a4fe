#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool) over .carry/ (scripts/device-prepare.sh):
# issue 6's decode sweep, forge bench decode beside PyTorch's SDPA backends,
# every point in ROUNDS rounds of all sides in turn (bench/decode_sweep.py),
# then the table and plot of the medians. JSON lines to $OUT/decode.jsonl,
# the plot to $OUT/decode.svg, the table to $OUT/decode.md.
#   bash scripts/decode-sweep.sh [ROUNDS] [PAGE_SIZE]   (default 3, 16)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
python3 bench/decode_sweep.py .carry/build/forge --rounds "${1:-3}" --page-size "${2:-16}" \
  >"$OUT/decode.jsonl"
status=$?
python3 bench/plot_decode.py "$OUT/decode.jsonl" "$OUT/decode.svg" | tee "$OUT/decode.md"
exit $status
