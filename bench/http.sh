#!/usr/bin/env bash
# bench/http.sh: Keel's HTTP benchmarks, measured against nginx and a bare Beast server.
# Method and results: docs/benchmarks.md.
#
#   bash bench/http.sh             build Release, run every scenario (about 8-10 minutes)
#   bash bench/http.sh --smoke     1 round of 2 s per target: proves the harness runs (CI)
#   bash bench/http.sh --no-build  reuse the binaries already in $BUILD_DIR
#   bash bench/http.sh --record    also append this run's measures to $HISTORY (commit it with
#                                  the change it measured; never with --smoke)
#
# The summary table shows, for each measure, the value last recorded in $HISTORY and the change
# since: a hot path that got slower shows at once.
#
# Exit status: 1 if something did not work (a server does not start, a route is not 200, wrk
# completes no requests, and in the reload scenario any non-2xx response, socket error, refused
# reload or wrong answer after a reload), with or without --smoke; timing figures and targets
# (MISS in the table) never fail the run.
#
# Environment (defaults in brackets):
#   ROUNDS [5]         wrk rounds per target; targets alternate A B C A B C ...
#   DURATION [5]       seconds per wrk round (whole seconds)
#   CONNECTIONS [64]   wrk connections (always one wrk thread)
#   WARMUP [1]         seconds of unmeasured wrk load per target before the rounds
#   SCENARIOS [hello accesslog echo relay storage events startup rss reload isolation cluster peers]
#   CPU [first allowed] the one CPU that every server and wrk are pinned to (taskset -c)
#   STARTUP_RUNS [5]   starts per configuration in the startup scenario
#   STARTUP_PLUGINS [100]
#   RELOAD_INTERVAL_MS [0]  pause between reloads in the reload scenario (0: back to back)
#   RELOAD_CPU [another CPU than CPU, if any]  the CPU the reload scenario's deploy loop runs on
#   BUILD_DIR [build]  configured with -G Ninja -DCMAKE_BUILD_TYPE=Release unless --no-build
#   KEEP_TMP [0]       1 keeps the temporary directory (configs, server logs, raw wrk output)
#   HISTORY [bench/history.tsv]  recorded runs: date, tree, measure, value (tab-separated)
#   PEERS_CACHE [${XDG_CACHE_HOME:-~/.cache}/keel-bench/peers]  where the peers scenario keeps
#                      bench/peers' node_modules (npm ci from its lockfile, one per lockfile and Node)
#
# Every wrk round records requests/s, p50 and p99 latency (wrk --latency) and the server's CPU
# time per request (utime+stime from /proc/PID/stat around the round, divided by the requests
# wrk completed). The table shows the median of the rounds for each column; a ratio between two
# targets is the median of the per-round ratios (round r of A and of B ran seconds apart).
#
# Adding a scenario (reload, isolation, ...):
#   1. write scenario_<name>(): start the servers it needs with start_keel / start_nginx /
#      start_bare (each sets LAST_PID, LAST_PORT; nginx also NGINX_WORKER), then call
#      run_rounds <scenario> <lua-or-""> "label|url|cpu-pids" ... which alternates the targets,
#      and stop_server for each pid;
#   2. add rows with add_row or ratios/targets with check (both feed the final table);
#   3. add <name> to ALL_SCENARIOS below and document it in docs/benchmarks.md.
#   Example: scenario_reload (its own loop instead of run_rounds, because half of its rounds
#   run a deploy loop next to wrk); an isolation scenario would compare one plugin's req/s
#   alone against the same with a slow neighbour.
set -euo pipefail

ALL_SCENARIOS="hello accesslog echo relay storage events startup rss reload isolation cluster peers"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
# Default CPU: the first one this process may run on (CPU 0 unless a cpuset says otherwise).
CPU=${CPU:-$(taskset -cp $$ | sed -E 's/.*: *([0-9]+).*/\1/')}
STARTUP_RUNS=${STARTUP_RUNS:-5}
STARTUP_PLUGINS=${STARTUP_PLUGINS:-100}
RELOAD_INTERVAL_MS=${RELOAD_INTERVAL_MS:-0}
# Default RELOAD_CPU: another allowed CPU than CPU, so the deploy loop does not take CPU time
# from the server and wrk; CPU itself when it is the only one.
RELOAD_CPU=${RELOAD_CPU:-$(taskset -cp $$ | sed -E 's/.*: *//' | tr ',' '\n' |
  awk -F- -v c="$CPU" '{for (i = $1; i <= ($2 == "" ? $1 : $2); i++) if (i != c) {print i; exit}}
    END {if (!NR) print c}')}
RELOAD_CPU=${RELOAD_CPU:-$CPU}
BUILD_DIR=${BUILD_DIR:-build}
KEEP_TMP=${KEEP_TMP:-0}
BUILD=1
SMOKE=0
RECORD=0
HISTORY=${HISTORY:-$ROOT/bench/history.tsv}

HELLO_PATH=/api/hello/greet/bench
HELLO_BODY='{"greeting":"Hello, bench!"}'
ECHO_PATH=/api/hello/echo
RELAY_PATH=/api/relay/greet/bench

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($# > 0)); do
  case $1 in
    --smoke) SMOKE=1 ;;
    --no-build) BUILD=0 ;;
    --record) RECORD=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/http.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((SMOKE)); then
  ROUNDS=1 DURATION=2 WARMUP=0 STARTUP_RUNS=1
  ((RECORD == 0)) || { echo "bench/http.sh: --record with --smoke would record noise; drop one" >&2; exit 2; }
fi
for n in ROUNDS DURATION CONNECTIONS WARMUP CPU STARTUP_RUNS STARTUP_PLUGINS RELOAD_INTERVAL_MS RELOAD_CPU; do
  [[ ${!n} =~ ^[0-9]+$ ]] || { echo "bench/http.sh: $n must be a whole number, not '${!n}'" >&2; exit 2; }
done
((ROUNDS >= 1 && DURATION >= 1 && STARTUP_RUNS >= 1)) || { echo "bench/http.sh: ROUNDS, DURATION, STARTUP_RUNS must be >= 1" >&2; exit 2; }
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR

KEEL=$BUILD_DIR/bin/keel
BARE=$BUILD_DIR/bin/keel_bench_bare_server
PLUGIN_SRC=$BUILD_DIR/plugins
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install wrk nginx-light curl util-linux)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench.XXXXXX")
RESULTS=$TMP/results.tsv # scenario target req/s p50_us p99_us cpu_us/req resp_bytes errors
CHECKS=$TMP/checks.tsv   # what value target verdict
FAILURES=$TMP/failures   # one line per fail_later: the run exits 1 at the end
: >"$RESULTS"
: >"$CHECKS"
: >"$FAILURES"
STARTED=() # pids this script started; the EXIT trap stops whatever is left

PG_DIR= # a PostgreSQL cluster the storage scenario started (stopped by the EXIT trap too)

