#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool) over .carry/ (scripts/device-prepare.sh):
# issue 5's prefill sweep, forge bench prefill (the kernel as dispatched, and
# the portable mma.sync one) beside PyTorch's SDPA backends, every point in
# ROUNDS rounds of all four in turn (bench/prefill_sweep.py), then the table
# and plot of the medians. JSON lines to $OUT/prefill.jsonl, the plot to
# $OUT/prefill.svg, the table to $OUT/prefill.md.
#   bash scripts/prefill-sweep.sh [ROUNDS] [quick]   (default 3; quick: S = 2k and 8k only)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
rounds=${1:-3}
quick=""
[ "${2:-}" = quick ] && quick=--quick
python3 bench/prefill_sweep.py .carry/build/forge --rounds "$rounds" $quick >"$OUT/prefill.jsonl"
status=$?
python3 bench/plot_prefill.py "$OUT/prefill.jsonl" "$OUT/prefill.svg" | tee "$OUT/prefill.md"
exit $status
