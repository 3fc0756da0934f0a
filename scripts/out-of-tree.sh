#!/usr/bin/env bash
# Proves that plugins build outside the tree, in C and with another compiler, from the
# installed package alone:
#   1. installs the plugin development package (headers, CMake package Keel, keel_add_plugin)
#      from a configured Keel build tree into INSTALL_PREFIX;
#   2. configures and builds examples/out-of-tree/c_plugin with gcc -std=c11 and
#      examples/out-of-tree/cpp_plugin with CXX=clang++, using only find_package(Keel);
#   3. checks each .so exports exactly keel_plugin_entry_v1 and carries a .keel_manifest
#      section, that the C plugin does not need libstdc++, that C++ is ISO C++20, and that a
#      build with no CMAKE_BUILD_TYPE is still optimised and warned about;
#   4. copies c_plugin.so and cpp_plugin.so into OUT_DIR (e.g. a host's plugins directory).
#
# Usage: scripts/out-of-tree.sh INSTALL_PREFIX OUT_DIR [BUILD_DIR]
#   BUILD_DIR defaults to $KEEL_BUILD_DIR or build/ in the repository; it must be configured.
set -euo pipefail

usage() {
  echo "usage: $0 INSTALL_PREFIX OUT_DIR [BUILD_DIR]" >&2
  exit 2
}
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then usage; fi

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # KEEL_ROOT, keel_log
prefix="$1"
out_dir="$2"
build_dir="${3:-${KEEL_BUILD_DIR:-$KEEL_ROOT/build}}"

die() {
  printf 'out-of-tree: %s\n' "$*" >&2
  exit 1
}

[ -f "$build_dir/cmake_install.cmake" ] || die "$build_dir is not a configured Keel build tree"
mkdir -p "$prefix" "$out_dir"
prefix="$(cd "$prefix" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/keel-out-of-tree.XXXXXX")"
trap 'rm -rf "$work"' EXIT

keel_log "installing the Keel plugin package from $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix" --component keel_dev

# build_example NAME: configures and builds one example as a plugin author would, with the
# compiler chosen by the caller's CC/CXX and warnings as errors.
build_example() {
  local name="$1" warnings="-Wall -Wextra -Wpedantic -Werror"
  keel_log "building $name against $prefix"
  CFLAGS="$warnings" CXXFLAGS="$warnings" cmake -S "$KEEL_ROOT/examples/out-of-tree/$name" -B "$work/$name" \
    -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build "$work/$name"
}

# check_plugin FILE: the host's view of a plugin before dlopen(): one export, a manifest.
check_plugin() {
  local so="$1" exports
  [ -f "$so" ] || die "$so was not built"
  exports="$(nm -D --defined-only "$so" | awk '{ print $NF }')"
  [ "$exports" = "keel_plugin_entry_v1" ] || die "$so must export only keel_plugin_entry_v1, exports: $exports"
  readelf -p .keel_manifest "$so" | grep -q '"name"' || die "$so has no .keel_manifest section"
}

CC=gcc build_example c_plugin
CXX=clang++ build_example cpp_plugin

c_so="$work/c_plugin/plugins/c_plugin.so"
cpp_so="$work/cpp_plugin/plugins/cpp_plugin.so"
check_plugin "$c_so"
check_plugin "$cpp_so"

grep -q -- "-std=c11" "$work/c_plugin/build.ninja" || die "c_plugin was not compiled with -std=c11"
grep -q -- "-std=c++20" "$work/cpp_plugin/build.ninja" || die "cpp_plugin was not compiled with -std=c++20 (ISO, no GNU extensions)"

# With no build type at all (CMake's default), a plugin is still optimised and warned about.
keel_log "configuring cpp_plugin with no CMAKE_BUILD_TYPE"
CXX=clang++ cmake -S "$KEEL_ROOT/examples/out-of-tree/cpp_plugin" -B "$work/cpp_default" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
for flag in -O2 -Wall -Wextra; do
  grep -q -- "$flag" "$work/cpp_default/build.ninja" || die "with no build type, cpp_plugin is not built with $flag"
done
if readelf -d "$c_so" | grep -q 'NEEDED.*libstdc++'; then
  die "$c_so needs libstdc++; a C plugin must not pull in the C++ runtime"
fi
readelf -p .comment "$cpp_so" | grep -q 'clang version' || die "$cpp_so was not compiled by clang++"

cp "$c_so" "$cpp_so" "$out_dir/"
keel_log "ok: $out_dir/c_plugin.so (C11, gcc, no libstdc++) and $out_dir/cpp_plugin.so (C++20, clang++)"
readelf -d "$c_so" | awk '/NEEDED/ { print "    c_plugin.so   NEEDED " $NF }' >&2
readelf -d "$cpp_so" | awk '/NEEDED/ { print "    cpp_plugin.so NEEDED " $NF }' >&2