cleanup() {
  local pid
  if [[ -n $PG_DIR ]]; then "$BUILD_DIR/tests/keel_test_postgres_fixture" stop "$PG_DIR" >/dev/null 2>&1 || true; fi
  for pid in "${STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP_TMP = 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Build

build() {
  log "building Release in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$TMP/cmake.log" 2>&1 ||
    { tail -n 30 "$TMP/cmake.log" >&2; die "cmake configure failed"; }
  # Only what the benchmarks run: the full tree (tests) would take minutes on 2 cores.
  cmake --build "$BUILD_DIR" --target keel_host keel_plugin_hello keel_plugin_relay keel_plugin_catalog keel_plugin_orders \
    keel_bench_bare_server \
    keel_fixture_store keel_fixture_events_pub keel_fixture_events_sub keel_fixture_reload_v1 keel_fixture_reload_v2 ||
    die "build failed"
}

# ---------------------------------------------------------------------------------------------
# Process helpers

# Sum of utime+stime (clock ticks) of the given pids. /proc/PID/stat fields 14 and 15; the
# command name in field 2 may hold spaces, so count from the ")" that closes it.
cpu_ticks() {
  local pid total=0 rest f
  for pid in "$@"; do
    rest=$(<"/proc/$pid/stat")
    rest=${rest##*) }
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# Sum of a /proc/PID/status field in KiB (VmRSS, VmHWM) over the given pids.
status_kib() {
  local field=$1 pid total=0 kib
  shift
  for pid in "$@"; do
    kib=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
    total=$((total + kib))
  done
  echo "$total"
}

# Waits until FILE holds a port number or PID exits; prints the port.
wait_port_file() {
  local file=$1 pid=$2 i
  for ((i = 0; i < 3000; i++)); do
    if [[ -s $file ]]; then
      cat "$file"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

forget_pid() {
  local pid=$1 i
  for i in "${!STARTED[@]}"; do
    [[ ${STARTED[i]} = "$pid" ]] && unset 'STARTED[i]'
  done
  STARTED=("${STARTED[@]}")
}

stop_server() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# start_keel NAME PLUGIN_DIR [EXTRA_TOML]: Keel with io_threads=1, access log off, log level
# warn (BENCH_KEEL_LOG replaces that [log] section). Sets LAST_PID and LAST_PORT.
start_keel() {
  local name=$1 plugins=$2 extra=${3:-} dir=$TMP/keel-$1
  local log_toml=${BENCH_KEEL_LOG:-$'level = "warn"\naccess_log = false'}
  mkdir -p "$dir"
  cat >"$dir/keel.toml" <<EOF
[server]
listen = "127.0.0.1:0"
io_threads = 1
drain_timeout_ms = 1000
data_dir = "$dir/data"

[log]
$log_toml

[plugins]
directory = "$plugins"
$extra
EOF
  rm -f "$dir/port"
  taskset -c "$CPU" "$KEEL" serve --config "$dir/keel.toml" --listen 127.0.0.1:0 --port-file "$dir/port" \
    >"$dir/out.log" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
  LAST_PORT=$(wait_port_file "$dir/port" "$LAST_PID") ||
    { tail -n 20 "$dir/out.log" >&2; die "keel ($name) did not start"; }
}

# start_bare NAME: the bare Beast baseline. Sets LAST_PID and LAST_PORT.
start_bare() {
  local dir=$TMP/bare-$1
  mkdir -p "$dir"
  taskset -c "$CPU" "$BARE" --listen 127.0.0.1:0 --port-file "$dir/port" >"$dir/out.log" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
  LAST_PORT=$(wait_port_file "$dir/port" "$LAST_PID") ||
    { tail -n 20 "$dir/out.log" >&2; die "bare server did not start"; }
}

port_in_use() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {found = 1} END {exit !found}' \
    /proc/net/tcp /proc/net/tcp6
}

# start_nginx NAME [ACCESS_LOG]: Debian's nginx in the foreground, 1 worker, answering the same
# bytes as hello (and ECHO_BODY on the echo path); ACCESS_LOG is its access_log directive's
# arguments ("off" by default). Sets LAST_PID (master), NGINX_WORKER, LAST_PORT.
start_nginx() {
  local dir=$TMP/nginx-$1 access=${2:-off} port attempt i
  mkdir -p "$dir/tmp"
  for ((attempt = 0; attempt < 5; attempt++)); do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $access;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  default_type application/json;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 '$HELLO_BODY'; }
    location = $ECHO_PATH { return 200 '$ECHO_BODY'; }
  }
}
EOF
    taskset -c "$CPU" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
      >"$dir/out.log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
    for ((i = 0; i < 500; i++)); do
      kill -0 "$LAST_PID" 2>/dev/null || break
      NGINX_WORKER=$(pgrep -P "$LAST_PID" | head -n 1 || true)
      if [[ -n $NGINX_WORKER ]] && curl -fs -o /dev/null "http://127.0.0.1:$port/"; then
        LAST_PORT=$port
        return 0
      fi
      sleep 0.01
    done
    stop_server "$LAST_PID"
    log "nginx did not come up on port $port, retrying"
  done
  cat "$dir/out.log" "$dir/error.log" >&2 2>/dev/null || true
  die "nginx did not start"
}

# ---------------------------------------------------------------------------------------------
# Measurement

# Total bytes of one response (status line, header, body), as curl receives them.
response_bytes() {
  local url=$1 lua=$2
  if [[ -n $lua && $lua = "${ORDER_LUA:-}" ]]; then  # one more order, with a key of the length wrk sends
    curl -s -i -H 'Expect:' -H 'Content-Type: application/json' -H "Idempotency-Key: bytes-$(printf '%013d' $((RANDOM * 32768 + RANDOM)))" \
      --data-binary "$ORDER_BODY" "$url" | wc -c
  elif [[ -n $lua ]]; then
    curl -s -i -H 'Expect:' -H 'Content-Type: application/json' --data-binary "@$ECHO_FILE" "$url" | wc -c
  else
    curl -s -i "$url" | wc -c
  fi
}

# Prints "req/s p50_us p99_us requests errors" from wrk --latency output on stdin.
parse_wrk() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0
      if (v ~ /ms$/) return (v + 0) * 1000
      if (v ~ /m$/)  return (v + 0) * 60000000
      if (v ~ /s$/)  return (v + 0) * 1000000
      return v + 0
    }
    $1 == "50%" { p50 = us($2) }
    $1 == "99%" { p99 = us($2) }
    / requests in / { requests = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { errors += $5 }
    END { printf "%.0f %.0f %.0f %d %d\n", rps, p50, p99, requests, errors }'
}

