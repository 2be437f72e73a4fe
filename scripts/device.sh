#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs on the GPU machine (device tool), over the .carry/ that
# scripts/device-prepare.sh made here: the test programs (CPU and GPU),
# compute-sanitizer on a small grid, forge run, then each benchmark shape
# through forge bench and bench/torch_baseline.py in the same run, and a
# table. JSON lines and tables go to $OUT, the logs packed into
# $OUT/device-logs.tgz (the device tool returns at most 8 files).
#   bash scripts/device.sh [tests|sm80|sanitize|bench|baseline|step|tokenizer|model|modelbench|modelfiles|modelprofile|stepprofile|scoreopts|tp]...
#   (default: tests sm80 sanitize bench tokenizer model)
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
build=.carry/build
status=0
parts=${*:-tests sm80 sanitize bench tokenizer model}
logs=$OUT/logs
mkdir -p "$logs"
trap 'tar czf "$OUT/device-logs.tgz" -C "$OUT" logs && rm -r "$logs"' EXIT

# run NAME COMMAND...: logs to $logs/NAME.log, prints one line; a command
# still running after run_limit seconds is killed and fails, so that a
# hung kernel cannot hold the device for the rest of the call
run_limit=240
run() {
  local name=$1; shift
  if timeout -k 5 "$run_limit" "$@" >"$logs/$name.log" 2>&1; then
    echo "ok: $name ($(grep -E 'PASSED|skipped|ERROR SUMMARY|RACECHECK SUMMARY' "$logs/$name.log" | tail -1))"
  else
    echo "FAILED: $name"; tail -25 "$logs/$name.log"; status=1
  fi
}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'

# gpu_tests BUILD TAG: the test programs of a build tree, logs named TAG_*
gpu_tests() {
  local b=$1 t=$2
  run ${t}layer_cpu $b/tests/test_layer cpu
  run ${t}layer_cuda_flash $b/tests/test_layer cuda flash
  run ${t}layer_cuda_unfused $b/tests/test_layer cuda unfused
  run ${t}cuda $b/tests/test_cuda
  run ${t}attention_cpu $b/tests/test_attention cpu
  run ${t}attention_cuda $b/tests/test_attention cuda
  run ${t}attention_cuda_portable $b/tests/test_attention cuda portable
  run ${t}paged_cpu $b/tests/test_paged cpu
  run ${t}paged_cuda $b/tests/test_paged cuda
  run ${t}layer_paged_cpu $b/tests/test_layer_paged cpu
  run ${t}layer_paged_cuda $b/tests/test_layer_paged cuda
  grep "largest errors" "$logs/${t}attention_cuda.log" "$logs/${t}attention_cuda_portable.log" "$logs/${t}paged_cuda.log"
  run ${t}errors $b/tests/test_errors
  run ${t}rope $b/tests/test_rope
  run ${t}model $b/tests/test_model cpu
  run ${t}model_cuda $b/tests/test_model cuda
  run ${t}safetensors $b/tests/test_safetensors
  run ${t}cli $b/tests/test_cli $b/forge README.md
  run ${t}example $b/example_minimal
  run ${t}forge_run $b/forge run
  cat "$logs/${t}forge_run.log"
  run ${t}support $b/tests/test_support
  run ${t}forge_check $b/forge check
  tail -1 "$logs/${t}forge_check.log"
}

if [[ " $parts " == *" tests "* ]]; then
  echo "== tests"
  gpu_tests $build ""
fi

