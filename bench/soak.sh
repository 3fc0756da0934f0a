#!/usr/bin/env bash
# bench/soak.sh: the example shop (catalog, orders, notifications) under steady mixed load for a
# long time, with reloads and runner crashes now and then; fails if something grows without
# bound. Method and recorded runs: docs/benchmarks.md "Soak".
#
#   bash bench/soak.sh [--no-build] [MINUTES]     default 30 minutes
#
# What runs: the keel binary with the three shop plugins, catalog in its own process
# (isolation = "process"), the log at info with the access log on, to a file rotated at 4 MiB
# (3 rotated files kept).
# wrk sends, over CONNECTIONS connections each pausing DELAY_MS between requests, in every 8:
# 1 order (a fresh Idempotency-Key), 2 product reads, 1 product page, 2 order reads (ids already
# placed), 1 page of placed orders, 1 /healthz. Every RELOAD_EVERY_S a SIGHUP makes the host read its config
# again, with one shop plugin's request_timeout_ms changed, so that plugin is reloaded (a new
# generation; the three take turns). Every CRASH_EVERY_S catalog's runner is killed (SIGKILL); the
# host restarts it.
#
# Every SAMPLE_S it prints: orders placed so far, requests and non-2xx answers in the interval,
# the host's RSS (and of it, SQLite's heap, keel_storage_sqlite_memory_bytes, and the rest), open
# descriptors and threads, the runner's RSS, each database and WAL file, the
# log directory and the durable events not yet delivered (keel_events_lag).
#
# Fails (exit 1) if the host exits, a reload is refused, a runner kill is not counted as a crash
# (keel_plugin_runner_crashes_total), events are still undelivered 60 s
# after the load stopped, or something grows without bound: after WARMUP_S, the samples are cut
# in thirds, and the largest value of the last third may not exceed the largest of the middle
# third by more than its tolerance (RSS: 10 % + 8 MiB; RSS without SQLite's heap, which grows
# with the databases until every connection's page cache is full: 5 % + 4 MiB; descriptors: 8;
# threads: 4; a WAL: 25 % + 4 MiB; the log directory: 10 % + 1 MiB; undelivered events: 25 % +
# 100). Each judged line also gives the growth per minute over the samples after WARMUP_S. Databases grow with
# the orders they hold, so for them the bytes per order are compared the same way (10 %): a
# table that grows faster than the orders (an outbox never emptied, ...) shows there. With fewer
# than 6 samples after WARMUP_S nothing is judged. Non-2xx answers are reported, not judged:
# requests to catalog while its runner restarts get 502/503 by design (docs/isolation.md).
#
# Environment (defaults in brackets): BUILD_DIR [build], CONNECTIONS [16], DELAY_MS [8],
# SAMPLE_S [60], WARMUP_S [120], RELOAD_EVERY_S [20], CRASH_EVERY_S [90], PRODUCTS [20],
# KEEP_TMP [0] (1 keeps the temporary directory: config, data, log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=1
if [[ ${1:-} = --no-build ]]; then BUILD=0; shift; fi
MINUTES=${1:-30}
BUILD_DIR=${BUILD_DIR:-build}
CONNECTIONS=${CONNECTIONS:-16}
DELAY_MS=${DELAY_MS:-8}
SAMPLE_S=${SAMPLE_S:-60}
WARMUP_S=${WARMUP_S:-120}
RELOAD_EVERY_S=${RELOAD_EVERY_S:-20}
CRASH_EVERY_S=${CRASH_EVERY_S:-90}
PRODUCTS=${PRODUCTS:-20}
KEEP_TMP=${KEEP_TMP:-0}
[[ $MINUTES =~ ^[0-9]+$ && $MINUTES -ge 1 ]] || { echo "soak: MINUTES must be a whole number >= 1, not '$MINUTES'" >&2; exit 2; }
cd "$ROOT"

