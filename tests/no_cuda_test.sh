#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A CUDA build on a machine without the CUDA libraries: in a private mount
# namespace, the folder that holds libcublas is hidden behind an empty one;
# then the library must not need it (only its CUDA module does), the CPU
# test programs, the tool and the API example must pass, and forge run must
# say on the CPU why it did not use CUDA. Needs root (unshare); else skipped.
#   no_cuda_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
if ! unshare -m true 2>/dev/null; then
  echo "skipped: unshare -m is not allowed here (it needs root)"
  exit 77
fi
module=$build/libforge-llm-cuda.so
[ -e "$module" ] || { echo "FAILED: no $module"; exit 1; }
if ldd "$build/libforge-llm.so" | grep -q cublas; then
  echo "FAILED: libforge-llm.so needs libcublas: $(ldd "$build/libforge-llm.so" | grep cublas)"
  exit 1
fi
cublas_dir=$(dirname "$(ldd "$module" | awk '/libcublas\.so/ {print $3; exit}')")
[ -d "$cublas_dir" ] || { echo "FAILED: libcublas not found for $module"; exit 1; }
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
unshare -m bash -euo pipefail -c '
  mount --bind "$1" "$2"
  build=$3 src=$4
  if ldd "$build/libforge-llm-cuda.so" | grep -q "libcublas.so.* => /"; then
    echo "FAILED: libcublas is still found"; exit 1
  fi
  for t in "test_layer cpu" "test_attention cpu" "test_paged cpu" "test_layer_paged cpu" test_errors test_rope \
           test_safetensors; do
    "$build"/tests/$t >/dev/null 2>&1 || { echo "FAILED: $t with the CUDA libraries hidden"; exit 1; }
  done
  "$build/example_minimal" >/dev/null || { echo "FAILED: example_minimal"; exit 1; }
  out=$("$build/forge" run --iters 3)
  grep -q "^backend: cpu (best present; not cuda: .*cannot load the CUDA backend" <<<"$out" ||
    { echo "FAILED: forge run says:"; echo "$out"; exit 1; }
  grep "^backend:" <<<"$out"
  "$build/tests/test_cli" "$build/forge" "$src/README.md" >/dev/null 2>&1 || { echo "FAILED: test_cli"; exit 1; }
' bash "$empty" "$cublas_dir" "$build" "$src"
echo "ok: with $cublas_dir hidden, the CPU tests, the tool and the example pass on the CPU backend"