if [[ " $parts " == *" sm80 "* ]]; then
  # The build for compute_80 alone (PTX the driver compiles here): what GPUs
  # before Hopper run, with no Hopper kernel and no sm_90 instruction.
  echo "== tests of the compute_80 build"
  sm80=.carry/build-sm80
  export LD_LIBRARY_PATH="$root/$sm80:$libs"
  gpu_tests $sm80 sm80_
  echo "== benchmarks of the compute_80 build beside the sm_90 build's"
  : >"$OUT/sm80.jsonl"
  for b in $build $sm80; do
    export LD_LIBRARY_PATH="$root/$b:$libs"
    for s in "1 8192 16 16 128 1" "8 2048 16 16 256 1" "4 4096 32 32 96 1" "2 8192 16 16 64 0"; do
      read -r batch seq h kv d causal <<<"$s"
      flag=""; [ "$causal" = 0 ] && flag=--no-causal
      $b/forge bench prefill --json --batch "$batch" --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
        $flag --iters 20 | sed "s|}\$|, \"build\": \"$(basename $b)\"}|" >>"$OUT/sm80.jsonl" || status=1
    done
    for s in "1 8192" "16 8192" "64 1024"; do
      read -r batch len <<<"$s"
      $b/forge bench decode --json --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 --head-dim 128 \
        --iters 50 | sed "s|}\$|, \"build\": \"$(basename $b)\"}|" >>"$OUT/sm80.jsonl" || status=1
    done
    $b/forge bench layer --json --dtype bf16 --seq 2048 --heads 32 --kv-heads 8 --head-dim 128 --hidden 4096 \
      --iters 20 | sed "s|}\$|, \"build\": \"$(basename $b)\"}|" >>"$OUT/sm80.jsonl" || status=1
  done
  export LD_LIBRARY_PATH="$root/$build:$libs"
  cat "$OUT/sm80.jsonl"
fi

if [[ " $parts " == *" sass "* || " $parts " == *" tests "* ]]; then
  echo "== Hopper kernel disassembly (HGMMA instructions in flash_wgmma_kernel)"
  cuobjdump -sass $build/libforge-llm-cuda.so | awk '/Function :/ {f = /flash_wgmma/} f' | grep -c HGMMA || status=1
fi

if [[ " $parts " == *" sanitize "* ]]; then
  echo "== compute-sanitizer"
  cs="compute-sanitizer --error-exitcode 1"
  run_limit=540 # the sanitizers run programs 10-100 times slower
  run memcheck_flash $cs --tool memcheck $build/tests/test_layer cuda flash
  run memcheck_unfused $cs --tool memcheck $build/tests/test_layer cuda unfused
  run memcheck_attention $cs --tool memcheck $build/tests/test_attention cuda
  run memcheck_attention_portable $cs --tool memcheck $build/tests/test_attention cuda portable
  # test_paged asks for a 2 TiB pool on purpose: the failed cudaMalloc is
  # not reported as an API error; kernels' memory errors still are
  run memcheck_paged $cs --tool memcheck --report-api-errors no $build/tests/test_paged cuda
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
  run memcheck_model $cs --tool memcheck $build/tests/test_model cuda
  # a model's steps in fp32: in bf16 racecheck reports shared-memory hazards
  # inside cuBLASLt's own nvjet_sm90_tst_* GEMMs (library code), and with
  # those kernels filtered out (--kernel-name-exclude) the sanitizer fails
  # on a hardware exception of its own; the 16-bit paged kernels are
  # racechecked above (racecheck_decode)
  run racecheck_model $cs --tool racecheck $build/forge bench model --shape smollm2-135m --layers 2 --dtype fp32 --prompt 20 --new 3
  # and the draws' fronts (sample_front) with every warper and a penalty
  run racecheck_sample $cs --tool racecheck $build/forge bench model --shape smollm2-135m --layers 2 --dtype fp32 \
    --prompt 20 --new 3 --temperature 0.8 --top-k 40 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.1
  run synccheck $cs --tool synccheck $build/forge run --iters 2
  run initcheck $cs --tool initcheck $build/forge run --iters 2
  run_limit=240
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
    python3 bench/torch_baseline.py layer --seq "$seq" --heads "$h" --kv-heads "$kv" --head-dim "$d" \
      --hidden "$hidden" --dtype "$dt" >>"$OUT/bench.jsonl" || status=1
  done
  python3 bench/table.py "$OUT/bench.jsonl" | tee "$OUT/table.md"
  $build/seed_graph_parts | tee "$logs/seed_graph_parts.txt" || status=1
