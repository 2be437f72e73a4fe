#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Forge as a user's program meets it: installs the build into a temporary
# prefix and builds examples/minimal.c against it through pkg-config and
# through find_package(ForgeLLM); checks that no installed name is one that
# other libraries called forge install, and that the library exports the
# public API alone; then builds a project that takes Forge in by
# FetchContent (CPU only, for time), which must build no tool or test of
# Forge's, keep its own build type, and install; and builds the library and
# tool where cmocka is absent.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "FAILED: $*"; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/forge-llm/forge.h bin/forge share/doc/forge-llm/LICENSE; do
  [ -e "$prefix/$f" ] || fail "missing $f"
done
# a CUDA build's module goes beside the library that loads it
if [ -e "$build/libforge-llm-cuda.so" ]; then
  [ -n "$(find "$prefix" -name libforge-llm-cuda.so)" ] || fail "missing libforge-llm-cuda.so"
  [ "$(dirname "$(find "$prefix" -name libforge-llm-cuda.so)")" = "$(dirname "$(find "$prefix" -name libforge-llm.so)")" ] ||
    fail "libforge-llm-cuda.so is not beside libforge-llm.so"
fi
# Debian's libforge-dev (ArrayFire's Forge) installs include/forge.h,
# libforge.so and cmake/Forge/ForgeConfig.cmake.
clash=$(cd "$prefix" && find . -path ./include/forge.h -o -name 'libforge.so*' -o -iname 'ForgeConfig.cmake' \
          -o -iname 'forge-config.cmake' -o -name forge.pc)
[ -z "$clash" ] || fail "installed names that other packages own: $clash"
# only the public API leaves the library (every FORGE_API of forge.h), and
# the CUDA module exports its entry alone
exports=$(nm -D --defined-only "$(find "$prefix" -name libforge-llm.so)" | awk '{print $3}' | sort)
api=$(grep -o '^FORGE_API[^(]*(' "$src/include/forge.h" | sed 's/.*[ *]\([a-z_0-9]*\)($/\1/' | sort)
[ "$exports" = "$api" ] || fail "libforge-llm.so exports other than the public API: $(comm -3 <(echo "$exports") <(echo "$api") | tr '\n' ' ')"
if [ -e "$build/libforge-llm-cuda.so" ]; then
  [ "$(nm -D --defined-only "$build/libforge-llm-cuda.so" | awk '{print $3}')" = forge_cuda_module ] ||
    fail "libforge-llm-cuda.so exports more than forge_cuda_module"
fi

# pkg-config
export PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name forge-llm.pc)")
pkg-config --exists forge-llm || fail "pkg-config does not find forge-llm"
[ "$(pkg-config --modversion forge-llm)" = "$(sed -n 's/^#define FORGE_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' "$src/include/forge.h" | paste -sd.)" ] ||
  fail "forge-llm.pc's version is not forge.h's"
libdir=$(pkg-config --variable=libdir forge-llm)
cc "$src/examples/minimal.c" $(pkg-config --cflags --libs forge-llm) -Wl,-rpath,"$libdir" -o "$work/minimal_pc"
"$work/minimal_pc" >/dev/null || fail "the pkg-config build of minimal.c"
"$prefix/bin/forge" run --iters 5 | grep -q "^backend: " || fail "the installed forge tool"
echo "ok: pkg-config forge-llm"

# find_package
mkdir -p "$work/fp"
cat >"$work/fp/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.22)
project(user_app C)
find_package(ForgeLLM 0.2 REQUIRED)
add_executable(minimal "$src/examples/minimal.c")
target_link_libraries(minimal PRIVATE ForgeLLM::forge)
CMAKE
cmake -S "$work/fp" -B "$work/fp/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$work/fp/build" >/dev/null
"$work/fp/build/minimal" >/dev/null || fail "the find_package build of minimal.c"
echo "ok: find_package(ForgeLLM)"

# a subproject, by FetchContent
mkdir -p "$work/sub"
cat >"$work/sub/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.22)
project(user_app C)
set(FORGE_CUDA OFF)
include(FetchContent)
FetchContent_Declare(forge_llm SOURCE_DIR "$src")
FetchContent_MakeAvailable(forge_llm)
add_executable(minimal "$src/examples/minimal.c")
target_link_libraries(minimal PRIVATE ForgeLLM::forge)
install(TARGETS minimal)
CMAKE
cmake -S "$work/sub" -B "$work/sub/build" >/dev/null
[ -z "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$work/sub/build/CMakeCache.txt")" ] ||
  fail "Forge set the build type of the project that includes it"
cmake --build "$work/sub/build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
[ -z "$(find "$work/sub/build" -name forge -type f -o -name 'test_*' -type f)" ] ||
  fail "Forge built its tool or tests inside another project"
"$work/sub/build/minimal" >/dev/null || fail "the subproject build of minimal.c"
cmake --install "$work/sub/build" --prefix "$work/sub/prefix" >/dev/null
[ -e "$work/sub/prefix/include/forge-llm/forge.h" ] && [ -n "$(find "$work/sub/prefix" -name forge-llm.pc)" ] ||
  fail "the subproject's install lacks Forge's header or forge-llm.pc"
echo "ok: a subproject by FetchContent"

# no cmocka: pkg-config sees the build's libraries alone
mkdir -p "$work/pc"
for m in openblas libcjson libpcre2-8 libutf8proc; do cp "$(env -u PKG_CONFIG_PATH pkg-config --variable=pcfiledir $m)/$m.pc" "$work/pc/"; done
PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$work/pc" cmake -S "$src" -B "$work/nocmocka" -DFORGE_CUDA=OFF >"$work/nocmocka.log"
grep -q "cmocka not found; tests off" "$work/nocmocka.log" || fail "a build without cmocka did not turn its tests off"
cmake --build "$work/nocmocka" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
"$work/nocmocka/forge" --version >/dev/null || fail "the tool of a build without cmocka"
echo "ok: the library and tool build without cmocka"