log() { printf '[soak %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ((BUILD)); then
  log "building Release in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" --target keel_host keel_plugin_runner keel_plugin_catalog keel_plugin_orders \
    keel_plugin_notifications >/dev/null
fi
KEEL=$BUILD_DIR/bin/keel
for f in "$KEEL" "$BUILD_DIR/bin/keel-plugin-runner" "$BUILD_DIR"/plugins/{catalog,orders,notifications}.so; do
  [[ -f $f ]] || die "$f is missing: build first (without --no-build this script builds it)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-soak.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP_TMP = 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/plugins" "$TMP/data" "$TMP/log"
cp "$BUILD_DIR"/plugins/{catalog,orders,notifications}.so "$TMP/plugins/"

# write_config N: the config, with request_timeout_ms of plugin number N % 3 set to 30000 + N % 2
# (so each SIGHUP changes exactly one plugin's section, and that plugin is reloaded).
SHOP=(catalog orders notifications)
write_config() {
  local n=$1 i timeout
  {
    cat <<EOF
[server]
listen = "127.0.0.1:0"
data_dir = "$TMP/data"
drain_timeout_ms = 2000

[log]
level = "info"
access_log = true
file = "$TMP/log/keel.log"
max_file_bytes = 4194304
max_files = 3

[plugins]
directory = "$TMP/plugins"

[events]
retention_ms = 0
EOF
    for i in 0 1 2; do
      timeout=30000
      if ((n % 3 == i && n % 2 == 1)); then timeout=30001; fi
      printf '\n[plugin.%s]\nrequest_timeout_ms = %d\n' "${SHOP[i]}" "$timeout"
      if [[ ${SHOP[i]} = catalog ]]; then printf 'isolation = "process"\n'; fi
    done
  } >"$TMP/keel.toml.new"
  mv "$TMP/keel.toml.new" "$TMP/keel.toml"
}
write_config 0
# The admin API only to read why a reload was refused (the log rotates it away within minutes).
TOKEN=soak-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
KEEL_ADMIN_TOKEN=$TOKEN "$KEEL" serve --config "$TMP/keel.toml" --port-file "$TMP/port" >"$TMP/out.log" 2>&1 &
KEEL_PID=$!
PIDS+=("$KEEL_PID")
for ((i = 0; i < 1000; i++)); do
  [[ -s $TMP/port ]] && break
  kill -0 "$KEEL_PID" 2>/dev/null || { tail -n 20 "$TMP/out.log" >&2; die "keel did not start"; }
  sleep 0.02
done
[[ -s $TMP/port ]] || die "keel wrote no port within 20 s"
URL=http://127.0.0.1:$(cat "$TMP/port")
log "keel pid $KEEL_PID at $URL; $TMP"

# The products every order takes one unit of (a stock that never runs out).
for ((p = 1; p <= PRODUCTS; p++)); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"sku\":\"SOAK-$p\",\"name\":\"Soak $p\",\"price_cents\":$((100 + p)),\"currency\":\"EUR\",\"stock\":1000000000}" \
    "$URL/api/catalog/products")
  [[ $code = 201 ]] || die "creating product $p answered $code, not 201"
done