fi
if [[ " $parts " == *" scoreopts "* ]]; then
  # Sliding windows and soft-capping in causal prefill (bf16), beside
  # FlexAttention and a masked SDPA, and the same shapes without them;
  # then in paged decode
  # shape: batch seq heads kv_heads head_dim window softcap
  echo "== prefill with windows and soft-capping"
  shapes=(
    "1 16384 32 8 128 4096 0" "4 8192 32 8 128 4096 0" "1 16384 32 8 128 0 50"
    "2 8192 16 8 256 4096 50" "2 8192 16 8 256 0 50" "4 4096 32 32 96 2048 0"
  )
  m="$OUT/scoreopts.jsonl"
  : >"$m"
  declare -A plain # shapes already timed without the options
  for s in "${shapes[@]}"; do
    read -r b seq h kv d w cap <<<"$s"
    runs=("--window $w --softcap $cap")
    [ -z "${plain[$b $seq $h $kv $d]:-}" ] && runs+=("--window 0 --softcap 0") && plain[$b $seq $h $kv $d]=1
    for opts in "${runs[@]}"; do
      $build/forge bench prefill --json --dtype bf16 --batch "$b" --seq "$seq" --heads "$h" --kv-heads "$kv" \
        --head-dim "$d" $opts --iters 20 --warmup 3 | tee -a "$m" || status=1
    done
    python3 bench/torch_baseline.py prefill --dtype bf16 --batch "$b" --seq "$seq" --heads "$h" --kv-heads "$kv" \
      --head-dim "$d" --window "$w" --softcap "$cap" --iters 20 --warmup 3 | tee -a "$m" || status=1
  done
  # paged decode over 32k tokens through a window of 4096 (Mistral), and
  # Gemma 2's shape (head dim 256) with its window and cap: TB/s of the
  # window's K and V, beside the same steps over every token
  for s in "1 32768 32 8 128 4096 0" "16 8192 16 8 256 4096 50"; do
    read -r b len h kv d w cap <<<"$s"
    for opts in "--window $w --softcap $cap" "--window 0 --softcap 0"; do
      $build/forge bench decode --json --dtype bf16 --batch "$b" --kv-len "$len" --heads "$h" --kv-heads "$kv" \
        --head-dim "$d" $opts | tee -a "$m" || status=1
    done
  done
fi
if [[ " $parts " == *" baseline "* ]]; then
  # The repository's baseline beside ../shared/bench/torch_ref.py, which
  # defines what to measure: the same shapes, in turn, twice.
  echo "== bench/torch_baseline.py against torch_ref.py"
  : >"$OUT/baseline.jsonl"
  for round in 1 2; do
    for script in bench/torch_baseline.py .carry/torch_ref.py; do
      for args in "layer --seq 2048 --heads 32 --kv-heads 8 --head-dim 128 --hidden 4096 --dtype bf16" \
                  "prefill --batch 2 --seq 8192 --heads 16 --head-dim 128" \
                  "decode --batch 16 --kv-len 32768 --heads 32 --kv-heads 8 --head-dim 128"; do
        python3 $script $args | sed "s|}\$|, \"script\": \"$(basename $script)\", \"round\": $round}|" \
          >>"$OUT/baseline.jsonl" || status=1
      done
    done
  done
  cat "$OUT/baseline.jsonl"
fi
# model_check LOG ARGS...: bench/model_check.py ARGS, its verdicts shown
# and kept in $logs/LOG.log
model_check() {
  local log=$1; shift
  python3 bench/model_check.py $build/libforge-llm.so "$@" 2>&1 |
    grep -E '^(ok|FAILED|skipped|transformers)' | tee -a "$logs/$log.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
}
if [[ " $parts " == *" model "* ]]; then
  # The model engine against transformers: small random models of each
  # architecture, logits and greedy generation
  echo "== model engine against transformers"
  for check in "cpu fp32" "cuda fp32" "cuda bf16"; do
    read -r backend dtype <<<"$check"
    model_check model_check --backend "$backend" --dtype "$dtype"
  done
