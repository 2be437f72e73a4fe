#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fails on two things ptxas reports that no other test sees, as each leaves
# results right and only makes a kernel slower:
# - the Hopper kernel's wgmma instructions serialised (its note "wgmma.mma_async
#   instructions are serialized due to ..."): it does so for the whole kernel
#   when it cannot tell whether a product is in flight where an accumulator or
#   operand register is used, and the kernel then runs a third slower;
# - the portable kernel, or the paged cache's tensor-core decode kernel,
#   spilling registers at any head dim (at D = 128 spill loads inside the
#   portable kernel's P V loop cost it 2-6%; docs/BENCHMARKS.md).
#   at sm_90a and at sm_80 (GPUs before Hopper).
#   ptxas_check.sh NVCC SOURCE_DIR
set -euo pipefail
nvcc=$1 src=$2
ptxas() { # ptxas' report of one source file for one architecture (90a, 80)
  "$nvcc" -gencode=arch=compute_$2,code=sm_$2 -DFORGE_HAVE_SM90A -O3 -std=c++17 -I"$src/src" -I"$src/src/util" \
    -I"$src/include" -Xptxas -v -cubin -o /dev/null "$src/src/cuda/kernels/$1" 2>&1
}
log=$(ptxas flash_wgmma.cu 90a) || { echo "$log"; exit 1; }
if grep -i "serialized" <<<"$log"; then
  echo "FAILED: ptxas serialised wgmma instructions in flash_wgmma.cu"
  exit 1
fi
echo "ok: $(grep -c 'Compiling entry' <<<"$log") Hopper kernels, no wgmma serialised"
for arch in 90a 80; do
  for f in flash_mma.cu paged_mma.cu; do
    log=$(ptxas $f $arch) || { echo "$log"; exit 1; }
    if grep -E "[1-9][0-9]* bytes spill" <<<"$log"; then
      echo "FAILED: ptxas spills registers in $f for sm_$arch"
      exit 1
    fi
    echo "ok: $(grep -c 'Compiling entry' <<<"$log") kernels of $f for sm_$arch, no spills"
  done
done
