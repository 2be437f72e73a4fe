#!/usr/bin/env bash
# Runs on the GPU machine (device tool), over the build and .carry/ that
# scripts/device-prepare.sh made here: the test programs, then each benchmark
# shape through forge bench and ../shared/bench/torch_ref.py in the same run,
# then a table. Logs and JSON lines go to $OUT.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export LD_LIBRARY_PATH="$root/build:$root/.carry/lib:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-/tmp/forge-device}
mkdir -p "$OUT"
status=0

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'

echo "== tests"
for t in "test_layer cpu" "test_layer cuda" test_errors test_rope test_safetensors "test_cli build/forge"; do
  set -- $t
  if ! "build/tests/$1" "${@:2}" >"$OUT/$1${2:+_$(basename "$2")}.log" 2>&1; then
    echo "FAILED: $t"; tail -20 "$OUT/$1${2:+_$(basename "$2")}.log"; status=1
  else
    echo "ok: $t ($(tail -1 "$OUT/$1${2:+_$(basename "$2")}.log"))"
  fi
done

echo "== forge run"
build/forge run | tee "$OUT/run.log" || status=1

echo "== benchmarks"
# shape: seq heads kv_heads head_dim hidden iters
shapes=(
  "32 4 4 32 128 200"
  "1 32 8 128 4096 50"
  "128 32 8 128 4096 20"
)
: >"$OUT/bench.jsonl"
for s in "${shapes[@]}"; do
  read -r seq h kv d hidden iters <<<"$s"
  build/forge bench layer --json --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
    --hidden "$hidden" --iters "$iters" --warmup 5 >>"$OUT/bench.jsonl" || status=1
  python3 .carry/torch_ref.py layer --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
    --hidden "$hidden" --dtype fp32 >>"$OUT/bench.jsonl" || status=1
done
python3 bench/table.py "$OUT/bench.jsonl" | tee "$OUT/table.md"
exit $status
