#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, in build-fuzz/) and runs one or all of them.
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     default: all, 30 seconds per target
#   FUZZ_TIMEOUT=S: an input running longer than S seconds [10] is reported as a hang. libFuzzer
#   measures wall-clock time: a target starved of CPU (at a low priority beside compile jobs) can
#   pass 10 s on an input that takes milliseconds, so long campaigns beside other work raise it.
# Each target starts from its committed corpus (tests/fuzz/TARGET/corpus) and dictionary; what
# it finds new goes to build-fuzz/corpus/TARGET, never into the committed corpus. Prints each
# target's executions and executions per second; exits 1 if a target crashed (or broke a
# property, or hung), naming the input that did it (build-fuzz/crashes/). docs/testing.md.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

target=${1:-all}
seconds=${2:-30}
dir="$KEEL_ROOT/build-fuzz"
fuzz_src="$KEEL_ROOT/tests/fuzz"

keel_install_packages
keel_build "$dir" Debug -DKEEL_FUZZ=ON -DKEEL_WARNINGS_AS_ERRORS=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

if [ "$target" = all ]; then
  targets=()
  for t in "$fuzz_src"/*/; do targets+=("$(basename "$t")"); done
elif [ -x "$dir/fuzz/$target" ]; then
  targets=("$target")
else
  echo "no fuzz target '$target'; the targets are the folders of tests/fuzz" >&2
  exit 2
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$dir/crashes" "$dir/logs"
# A figure of the statistics libFuzzer prints last (-print_final_stats) in log $1.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }
failed=()
printf '%-12s %8s %12s %10s %8s  %s\n' target seconds executions exec/s new result >&2
for t in "${targets[@]}"; do
  corpus="$dir/corpus/$t"
  log="$dir/logs/$t.log"
  mkdir -p "$corpus"
  args=(-max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 -artifact_prefix="$dir/crashes/$t-")
  if [ -f "$fuzz_src/$t/$t.dict" ]; then args+=(-dict="$fuzz_src/$t/$t.dict"); fi
  # New inputs go to the first directory (the scratch corpus); the committed one is only read.
  status=0
  started=$SECONDS
  "$dir/fuzz/$t" "${args[@]}" "$corpus" "$fuzz_src/$t/corpus" >"$log" 2>&1 || status=$?
  result=ok
  if [ "$status" -ne 0 ]; then
    result="FAILED (exit $status): $(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n 1), log $log"
    failed+=("$t")
  fi
  printf '%-12s %8s %12s %10s %8s  %s\n' "$t" "$((SECONDS - started))" "$(final_stat "$log" number_of_executed_units)" \
    "$(final_stat "$log" average_exec_per_sec)" "$(final_stat "$log" new_units_added)" "$result" >&2
done
if [ "${#failed[@]}" -ne 0 ]; then
  keel_log "fuzz targets failed: ${failed[*]} (reproduce: build-fuzz/fuzz/TARGET CRASH-FILE)"
  exit 1
fi
