#!/usr/bin/env bash
# Replicated appends, side by side in one run, against a local nats-server with JetStream:
#   - sidelog-sidecar appends in replicated mode (wrk) at 1 and 16 connections, 1 event per
#     request, and 100 events per request;
#   - the ceilings: raw JetStream publish from the C client (sync with the expected subject
#     sequence, as the sidecar publishes; and async, pipelined), and the empty cpprestsdk
#     listener;
#   - replication lag p50/p99 from a 201 on sidecar A to SSE delivery on sidecar B, at 1,000
#     and 5,000 events/s (10 events per append).
# Usage: bench/replication_bench.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build dir}
secs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-replbench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
load() {  # CONNS EVENTS URL -> "RESULT rps p50 p99 non2xx errors"
  local conns=$1 events=$2 url=$3 threads=2
  [ "$conns" -eq 1 ] && threads=1
  EVENTS=$events wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$here/append.lua" "$url" | grep '^RESULT'
}

nats_port=$(free_port)
nats=${NATS_SERVER:-nats-server}
"$nats" -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
pids+=("$!")
sleep 0.5
nats_version=$("$nats" --version)

start_sidecar() {  # NAME -> sets PORT_<NAME>
  local name=$1 port health
  port=$(free_port); health=$(free_port)
  cat >"$work/$name.yaml" <<EOT
service: bench
namespace: bench
listen: 127.0.0.1:$port
healthListen: 127.0.0.1:$health
dataDir: $work/$name
logLevel: warn
sse: {heartbeatMs: 300}
nats: {url: "nats://127.0.0.1:$nats_port", createStreams: true}
streams:
  - name: bench
    access: write
EOT
  "$build/sidecar/sidelog-sidecar" --config "$work/$name.yaml" 2>"$work/$name.log" &
  pids+=("$!")
  wait_http "http://127.0.0.1:$health/readyz"
  printf -v "PORT_$name" '%s' "$port"
}
start_sidecar a
start_sidecar b

el_port=$(free_port)
"$build/bench/empty_listener" "127.0.0.1:$el_port" 2 >/dev/null &
pids+=("$!")
sleep 0.3

echo
echo "Replicated appends: $secs s per figure; $nats_version (file storage, default sync), wrk keep-alive"
echo "replication lag, sidecar A 201 -> SSE at sidecar B (10 events per append):"
printf '  %-16s %10s %9s %9s %9s %14s\n' "offered ev/s" commits "p50 ms" "p99 ms" "max ms" "achieved ev/s"
for rate in ${LAG_RATES:-1000 5000}; do
  read -r _ n p50 p99 max got < <("$build/bench/replication_lag" "http://127.0.0.1:$PORT_a" \
    "http://127.0.0.1:$PORT_b" bench "$rate" 10 "$secs")
  printf '  %-16s %10s %9s %9s %9s %14s\n' "$rate" "$n" "$p50" "$p99" "$max" "$got"
  if [ -n "${LAG_DEBUG:-}" ]; then
    for _ in 1 2 3; do
      echo "  A: $(curl -s "http://127.0.0.1:$PORT_a/v1/streams" | tr -d '\n' | cut -c1-200)"
      echo "  B: $(curl -s "http://127.0.0.1:$PORT_b/v1/streams" | tr -d '\n' | cut -c1-200)"
      sleep 0.5
    done
  fi
done
[ -z "${LAG_DEBUG:-}" ] || exit 0
echo "  target: p99 < 20 ms at 1,000 events/s"

echo
echo "raw JetStream publish from the C client (the same ~350-byte message):"
printf '  %-44s %10s %9s %9s\n' figure "msgs/s" "p50 ms" "p99 ms"
for spec in "sync, 1 publisher, expected subject seq:1:sync" "sync, 16 publishers, expected subject seq:16:sync" \
  "async (256 in flight), 1 publisher:1:async" "async (16 in flight), 1 publisher:1:async16"; do
  IFS=: read -r name pubs mode <<<"$spec"
  read -r _ rps p50 p99 errs < <("$build/bench/jetstream_publish" "nats://127.0.0.1:$nats_port" \
    RAW_bench "raw.bench." "$pubs" "$secs" "$mode")
  printf '  %-44s %10s %9s %9s\n' "$name" "$rps" "$p50" "$p99"
  [ "$errs" = 0 ] || echo "  warning: $errs errors"
  case "$pubs$mode" in 1sync) sync1_p50=$p50 ;; 16sync) sync16=$rps ;; esac
done

echo
echo "sidecar A appends over HTTP:"
printf '  %-36s %11s %9s %9s %12s %8s %12s %8s\n' figure "appends/s" "p50 ms" "p99 ms" "listener" ratio "raw sync" ratio
row() {  # name conns events
  local name=$1 conns=$2 events=$3
  read -r _ s_rps s_p50 s_p99 s_bad s_err < <(load "$conns" "$events" "http://127.0.0.1:$PORT_a")
  read -r _ e_rps e_p50 _ _ _ < <(load "$conns" "$events" "http://127.0.0.1:$el_port")
  local raw=$sync16
  [ "$conns" -eq 1 ] && raw=$(echo "1000 / $sync1_p50" | bc -l | xargs printf '%.0f')
  printf '  %-36s %11s %9s %9s %12s %7.2fx %12s %7.2fx\n' "$name" "$s_rps" "$s_p50" "$s_p99" "$e_rps" \
    "$(echo "$s_rps / $e_rps" | bc -l)" "$raw" "$(echo "$s_rps / $raw" | bc -l)"
  if [ "$s_bad" != 0 ] || [ "$s_err" != 0 ]; then echo "  warning: $s_bad non-2xx, $s_err socket errors"; fi
  if [ "$conns" -eq 1 ] && [ "$events" -eq 1 ]; then
    echo "  p50 budget at 1 connection: raw sync publish $sync1_p50 + empty listener $e_p50 + 0.150 = $(echo "$sync1_p50 + $e_p50 + 0.150" | bc -l | xargs printf '%.3f') ms"
  fi
}
row "1 connection, 1 event/append" 1 1
row "16 connections, 1 event/append" 16 1
row "16 connections, 100 events/append" 16 100
echo "  (raw sync at 1 connection: 1 / its p50; at 16: 16 sync publishers. 100 events/append: x100 for events/s)"
echo "targets: 16 conn >= 0.6x the empty listener; p50 at 1 conn <= the budget above; lag p99 < 20 ms at 1k ev/s"
