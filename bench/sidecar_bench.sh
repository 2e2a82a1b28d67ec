#!/usr/bin/env bash
# The sidecar's HTTP hot path, side by side in one run:
#   - sidelog-sidecar appends (wrk, keep-alive) at 1 and 16 connections, 1 event per request,
#     and 100 events per request;
#   - the ceiling: an empty cpprestsdk listener answering 201, same thread pool;
#   - the alternative: an append-only events table in PostgreSQL, one transaction per append;
#   - sidecar RSS idle and under load, and the time from exec to /readyz = 200.
# Usage: bench/sidecar_bench.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build dir}
secs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-httpbench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/../scripts/postgres" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.01; done; return 1; }
# wrk CONNS EVENTS URL -> "RESULT rps p50 p99 non2xx errors"
load() {
  local conns=$1 events=$2 url=$3 threads=2
  [ "$conns" -eq 1 ] && threads=1
  EVENTS=$events wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$here/append.lua" "$url" | grep '^RESULT'
}

sc_port=$(free_port); sc_health=$(free_port)
cat >"$work/sidecar.yaml" <<EOT
service: bench
namespace: bench
listen: 127.0.0.1:$sc_port
healthListen: 127.0.0.1:$sc_health
dataDir: $work/data
logLevel: warn
streams:
  - name: bench
    access: write
EOT
t0=$(date +%s%N)
"$build/sidecar/sidelog-sidecar" --config "$work/sidecar.yaml" 2>"$work/sidecar.log" &
sc_pid=$!; pids+=("$sc_pid")
wait_http "http://127.0.0.1:$sc_health/readyz"
ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 0.3
rss_idle=$(rss_kb "$sc_pid")

el_port=$(free_port)
"$build/bench/empty_listener" "127.0.0.1:$el_port" 2 >/dev/null &
pids+=("$!")
sleep 0.3

pg_port=$(free_port)
conninfo=$("$here/../scripts/postgres" start "$work/pg" "$pg_port")

echo
echo "HTTP appends: $secs s per figure; wrk keep-alive; sidecar fsync on (standalone default)"
printf '%-40s %12s %9s %9s %12s %8s %12s %8s\n' figure "appends/s" "p50 ms" "p99 ms" "ceiling" ratio "postgres" "vs pg"
row() {  # name conns events
  local name=$1 conns=$2 events=$3
  read -r _ s_rps s_p50 s_p99 s_bad s_err < <(load "$conns" "$events" "http://127.0.0.1:$sc_port")
  if [ "$conns" -eq 16 ] && [ "$events" -eq 1 ]; then rss_load=$(rss_kb "$sc_pid"); fi
  read -r _ e_rps _ _ _ _ < <(load "$conns" "$events" "http://127.0.0.1:$el_port")
  read -r _ p_rps _ p_p50 p_p99 < <("$build/bench/pg_append" "$conninfo" "$conns" "$secs" "$events")
  printf '%-40s %12s %9s %9s %12s %7.2fx %12s %7.2fx\n' "$name" "$s_rps" "$s_p50" "$s_p99" "$e_rps" \
    "$(echo "$s_rps / $e_rps" | bc -l)" "$p_rps" "$(echo "$s_rps / $p_rps" | bc -l)"
  if [ "$s_bad" != 0 ] || [ "$s_err" != 0 ]; then echo "  warning: $s_bad non-2xx, $s_err socket errors"; fi
  echo "  postgres p50/p99: $p_p50 / $p_p99 ms"
}
row "1 connection, 1 event/append" 1 1
row "16 connections, 1 event/append" 16 1
row "16 connections, 100 events/append" 16 100
echo "  (100 events/append: multiply appends/s by 100 for events/s)"
echo
echo "sidecar RSS idle: $((rss_idle / 1024)) MiB, under 16-connection load: $((rss_load / 1024)) MiB; exec to /readyz: ${ready_ms} ms"
echo "targets: 16 conn >= 0.7x ceiling and >= 3x postgres; p99 at 1 conn < 2 ms; idle RSS < 20 MB; ready < 200 ms"