# wrk_round URL LUA DURATION: one pinned wrk run; its output goes to stdout.
wrk_round() {
  local url=$1 lua=$2 duration=$3
  local args=(-t1 "-c$CONNECTIONS" "-d${duration}s" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  taskset -c "$CPU" wrk "${args[@]}" "$url"
}

# measure SCENARIO LABEL URL LUA PIDS: one round; appends "req/s p50 p99 cpu_us/req errors"
# to $TMP/raw/SCENARIO.LABEL. PIDS (comma-separated) are the processes whose CPU is counted.
measure() {
  local scen=$1 label=$2 url=$3 lua=$4 pids before after out rps p50 p99 requests errors
  IFS=, read -r -a pids <<<"$5"
  before=$(cpu_ticks "${pids[@]}")
  out=$(wrk_round "$url" "$lua" "$DURATION")
  after=$(cpu_ticks "${pids[@]}")
  printf '%s\n' "$out" >>"$TMP/raw/$scen.$label.wrk"
  read -r rps p50 p99 requests errors < <(parse_wrk <<<"$out")
  ((requests > 0)) || { printf '%s\n' "$out" >&2; die "$scen/$label: wrk completed no requests"; }
  local cpu
  cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
  echo "$rps $p50 $p99 $cpu $errors" >>"$TMP/raw/$scen.$label"
  log "$scen round: $label $rps req/s, p50 ${p50}us, p99 ${p99}us, ${cpu}us CPU/req, errors $errors"
}

# Median of column COL (1-based) of FILE.
median() {
  sort -n -k "$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_rounds SCENARIO LUA "label|url|pids" ...: warm-up, then ROUNDS rounds of every target in
# turn (A B C A B C ...), then one result row per target with the medians.
run_rounds() {
  local scen=$1 lua=$2 spec label url pids r
  shift 2
  mkdir -p "$TMP/raw"
  for spec in "$@"; do
    IFS='|' read -r label url pids <<<"$spec"
    rm -f "$TMP/raw/$scen.$label"
    if ((WARMUP > 0)); then wrk_round "$url" "$lua" "$WARMUP" >/dev/null; fi
  done
  for ((r = 1; r <= ROUNDS; r++)); do
    for spec in "$@"; do
      IFS='|' read -r label url pids <<<"$spec"
      measure "$scen" "$label" "$url" "$lua" "$pids"
    done
  done
  for spec in "$@"; do
    IFS='|' read -r label url pids <<<"$spec"
    local raw=$TMP/raw/$scen.$label errors
    errors=$(awk '{s += $5} END {print s + 0}' "$raw")
    add_row "$scen" "$label" "$(median "$raw" 1)" "$(median "$raw" 2)" "$(median "$raw" 3)" "$(median "$raw" 4)" \
      "$(response_bytes "$url" "$lua")" "$errors"
  done
}

# add_row SCENARIO TARGET REQ/S P50 P99 CPU BYTES ERRORS
add_row() { printf '%s\t%s\t%.0f\t%.0f\t%.0f\t%.2f\t%s\t%s\n' "$@" >>"$RESULTS"; }

# paired_ratio SCENARIO A B COLUMN: median over the rounds of A/B, where round r of A and of B
# ran seconds apart; steadier than a ratio of medians when the machine drifts. COLUMN of the raw
# files: 1 = req/s, 4 = CPU us/request.
paired_ratio() {
  local a=$TMP/raw/$1.$2 b=$TMP/raw/$1.$3
  paste -d' ' "$a" "$b" | awk -v c="$4" '{n = split($0, f, " "); d = f[c + n / 2]; if (d > 0) printf "%.4f\n", f[c] / d}' \
    >"$TMP/ratio"
  if [[ -s $TMP/ratio ]]; then awk '{printf "%.3f\n", $1}' <<<"$(median "$TMP/ratio" 1)"; else echo n/a; fi
}

# check WHAT VALUE OP LIMIT [UNIT]: one line of the targets table (OP is >=, <=, <, or "-").
check() {
  local what=$1 v=$2 op=$3 limit=$4 unit=${5:-} verdict=info
  if [[ $op != - ]]; then
    verdict=$(awk -v v="$v" -v l="$limit" -v op="$op" 'BEGIN {
      ok = (op == ">=") ? v >= l : (op == "<=") ? v <= l : (op == "<") ? v < l : 0
      print (v == "n/a") ? "n/a" : ok ? "ok" : "MISS" }')
  fi
  printf '%s\t%s%s\t%s\t%s\t%s\n' "$what" "$v" "$unit" "$([[ $op = - ]] && echo "-" || echo "$op $limit$unit")" \
    "$verdict" "$v" >>"$CHECKS"
}

# The checks with two more columns: the value last recorded in $HISTORY for the measure (and
# its date) and the change since, in percent.
checks_against_history() {
  awk -F'\t' -v OFS='\t' -v checks="$CHECKS" '
    FILENAME != checks { if ($1 !~ /^#/ && $3 != "") { last[$3] = $4; when[$3] = $1 }; next }
    {
      change = "-"; before = "-"
      if (($1 in last) && last[$1] + 0 != 0 && $5 ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) {
        before = last[$1] " (" substr(when[$1], 1, 10) ")"
        change = sprintf("%+.1f%%", ($5 / last[$1] - 1) * 100)
      }
      print $1, $2, $3, $4, before, change
    }' "$([[ -s $HISTORY ]] && echo "$HISTORY" || echo /dev/null)" "$CHECKS"
}

# Appends this run's measures to $HISTORY (--record).
record_history() {
  local when
  when=$(date -u '+%Y-%m-%dT%H:%MZ')
  [[ -s $HISTORY ]] || printf '# date\ttree\tmeasure\tvalue  (bench/http.sh --record; docs/benchmarks.md)\n' >"$HISTORY"
  # Numbers only: a measure printed as text (the peers' "26.0 / 111.0 / 115.0" RSS) is shown, not kept.
  # shellcheck disable=SC2016  # an awk pattern: $5 is awk's field, not the shell's
  local numeric='$5 ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/'
  awk -F'\t' -v OFS='\t' -v when="$when" -v tree="$TREE" "$numeric {print when, tree, \$1, \$5}" "$CHECKS" >>"$HISTORY"
  log "recorded $(awk -F'\t' "$numeric" "$CHECKS" | wc -l) measures in $HISTORY"
}

# fail_later MESSAGE: something did not work (not a timing miss); the run goes on, prints the
# table, then exits 1.
fail_later() {
  log "FAIL: $*"
  echo "$*" >>"$FAILURES"
}

require_ok() {
  local url=$1 what=$2 code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
  [[ $code = 200 ]] || die "$what: GET $url answered ${code:-nothing}, not 200 (is the plugin loader working?)"
}

plugin_dir() {
  local dir=$TMP/plugins-$1 p
  shift
  mkdir -p "$dir"
  for p in "$@"; do
    [[ -f $PLUGIN_SRC/$p.so ]] || die "$PLUGIN_SRC/$p.so not built"
    cp "$PLUGIN_SRC/$p.so" "$dir/"
  done
  echo "$dir"
}

# ---------------------------------------------------------------------------------------------
# Scenarios: one function each.

# hello: GET /api/hello/greet/bench on Keel, nginx (return 200) and the bare Beast server.
scenario_hello() {
  local dir keel nginx nginx_worker bare kp np bp
  dir=$(plugin_dir hello hello)
  start_keel hello "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_nginx hello; nginx=$LAST_PID nginx_worker=$NGINX_WORKER np=$LAST_PORT
  start_bare hello; bare=$LAST_PID bp=$LAST_PORT
  require_ok "http://127.0.0.1:$kp$HELLO_PATH" "keel hello"
  run_rounds hello "" "keel|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "nginx|http://127.0.0.1:$np$HELLO_PATH|$nginx,$nginx_worker" "bare|http://127.0.0.1:$bp$HELLO_PATH|$bare"
  stop_server "$keel"; stop_server "$nginx"; stop_server "$bare"
  check "hello keel/nginx req/s" "$(paired_ratio hello keel nginx 1)" ">=" 0.9
  check "hello keel/nginx CPU/request" "$(paired_ratio hello keel nginx 4)" "<=" 1.1
  check "hello keel/bare req/s (dispatch+routing overhead <= 5 %)" \
    "$(paired_ratio hello keel bare 1)" ">=" 0.95
  check "hello keel/bare CPU/request" "$(paired_ratio hello keel bare 4)" - -
}

# accesslog: the hello request with every request logged to a file by both servers: Keel with
# its default [log] (text, level info, access_log = true) and [log] file, nginx with
# `access_log FILE combined` (one write per request: nginx's default, no buffer=).
scenario_accesslog() {
  local dir keel nginx nginx_worker kp np keel_log=$TMP/keel-accesslog/keel.log nginx_log=$TMP/nginx-accesslog/access.log
  dir=$(plugin_dir hello hello)
  BENCH_KEEL_LOG="file = \"$keel_log\"" start_keel accesslog "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_nginx accesslog "$nginx_log combined"; nginx=$LAST_PID nginx_worker=$NGINX_WORKER np=$LAST_PORT
  require_ok "http://127.0.0.1:$kp$HELLO_PATH" "keel hello (access log)"
  run_rounds accesslog "" "keel|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "nginx|http://127.0.0.1:$np$HELLO_PATH|$nginx,$nginx_worker"
  stop_server "$keel"; stop_server "$nginx"
  local kl nl
  kl=$(grep -c ' \[access\] request ' "$keel_log" || true)
  nl=$(wc -l <"$nginx_log" || echo 0)
  log "accesslog: keel wrote $kl access lines, nginx $nl"
  ((kl > 0 && nl > 0)) || fail_later "accesslog: a server wrote no access lines (keel $kl, nginx $nl)"
  check "access log keel/nginx req/s" "$(paired_ratio accesslog keel nginx 1)" ">=" 0.95
  check "access log keel/nginx CPU/request" "$(paired_ratio accesslog keel nginx 4)" "<=" 1.05
}

# echo: POST a 1 KiB JSON body. Keel runs it through hello's /echo; the bare server echoes it
# too; nginx's `return 200` reads and discards the body and answers a fixed 1 KiB string, so
# the response sizes match but nginx does not copy the body.
scenario_echo() {
  local dir keel nginx nginx_worker bare kp np bp
  dir=$(plugin_dir hello hello)
  start_keel echo "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_nginx echo; nginx=$LAST_PID nginx_worker=$NGINX_WORKER np=$LAST_PORT
  start_bare echo; bare=$LAST_PID bp=$LAST_PORT
  require_ok "http://127.0.0.1:$kp$HELLO_PATH" "keel hello"
  run_rounds echo "$ECHO_LUA" "keel|http://127.0.0.1:$kp$ECHO_PATH|$keel" \
    "nginx|http://127.0.0.1:$np$ECHO_PATH|$nginx,$nginx_worker" "bare|http://127.0.0.1:$bp$ECHO_PATH|$bare"
  stop_server "$keel"; stop_server "$nginx"; stop_server "$bare"
  check "echo keel/nginx req/s" "$(paired_ratio echo keel nginx 1)" - -
  check "echo keel/nginx CPU/request" "$(paired_ratio echo keel nginx 4)" - -
  check "echo keel/bare req/s" "$(paired_ratio echo keel bare 1)" - -
}

# relay: GET /api/relay/greet/bench (relay calls hello through the host) against GET
# /api/hello/greet/bench on the same Keel process, alternating.
scenario_relay() {
  local dir keel kp
  dir=$(plugin_dir relay hello relay)
  start_keel relay "$dir"; keel=$LAST_PID kp=$LAST_PORT
  require_ok "http://127.0.0.1:$kp$RELAY_PATH" "keel relay"
  run_rounds relay "" "keel-hello|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "keel-relay|http://127.0.0.1:$kp$RELAY_PATH|$keel"
  stop_server "$keel"
  check "relay/hello req/s" "$(paired_ratio relay keel-relay keel-hello 1)" - -
  check "relay/hello CPU/request" "$(paired_ratio relay keel-relay keel-hello 4)" - -
}

# storage: the store fixture plugin (tests/integration/fixtures/store) reads one row by primary
# key (GET /api/store/items/1) and inserts one row (POST /api/store/items, autocommit) through
# keel.storage/1, both "blocking" routes on the worker pool. References in the same process:
# hello's GET /greet (reads) and POST /echo with the same body (writes). Writes are measured with
# [storage] synchronous = "normal" (the default) and "full" (fsync per commit). The same plugin
# once more with [storage] engine = "postgres", on a PostgreSQL 15 cluster the test suite's
# fixture program starts (loopback TCP, fsync off: the engine's own cost, not the disk's); the
# server's processes are not pinned, so the db-*-pg CPU per request counts Keel's side only.
scenario_storage() {
  local dir keel kp full fp pg pgp url port
  dir=$(plugin_dir storage hello)
  [[ -f $BUILD_DIR/fixtures/store.so ]] || die "$BUILD_DIR/fixtures/store.so not built"
  [[ -x $BUILD_DIR/tests/keel_test_postgres_fixture ]] || die "$BUILD_DIR/tests/keel_test_postgres_fixture not built"
  cp "$BUILD_DIR/fixtures/store.so" "$dir/"
  PG_DIR=$TMP/postgres
  chmod o+x "$TMP"  # the postgres account runs the server below it
  "$BUILD_DIR/tests/keel_test_postgres_fixture" start "$PG_DIR" >"$TMP/postgres.log" 2>&1 ||
    { cat "$TMP/postgres.log" >&2; die "storage: PostgreSQL did not start"; }
  url=$(cat "$PG_DIR/url")
  start_keel storage "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_keel storage-full "$dir" $'[storage]\nsynchronous = "full"'; full=$LAST_PID fp=$LAST_PORT
  start_keel storage-pg "$dir" "$(printf '[storage]\nengine = "postgres"\npostgres_url = "%s"' "$url")"
  pg=$LAST_PID pgp=$LAST_PORT
  for port in "$kp" "$pgp"; do
    curl -s -o /dev/null -X POST --data 'a row to read' "http://127.0.0.1:$port/api/store/items"
    require_ok "http://127.0.0.1:$port/api/store/items/1" "keel store read (port $port)"
  done
  run_rounds storage "" "hello|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "db-read|http://127.0.0.1:$kp/api/store/items/1|$keel" "db-read-pg|http://127.0.0.1:$pgp/api/store/items/1|$pg"
  run_rounds storage "$WRITE_LUA" "echo|http://127.0.0.1:$kp$ECHO_PATH|$keel" \
    "db-write|http://127.0.0.1:$kp/api/store/items|$keel" "db-write-full|http://127.0.0.1:$fp/api/store/items|$full" \
    "db-write-pg|http://127.0.0.1:$pgp/api/store/items|$pg"
  stop_server "$keel"; stop_server "$full"; stop_server "$pg"
  "$BUILD_DIR/tests/keel_test_postgres_fixture" stop "$PG_DIR" >/dev/null 2>&1 || true
  PG_DIR=
  check "storage db-read/hello req/s" "$(paired_ratio storage db-read hello 1)" - -
  check "storage db-read/hello CPU/request" "$(paired_ratio storage db-read hello 4)" - -
  check "storage db-write/echo req/s" "$(paired_ratio storage db-write echo 1)" - -
  check "storage db-write/echo CPU/request" "$(paired_ratio storage db-write echo 4)" - -
  check "storage db-write-full/db-write req/s" "$(paired_ratio storage db-write-full db-write 1)" - -
  check "storage db-read-pg/db-read req/s (PostgreSQL/SQLite)" "$(paired_ratio storage db-read-pg db-read 1)" - -
  check "storage db-write-pg/db-write req/s (PostgreSQL/SQLite)" "$(paired_ratio storage db-write-pg db-write 1)" - -
}

# events: events delivered per second through the event bus, Keel and its plugins pinned to one
# CPU. The events_pub fixture (tests/integration/fixtures/events_pub) publishes N events per
# request from one client (curl, pinned to the same CPU) for DURATION seconds; the events_sub
# fixture counts them in memory ([plugin.events_sub] record = false: the bus is measured, not a
# subscriber's database). A round ends when the subscriber has every accepted event; delivered/s
# = accepted events / (publish start .. last delivery). Targets:
#   memory       POST /memory/N   in-memory topic (inbox per subscriber, [events] queue_capacity
#                                 raised so the publisher is not refused; refusals are counted)
#   durable      POST /durable/N  durable topic, Host::publish: one outbox commit per event
#   durable-txn  POST /txn/N/commit  durable topic, Transaction::publish: N events per commit
#   durable-parallel  POST /durable/N from EVENTS_CLIENTS [8] clients at once: publishes outside a
#                 transaction that meet share one outbox commit (group commit)
# The result rows put delivered events/s in the req/s column, CPU time of the Keel process per
# delivered event in cpu_us/req and busy refusals in errors; latency and bytes do not apply (0).
EVENTS_MEMORY_N=${EVENTS_MEMORY_N:-200000}
EVENTS_DURABLE_N=${EVENTS_DURABLE_N:-2000}
EVENTS_TXN_N=${EVENTS_TXN_N:-10000}
EVENTS_CLIENTS=${EVENTS_CLIENTS:-8}

# events_client URL N END LABEL: POSTs URL until the clock passes END (microseconds), then prints
# "accepted busy requests". An answer that is no count prints nothing (the round then fails).
events_client() {
  local url=$1 n=$2 end=$3 label=$4 out a b accepted=0 busy=0 requests=0
  while ((${EPOCHREALTIME/./} < end)); do
    out=$(taskset -c "$CPU" curl -fsS -X POST "$url") || { log "events/$label: POST $url failed"; return 1; }
    case $out in
      accepted=*) a=${out#accepted=} a=${a%% *} b=${out##*busy=} ;;
      committed) a=$n b=0 ;;
      *) a=$out b=0 ;;
    esac
    [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || { log "events/$label: unexpected answer '$out'"; return 1; }
    accepted=$((accepted + a)) busy=$((busy + b)) requests=$((requests + 1))
  done
  echo "$accepted $busy $requests"
}

# events_round LABEL PATH N TOPIC PORT PID [COUNTING_PORT] [CLIENTS]: one round; appends "events/s cpu_us/event busy" to
# $TMP/raw/events.LABEL.
events_round() {
  local label=$1 path=$2 n=$3 topic=$4 port=$5 pid=$6 base before got want t0 t1 end deadline
  local accepted=0 busy=0 ticks0 ticks1 requests=0 counted
  base=http://127.0.0.1:$port
  counted=http://127.0.0.1:${7:-$port}  # the host whose events_sub counts (the cluster scenario: another one)
  before=$(curl -fsS "$counted/api/events_sub/count?topic=$topic") || die "events: GET count failed"
  ticks0=$(cpu_ticks "$pid")
  t0=${EPOCHREALTIME/./}
  end=$((t0 + DURATION * 1000000))
  local c clients=${8:-1} sums=$TMP/raw/events.$label.clients pids=()
  mkdir -p "$TMP/raw"
  rm -f "$sums"
  for ((c = 1; c <= clients; c++)); do
    events_client "$base$path" "$n" "$end" "$label" >>"$sums" &
    pids+=($!)
  done
  wait "${pids[@]}"  # not a bare wait: the servers are children of this shell too
  read -r accepted busy requests < <(awk '{a += $1; b += $2; r += $3} END {print a + 0, b + 0, r + 0}' "$sums")
  ((requests > 0)) || die "events/$label: no request succeeded"
  want=$((before + accepted))
  deadline=$((${EPOCHREALTIME/./} + 120000000))
  while :; do
    got=$(curl -fsS "$counted/api/events_sub/count?topic=$topic") || die "events/$label: GET count failed"
    ((got < want)) || break
    if ((${EPOCHREALTIME/./} >= deadline)); then
      log "events/$label: only $((got - before)) of $accepted events delivered after 120 s"
      break
    fi
    sleep 0.005
  done
  t1=${EPOCHREALTIME/./}
  ticks1=$(cpu_ticks "$pid")
  mkdir -p "$TMP/raw"
  awk -v d=$((got - before)) -v us=$((t1 - t0)) -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v busy="$busy" \
    'BEGIN {printf "%.0f %.3f %d\n", d * 1e6 / us, (d > 0 ? t * 1e6 / hz / d : 0), busy}' >>"$TMP/raw/events.$label"
  log "events round: $label $(tail -n 1 "$TMP/raw/events.$label" | awk '{print $1}') delivered/s" \
    "($((got - before)) of $accepted in $(((t1 - t0) / 1000)) ms, $requests requests, busy $busy," \
    "$(tail -n 1 "$TMP/raw/events.$label" | awk '{print $2}') us CPU/event)"
}

scenario_events() {
  local dir keel kp r spec label path n topic raw p
  dir=$(plugin_dir events)
  for p in events_pub events_sub; do
    [[ -f $BUILD_DIR/fixtures/$p.so ]] || die "$BUILD_DIR/fixtures/$p.so not built"
    cp "$BUILD_DIR/fixtures/$p.so" "$dir/"
  done
  start_keel events "$dir" $'[events]\nqueue_capacity = 1000000\n[plugin.events_sub]\nrecord = false'
  keel=$LAST_PID kp=$LAST_PORT
  require_ok "http://127.0.0.1:$kp/api/events_sub/count" "keel events_sub"
  local targets=("memory|/api/events_pub/memory/$EVENTS_MEMORY_N?busy=count|$EVENTS_MEMORY_N|demo.memory"
    "durable|/api/events_pub/durable/$EVENTS_DURABLE_N|$EVENTS_DURABLE_N|demo.durable"
    "durable-txn|/api/events_pub/txn/$EVENTS_TXN_N/commit|$EVENTS_TXN_N|demo.durable"
    "durable-parallel|/api/events_pub/durable/$((EVENTS_DURABLE_N / 10))|$((EVENTS_DURABLE_N / 10))|demo.durable|$EVENTS_CLIENTS")
  for spec in "${targets[@]}"; do
    IFS='|' read -r label path n topic <<<"$spec"
    rm -f "$TMP/raw/events.$label"
  done
  local clients
  for ((r = 1; r <= ROUNDS; r++)); do
    for spec in "${targets[@]}"; do
      IFS='|' read -r label path n topic clients <<<"$spec"
      events_round "$label" "$path" "$n" "$topic" "$kp" "$keel" "$kp" "${clients:-1}"
    done
  done
  stop_server "$keel"
  for spec in "${targets[@]}"; do
    IFS='|' read -r label path n topic <<<"$spec"
    raw=$TMP/raw/events.$label
    add_row events "$label" "$(median "$raw" 1)" 0 0 "$(median "$raw" 2)" 0 "$(awk '{s += $3} END {print s + 0}' "$raw")"
  done
  check "events in-memory delivered/s" "$(median "$TMP/raw/events.memory" 1)" ">=" 1000000
  check "events durable delivered/s" "$(median "$TMP/raw/events.durable" 1)" ">=" 50000
  check "events durable delivered/s, $EVENTS_TXN_N per transaction" "$(median "$TMP/raw/events.durable-txn" 1)" \
    ">=" 50000
  check "events in-memory CPU us/event" "$(median "$TMP/raw/events.memory" 2)" - -
  check "events durable CPU us/event" "$(median "$TMP/raw/events.durable" 2)" - -
  check "events durable-txn CPU us/event" "$(median "$TMP/raw/events.durable-txn" 2)" - -
  check "events durable-parallel ($EVENTS_CLIENTS clients) CPU us/event" "$(median "$TMP/raw/events.durable-parallel" 2)" - -
  check "events durable/durable-txn delivered/s (one commit per publish)" \
    "$(awk -v a="$(median "$TMP/raw/events.durable" 1)" -v b="$(median "$TMP/raw/events.durable-txn" 1)" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')" ">=" 0.5
  check "events durable-parallel/durable-txn delivered/s (group commit)" \
    "$(awk -v a="$(median "$TMP/raw/events.durable-parallel" 1)" -v b="$(median "$TMP/raw/events.durable-txn" 1)" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')" ">=" 0.5
}

# Builds STARTUP_PLUGINS distinct copies of bench/startup_plugin.c into $BUILD_DIR/bench-plugins
# (cached: only missing or outdated ones are compiled).
build_startup_plugins() {
  local out=$BUILD_DIR/bench-plugins src=$ROOT/bench/startup_plugin.c hdr=$ROOT/plugin-api/include/keel/plugin.h
  local jobs i name pids=() built=0
  mkdir -p "$out"
  jobs=$(nproc)
  for ((i = 1; i <= STARTUP_PLUGINS; i++)); do
    printf -v name 'p%03d' "$i"
    [[ -f $out/$name.so && $out/$name.so -nt $src && $out/$name.so -nt $hdr ]] && continue
    "${CC:-cc}" -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -fPIC -shared -fvisibility=hidden \
      -Wl,--no-undefined -I"$ROOT/plugin-api/include" -DPLUGIN_NAME="$name" "$src" -o "$out/$name.so" &
    pids+=($!)
    built=$((built + 1))
    if ((${#pids[@]} >= jobs)); then
      wait "${pids[@]}" || die "compiling startup plugins failed"
      pids=()
    fi
  done
  if ((${#pids[@]} > 0)); then wait "${pids[@]}" || die "compiling startup plugins failed"; fi
  ((built == 0)) || log "compiled $built startup plugins into $out"
}

# One start of Keel with plugin directory DIR: sets STARTUP_MS (milliseconds from launch until
# the port file exists), STARTUP_PID and STARTUP_PORT. The end time is the port file's mtime (written just before keel's rename), so
# the poll interval does not count; file timestamps tick with the kernel's coarse clock (one
# jiffy, up to 4 ms).
time_start() {
  local dir=$1 cfg=$TMP/keel-startup t0 pid end
  mkdir -p "$cfg"
  cat >"$cfg/keel.toml" <<EOF
[server]
listen = "127.0.0.1:0"
io_threads = 1
drain_timeout_ms = 1000
data_dir = "$cfg/data"

[log]
level = "warn"
access_log = false

[plugins]
directory = "$dir"
EOF
  rm -f "$cfg/port"
  t0=$EPOCHREALTIME
  taskset -c "$CPU" "$KEEL" serve --config "$cfg/keel.toml" --listen 127.0.0.1:0 --port-file "$cfg/port" \
    >"$cfg/out.log" 2>&1 &
  pid=$!
  STARTED+=("$pid")
  STARTUP_PORT=$(wait_port_file "$cfg/port" "$pid") || { tail -n 20 "$cfg/out.log" >&2; die "keel did not start with $dir"; }
  end=$(stat -c %.6Y "$cfg/port")
  STARTUP_PID=$pid
  STARTUP_MS=$(awk -v a="$t0" -v b="$end" 'BEGIN {printf "%.1f", (b - a) * 1000}')
}

# startup: time to the port file with STARTUP_PLUGINS tiny C plugins, against no plugins;
# alternating, median of STARTUP_RUNS each.
scenario_startup() {
  local many=$BUILD_DIR/bench-plugins-set none=$TMP/plugins-none r ms i name
  build_startup_plugins
  rm -rf "$many"
  mkdir -p "$many" "$none"
  for ((i = 1; i <= STARTUP_PLUGINS; i++)); do
    printf -v name 'p%03d' "$i"
    ln -s "../bench-plugins/$name.so" "$many/$name.so"
  done
  : >"$TMP/startup.none"
  : >"$TMP/startup.many"
  for ((r = 1; r <= STARTUP_RUNS; r++)); do
    time_start "$none"
    stop_server "$STARTUP_PID"
    echo "$STARTUP_MS" >>"$TMP/startup.none"
    time_start "$many"
    ms=$STARTUP_MS
    if ((r == 1)); then
      require_ok "http://127.0.0.1:$STARTUP_PORT/api/p001/ping" "startup plugin p001"
      printf -v name 'p%03d' "$STARTUP_PLUGINS"
      require_ok "http://127.0.0.1:$STARTUP_PORT/api/$name/ping" "startup plugin $name"
    fi
    stop_server "$STARTUP_PID"
    echo "$ms" >>"$TMP/startup.many"
    log "startup round $r: no plugins $(tail -n 1 "$TMP/startup.none") ms, $STARTUP_PLUGINS plugins $ms ms"
  done
  local m0 m1
  m0=$(median "$TMP/startup.none" 1)
  m1=$(median "$TMP/startup.many" 1)
  check "startup, no plugins (ms)" "$m0" - -
  check "startup, $STARTUP_PLUGINS plugins (ms)" "$m1" "<" 200
  check "startup, per plugin (ms)" "$(awk -v a="$m0" -v b="$m1" -v n="$STARTUP_PLUGINS" 'BEGIN {printf "%.2f", (b - a) / n}')" - -
}

# reload: GET /api/reloadable/version (the reloadable fixture, tests/integration/fixtures/reload_v1)
# on one Keel process, in rounds that alternate "quiet" (no reloads) and "reloading": while wrk
# runs, a loop deploys reload_v2.so and reload_v1.so in turn the way reload_test.cpp does (copy
# next to the target under a temporary name, rename over it) and POSTs
# /admin/plugins/reloadable/reload, the next deploy as soon as the previous answer arrives
# (RELOAD_INTERVAL_MS adds a pause). The loop (cp, mv, curl: ~70 ms of CPU per reload on the
# 2-CPU VM, mostly fork+exec) runs on RELOAD_CPU, another CPU than the server's when there is
# one; Keel's own reload work runs in Keel, on CPU, and counts in its CPU/request. Each round
# ends with a check that the route answers what was deployed last. Any failed request (non-2xx,
# socket error), any refused reload or a wrong answer fails the whole run (exit 1, after the
# table), in --smoke too; the timing figures are only reported.
RELOAD_PATH=/api/reloadable/version

# reload_loop DIR PORT TOKEN LOG STOPFILE: deploys and reloads until STOPFILE exists; one line per
# reload in LOG: "<http status> <ms> <build>" (status 000: no answer); its CPU time in LOG.cpu.
reload_loop() {
  local dir=$1 port=$2 token=$3 log=$4 stop=$5 n=0 build code ms t0
  while [[ ! -e $stop ]]; do
    build=$((n % 2 == 0 ? 2 : 1))
    t0=${EPOCHREALTIME/./}
    if cp "$BUILD_DIR/fixtures/reload_v$build.so" "$dir/.deploy-reloadable.so" &&
      mv -f "$dir/.deploy-reloadable.so" "$dir/reloadable.so"; then
      code=$(curl -s -o "$log.body" -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$port/admin/plugins/reloadable/reload" || true)
    else
      code=deploy-failed
    fi
    ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
    echo "${code:-000} $ms v$build" >>"$log"
    [[ $code = 200 ]] || { echo "v$build: HTTP ${code:-000}: $(cat "$log.body" 2>/dev/null)" >>"$log.refused"; }
    n=$((n + 1))
    if ((RELOAD_INTERVAL_MS > 0)); then sleep "$(awk -v m="$RELOAD_INTERVAL_MS" 'BEGIN {print m / 1000}')"; fi
  done
  times >"$log.cpu" # the loop's own CPU and its children's (cp, mv, curl): the client's cost
}

# Prints "requests non2xx socket_errors", summed over every wrk output in FILE. wrk prints the
# "Non-2xx or 3xx responses: N" and "Socket errors: connect A, read B, write C, timeout D"
# lines only when they are not zero.
wrk_failures() {
  awk '
    / requests in / { requests += $1 }
    /Non-2xx or 3xx responses:/ { non2xx += $NF }
    /Socket errors:/ {
      line = $0; sub(/.*Socket errors:/, "", line)
      n = split(line, f, /[^0-9]+/)
      for (i = 1; i <= n; i++) socket += f[i]
    }
    END { printf "%d %d %d\n", requests, non2xx, socket }' "$1"
}

scenario_reload() {
  local dir keel kp token url r raw loop stop log t0 t1 want got label bytes extra=""
  local reloads=0 refused=0 seconds=0 requests non2xx socket
  for r in 1 2; do
    [[ -f $BUILD_DIR/fixtures/reload_v$r.so ]] || die "$BUILD_DIR/fixtures/reload_v$r.so not built"
  done
  dir=$(plugin_dir reload)
  cp "$BUILD_DIR/fixtures/reload_v1.so" "$dir/reloadable.so"
  mkdir -p "$TMP/raw" "$TMP/reload"
  # Only the POSTed reloads: the directory watcher would also reload on each rename.
  extra="watch = false"
  token=bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')  # >= 32 characters, as the host requires
  KEEL_ADMIN_TOKEN=$token start_keel reload "$dir" "$extra"; keel=$LAST_PID kp=$LAST_PORT
  url=http://127.0.0.1:$kp$RELOAD_PATH
  require_ok "$url" "keel reloadable"
  for label in quiet reloading; do rm -f "$TMP/raw/reload.$label" "$TMP/raw/reload.$label.wrk"; done
  if ((WARMUP > 0)); then wrk_round "$url" "" "$WARMUP" >/dev/null; fi
  for ((r = 1; r <= ROUNDS; r++)); do
    measure reload quiet "$url" "" "$keel"
    log=$TMP/reload/round-$r.log stop=$TMP/reload/stop
    : >"$log"
    rm -f "$stop"
    t0=${EPOCHREALTIME/./}
    taskset -c "$RELOAD_CPU" true 2>/dev/null || die "reload: cannot run on RELOAD_CPU=$RELOAD_CPU"
    (taskset -cp "$RELOAD_CPU" "$BASHPID" >/dev/null && reload_loop "$dir" "$kp" "$token" "$log" "$stop") &
    loop=$!
    STARTED+=("$loop")
    measure reload reloading "$url" "" "$keel"
    touch "$stop"
    wait "$loop" || die "reload: the deploy loop failed"
    t1=${EPOCHREALTIME/./}
    forget_pid "$loop"
    want=$(tail -n 1 "$log" | awk '{print $3}')
    got=$(curl -s "$url" || true)
    [[ -z $want || $got = "$want" ]] ||
      fail_later "reload round $r: GET $RELOAD_PATH answered '$got' after the last deploy of $want"
    reloads=$((reloads + $(awk '$1 == 200' "$log" | wc -l)))
    refused=$((refused + $(awk '$1 != 200' "$log" | wc -l)))
    seconds=$(awk -v s="$seconds" -v us=$((t1 - t0)) 'BEGIN {print s + us / 1e6}')
    log "reload round: $(wc -l <"$log") reloads in $(((t1 - t0) / 1000)) ms, median" \
      "$(awk '{print $2}' "$log" | sort -n | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : 0)}') ms each," \
      "refused $(awk '$1 != 200' "$log" | wc -l)"
  done
  bytes=$(response_bytes "$url" "")
  stop_server "$keel"
  for label in quiet reloading; do
    raw=$TMP/raw/reload.$label
    add_row reload "$label" "$(median "$raw" 1)" "$(median "$raw" 2)" "$(median "$raw" 3)" "$(median "$raw" 4)" \
      "$bytes" "$(awk '{s += $5} END {print s + 0}' "$raw")"
  done
  read -r requests non2xx socket < <(wrk_failures "$TMP/raw/reload.reloading.wrk")
  check "reload: requests served quiet / reloading" \
    "$(wrk_failures "$TMP/raw/reload.quiet.wrk" | awk '{print $1}') / $requests" - -
  check "reload: reloading/quiet req/s" "$(paired_ratio reload reloading quiet 1)" - -
  check "reload: reloading/quiet CPU/request" "$(paired_ratio reload reloading quiet 4)" - -
  check "reload: p99 quiet / reloading (us)" \
    "$(median "$TMP/raw/reload.quiet" 3) / $(median "$TMP/raw/reload.reloading" 3)" - -
  check "reload: reloads done" "$reloads" - -
  check "reload: reloads per second" "$(awk -v n="$reloads" -v s="$seconds" 'BEGIN {printf "%.1f", (s > 0 ? n / s : 0)}')" - -
  check "reload: median ms per deploy + reload (p90)" \
    "$(cat "$TMP"/reload/round-*.log | awk '{print $2}' | sort -n | awk '{v[NR] = $1} END {
      if (NR) printf "%d (%d)", v[int((NR + 1) / 2)], v[int((NR * 9 + 9) / 10)]; else print "n/a" }')" - -
  check "reload: deploy loop CPU ms per reload (cp, mv, curl; not Keel)" \
    "$(cat "$TMP"/reload/round-*.log.cpu | tr ' ' '\n' | sed -E 's/^([0-9]+)m([0-9.]+)s$/\1 \2/' |
      awk -v n="$reloads" '{s += $1 * 60 + $2} END {printf "%.1f", (n > 0 ? s * 1000 / n : 0)}')" - -
  check "reload: Keel CPU ms per reload (CPU/request delta x requests / reloads)" \
    "$(awk -v a="$(median "$TMP/raw/reload.quiet" 4)" -v b="$(median "$TMP/raw/reload.reloading" 4)" \
      -v n="$requests" -v r="$reloads" 'BEGIN {printf "%.1f", (r > 0 ? (b - a) * n / r / 1000 : 0)}')" - -
  check "reload: reloads refused" "$refused" "<=" 0
  check "reload: non-2xx responses while reloading" "$non2xx" "<=" 0
  check "reload: socket errors while reloading" "$socket" "<=" 0
  ((reloads > 0)) || fail_later "reload: no reload completed while wrk ran"
  ((refused == 0)) || fail_later "reload: $refused reload(s) refused; first: $(cat "$TMP"/reload/round-*.log.refused 2>/dev/null | head -n 1)"
  ((non2xx == 0 && socket == 0)) ||
    fail_later "reload: $non2xx non-2xx responses and $socket socket errors while reloading"
  read -r requests non2xx socket < <(wrk_failures "$TMP/raw/reload.quiet.wrk")
  ((non2xx == 0 && socket == 0)) ||
    fail_later "reload: $non2xx non-2xx responses and $socket socket errors without reloads"
}

# isolation: hello's GET /greet served by hello in the host process against the same with
# isolation = "process" (docs/isolation.md), two Keel processes alternating. The runner is forked
# by the pinned host, so it shares the same CPU; CPU per request counts host and runner.
scenario_isolation() {
  local dir keel iso kp ip runner
  dir=$(plugin_dir isolation hello)
  start_keel inprocess "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_keel isolated "$dir" $'[plugin.hello]\nisolation = "process"'; iso=$LAST_PID ip=$LAST_PORT
  runner=$(pgrep -P "$iso" -f keel-plugin-runner | head -n 1) || true
  [[ -n $runner ]] || die "isolation: no keel-plugin-runner child of keel (pid $iso)"
  require_ok "http://127.0.0.1:$kp$HELLO_PATH" "keel hello in process"
  require_ok "http://127.0.0.1:$ip$HELLO_PATH" "keel hello in its own process"
  run_rounds isolation "" "in-process|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "process|http://127.0.0.1:$ip$HELLO_PATH|$iso,$runner"
  stop_server "$keel"; stop_server "$iso"
  check "isolation process/in-process req/s" "$(paired_ratio isolation process in-process 1)" - -
  check "isolation process/in-process p99" "$(paired_ratio isolation process in-process 3)" - -
  check "isolation process/in-process CPU/request" "$(paired_ratio isolation process in-process 4)" - -
}

# cluster: hello's GET /greet served by the host that loads hello against the same request sent
# to a second host that does not, which forwards it over NATS (docs/cluster.md). Both hosts and
# nats-server are pinned to the same CPU; the forwarded path's CPU per request counts all three.
scenario_cluster() {
  local dir empty nats nats_port a ap b bp i code
  mkdir -p "$TMP/nats"
  taskset -c "$CPU" nats-server -js -a 127.0.0.1 -p -1 -sd "$TMP/nats" >"$TMP/nats/out.log" 2>&1 &
  nats=$!
  STARTED+=("$nats")
  for ((i = 0; i < 100; i++)); do
    nats_port=$(sed -nE 's/.*Listening for client connections on 127\.0\.0\.1:([0-9]+).*/\1/p' "$TMP/nats/out.log")
    [[ -n $nats_port ]] && break
    sleep 0.1
  done
  [[ -n $nats_port ]] || die "cluster: nats-server did not start (see $TMP/nats/out.log)"
  dir=$(plugin_dir cluster-a hello)
  empty=$(plugin_dir cluster-b)
  local cluster=$'[cluster]\nnats_url = "nats://127.0.0.1:'"$nats_port"$'"\nannounce_interval_ms = 200\nnode = '
  start_keel cluster-a "$dir" "${cluster}\"a\""; a=$LAST_PID ap=$LAST_PORT
  start_keel cluster-b "$empty" "${cluster}\"b\""; b=$LAST_PID bp=$LAST_PORT
  for ((i = 0; i < 100; i++)); do  # b learns that a serves hello within a few announcements
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$bp$HELLO_PATH" || true)
    [[ $code = 200 ]] && break
    sleep 0.1
  done
  require_ok "http://127.0.0.1:$ap$HELLO_PATH" "keel hello on the host that loads it"
  require_ok "http://127.0.0.1:$bp$HELLO_PATH" "keel hello forwarded by the host that does not"
  run_rounds cluster "" "local|http://127.0.0.1:$ap$HELLO_PATH|$a" \
    "forwarded|http://127.0.0.1:$bp$HELLO_PATH|$a,$b,$nats"
  stop_server "$b"; stop_server "$a"
  # Durable events from a publisher on one host to a subscriber on another, through the relay,
  # JetStream and the subscriber's durable consumer, against the same publisher and subscriber on
  # one host (the local outbox), round for round. The publisher commits EVENTS_TXN_N events per
  # transaction, so the publishing database is not what is measured; delivered/s, and the
  # publishing host's CPU.
  local pubdir subdir localdir p pa pp sb sp lo lp r
  pubdir=$(plugin_dir cluster-pub) subdir=$(plugin_dir cluster-sub) localdir=$(plugin_dir cluster-local)
  for p in events_pub events_sub; do
    [[ -f $BUILD_DIR/fixtures/$p.so ]] || die "$BUILD_DIR/fixtures/$p.so not built"
    cp "$BUILD_DIR/fixtures/$p.so" "$localdir/"
  done
  cp "$BUILD_DIR/fixtures/events_pub.so" "$pubdir/"
  cp "$BUILD_DIR/fixtures/events_sub.so" "$subdir/"
  start_keel cluster-pub "$pubdir" "${cluster}\"pub\""; pa=$LAST_PID pp=$LAST_PORT
  start_keel cluster-sub "$subdir" "${cluster}"$'"sub"\n[plugin.events_sub]\nrecord = false'; sb=$LAST_PID sp=$LAST_PORT
  start_keel cluster-local "$localdir" $'[plugin.events_sub]\nrecord = false'; lo=$LAST_PID lp=$LAST_PORT
  for ((i = 0; i < 100; i++)); do  # the subscriber's durable consumer exists once both hosts saw the stream
    curl -fsS -X POST "http://127.0.0.1:$pp/api/events_pub/durable/1" >/dev/null || true
    code=$(curl -fsS "http://127.0.0.1:$sp/api/events_sub/count?topic=demo.durable" || echo 0)
    ((code > 0)) && break
    sleep 0.1
  done
  rm -f "$TMP/raw/events.cluster-durable" "$TMP/raw/events.cluster-local"
  for ((r = 1; r <= ROUNDS; r++)); do
    events_round cluster-local "/api/events_pub/txn/$EVENTS_TXN_N/commit" "$EVENTS_TXN_N" demo.durable "$lp" "$lo"
    events_round cluster-durable "/api/events_pub/txn/$EVENTS_TXN_N/commit" "$EVENTS_TXN_N" demo.durable "$pp" "$pa" "$sp"
  done
  stop_server "$lo"; stop_server "$sb"; stop_server "$pa"; stop_server "$nats"
  add_row cluster durable-local "$(median "$TMP/raw/events.cluster-local" 1)" 0 0 \
    "$(median "$TMP/raw/events.cluster-local" 2)" 0 0
  add_row cluster durable-across "$(median "$TMP/raw/events.cluster-durable" 1)" 0 0 \
    "$(median "$TMP/raw/events.cluster-durable" 2)" 0 0
  check "cluster durable events delivered/s to another host" "$(median "$TMP/raw/events.cluster-durable" 1)" ">=" 20000
  check "cluster durable events across/local delivered/s" "$(paired_ratio events cluster-durable cluster-local 1)" - -
  check "cluster forwarded/local req/s" "$(paired_ratio cluster forwarded local 1)" ">=" 0.4
  check "cluster forwarded/local p99" "$(paired_ratio cluster forwarded local 3)" - -
  check "cluster forwarded/local CPU/request (both hosts + nats-server)" "$(paired_ratio cluster forwarded local 4)" - -
}

# peers: the same routes on the peer a user would pick instead of Keel, Node.js with Fastify and
# better-sqlite3 (bench/peers: server.js, README.md), against one Keel with hello, the store
# fixture, catalog and orders. Both are pinned to CPU with one thread serving HTTP (Keel
# io_threads = 1; Node's one JavaScript thread); CPU per request is the whole process's (Keel
# with its worker pool, node with its helper threads). Targets, alternating:
#   hello        GET /api/hello/greet/bench
#   db-read      GET /api/store/items/1 (one row by primary key)
#   db-write     POST /api/store/items (one autocommit insert; synchronous = normal on both)
#   order        POST /api/orders/orders, one line of a product created with a stock of 10^9, a
#                fresh Idempotency-Key per request (ORDER_LUA); node places it in one transaction
#                of one database, node-split in Keel's three transactions on two databases
# The npm packages come from bench/peers/package-lock.json (npm ci into PEERS_CACHE, once per
# lockfile and Node version); without node and npm, or when npm ci fails (offline, say), the
# scenario is skipped with a line in the summary, never failed.
PEERS_DIR=$ROOT/bench/peers
PEERS_CACHE=${PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keel-bench/peers}

# peers_skip REASON: the scenario does not run; says why in the log and the summary.
peers_skip() {
  log "peers: skipped: $*"
  check "peers: skipped ($*)" n/a - -
}

# peers_modules: prints the directory whose node_modules holds bench/peers' locked packages,
# installing them with npm ci the first time (log in $TMP/peers-npm.log); returns 1 if npm ci fails.
peers_modules() {
  local key dir npmdir=()
  key=$(cat "$PEERS_DIR/package.json" "$PEERS_DIR/package-lock.json" | sha256sum | cut -c1-16)
  key=$key-$(node -p 'process.version + "-" + process.arch')
  dir=$PEERS_CACHE/$key
  if [[ -f $dir/.installed ]]; then echo "$dir"; return 0; fi
  log "peers: npm ci of bench/peers into $dir (better-sqlite3 compiles: about a minute)"
  # node-gyp builds against the installed Node's headers when they are there, never downloads them.
  [[ -f /usr/include/node/node_version.h ]] && npmdir=(env npm_config_nodedir=/usr)
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cp "$PEERS_DIR/package.json" "$PEERS_DIR/package-lock.json" "$PEERS_DIR/.npmrc" "$dir.tmp/"
  if ! (cd "$dir.tmp" && timeout 900 "${npmdir[@]}" npm ci --no-audit --no-fund --prefer-offline --fetch-retries=0 \
    --fetch-timeout=30000) >"$TMP/peers-npm.log" 2>&1; then
    tail -n 5 "$TMP/peers-npm.log" | sed 's/^/  npm: /' >&2
    rm -rf "$dir.tmp"
    return 1
  fi
  touch "$dir.tmp/.installed"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  echo "$dir"
}

# start_peer NAME MODULES [server.js arguments]: the Node peer, pinned to CPU. Sets LAST_PID, LAST_PORT.
start_peer() {
  local name=$1 modules=$2 dir=$TMP/peer-$1
  shift 2
  mkdir -p "$dir"
  NODE_PATH=$modules/node_modules taskset -c "$CPU" node "$PEERS_DIR/server.js" --listen 127.0.0.1:0 \
    --port-file "$dir/port" --data-dir "$dir/data" --synchronous normal "$@" >"$dir/out.log" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
  LAST_PORT=$(wait_port_file "$dir/port" "$LAST_PID") ||
    { tail -n 20 "$dir/out.log" >&2; die "peers: node ($name) did not start"; }
}

# peers_setup PORT WHAT: one item to read, and product 1 with a stock of 10^9 to order.
peers_setup() {
  local port=$1 what=$2 code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data 'a row to read' \
    "http://127.0.0.1:$port/api/store/items" || true)
  [[ $code = 201 ]] || die "peers: $what: POST /api/store/items answered ${code:-nothing}, not 201"
  require_ok "http://127.0.0.1:$port/api/store/items/1" "peers: $what store read"
  code=$(curl -s -o "$TMP/peers-product.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data '{"sku":"BENCH-1","name":"Bench mug","price_cents":1250,"currency":"EUR","stock":1000000000}' \
    "http://127.0.0.1:$port/api/catalog/products" || true)
  if [[ $code != 201 ]] || ! grep -q '"id":1,' "$TMP/peers-product.json"; then
    die "peers: $what: POST /api/catalog/products answered ${code:-nothing}: $(cat "$TMP/peers-product.json" 2>/dev/null)"
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H "Idempotency-Key: setup-$port" --data-binary "$ORDER_BODY" "http://127.0.0.1:$port/api/orders/orders" || true)
  [[ $code = 201 ]] || die "peers: $what: POST /api/orders/orders answered ${code:-nothing}, not 201"
}

scenario_peers() {
  local modules dir keel kp node np split sp label
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    peers_skip "node or npm not found; apt-get install nodejs npm"
    return 0
  fi
  if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    peers_skip "Node $(node --version) is older than 20, which better-sqlite3 12 needs"
    return 0
  fi
  if ! modules=$(peers_modules); then
    peers_skip "npm ci of bench/peers failed (offline?)"
    return 0
  fi
  [[ -f $BUILD_DIR/fixtures/store.so ]] || die "$BUILD_DIR/fixtures/store.so not built"
  dir=$(plugin_dir peers hello catalog orders)
  cp "$BUILD_DIR/fixtures/store.so" "$dir/"
  start_keel peers "$dir"; keel=$LAST_PID kp=$LAST_PORT
  start_peer one "$modules"; node=$LAST_PID np=$LAST_PORT
  start_peer split "$modules" --layout split; split=$LAST_PID sp=$LAST_PORT
  require_ok "http://127.0.0.1:$kp$HELLO_PATH" "peers: keel hello"
  require_ok "http://127.0.0.1:$np$HELLO_PATH" "peers: node hello"
  peers_setup "$kp" keel
  peers_setup "$np" node
  peers_setup "$sp" node-split
  run_rounds peers "" "keel-hello|http://127.0.0.1:$kp$HELLO_PATH|$keel" \
    "node-hello|http://127.0.0.1:$np$HELLO_PATH|$node"
  run_rounds peers "" "keel-db-read|http://127.0.0.1:$kp/api/store/items/1|$keel" \
    "node-db-read|http://127.0.0.1:$np/api/store/items/1|$node"
  run_rounds peers "$WRITE_LUA" "keel-db-write|http://127.0.0.1:$kp/api/store/items|$keel" \
    "node-db-write|http://127.0.0.1:$np/api/store/items|$node"
  run_rounds peers "$ORDER_LUA" "keel-order|http://127.0.0.1:$kp/api/orders/orders|$keel" \
    "node-order|http://127.0.0.1:$np/api/orders/orders|$node" \
    "node-split-order|http://127.0.0.1:$sp/api/orders/orders|$split"
  check "peers: RSS peak keel / node / node-split (MiB)" "$(awk -v a="$(status_kib VmHWM "$keel")" \
    -v b="$(status_kib VmHWM "$node")" -v c="$(status_kib VmHWM "$split")" \
    'BEGIN {printf "%.1f / %.1f / %.1f", a / 1024, b / 1024, c / 1024}')" - -
  stop_server "$keel"; stop_server "$node"; stop_server "$split"
  for label in hello db-read db-write order; do
    check "peers $label keel/node req/s" "$(paired_ratio peers "keel-$label" "node-$label" 1)" - -
    check "peers $label keel/node p99" "$(paired_ratio peers "keel-$label" "node-$label" 3)" - -
    check "peers $label keel/node CPU/request" "$(paired_ratio peers "keel-$label" "node-$label" 4)" - -
  done
  check "peers order keel/node-split req/s" "$(paired_ratio peers keel-order node-split-order 1)" - -
  check "peers order keel/node-split CPU/request" "$(paired_ratio peers keel-order node-split-order 4)" - -
}

# rss: idle VmRSS right after start (+0.5 s), VmRSS near the end of one hello round, and the
# peak (VmHWM) afterwards, for Keel+hello, nginx (master + worker) and the bare server.
scenario_rss() {
  local dir pids label idle loaded peak wrk_pid
  dir=$(plugin_dir rss hello)
  for label in keel nginx bare; do
    case $label in
      keel) start_keel rss "$dir"; pids=("$LAST_PID") ;;
      nginx) start_nginx rss; pids=("$LAST_PID" "$NGINX_WORKER") ;;
      bare) start_bare rss; pids=("$LAST_PID") ;;
    esac
    sleep 0.5
    idle=$(status_kib VmRSS "${pids[@]}")
    wrk_round "http://127.0.0.1:$LAST_PORT$HELLO_PATH" "" "$DURATION" >"$TMP/rss-$label.wrk" &
    wrk_pid=$!
    sleep "$(awk -v d="$DURATION" 'BEGIN {print d - 0.5}')"
    loaded=$(status_kib VmRSS "${pids[@]}")
    wait "$wrk_pid"
    peak=$(status_kib VmHWM "${pids[@]}")
    stop_server "${pids[0]}"
    check "rss $label idle (MiB)" "$(awk -v k="$idle" 'BEGIN {printf "%.1f", k / 1024}')" \
      "$([[ $label = keel ]] && echo "<" || echo -)" "$([[ $label = keel ]] && echo 20 || echo -)"
    check "rss $label under load / peak (MiB)" \
      "$(awk -v a="$loaded" -v b="$peak" 'BEGIN {printf "%.1f / %.1f", a / 1024, b / 1024}')" - -
  done
}

# ---------------------------------------------------------------------------------------------
# Report

print_results() {
  echo
  echo "== Keel HTTP benchmark: medians of $ROUNDS round(s) x ${DURATION}s, wrk -t1 -c$CONNECTIONS," \
    "servers and wrk on CPU $CPU =="
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $MACHINE; tree $TREE; load avg before $LOAD_BEFORE, after $LOAD_AFTER"
  if [[ -s $RESULTS ]]; then
    {
      printf 'scenario\ttarget\treq/s\tp50_us\tp99_us\tcpu_us/req\tresp_bytes\terrors\n'
      cat "$RESULTS"
    } | column -t -s $'\t'
    echo
  fi
  if [[ -s $CHECKS ]]; then
    { printf 'measure\tvalue\ttarget\tverdict\tlast recorded\tchange\n'; checks_against_history; } |
      column -t -s $'\t'
    echo
  fi
}

# ---------------------------------------------------------------------------------------------
# Main

for s in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " = *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
done
((BUILD)) && build
[[ -x $KEEL && -x $BARE ]] || die "$KEEL or $BARE missing: build first (or drop --no-build)"

# The 1 KiB JSON body of the echo scenario, and the wrk script that POSTs it.
ECHO_BODY="{\"data\":\"$(printf '%*s' 1013 '' | tr ' ' 'k')\"}"
ECHO_FILE=$TMP/echo-body.json
ECHO_LUA=$TMP/echo.lua
printf '%s' "$ECHO_BODY" >"$ECHO_FILE"
cat >"$ECHO_LUA" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$ECHO_BODY]]
EOF

# The small text body the storage write scenario inserts (and echo returns).
WRITE_LUA=$TMP/write.lua
cat >"$WRITE_LUA" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.body = "order 12345: 2 x widget, 1 x gadget"
EOF

# The order the peers scenario places again and again: one unit of product 1, each request with
# a fresh Idempotency-Key (a random prefix per wrk run and a counter), so every request is a new
# order on both sides (the key is looked up and stored with the order, as a client's retry needs).
ORDER_BODY='{"items":[{"product_id":1,"quantity":1}]}'
ORDER_LUA=$TMP/order.lua
cat >"$ORDER_LUA" <<EOF
local prefix, counter = "", 0
local headers = {["Content-Type"] = "application/json"}
local body = '$ORDER_BODY'
function init(args)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f:read(6)
  f:close()
  prefix = bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
end
function request()
  counter = counter + 1
  headers["Idempotency-Key"] = string.format("%s-%06d", prefix, counter)
  return wrk.format("POST", nil, headers, body)
end
EOF

TREE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then TREE="$TREE + local changes"; fi
MACHINE="$(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $MACHINE; tree $TREE"
log "load before: $LOAD_BEFORE; scenarios: $SCENARIOS; rounds $ROUNDS x ${DURATION}s; CPU $CPU"
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN {exit !(l > 1)}'; then
  log "warning: load average ${LOAD_BEFORE%% *} > 1: other work shares the CPUs, expect noisy numbers"
fi
for s in $SCENARIOS; do
  log "scenario $s"
  "scenario_$s"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
print_results
if [[ -s $FAILURES ]]; then
  echo "FAILED (something did not work; timing figures are never a failure):"
  sed 's/^/  /' "$FAILURES"
  exit 1
fi
if ((RECORD)); then record_history; fi
