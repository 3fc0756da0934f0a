#!/usr/bin/env bash
# keel-plugin-runner runs in a mount namespace that may cover the build tree, under a uid that
# may not enter it (docs/isolation.md#what-a-runner-can-reach): it must need no shared library
# from there. Usage: check-runner-links.sh <keel-plugin-runner> <build dir>
set -euo pipefail
runner=$1
build=$(cd "$2" && pwd -P)
libs=$(ldd "$runner" | awk '/=>/ {print $3}')
bad=0
for lib in $libs; do
  real=$(readlink -f "$lib" || echo "$lib")
  case "$real" in
    "$build"/*) echo "keel-plugin-runner needs $lib from the build tree" >&2; bad=1 ;;
  esac
done
if readelf -d "$runner" | grep -qE 'RPATH|RUNPATH'; then
  readelf -d "$runner" | grep -E 'RPATH|RUNPATH' | grep -q "$build" && { echo "keel-plugin-runner has a build-tree RPATH" >&2; bad=1; }
fi
exit $bad