fi
if [[ " $parts " == *" tokenizer "* ]]; then
  # Hugging Face's tokenizers, here: the fixtures made again (they must equal
  # the committed ones), Forge's test against them, and the speed of both
  echo "== tokenizer"
  run tokenizer $build/tests/test_tokenizer tests/tokenizer/fixtures
  python3 bench/tokenizer_fixtures.py "$FORGE_TOKENIZERS" "$OUT/fixtures" >"$logs/fixtures.log" 2>&1 || status=1
  tar czf "$OUT/fixtures.tgz" -C "$OUT" fixtures && rm -r "$OUT/fixtures"
  for f in tests/tokenizer/fixtures/*.json; do
    tar xzOf "$OUT/fixtures.tgz" "fixtures/$(basename "$f")" | cmp -s - "$f" || { echo "fixture differs: $f"; status=1; }
  done
  python3 bench/tokenizer_speed.py $build/forge "$FORGE_TOKENIZERS" .carry/texts/*.txt | tee "$OUT/tokenizer_speed.md"
fi
if [[ " $parts " == *" step "* ]]; then
  echo "== decode step of the layer over a paged cache (GQA 32/8, D 128, hidden 4096, bf16)"
  : >"$OUT/step.jsonl"
  for shape in "1 1024" "1 8192" "16 1024" "16 8192" "64 1024" "64 8192"; do
    read -r batch len <<<"$shape"
    $build/forge bench step --json --dtype bf16 --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 \
      --head-dim 128 --hidden 4096 --iters 100 --warmup 10 | tee -a "$OUT/step.jsonl" || status=1
    # PyTorch's attention alone over the same cache, for scale (it has no paged layer step)
    python3 bench/torch_baseline.py decode --dtype bf16 --batch "$batch" --kv-len "$len" --heads 32 --kv-heads 8 \
      --head-dim 128 | tee -a "$OUT/step.jsonl" || status=1
  done
fi
if [[ " $parts " == *" modelbench "* ]]; then
  # Whole models of the Llama-3-8B shape (bf16, random weights) beside
  # torch_model_ref.py in the same run: batch-1 decode (prompt 128, 256
  # new), a 2048-token prefill, batch-64 decode, and sampled decode
  echo "== whole model: Llama-3-8B shape, bf16"
  m="$OUT/model_bench.jsonl"
  : >"$m"
  $build/forge bench model --json --shape llama3-8b --dtype bf16 --prompt 128 --new 256 | tee -a "$m" || status=1
  $build/forge bench model --json --shape llama3-8b --dtype bf16 --prompt 2048 --new 4 | tee -a "$m" || status=1
  $build/forge bench model --json --shape llama3-8b --dtype bf16 --batch 64 --prompt 128 --new 64 | tee -a "$m" || status=1
  # sampled as Llama 3's generation_config.json asks (top-k: transformers' default)
  for b in 1 64; do
    $build/forge bench model --json --shape llama3-8b --dtype bf16 --batch $b --prompt 128 --new 64 \
      --temperature 0.6 --top-p 0.9 --top-k 50 | tee -a "$m" || status=1
  done
  python3 .carry/torch_model_ref.py | tee -a "$m" || status=1
  python3 .carry/torch_model_ref.py --batch 64 --prompt 128 --new 64 --prefill 128 | tee -a "$m" || status=1
fi
if [[ " $parts " == *" modelfiles "* ]]; then
  # The Llama-3-8B shape loaded from files in the page cache (16 GB of bf16
  # in 5 GB shards, written by the standard library alone); then the small
  # model on the CPU backend beside transformers on the same CPU, and that
  # CPU's read bandwidth, the bound of its decode
  echo "== whole model from files; the CPU backend"
  m="$OUT/model_files.jsonl"
  : >"$m"
  d=$(mktemp -d)
  python3 bench/random_model_dir.py "$d/llama8b" && cat "$d"/llama8b/*.safetensors >/dev/null || status=1
  $build/forge bench model --json --model "$d/llama8b" --dtype bf16 --prompt 16 --new 16 | tee -a "$m" || status=1
  rm -rf "$d/llama8b"
  python3 bench/torch_model_cpu.py "$d/smol" --prompt 128 --new 32 | tee -a "$m" || status=1
  $build/forge bench model --json --model "$d/smol" --backend cpu --prompt 128 --new 32 | tee -a "$m" || status=1
  $build/forge bench model --json --model "$d/smol" --backend cpu --batch 4 --prompt 128 --new 32 | tee -a "$m" ||
    status=1
  $build/host_bandwidth | tee -a "$logs/host_bandwidth.txt" || status=1
  rm -rf "$d"
fi
# profile NAME SKIP COUNT ARGS...: COUNT kernels after the first SKIP of
# forge bench model ARGS (Llama-3-8B shape, 4 blocks, bf16), each one's
# time and DRAM throughput (% of peak) by ncu, into $OUT/NAME.txt, and the
# time summed by kernel
profile() {
  local name=$1 skip=$2 count=$3; shift 3
  ncu --launch-skip "$skip" --launch-count "$count" --csv --print-units base \
    --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes.sum \
    $build/forge bench model --shape llama3-8b --layers 4 --dtype bf16 "$@" >"$logs/$name.csv" 2>&1 || status=1
  python3 - "$logs/$name.csv" <<'PY' | tee "$OUT/$name.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
k, n, v, u = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value"), head.index("ID")
by = collections.OrderedDict()
for r in rows:
    by.setdefault(r[u], {"name": r[k][:60]})[r[n]] = float(r[v].replace(",", ""))
total = collections.Counter()
for i, m in by.items():
    total[m["name"]] += m["gpu__time_duration.sum"] / 1e3
    print(f"{m['gpu__time_duration.sum'] / 1e3:9.1f} us  {m['dram__throughput.avg.pct_of_peak_sustained_elapsed']:5.1f}% dram  "
          f"{m['dram__bytes.sum'] / 1e6:8.2f} MB  {m['name']}")
print("by kernel:")
for name, us in total.most_common():
    print(f"{us:9.1f} us  {name}")
PY
}
if [[ " $parts " == *" modelprofile "* ]]; then
  # The kernels of a few batch-1 decode steps, then the GEMMs of one row
  # alone: cuBLASLt's choice, its best timed, and ours (bench/gemv_probe.cu)
  echo "== kernels of a decode step (ncu), Llama-3-8B shape, 4 blocks, bf16"
  profile decode_kernels 400 48 --prompt 128 --new 16
  $build/gemv_probe | tee "$OUT/gemv_probe.txt" || status=1
fi
if [[ " $parts " == *" stepprofile "* ]]; then
  # The kernels of a batch-64 decode step and of a 2048-token prefill
  echo "== kernels of a batch-64 decode step and of a 2048-token prefill (ncu)"
  profile decode64_kernels 400 48 --batch 64 --prompt 128 --new 16
  profile prefill_kernels 0 80 --prompt 2048 --new 1
fi
if [[ " $parts " == *" tp "* ]]; then
  # Tensor parallelism (issue 22) over the GPUs there are: the model's tests
  # at 1, 2 and 4 ranks (those past the GPUs skipped; 1 is NCCL over one
  # rank), then the Llama-3-8B shape whole and split at batch 1 and 64 (the
  # scaling), and the Llama-3-70B shape over 2, 4 and 8 GPUs
  gpus=$(nvidia-smi -L | wc -l)
  echo "== tensor parallelism over $gpus GPUs (NCCL: ${FORGE_NCCL:-from the library path})"
  run tp_model_cuda $build/tests/test_model cuda
  grep -E "ranks|skipped" "$logs/tp_model_cuda.log"
  for tp in 1 2 4; do # against transformers, split (the small models have 4 heads, 2 KV heads)
    [ "$tp" -le "$gpus" ] || continue
    for dtype in fp32 bf16; do model_check tp_model_check --backend cuda --dtype $dtype --tp $tp; done
  done
  m="$OUT/tp.jsonl"
  : >"$m"
  # shape, rank counts, new tokens, time limit: each at batch 1 and 64
  for run in "llama3-8b 0,1,2,4,8 64 300" "llama3-70b 2,4,8 32 540"; do
    read -r shape counts new limit <<<"$run"
    for tp in ${counts//,/ }; do
      [ "$tp" -le "$gpus" ] || continue
      for b in 1 64; do
        timeout "$limit" $build/forge bench model --json --shape "$shape" --dtype bf16 --batch $b --prompt 128 \
          --new "$new" --tp $tp | tee -a "$m" || status=1
      done
    done
  done
fi
exit $status
