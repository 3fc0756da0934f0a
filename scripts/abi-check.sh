#!/usr/bin/env bash
# Guards the plugin ABI (docs/abi.md, "Checking compatibility"): builds
# plugin-api/abi/abi_anchor.c against the current keel/plugin.h, dumps its ABI with abidw and
# compares it with the committed baseline plugin-api/abi/keel_plugin_abi.xml using abidiff.
# `struct_size` checks cannot see a member inserted in the middle of a struct; this check can
# (TOOLCHAIN.md pitfall 9). Two comparisons, both must report no change:
#   1. baseline vs the header as it is, with plugin-api/abi/suppressions.ini: members appended
#      at the end of a growable keel_* struct are allowed, anything else fails;
#   2. baseline vs the header without the members below each "--- 1.N goes here ---" marker,
#      with no suppressions: the released part must be identical. This closes a hole in
#      libabigail 2.2, whose has_data_member_inserted_at=end suppression also hides a resized
#      or retyped member when no member was inserted. So new members go below the marker.
#
# Usage: scripts/abi-check.sh [--update] BUILD_DIR
#   BUILD_DIR  where the anchors and dumps go (BUILD_DIR/abi/)
#   --update   regenerate the baseline from the released part of the current header (members
#              below a "goes here" marker are left out) instead of comparing. Run it when a
#              minor is released (the marker becomes "--- 1.N ---") and commit the result.
# Environment: CC (default cc) compiles the anchor; KEEL_ABI_INCLUDE_DIR (default
# plugin-api/include) checks another copy of the headers, e.g. to test this script.
set -euo pipefail

usage() {
  echo "usage: $0 [--update] BUILD_DIR" >&2
  exit 2
}

update=0
if [ "${1:-}" = "--update" ]; then
  update=1
  shift
fi
if [ "$#" -ne 1 ]; then usage; fi

KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abi_dir="$KEEL_ROOT/plugin-api/abi"
include_dir="${KEEL_ABI_INCLUDE_DIR:-$KEEL_ROOT/plugin-api/include}"
baseline="$abi_dir/keel_plugin_abi.xml"
out_dir="$1/abi"

for tool in abidw abidiff "${CC:-cc}"; do
  command -v "$tool" >/dev/null || {
    echo "abi-check: $tool not found (Debian: apt-get install abigail-tools)" >&2
    exit 2
  }
done
mkdir -p "$out_dir"

# dump INCLUDE_DIR NAME: builds the anchor against INCLUDE_DIR and writes its ABI to
# $out_dir/NAME.xml. -O0 -g: the DWARF describes every type as declared. Hidden visibility +
# KEEL_EXPORT: only the anchors and the entry point are exported interfaces. The abidw flags
# keep the dump machine-independent: no corpus path, no compilation directory, file names
# without directories, no DT_NEEDED list.
dump() {
  local inc="$1" name="$2"
  "${CC:-cc}" -std=c11 -g -O0 -fPIC -shared -fvisibility=hidden -Wall -Wextra -pedantic -Werror \
    -I"$inc" -o "$out_dir/$name.so" "$abi_dir/abi_anchor.c"
  abidw --exported-interfaces-only --no-corpus-path --no-comp-dir-path --short-locs --no-elf-needed \
    --headers-dir "$inc" --out-file "$out_dir/$name.xml" "$out_dir/$name.so"
}

# The released part of the headers (plugin.h and the extension headers such as storage.h):
# every line between a "--- ... goes here ---" marker and the closing brace of its struct is
# dropped.
mkdir -p "$out_dir/released/keel"
for header in "$include_dir"/keel/*.h; do
  sed '/--- .* go.* here ---/,/^}/{
  /--- .* go.* here ---/b
  /^}/b
  d
}' "$header" >"$out_dir/released/keel/$(basename "$header")"
done
dump "$out_dir/released" released

if [ "$update" -eq 1 ]; then
  cp "$out_dir/released.xml" "$baseline"
  echo "abi-check: baseline updated: ${baseline#"$KEEL_ROOT"/}" >&2
  exit 0
fi
dump "$include_dir" current

# abidiff's exit status is a bit field (1 error, 2 usage, 4 ABI change, 8 incompatible change):
# anything but 0 fails.
status=0
echo "abi-check: [1/2] the header vs the baseline, appends at the end of growable structs allowed" >&2
abidiff --suppressions "$abi_dir/suppressions.ini" "$baseline" "$out_dir/current.xml" || status=$?
if [ "$status" -eq 0 ]; then
  echo "abi-check: [2/2] the header's released part (above the 'goes here' markers) vs the baseline, exactly" >&2
  abidiff "$baseline" "$out_dir/released.xml" || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "abi-check: keel/*.h is not ABI-compatible with ${baseline#"$KEEL_ROOT"/} (abidiff status $status)." >&2
  echo "abi-check: within a major, only append members below a struct's '--- 1.N goes here ---' marker (docs/abi.md section 3)." >&2
  exit 1
fi
echo "abi-check: ok, keel/*.h is compatible with the baseline" >&2
