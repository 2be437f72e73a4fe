#!/usr/bin/env bash
# Installs the build into a temporary prefix, builds examples/minimal.c
# against it through pkg-config, and runs it and the installed forge tool.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/forge.h bin/forge; do [ -e "$prefix/$f" ] || { echo "missing $f"; exit 1; }; done
pc=$(find "$prefix" -name forge.pc)
[ -n "$pc" ] || { echo "missing forge.pc"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir forge)
cc "$src/examples/minimal.c" $(pkg-config --cflags --libs forge) -Wl,-rpath,"$libdir" -o "$prefix/minimal"
"$prefix/minimal"
"$prefix/bin/forge" run --iters 5 | grep -q "backend: cpu"
echo "install ok: $prefix"
