#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every source, script and build file of the repository names its licence
# in an SPDX line within its first two lines.
#   spdx_check.sh SOURCE_DIR
set -euo pipefail
cd "$1"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "skipped: not a git checkout"
  exit 77
fi
missing=$(git ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.sh' '*.py' '*.cmake.in' 'CMakeLists.txt' '*/CMakeLists.txt' .ci/run |
  while read -r f; do head -2 "$f" | grep -q "SPDX-License-Identifier: Apache-2.0" || echo "$f"; done)
[ -z "$missing" ] || { echo "FAILED: no SPDX line in: $missing"; exit 1; }
echo "ok: every source file has its SPDX line"
