#!/usr/bin/env bash
# Proves that `keel new plugin` gives a project that works from the installed package alone:
#   1. installs the plugin development package (headers, CMake package Keel, keel_add_plugin,
#      the test host library, keel-manifest) from a configured Keel build tree into PREFIX;
#   2. runs `keel new plugin` for C and for C++, each with no option, --storage, --events, and
#      --storage --events;
#   3. configures and builds each generated project with only find_package(Keel), warnings as
#      errors, and runs its generated unit test with ctest (the test host with a real database);
#   4. breaks one generated manifest and checks the build fails naming the file and JSON path;
#   5. copies greet_c.so and greet_cpp.so into OUT_DIR, for a host to load.
#
# Usage: scripts/new-plugin-check.sh PREFIX OUT_DIR [BUILD_DIR]
#   BUILD_DIR defaults to $KEEL_BUILD_DIR or build/ in the repository; it must be built.
set -euo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 PREFIX OUT_DIR [BUILD_DIR]" >&2
  exit 2
fi
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # KEEL_ROOT, keel_log
prefix="$1"
out_dir="$2"
build_dir="${3:-${KEEL_BUILD_DIR:-$KEEL_ROOT/build}}"

die() {
  printf 'new-plugin-check: %s\n' "$*" >&2
  exit 1
}

[ -x "$build_dir/bin/keel" ] || die "$build_dir has no bin/keel; build Keel first"
mkdir -p "$prefix" "$out_dir"
prefix="$(cd "$prefix" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/keel-new-plugin.XXXXXX")"
trap 'rm -rf "$work"' EXIT

keel_log "installing the Keel plugin package from $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix" --component keel_dev > /dev/null

# A sanitizer build of Keel installs an instrumented test host: the generated projects are then
# built with the same sanitizers, so their test programs load the runtime first.
flags="-Wall -Wextra -Wpedantic -Werror"
sanitize="$(sed -n 's/^KEEL_SANITIZE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")"
if [ -n "$sanitize" ]; then flags="$flags -fsanitize=$sanitize -fno-omit-frame-pointer"; fi

# build_project NAME LANG FLAGS...: generates, builds and tests one project under $work.
build_project() {
  local name="$1" lang="$2" project="$work/$1"
  shift 2
  keel_log "keel new plugin $name --lang $lang $*"
  "$build_dir/bin/keel" new plugin "$name" --lang "$lang" "$@" --dir "$project" > /dev/null
  CFLAGS="$flags" CXXFLAGS="$flags" LDFLAGS="${sanitize:+-fsanitize=$sanitize}" \
    cmake -S "$project" -B "$project/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" > /dev/null
  cmake --build "$project/build" > "$project/build.log" 2>&1 || {
    cat "$project/build.log" >&2
    die "$name did not build"
  }
  ctest --test-dir "$project/build" --output-on-failure > "$project/test.log" 2>&1 || {
    cat "$project/test.log" >&2
    die "$name's generated test failed"
  }
  [ -f "$project/build/plugins/$name.so" ] || die "$project/build/plugins/$name.so was not built"
}

for lang in c cpp; do
  # Every combination builds and passes its own test; the full one is loaded into a host.
  build_project "greet_${lang}_plain" "$lang"
  build_project "greet_${lang}_storage" "$lang" --storage
  build_project "greet_${lang}_events" "$lang" --events
  build_project "greet_$lang" "$lang" --storage --events
  cp "$work/greet_$lang/build/plugins/greet_$lang.so" "$out_dir/"
done

# A mistake in manifest.json fails the build, naming the file and the JSON path.
keel_log "a broken manifest fails the build"
sed -i 's/"method": "POST"/"method": "post"/' "$work/greet_c/manifest.json"
if cmake --build "$work/greet_c/build" > "$work/broken.log" 2>&1; then
  die "the build succeeded with an invalid manifest"
fi
grep -q 'manifest.json: error: routes\[1\].method' "$work/broken.log" || {
  cat "$work/broken.log" >&2
  die "the failed build does not name manifest.json and routes[1].method"
}
keel_log "ok: $out_dir/greet_c.so and $out_dir/greet_cpp.so"
