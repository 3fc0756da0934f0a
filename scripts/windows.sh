#!/usr/bin/env bash
# The Windows cross-build (docs/windows.md): install what is missing, then build the SDK, every
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

# wine64 is the loader, wine the command that starts it; no X server is needed for console programs.
KEEL_PACKAGES+=(wine64 wine)
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
keel_build "$dir" Release -DKEEL_WARNINGS_AS_ERRORS=ON \
  -DCMAKE_TOOLCHAIN_FILE="$KEEL_ROOT/cmake/windows/x86_64-w64-mingw32.cmake" "${native_arg[@]}"
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
