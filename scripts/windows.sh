#!/usr/bin/env bash
# The Windows cross-build (docs/windows.md): install what is missing, build the compiled
# dependencies for the target from Debian's sources (build-windows/deps), then the SDK, every
# example plugin as a .dll and the Windows tests with mingw-w64, in build-windows/.
#   scripts/windows.sh          build only
#   scripts/windows.sh --test   also run the Windows tests under Wine (headless, a private
#                               Wine prefix in build-windows/wine), against a native build in
#                               build/ (built first if it is not there) for the cross-platform
#                               checks: a Linux keel inspects each .dll, a Windows reader each .so.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

test=0
case "${1:-}" in
  "") ;;
  --test) test=1 ;;
  *) echo "usage: scripts/windows.sh [--test]" >&2; exit 2 ;;
esac

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

# Debian's source packages: apt needs a deb-src entry next to each Debian deb entry. Added (as
# /etc/apt/sources.list.d/keel-deb-src.sources, or .list for a one-line-style sources.list) only
# when apt has none; when it has some, only their indexes are fetched.
keel_enable_deb_src() {
  if apt-get source --print-uris -qq sqlitecpp >/dev/null 2>&1; then return 0; fi
  if grep -Eqs '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list; then
    "${sudo[@]}" apt-get update -qq
    return 0
  fi
  local entries="" target
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # Debian's own file (deb822): its stanzas, as source entries.
    entries=$(sed 's/^Types:.*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources)
    target=/etc/apt/sources.list.d/keel-deb-src.sources
  elif [ -f /etc/apt/sources.list ]; then
    # Only Debian's own archives: a third-party repository may have no source index.
    entries=$(sed -En 's#^deb (\[[^]]*\] )?(https?://([a-z0-9.-]+\.)?debian\.org/.*)$#deb-src \1\2#p' /etc/apt/sources.list)
    target=/etc/apt/sources.list.d/keel-deb-src.list
  fi
  [ -n "$entries" ] || { echo "windows.sh: no Debian entry in apt's sources to add deb-src to" >&2; exit 1; }
  keel_log "adding Debian's source entries to apt ($target)"
  printf '%s\n' "$entries" | "${sudo[@]}" tee "$target" >/dev/null
  "${sudo[@]}" apt-get update -qq
}

# keel_logged LOG COMMAND...: runs COMMAND with its output in LOG, shown (the end) if it fails.
keel_logged() {
  local log="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "windows.sh: failed: $* (the whole output: $log)" >&2
    exit 1
  fi
}

# keel_apt_source DIR PACKAGE: Debian's source of PACKAGE, fetched and unpacked into DIR (a
# subshell: the script's directory stays).
keel_apt_source() (
  cd "$1" && apt-get source -qq "$2"
)

# keel_windows_deps PREFIX: the compiled dependencies for the target, from Debian's sources,
# built once into PREFIX: SQLiteCpp and the SQLite amalgamation its source package bundles.
keel_windows_deps() {
  local prefix="$1" src="$1-src"
  if [ -f "$prefix/lib/cmake/SQLiteCpp/SQLiteCppConfig.cmake" ]; then return 0; fi
  keel_enable_deb_src
  rm -rf "$src"
  mkdir -p "$src"
  keel_log "building SQLiteCpp and SQLite for Windows from Debian's source package into $prefix"
  # apt-get source fetches into the current directory and unpacks with dpkg-source.
  keel_logged "$src/source.log" keel_apt_source "$src" sqlitecpp
  local tree
  tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'sqlitecpp-*' -print -quit)
  [ -n "$tree" ] || { echo "windows.sh: apt-get source sqlitecpp gave no source tree in $src" >&2; exit 1; }
  keel_logged "$src/configure.log" cmake -S "$tree" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$KEEL_ROOT/cmake/windows/x86_64-w64-mingw32.cmake" \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DSQLITECPP_INTERNAL_SQLITE=ON -DSQLITECPP_RUN_CPPLINT=OFF -DSQLITECPP_RUN_CPPCHECK=OFF \
    -DSQLITECPP_BUILD_TESTS=OFF -DSQLITECPP_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX="$prefix"
  keel_logged "$src/build.log" cmake --build "$src/build"
  keel_logged "$src/install.log" cmake --install "$src/build"
}

# wine64 is the loader, wine the command that starts it; no X server is needed for console
# programs. dpkg-dev unpacks source packages.
KEEL_PACKAGES+=(wine64 wine dpkg-dev)
keel_install_packages
native="$KEEL_ROOT/build"
if [ "$test" -eq 1 ] && [ ! -x "$native/bin/keel" ]; then
  keel_build "$native" Release -DKEEL_WARNINGS_AS_ERRORS=ON
fi
# The cross-platform tests run against the native build when there is one (ctest lists them
# as not run otherwise).
native_arg=()
if [ -x "$native/bin/keel" ]; then native_arg=(-DKEEL_NATIVE_BUILD="$native"); fi
dir="$KEEL_ROOT/build-windows"
keel_windows_deps "$dir/deps"
keel_build "$dir" Release -DKEEL_WARNINGS_AS_ERRORS=ON \
  -DCMAKE_TOOLCHAIN_FILE="$KEEL_ROOT/cmake/windows/x86_64-w64-mingw32.cmake" -DKEEL_WINDOWS_DEPS="$dir/deps" \
  "${native_arg[@]}"
[ "$test" -eq 1 ] || exit 0

# A private prefix; no .NET (mscoree) or HTML engine (mshtml), which console programs do not
# need, so wineboot does not look for them.
export WINEPREFIX="$dir/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
mkdir -p "$WINEPREFIX"
# One Wine server for the whole run, started before the prefix is booted: each test then starts
# in a fraction of a second instead of about 3 s (docs/windows.md). A server left by a run that
# was killed would make -p fail: it is stopped first.
wineserver -k 2>/dev/null || true
trap 'wineserver -k 2>/dev/null || true' EXIT
wineserver -p
keel_log "booting the Wine prefix $WINEPREFIX"
if ! wine wineboot >"$dir/wineboot.log" 2>&1; then
  cat "$dir/wineboot.log" >&2
  exit 1
fi
keel_log "running the Windows tests under Wine in $dir"
cd "$dir"
ctest --output-on-failure --timeout 120