# place_order: one order through curl; prints its id (orders numbers them 1, 2, ...), nothing if
# 5 attempts half a second apart all failed (catalog's runner restarting, for instance).
place_order() {
  local attempt id
  for ((attempt = 0; attempt < 5; attempt++)); do
    id=$(curl -s -H 'Content-Type: application/json' -H "Idempotency-Key: soak-probe-$RANDOM$RANDOM$SECONDS" \
      -d '{"items":[{"product_id":1,"quantity":1}]}' "$URL/api/orders/orders" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
    if [[ -n $id ]]; then echo "$id"; return; fi
    sleep 0.5
  done
}
KNOWN_ORDERS=$(place_order)
[[ -n $KNOWN_ORDERS ]] || die "the first order was not placed"

cat >"$TMP/mix.lua" <<EOF
local n, prefix, products, known = 0, "", $PRODUCTS, 1
local json = {["Content-Type"] = "application/json"}
local order = '{"items":[{"product_id":%d,"quantity":1}]}'
function init(args)
  local f = io.open("/dev/urandom", "rb")
  prefix = f:read(6):gsub(".", function(c) return string.format("%02x", c:byte()) end)
  f:close()
  known = tonumber(args[1]) or 1
  n = math.random(0, 7)
end
function delay() return $DELAY_MS end
function request()
  n = n + 1
  local k = n % 8
  if k == 0 then
    json["Idempotency-Key"] = string.format("%s-%08d", prefix, n)
    return wrk.format("POST", "/api/orders/orders", json, string.format(order, math.random(products)))
  elseif k <= 2 then return wrk.format("GET", "/api/catalog/products/" .. math.random(products))
  elseif k == 3 then return wrk.format("GET", "/api/catalog/products?limit=20")
  elseif k <= 5 then return wrk.format("GET", "/api/orders/orders/" .. math.random(known))
  elseif k == 6 then return wrk.format("GET", "/api/orders/orders?limit=10&status=placed")
  else return wrk.format("GET", "/healthz") end
end
EOF

# Reloads and crashes, each in a loop of its own until $TMP/stop exists.
reload_loop() {
  local n=0
  while [[ ! -e $TMP/stop ]]; do
    sleep "$RELOAD_EVERY_S"
    n=$((n + 1))
    write_config "$n"
    kill -HUP "$KEEL_PID" 2>/dev/null || return 0
    echo "$SECONDS" >>"$TMP/reloads"
  done
}
crash_loop() {
  local runner
  while [[ ! -e $TMP/stop ]]; do
    sleep "$CRASH_EVERY_S"
    runner=$(pgrep -P "$KEEL_PID" -f keel-plugin-runner | head -n 1 || true)
    if [[ -n $runner ]] && kill -KILL "$runner" 2>/dev/null; then echo "$SECONDS" >>"$TMP/crashes"; fi
  done
}
: >"$TMP/crashes"
: >"$TMP/reloads"
reload_loop &
PIDS+=($!)
crash_loop &
PIDS+=($!)

metric_sum() {  # metric_sum NAME [LABEL-FILTER]: the sum of a metric's samples in $TMP/metrics
  awk -v m="$1" -v f="${2:-}" '{n = $1; sub(/\{.*/, "", n)} n == m && index($1, f) {s += $NF} END {printf "%d", s}' "$TMP/metrics"
}
file_bytes() { if [[ -f $1 ]]; then stat -c %s "$1"; else echo 0; fi; }
proc_field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

COLUMNS_=(minute orders requests non2xx crashes host_rss_kib sqlite_kib rss_other_kib fds threads runner_rss_kib
  catalog_db catalog_wal orders_db orders_wal notifications_db notifications_wal log_bytes events_lag)
SAMPLES=$TMP/samples.tsv
printf '%s\n' "${COLUMNS_[*]}" | tr ' ' '\t' >"$SAMPLES"
FORMAT='%-4s %7s %6s %6s %4s %7s %7s %7s %3s %3s %6s %9s %7s %9s %7s %9s %7s %8s %4s\n'
# shellcheck disable=SC2059  # the one format of the table, head and rows
printf "$FORMAT" min orders reqs non2xx kill rss_kib sqlite other fds thr runner catalog.db wal orders.db wal \
  notif.db wal log lag
end=$((SECONDS + MINUTES * 60))
REFUSED_SEEN=0
minute=0
while ((SECONDS < end)); do
  chunk=$((end - SECONDS < SAMPLE_S ? end - SECONDS : SAMPLE_S))
  wrk -t1 -c"$CONNECTIONS" -d"${chunk}s" --timeout 15s -s "$TMP/mix.lua" "$URL" -- "$KNOWN_ORDERS" \
    >"$TMP/wrk.out" 2>&1 || die "wrk failed: $(tail -n 3 "$TMP/wrk.out")"
  kill -0 "$KEEL_PID" 2>/dev/null || { tail -n 20 "$TMP/out.log" >&2; die "keel exited during the soak"; }
  minute=$((minute + 1))
  requests=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$TMP/wrk.out")
  latest=$(place_order)
  if [[ -n $latest ]]; then KNOWN_ORDERS=$latest; fi
  curl -s -o "$TMP/metrics" "$URL/metrics" || : >"$TMP/metrics"
  runner=$(pgrep -P "$KEEL_PID" -f keel-plugin-runner | head -n 1 || true)
  rss=$(proc_field "$KEEL_PID" VmRSS)
  sqlite=$(($(metric_sum keel_storage_sqlite_memory_bytes) / 1024))
  row=("$minute" "$KNOWN_ORDERS" "${requests:-0}" "${non2xx:-0}" "$(wc -l <"$TMP/crashes")"
    "$rss" "$sqlite" "$((rss - sqlite))" "$(find "/proc/$KEEL_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    "$(proc_field "$KEEL_PID" Threads)" "$( [[ -n $runner ]] && proc_field "$runner" VmRSS || echo 0)")
  for p in "${SHOP[@]}"; do row+=("$(file_bytes "$TMP/data/$p.db")" "$(file_bytes "$TMP/data/$p.db-wal")"); done
  row+=("$(du -sb "$TMP/log" | cut -f1)" "$(metric_sum keel_events_lag)")
  refused_now=$(metric_sum keel_plugin_reloads_total 'result="refused"')
  if ((refused_now > REFUSED_SEEN)); then
    REFUSED_SEEN=$refused_now
    curl -s -H "Authorization: Bearer $TOKEN" -o "$TMP/plugins-$minute.json" "$URL/admin/plugins" || true
    log "a reload was refused; its reason, from /admin/plugins (saved as $TMP/plugins-$minute.json):" \
      "$(grep -o '"last_error":"[^"]*"' "$TMP/plugins-$minute.json" | grep -v '"last_error":""' | tr '\n' ' ')"
  fi
  printf '%s\n' "${row[*]}" | tr ' ' '\t' >>"$SAMPLES"
  # shellcheck disable=SC2059
  printf "$FORMAT" "${row[@]}"
done
touch "$TMP/stop"

# After the load: every durable event delivered within 60 s, every reload done.
for ((i = 0; i < 60; i++)); do
  curl -s -o "$TMP/metrics" "$URL/metrics" || : >"$TMP/metrics"
  [[ $(metric_sum keel_events_lag) = 0 ]] && break
  sleep 1
done
FAILED=()
lag=$(metric_sum keel_events_lag)
((lag == 0)) || FAILED+=("$lag durable events still undelivered 60 s after the load stopped")
reloads=$(metric_sum keel_plugin_reloads_total 'result="succeeded"')
refused=$(metric_sum keel_plugin_reloads_total 'result="refused"')
((refused == 0)) || FAILED+=("$refused reloads refused (why: $TMP/plugins-*.json, and the log)")
crashes=$(metric_sum keel_plugin_runner_crashes_total)
restarts=$(metric_sum keel_plugin_runner_restarts_total)
kills=$(wc -l <"$TMP/crashes")
log "SIGHUPs $(wc -l <"$TMP/reloads"), reloads succeeded $reloads, refused $refused;" \
  "runner kills $kills, crashes counted $crashes, restarts $restarts"
((crashes == kills)) || FAILED+=("catalog's runner was killed $kills times, keel counted $crashes crashes")
kill -0 "$KEEL_PID" 2>/dev/null || FAILED+=("keel exited")
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz") = 200 ]] || FAILED+=("/healthz is not 200 after the soak")

# judge COLUMN ABS PERCENT [per-order]: the thirds rule above, on samples after WARMUP_S.
skip=$(((WARMUP_S + SAMPLE_S - 1) / SAMPLE_S))
judge() {
  local col=$1 abs=$2 pct=$3 per=${4:-} verdict
  verdict=$(awk -F'\t' -v col="$col" -v abs="$abs" -v pct="$pct" -v per="$per" -v skip="$skip" -v sample="$SAMPLE_S" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    NR - 1 > skip { v[++n] = per ? ($2 > 0 ? $c / $2 : 0) : $c }
    END {
      if (n < 6) { print col ": not judged (" (n + 0) " samples after warm-up)"; exit }
      t = int(n / 3); mid = -1e300; last = -1e300
      for (i = n - 2 * t + 1; i <= n - t; i++) if (v[i] > mid) mid = v[i]
      for (i = n - t + 1; i <= n; i++) if (v[i] > last) last = v[i]
      limit = mid * (1 + pct / 100) + abs
      # Least-squares slope over the samples after warm-up, per minute.
      for (i = 1; i <= n; i++) { sx += i; sy += v[i]; sxx += i * i; sxy += i * v[i] }
      slope = (n * sxy - sx * sy) / (n * sxx - sx * sx) * 60 / sample
      printf "%s: middle third max %.1f, last third max %.1f, limit %.1f, slope %+.1f per minute: %s\n",
        col (per ? " per order" : ""), mid, last, limit, slope, (last > limit ? "GROWS" : "bounded")
    }' "$SAMPLES")
  log "$verdict"
  [[ $verdict != *GROWS* ]] || FAILED+=("$verdict")
}
judge host_rss_kib 8192 10
judge rss_other_kib 4096 5
judge fds 8 0
judge threads 4 0
judge log_bytes 1048576 10
judge events_lag 100 25
for p in "${SHOP[@]}"; do
  judge "${p}_wal" 4194304 25
  judge "${p}_db" 0 10 per-order
done
if ((${#FAILED[@]})); then
  KEEP_TMP=1
  log "FAILED:"
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
log "passed: $minute samples, $KNOWN_ORDERS orders"
