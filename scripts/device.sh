#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool), over the .carry/ that
# scripts/device-prepare.sh made here: the test programs (CPU and GPU),
# compute-sanitizer on a small grid, forge run, then each benchmark shape
# through forge bench and ../shared/bench/torch_ref.py in the same run, and a
# table. JSON lines and tables go to $OUT, the logs packed into
# $OUT/device-logs.tgz (the device tool returns at most 8 files).
#   bash scripts/device.sh [tests|sanitize|bench|step]...   (default: the first three)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
build=.carry/build
status=0
parts=${*:-tests sanitize bench}
logs=$OUT/logs
mkdir -p "$logs"
trap 'tar czf "$OUT/device-logs.tgz" -C "$OUT" logs && rm -r "$logs"' EXIT

# run NAME COMMAND...: logs to $logs/NAME.log, prints one line
run() {
  local name=$1; shift
  if "$@" >"$logs/$name.log" 2>&1; then
    echo "ok: $name ($(grep -E 'PASSED|skipped|ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$name.log" | tail -1))"
  else
    echo "FAILED: $name"; tail -25 "$logs/$name.log"; status=1
  fi
}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'

if [[ " $parts " == *" tests "* ]]; then
  echo "== tests"
  run layer_cpu $build/tests/test_layer cpu
  run layer_cuda_flash $build/tests/test_layer cuda flash
  run layer_cuda_unfused $build/tests/test_layer cuda unfused
  run cuda $build/tests/test_cuda
  run attention_cpu $build/tests/test_attention cpu
  run attention_cuda $build/tests/test_attention cuda
  run attention_cuda_portable $build/tests/test_attention cuda portable
  run paged_cpu $build/tests/test_paged cpu
  run paged_cuda $build/tests/test_paged cuda
  run layer_paged_cpu $build/tests/test_layer_paged cpu
  run layer_paged_cuda $build/tests/test_layer_paged cuda
  grep "largest errors" "$logs/attention_cuda.log" "$logs/attention_cuda_portable.log" "$logs/paged_cuda.log"
  run errors $build/tests/test_errors
  run rope $build/tests/test_rope
  run safetensors $build/tests/test_safetensors
  run cli $build/tests/test_cli $build/forge
  run example $build/example_minimal
  run forge_run $build/forge run
  cat "$logs/forge_run.log"
  run forge_check $build/forge check
  tail -1 "$logs/forge_check.log"
fi

if [[ " $parts " == *" sass "* || " $parts " == *" tests "* ]]; then
  echo "== Hopper kernel disassembly (HGMMA instructions in flash_wgmma_kernel)"
  cuobjdump -sass $build/libforge.so | awk '/Function :/ {f = /flash_wgmma/} f' | grep -c HGMMA || status=1
fi

if [[ " $parts " == *" sanitize "* ]]; then
  echo "== compute-sanitizer"
  cs="compute-sanitizer --error-exitcode 1"
  run memcheck_flash $cs --tool memcheck $build/tests/test_layer cuda flash
  run memcheck_unfused $cs --tool memcheck $build/tests/test_layer cuda unfused
  run memcheck_attention $cs --tool memcheck $build/tests/test_attention cuda
  run memcheck_attention_portable $cs --tool memcheck $build/tests/test_attention cuda portable
  run memcheck_paged $cs --tool memcheck $build/tests/test_paged cuda
  run memcheck_layer_paged $cs --tool memcheck $build/tests/test_layer_paged cuda
  run racecheck_decode $cs --tool racecheck $build/forge bench decode --kv-len 700 --heads 8 --kv-heads 2 --head-dim 128 --batch 2 --iters 1 --warmup 0
  run racecheck_step $cs --tool racecheck $build/forge bench step --kv-len 300 --heads 8 --kv-heads 2 --head-dim 64 --batch 3 --iters 1 --warmup 0 --dtype fp32
  run racecheck_attention $cs --tool racecheck $build/forge bench prefill --seq 300 --heads 2 --head-dim 128 --iters 1 --warmup 0
  run racecheck_attention_d64 $cs --tool racecheck $build/forge bench prefill --seq 1500 --heads 2 --head-dim 64 --iters 1 --warmup 0
  run racecheck_attention_long $cs --tool racecheck $build/forge bench prefill --seq 1500 --heads 2 --head-dim 128 --no-causal --iters 1 --warmup 0
  run racecheck_attention_portable $cs --tool racecheck $build/forge bench prefill --seq 300 --heads 2 --head-dim 96 --iters 1 --warmup 0
  run racecheck $cs --tool racecheck $build/forge bench layer --seq 100 --heads 4 --kv-heads 2 --head-dim 64 --iters 2 --warmup 0
  run racecheck_bf16 $cs --tool racecheck $build/forge bench layer --dtype bf16 --seq 100 --heads 4 --kv-heads 2 --head-dim 128 --iters 1 --warmup 0
  run racecheck_d256 $cs --tool racecheck $build/forge bench layer --seq 40 --heads 2 --kv-heads 1 --head-dim 256 --iters 1 --warmup 0
  run synccheck $cs --tool synccheck $build/forge run --iters 2
  run initcheck $cs --tool initcheck $build/forge run --iters 2
fi

if [[ " $parts " == *" bench "* ]]; then
  echo "== benchmarks"
  # shape: dtype seq heads kv_heads head_dim hidden iters
  shapes=(
    "fp32 32 4 4 32 128 500"
    "fp32 1 32 8 128 4096 200"
    "fp32 128 32 8 128 4096 100"
    "fp32 2048 32 8 128 4096 30"
    "bf16 1 32 8 128 4096 200"
    "bf16 128 32 8 128 4096 100"
    "bf16 2048 32 8 128 4096 50"
    "bf16 8192 32 8 128 4096 20"
  )
  : >"$OUT/bench.jsonl"
  for s in "${shapes[@]}"; do
    read -r dt seq h kv d hidden iters <<<"$s"
    $build/forge bench layer --json --dtype "$dt" --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
      --hidden "$hidden" --iters "$iters" --warmup 10 >>"$OUT/bench.jsonl" || status=1
    python3 .carry/torch_ref.py layer --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
      --hidden "$hidden" --dtype "$dt" >>"$OUT/bench.jsonl" || status=1
  done
  python3 bench/table.py "$OUT/bench.jsonl" | tee "$OUT/table.md"
  $build/seed_graph_parts | tee "$logs/seed_graph_parts.txt" || status=1
fi
if [[ " $parts " == *" step "* ]]; then
  echo "== decode step of the layer over a paged cache (GQA 32/8, D 128, hidden 4096, bf16)"
  : >"$OUT/step.jsonl"
  for shape in "1 1024" "1 8192" "16 1024" "16 8192" "64 1024" "64 8192"; do
    read -r batch len <<<"$shape"
    $build/forge bench step --json --dtype bf16 --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 \
      --head-dim 128 --hidden 4096 --iters 100 --warmup 10 | tee -a "$OUT/step.jsonl" || status=1
    # PyTorch's attention alone over the same cache, for scale (it has no paged layer step)
    python3 .carry/torch_ref.py decode --dtype bf16 --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 \
      --head-dim 128 | tee -a "$OUT/step.jsonl" || status=1
  done
fi
exit $status
