#!/usr/bin/env bash
# Command (2): install what is missing, build with warnings as errors, run the whole test suite.
#   scripts/test.sh            Release build in build/
#   scripts/test.sh --sanitize AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

keel_install_packages
if [ "${1:-}" = "--sanitize" ]; then
  dir="$KEEL_ROOT/build-asan"
  keel_build "$dir" Debug -DKEEL_WARNINGS_AS_ERRORS=ON -DKEEL_SANITIZE=address,undefined
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  dir="$KEEL_ROOT/build"
  keel_build "$dir" Release -DKEEL_WARNINGS_AS_ERRORS=ON
fi
keel_log "running tests in $dir"
cd "$dir"
ctest --output-on-failure --timeout 300
