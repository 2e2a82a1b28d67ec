#!/usr/bin/env bash
# Admission benchmark: pods created through a real kube-apiserver at 50 pods/s (500 each, at
# most 60 s), labelled for injection (the operator's webhook in the path) and unlabelled (the
# ceiling: the API server alone), and the webhook's /mutate called directly. Prints p50/p99/max
# of each (bench/admission_bench.py).
#
#   bench/admission_bench.sh BUILD_DIR [RATE] [PODS]
#
# Starts its own control plane (scripts/controlplane), nats-server and operator (its webhook on
# 127.0.0.1, called by URL); stops them all.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: bench/admission_bench.sh BUILD_DIR [RATE] [PODS]}
rate=${2:-50}
pods=${3:-500}
case "$build" in /*) ;; *) build=$ROOT/$build ;; esac
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
export SIDELOG_CONTROLPLANE=bench-admission-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-admission-bench.XXXXXX")
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
k wait --for=condition=established crd --all --timeout=60s >/dev/null
k create namespace shop >/dev/null

port=$((20000 + RANDOM % 10000))
nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$port" >"$work/nats.log" 2>&1 &
nats_pid=$!
health=$((port + 1)) webhook=$((port + 2))
sleep 0.5
"$build/operator/sidelog-operator" --nats "nats://127.0.0.1:$port" \
  --health-listen "127.0.0.1:$health" --webhook-listen "127.0.0.1:$webhook" \
  --webhook-hosts 127.0.0.1 --leader-election-namespace default --log-level warn \
  >"$work/operator.log" 2>&1 &
op_pid=$!
k apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: sidelog-sidecar-injector}
webhooks:
  - name: inject.sidelog.dev
    admissionReviewVersions: [v1]
    clientConfig: {url: "https://127.0.0.1:$webhook/mutate"}
    rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}]
    objectSelector: {matchLabels: {sidelog.dev/inject: "true"}}
    failurePolicy: Fail
    sideEffects: None
    timeoutSeconds: 5
    reinvocationPolicy: IfNeeded
YAML
k apply -f "$ROOT/examples/shop/k8s/streams.yaml" -f "$ROOT/examples/shop/k8s/services.yaml" >/dev/null
k wait -n shop evsvc --all --for=condition=Ready --timeout=60s >/dev/null
until curl -fsS "http://127.0.0.1:$health/readyz" >/dev/null 2>&1; do sleep 0.1; done
bundled() { [ -n "$(k get mutatingwebhookconfiguration sidelog-sidecar-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]; }
until bundled; do sleep 0.1; done
k get secret -n default sidelog-webhook-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$work/webhook-ca.crt"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
python3 "$ROOT/bench/admission_bench.py" --kubeconfig "$KUBECONFIG" --namespace shop \
  --webhook "https://127.0.0.1:$webhook" --ca "$work/webhook-ca.crt" --rate "$rate" --pods "$pods"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
echo "operator peak RSS: $((rss / 1024)) MiB"
curl -fsS "http://127.0.0.1:$health/metrics" | grep '^sidelog_operator_admissions_total'
