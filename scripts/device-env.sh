# SPDX-License-Identifier: Apache-2.0
# Sourced by the scripts that run on the GPU machine (device.sh,
# prefill-sweep.sh, ab-prefill.sh): moves to the repository root, unpacks
# the builds and Debian libraries that scripts/device-prepare.sh packed (the
# device tool carries at most 64 MiB, and OpenBLAS alone is 36), and sets
# LD_LIBRARY_PATH and OUT.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
for d in lib build build-sm80 tokenizers; do
  [ -d .carry/$d ] || [ ! -f .carry/$d.tar.xz ] || tar xJf .carry/$d.tar.xz -C .carry || exit 1
done
libs="$root/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LD_LIBRARY_PATH="$root/.carry/build:$libs"
export FORGE_TOKENIZERS="$root/.carry/tokenizers"
# NCCL for split models: the copy PyTorch's wheels install (nvidia-nccl),
# where none is named; NVLink multicast off (it can take these hosts' GPUs
# out of service)
if [ -z "${FORGE_NCCL:-}" ]; then
  FORGE_NCCL=$(python3 -c 'import glob, site; print(next(iter(sorted(f for d in site.getsitepackages()
    for f in glob.glob(d + "/nvidia/nccl/lib/libnccl.so*"))), ""))' 2>/dev/null)
  export FORGE_NCCL
fi
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/forge-device}
mkdir -p "$OUT"
