#!/usr/bin/env bash
# Fails when ptxas serialises the Hopper kernel's wgmma instructions (its
# note "wgmma.mma_async instructions are serialized due to ..."): it does so
# for the whole kernel when it cannot tell whether a product is in flight
# where an accumulator or operand register is used, and the kernel then
# runs a third slower with results still right, which no other test sees.
#   wgmma_pipeline_check.sh NVCC SOURCE_DIR
set -euo pipefail
nvcc=$1 src=$2
log=$("$nvcc" -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -I"$src/src" -I"$src/include" \
  -Xptxas -v -cubin -o /dev/null "$src/src/cuda/flash_wgmma.cu" 2>&1) || { echo "$log"; exit 1; }
if grep -i "serialized" <<<"$log"; then
  echo "FAILED: ptxas serialised wgmma instructions in flash_wgmma.cu"
  exit 1
fi
echo "ok: $(grep -c 'Compiling entry' <<<"$log") Hopper kernels, no wgmma serialised"
