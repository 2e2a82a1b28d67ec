#!/usr/bin/env bash
# Operator benchmark: apply N EventStreams at once (default 500) and time until every one is
# Ready, with the operator's peak RSS and CPU over the run. The ceiling is how long the API
# server takes to accept the N objects (kubectl apply alone). Then, in namespaces of their own,
# 100 and 200 EventServices at once (a chain: each produces its stream and consumes the one
# before), timed until every one is Ready, to show how resolution scales with the namespace.
#
#   bench/operator_bench.sh BUILD_DIR [N]
#
# Starts its own control plane (scripts/controlplane), nats-server and operator; stops them all.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: bench/operator_bench.sh BUILD_DIR [N]}
n=${2:-500}
case "$build" in /*) ;; *) build=$ROOT/$build ;; esac
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
export SIDELOG_CONTROLPLANE=bench-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-operator-bench.XXXXXX")
op_pid= nats_pid=
cleanup() {
  [ -n "$op_pid" ] && kill -TERM "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
  "$ROOT/scripts/controlplane" down >/dev/null 2>&1 || true
  rm -f "$ROOT/.sidelog/controlplane/$SIDELOG_CONTROLPLANE.lock"
  rm -rf "$work"
}
trap cleanup EXIT

"$ROOT/scripts/k8s-tools" >/dev/null
"$ROOT/scripts/controlplane" up 2>/dev/null
eval "$("$ROOT/scripts/controlplane" env)"
k() { "$KUBECTL" "$@"; }
k apply -f "$ROOT/crds/" >/dev/null
k wait --for=condition=established crd/eventstreams.sidelog.dev --timeout=60s >/dev/null
k create namespace bench >/dev/null

port=$((20000 + RANDOM % 10000))
nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$port" >"$work/nats.log" 2>&1 &
nats_pid=$!
health=$((port + 1))
sleep 0.5
"$build/operator/sidelog-operator" --nats "nats://127.0.0.1:$port" \
  --health-listen "127.0.0.1:$health" --leader-election-namespace default --log-level warn \
  >"$work/operator.log" 2>&1 &
op_pid=$!
until curl -fsS "http://127.0.0.1:$health/readyz" >/dev/null 2>&1; do sleep 0.1; done

for i in $(seq 1 "$n"); do
  printf -- '---\napiVersion: sidelog.dev/v1alpha1\nkind: EventStream\nmetadata: {name: s%04d, namespace: bench}\nspec: {retention: {maxAge: 720h}}\n' "$i"
done >"$work/streams.yaml"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$op_pid/stat"; }
hz=$(getconf CLK_TCK)
cpu0=$(cpu_ticks)
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$op_pid/status")
t0=$(date +%s.%N)
k apply -f "$work/streams.yaml" >/dev/null
t_applied=$(date +%s.%N)
ready=0
while [ "$ready" -lt "$n" ]; do
  ready=$(k get evs -n bench -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  if awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {exit !(a - b > 300)}'; then
    echo "not all Ready after 300 s ($ready of $n)"; exit 1
  fi
  [ "$ready" -lt "$n" ] && sleep 0.25
done
t_ready=$(date +%s.%N)
cpu1=$(cpu_ticks)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$op_pid/status")
reconciles=$(curl -fsS "http://127.0.0.1:$health/metrics" | awk '/^sidelog_operator_reconciles_total/ {s += $2} END {print s}')

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
awk -v n="$n" -v t0="$t0" -v ta="$t_applied" -v tr="$t_ready" -v c0="$cpu0" -v c1="$cpu1" -v hz="$hz" \
  -v hwm="$hwm" -v r0="$rss0" -v r1="$rss1" -v rec="$reconciles" 'BEGIN {
  printf "EventStreams applied at once:        %d\n", n
  printf "ceiling: kubectl apply alone:        %.1f s\n", ta - t0
  printf "all Ready after:                     %.1f s   (target < 60 s)\n", tr - t0
  printf "operator CPU during the run:         %.1f s   (%.0f%% of one core)\n", (c1 - c0) / hz, 100 * (c1 - c0) / hz / (tr - t0)
  printf "operator RSS before / after / peak:  %.1f / %.1f / %.1f MiB   (target < 50 MB)\n", r0 / 1024, r1 / 1024, hwm / 1024
  printf "reconciles:                          %d (%.1f per stream)\n", rec, rec / n
}'

# EventServices: M in one namespace, each producing s<i> and consuming s<i-1>.
now() { date +%s.%N; }
ready_count() {  # KIND NS
  k get "$1" -n "$2" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
wait_all_ready() {  # KIND NS COUNT T0
  while [ "$(ready_count "$1" "$2")" -lt "$3" ]; do
    if awk -v a="$(now)" -v b="$4" 'BEGIN {exit !(a - b > 300)}'; then
      echo "not all $1 Ready after 300 s ($(ready_count "$1" "$2") of $3)"; exit 1
    fi
    sleep 0.25
  done
}
svc_reconciles() {
  curl -fsS "http://127.0.0.1:$health/metrics" | awk '/^sidelog_operator_reconciles_total\{kind="EventService"/ {s += $2} END {print s + 0}'
}
for m in 100 200; do
  ns=svc-$m
  k create namespace "$ns" >/dev/null
  for i in $(seq 1 "$m"); do
    printf -- '---\napiVersion: sidelog.dev/v1alpha1\nkind: EventStream\nmetadata: {name: s%04d, namespace: %s}\nspec: {}\n' "$i" "$ns"
  done >"$work/streams-$m.yaml"
  for i in $(seq 1 "$m"); do
    printf -- '---\napiVersion: sidelog.dev/v1alpha1\nkind: EventService\nmetadata: {name: svc%04d, namespace: %s}\nspec:\n  produces: [s%04d]\n' "$i" "$ns" "$i"
    [ "$i" -gt 1 ] && printf '  consumes: [{stream: s%04d}]\n' "$((i - 1))"
  done >"$work/services-$m.yaml"
  k apply -f "$work/streams-$m.yaml" >/dev/null
  wait_all_ready evs "$ns" "$m" "$(now)"
  rec0=$(svc_reconciles)
  cpu0=$(cpu_ticks)
  t0=$(now)
  k apply -f "$work/services-$m.yaml" >/dev/null
  t_applied=$(now)
  wait_all_ready evsvc "$ns" "$m" "$t0"
  t_ready=$(now)
  cpu1=$(cpu_ticks)
  rec1=$(svc_reconciles)
  awk -v m="$m" -v t0="$t0" -v ta="$t_applied" -v tr="$t_ready" -v c0="$cpu0" -v c1="$cpu1" \
    -v hz="$hz" -v rec="$((rec1 - rec0))" 'BEGIN {
    printf "EventServices in one namespace:      %d (a chain of dependencies)\n", m
    printf "  ceiling: kubectl apply alone:      %.1f s\n", ta - t0
    printf "  all Ready after:                   %.1f s\n", tr - t0
    printf "  operator CPU:                      %.1f s (%.1f ms per service)\n", (c1 - c0) / hz, 1000 * (c1 - c0) / hz / m
    printf "  reconciles:                        %d (%.1f per service)\n", rec, rec / m
  }'
done
echo "operator RSS at the end:             $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$op_pid/status")"
