#!/usr/bin/env bash
# Checks the layering of the host's source folders and of the in-tree plugins: every
# `#include "x/..."` in host/src/<folder>/ must name a folder (or a file) the table below allows
# <folder> to include; a folder may always include itself. Lower layers never include higher ones.
# Every folder under host/src/ must have a row, so a new folder gets a place in the order.
#
# In-tree plugins (plugins/<name>/) include nothing of another plugin: a quoted include that
# resolves into plugins/<other>/ fails. Code they share is a header-only library under
# plugins/shared/, which includes nothing outside plugins/shared/.
#
# Usage: scripts/check-layers.sh [SOURCE_DIR]   (default: the repository this script is in)
# Prints each forbidden include as file:line: and exits 1 when there is one.
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root"

# What each folder may include, bottom to top. An entry is a folder or one header of a folder.
#   platform:  below everything: one interface per platform-specific need, an implementation per
#              platform in its own file (docs/windows.md); it includes nothing of the host
#   bottom:    common, observability, config (-> common), abi (-> observability)
#   package:   what a plugin file is (ELF section, manifest, versions, checksum)
#   http:      above the bottom
#   storage:   above package; never events/ or plugins/ (committed events leave through abi/)
#   events:    above storage; never plugins/
#   isolation: above events and storage
#   plugins:   above all of those
#   cluster:   above plugins: this host as a member of a cluster over NATS
#   app:       the top; main.cpp starts it
#   runner:    the separate child binary: only the frames and the socket end it shares
#   devkit:    the installed test host (a shared library of its own): the layers it links
readonly allowed='
platform:
common:        platform
observability: platform
config:        platform common
abi:           platform observability
package:       platform common abi
http:          platform common observability config abi
storage:       platform common observability config abi package
events:        platform common observability config abi package storage
isolation:     platform common observability config abi package http storage events
plugins:       platform common observability config abi package http storage events isolation
cluster:       platform common observability config abi package http storage events isolation plugins
app:           platform common observability config abi package http storage events isolation plugins cluster
main.cpp:      app
runner:        platform common abi isolation/wire.hpp isolation/connection.hpp
devkit:        platform common observability config abi package http/router.hpp http/query.hpp storage
'

declare -A may
while read -r from targets; do
  [ -n "$from" ] || continue
  may[${from%:}]=" $targets "
done <<<"$allowed"

failures=0
fail() {
  echo "$1" >&2
  failures=$((failures + 1))
}

for dir in host/src/*/; do
  folder=$(basename "$dir")
  [ -n "${may[$folder]+set}" ] || fail "host/src/$folder/: no row in scripts/check-layers.sh"
done

# file:line:target for every quoted include with a folder, in host/src/.
while IFS=: read -r file line target; do
  rel=${file#host/src/}
  from=${rel%%/*}
  to=${target%%/*}
  [ "$to" = "$from" ] && continue
  [ -d "host/src/$to" ] || continue  # not a host folder (e.g. an SDK header)
  case "${may[$from]-}" in
    *" $to "* | *" $target "*) ;;
    *) fail "$file:$line: $from/ must not include \"$target\"" ;;
  esac
done < <(grep -rnE --include='*.cpp' --include='*.hpp' '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"/]+/' host/src |
  sed -E 's/^([^:]+):([0-9]+):[^"]*"([^"]+)".*/\1:\2:\3/')

# In-tree plugins: a quoted include resolved from the including file's folder stays in the
# plugin's own folder, or in plugins/shared/.
plugins_dir=$(realpath plugins)
while IFS=: read -r file line target; do
  owner=${file#plugins/}
  owner=${owner%%/*}
  resolved=$(realpath -m "$(dirname "$file")/$target")
  # Or, through an include directory, "<plugin>/src/...".
  first=${target%%/*}
  if [ "$first" != "$target" ] && [ "$first" != "$owner" ] && [ -d "plugins/$first/src" ]; then
    resolved=$plugins_dir/$target
  fi
  case "$resolved" in
    "$plugins_dir/$owner/"*) ;;
    "$plugins_dir/shared/"*) [ "$owner" != shared ] || fail "$file:$line: plugins/shared/ must not include \"$target\"" ;;
    "$plugins_dir/"*) fail "$file:$line: plugins/$owner/ must not include another plugin's \"$target\"" ;;
  esac
done < <(grep -rnE --include='*.cpp' --include='*.hpp' --include='*.h' --include='*.c' \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' plugins |
  sed -E 's/^([^:]+):([0-9]+):[^"]*"([^"]+)".*/\1:\2:\3/')

if [ "$failures" -gt 0 ]; then
  echo "check-layers: $failures forbidden include(s); the allowed edges are in scripts/check-layers.sh" >&2
  exit 1
fi
echo "check-layers: ok"
