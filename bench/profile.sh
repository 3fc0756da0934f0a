#!/usr/bin/env bash
# bench/profile.sh: where a request's cost goes in Keel, next to the bare Beast server.
# Findings: docs/benchmarks.md ("Profile of the hello path").
#
#   bash bench/profile.sh                  profile keel (hello route) and bare
#   bash bench/profile.sh keel relay bare  any of: keel (GET hello), relay (GET relay), bare,
#                                          events (in-memory events: Ir per delivered event)
#
# Uses the binaries bench/http.sh builds (run it first, or cmake --build BUILD_DIR).
# For each target:
#   callgrind  the server under valgrind --tool=callgrind; after a 2 s warm-up the counters are
#              zeroed, wrk -t1 -c8 runs CG_SECONDS [10], and the counters are dumped. Prints
#              user-space instructions (Ir) per request in total and for the TOP [25] functions
#              by inclusive and by self cost. The raw file stays in $BUILD_DIR/bench-profile/
#              for callgrind_annotate or kcachegrind.
#   perf       when `perf record -e cpu-clock` works (no hardware counters needed): samples the
#              server for PERF_SECONDS [5] under the benchmark's own load (server and wrk -t1
#              -c64 on CPU [0]) and prints the user/kernel split and the top symbols.
# Environment: BUILD_DIR [build], CG_SECONDS [10], PERF_SECONDS [5], TOP [25], CPU [first allowed].
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR
CG_SECONDS=${CG_SECONDS:-10}
PERF_SECONDS=${PERF_SECONDS:-5}
TOP=${TOP:-25}
CPU=${CPU:-$(taskset -cp $$ | sed -E 's/.*: *([0-9]+).*/\1/')}
KEEL=$BUILD_DIR/bin/keel
BARE=$BUILD_DIR/bin/keel_bench_bare_server
OUT=$BUILD_DIR/bench-profile
TARGETS=("$@")
((${#TARGETS[@]} > 0)) || TARGETS=(keel bare)

log() { printf '[profile %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in valgrind callgrind_annotate callgrind_control wrk curl taskset; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x $KEEL && -x $BARE ]] || die "build first: bash bench/http.sh (or cmake --build $BUILD_DIR)"
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-profile.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# server_cmd TARGET: sets CMD (the server command line, ending in --port-file) and URL_PATH.
server_cmd() {
  case $1 in
    keel | relay | events)
      mkdir -p "$TMP/plugins"
      if [[ $1 = events ]]; then
        cp "$BUILD_DIR/fixtures/events_pub.so" "$BUILD_DIR/fixtures/events_sub.so" "$TMP/plugins/"
      else
        cp "$BUILD_DIR/plugins/hello.so" "$BUILD_DIR/plugins/relay.so" "$TMP/plugins/"
      fi
      cat >"$TMP/keel.toml" <<EOF
[server]
io_threads = 1
drain_timeout_ms = 1000
data_dir = "$TMP/data"

[log]
level = "warn"
access_log = false

[plugins]
directory = "$TMP/plugins"

[events]
queue_capacity = 1000000

[plugin.events_sub]
record = false
EOF
      CMD=("$KEEL" serve --config "$TMP/keel.toml" --listen 127.0.0.1:0 --port-file "$TMP/port")
      URL_PATH=/api/hello/greet/bench
      if [[ $1 = relay ]]; then URL_PATH=/api/relay/greet/bench; fi
      if [[ $1 = events ]]; then URL_PATH="/api/events_sub/count?topic=demo.memory"; fi
      ;;
    bare)
      CMD=("$BARE" --listen 127.0.0.1:0 --port-file "$TMP/port")
      URL_PATH=/api/hello/greet/bench
      ;;
    *) die "unknown target '$1' (keel, relay, bare, events)" ;;
  esac
}

wait_port() {
  local i
  for ((i = 0; i < 600; i++)); do
    [[ -s $TMP/port ]] && { cat "$TMP/port"; return 0; }
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop() {
  kill -INT "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# Short C++ names: template arguments and parameter lists dropped.
shorten() {
  awk '{
    s = $0; gsub(/\(anonymous namespace\)/, "{anon}", s); gsub(/ \[clone[^]]*\]/, "", s)
    out = ""; depth = 0
    for (i = 1; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (c == "<" || c == "(") { if (depth == 0 && c == "(") out = out "()"; depth++; continue }
      if ((c == ">" || c == ")") && depth > 0) { depth--; continue }
      if (depth == 0) out = out c
    }
    print out }'
}

# first N: the first N lines of stdin, reading all of it (head would SIGPIPE the writer, which
# pipefail turns into a failure).
first() { awk -v n="$1" 'NR <= n'; }

# top FILE REQUESTS yes|no: the TOP functions by inclusive (yes) or self (no) cost.
top() {
  callgrind_annotate --inclusive="$3" --threshold=100 --auto=no "$1" 2>/dev/null |
    sed -n '/file:function/,$p' | sed '1,2d' |
    grep -Ev 'PROGRAM TOTALS|:(clone|start_thread|0x[0-9a-f]+|main|\(below main\)|__libc_start_main[^ ]*|std::thread::_State_impl.*|boost::asio::detail::scheduler::run\(.*)( \[|$)' |
    first "$TOP" |
    sed -E 's/ \[[^]]*\]$//; s/^ *([0-9,]+)( \([ .0-9%]+\))? +[^ :]*:/\1\t/' |
    while IFS=$'\t' read -r ir name; do
      printf '%8.0f  %s\n' "$(awk -v v="${ir//,/}" -v n="$2" 'BEGIN {print v / n}')" "$(shorten <<<"$name")"
    done
}

# load TARGET PORT SECONDS: the target's load for SECONDS; prints how many units it made
# (requests; for events, delivered events).
load() {
  local target=$1 port=$2 seconds=$3
  if [[ $target != events ]]; then
    wrk -t1 -c8 "-d${seconds}s" "http://127.0.0.1:$port$URL_PATH" | awk '/ requests in / {print $1}'
    return
  fi
  # POST /memory/1000 from one client until the time is up, then wait for the deliveries.
  local base=http://127.0.0.1:$port before end now count="" i
  before=$(curl -fsS "$base$URL_PATH")
  end=$(($(date +%s) + seconds))
  while (($(date +%s) < end)); do curl -fsS -o /dev/null -X POST "$base/api/events_pub/memory/1000"; done
  for ((i = 0; i < 600; i++)); do
    now=$(curl -fsS "$base$URL_PATH")
    [[ $now = "$count" ]] && break
    count=$now
    sleep 0.5
  done
  echo $((now - before))
}

profile_callgrind() {
  local target=$1 port requests file total unit=request
  [[ $target = events ]] && unit=event
  server_cmd "$target"
  rm -f "$TMP/port"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$target.%p" "${CMD[@]}" >"$TMP/vg.log" 2>&1 &
  SERVER_PID=$!
  port=$(wait_port) || { tail -n 20 "$TMP/vg.log" >&2; die "$target did not start under valgrind"; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$URL_PATH") = 200 ]] || die "$target: $URL_PATH is not 200"
  load "$target" "$port" 2 >/dev/null
  callgrind_control -z "$SERVER_PID" >/dev/null
  requests=$(load "$target" "$port" "$CG_SECONDS")
  callgrind_control -d "$SERVER_PID" >/dev/null
  file=$(find "$OUT" -name "callgrind.$target.$SERVER_PID.*" | sort | tail -n 1)
  stop
  total=$(awk '/^totals:/ {print $2}' "$file")
  echo "== callgrind: $target ($URL_PATH), $requests ${unit}s, $((total / requests)) Ir/$unit (user space) =="
  echo "-- inclusive Ir/$unit --"
  top "$file" "$requests" yes
  echo "-- self Ir/$unit --"
  top "$file" "$requests" no
  echo "(raw: $file)"
  echo
}

profile_perf() {
  local target=$1 port data=$TMP/perf.data
  server_cmd "$target"
  rm -f "$TMP/port"
  taskset -c "$CPU" "${CMD[@]}" >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  port=$(wait_port) || die "$target did not start"
  taskset -c "$CPU" wrk -t1 -c64 "-d$((PERF_SECONDS + 2))s" "http://127.0.0.1:$port$URL_PATH" >"$TMP/wrk.txt" &
  local wrk_pid=$!
  sleep 1
  perf record -q -e cpu-clock -F 2000 -g -p "$SERVER_PID" -o "$data" -- sleep "$PERF_SECONDS" >/dev/null 2>&1 || true
  wait "$wrk_pid"
  stop
  [[ -s $data ]] || return 0
  echo "== perf (cpu-clock, server and wrk -c64 on CPU $CPU): $target =="
  perf report -i "$data" --no-children --sort dso -g none --stdio 2>/dev/null | grep '%' | grep -v '^#' | first 6
  echo "-- top symbols (self) --"
  perf report -i "$data" --no-children --sort sym -g none --stdio 2>/dev/null | grep '%' | grep -v '^#' |
    first "$TOP" | cut -c1-160
  echo
}

# Syscalls per request: strace -c on the running server during PERF_SECONDS of wrk load.
profile_syscalls() {
  local target=$1 port requests strace_pid
  server_cmd "$target"
  rm -f "$TMP/port"
  taskset -c "$CPU" "${CMD[@]}" >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  port=$(wait_port) || die "$target did not start"
  strace -c -f -p "$SERVER_PID" -o "$TMP/strace.txt" 2>/dev/null &
  strace_pid=$!
  sleep 0.5
  requests=$(taskset -c "$CPU" wrk -t1 -c64 "-d${PERF_SECONDS}s" "http://127.0.0.1:$port$URL_PATH" |
    awk '/ requests in / {print $1}')
  kill -INT "$strace_pid" 2>/dev/null || true
  wait "$strace_pid" 2>/dev/null || true
  stop
  echo "== syscalls per request (strace -c, $requests requests; strace slows the server): $target =="
  awk -v n="$requests" '$1 ~ /^[0-9.]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" {
      calls = $4; errors = (NF == 6) ? $5 : 0
      if (calls / n >= 0.01)
        printf "  %-14s %6.2f/request%s\n", $NF, calls / n, errors ? sprintf(" (%.2f failed, e.g. EAGAIN)", errors / n) : ""
    }' "$TMP/strace.txt"
  echo
}

perf_works() {
  command -v perf >/dev/null && perf record -q -e cpu-clock -o "$TMP/probe.data" -- true >/dev/null 2>&1
}

for t in "${TARGETS[@]}"; do
  log "callgrind: $t (about $((CG_SECONDS + 10)) s)"
  profile_callgrind "$t"
done
# The syscall and perf profiles drive a route with wrk: events has none to drive.
ROUTES=()
for t in "${TARGETS[@]}"; do [[ $t = events ]] || ROUTES+=("$t"); done
if command -v strace >/dev/null; then
  for t in "${ROUTES[@]}"; do
    log "syscalls: $t"
    profile_syscalls "$t"
  done
fi
if perf_works; then
  for t in "${ROUTES[@]}"; do
    log "perf: $t"
    profile_perf "$t"
  done
else
  log "perf record -e cpu-clock does not work here; skipped"
fi
