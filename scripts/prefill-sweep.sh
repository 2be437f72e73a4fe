#!/usr/bin/env bash
# Runs on the GPU machine (device tool) over .carry/ (scripts/device-prepare.sh):
# forge bench prefill (the kernel as dispatched, and the portable mma.sync
# one) beside PyTorch's SDPA backends over issue 5's sweep,
# in one run: S = 512 .. 16k with B*S = 16k tokens, head dims 64 and 128 with
# H*D = 2048, causal and not, and GQA 32/8 at head dim 128 (causal).
# JSON lines to $OUT/prefill.jsonl; bench/plot_prefill.py draws them.
#   bash scripts/prefill-sweep.sh [quick]   (quick: S = 2k and 8k only)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
forge=.carry/build/forge
ref=.carry/torch_ref.py
seqs="512 1024 2048 4096 8192 16384"
[ "${1:-}" = quick ] && seqs="2048 8192"
: >"$OUT/prefill.jsonl"
status=0
# point B S H K D CAUSAL(1|0)
point() {
  local b=$1 s=$2 h=$3 k=$4 d=$5 causal=$6 flag=""
  [ "$causal" = 0 ] && flag=--no-causal
  for kernel in auto portable; do
    $forge bench prefill --json --dtype bf16 --batch "$b" --seq "$s" --heads "$h" --kv-heads "$k" \
      --head-dim "$d" $flag --kernel $kernel --iters 20 --warmup 3 >>"$OUT/prefill.jsonl" || status=1
  done
  if [ "$causal" = 1 ]; then
    python3 $ref prefill --batch "$b" --seq "$s" --heads "$h" --kv-heads "$k" --head-dim "$d" \
      --dtype bf16 --iters 20 --warmup 3 | grep -v '"torch-math"' >>"$OUT/prefill.jsonl" || status=1
  else
    python3 bench/torch_prefill_noncausal.py $ref --batch "$b" --seq "$s" --heads "$h" --kv-heads "$k" \
      --head-dim "$d" --iters 20 --warmup 3 >>"$OUT/prefill.jsonl" || status=1
  fi
}
for d in 64 128; do
  h=$((2048 / d))
  for causal in 1 0; do
    for s in $seqs; do point $((16384 / s)) "$s" "$h" "$h" "$d" "$causal"; done
  done
done
for s in $seqs; do point $((16384 / s)) "$s" 32 8 128 1; done
python3 bench/plot_prefill.py "$OUT/prefill.jsonl" "$OUT/prefill.svg" | tee "$OUT/prefill.md"
exit $status
