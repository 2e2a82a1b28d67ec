#!/usr/bin/env bash
# The EventStream lifecycle against a real kube-apiserver and nats-server: create, edit
# retention, drift repaired, a lost empty stream recreated, a lost stream with data reported
# and never recreated, storage immutable, deletion with Retain and with Delete, events, metrics.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-evs
ensure_namespace "$NS"
start_nats

# The operator runs as the ServiceAccount of deploy/rbac/operator.yaml, with a token file in its
# kubeconfig: RBAC that misses a rule fails this test, and the token file path is exercised.
assert_ok "the operator's RBAC applies" operator_kubeconfig
SA=system:serviceaccount:sidelog-system:sidelog-operator
assert_eq "least privilege: it may not read Secrets" "no" "$(kubectl auth can-i list secrets --as=$SA 2>/dev/null || true)"
assert_eq "least privilege: it may not delete EventStreams" "no" "$(kubectl auth can-i delete eventstreams.sidelog.dev --as=$SA 2>/dev/null || true)"
rbac_list() {
  kubectl auth can-i --list -n sidelog-system --as="$SA" | python3 "$E2E_DIR/rbac_matches.py" "$ROOT/deploy/rbac/operator.yaml"
}
assert_ok "kubectl auth can-i --list grants exactly the rules of deploy/rbac/operator.yaml" rbac_list
assert_eq "least privilege: no Leases outside its namespace" "no" "$(kubectl auth can-i update leases -n default --as=$SA 2>/dev/null || true)"
LEASE_NAMESPACE=sidelog-system start_operator op1 --namespace "$NS" --kubeconfig "$WORK/kubeconfig"

apply_stream() {  # NAME [SPEC-YAML-LINES]
  kubectl apply -f - <<YAML
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: $1, namespace: $NS}
spec:
${2:-  replicas: 1}
YAML
}

echo "# create"
assert_ok "an EventStream applies" apply_stream orders "  retention: {maxAge: 720h}
  deletionPolicy: Delete"
assert_ok "it is Ready=True within 10 s" kubectl wait -n "$NS" evs/orders --for=condition=Ready --timeout=10s
assert_eq "its reason is Created" "True/Created" "$(ready_of "$NS" orders)"
S=SIDELOG_${NS}_orders
assert_eq "the JetStream stream exists" "true" "$(js_field "$S" exists)"
assert_eq "with the stream's subjects" '["sidelog.e2e-evs.orders.>"]' "$(js_field "$S" config.subjects)"
assert_eq "with maxAge 720h" "2592000" "$(js_field "$S" config.maxAgeSeconds)"
assert_eq "discarding new commits when full (the default)" "new" "$(js_field "$S" config.discard)"
assert_eq "in file storage" "file" "$(js_field "$S" config.storage)"
assert_eq "with a 2m duplicate window" "120" "$(js_field "$S" config.duplicateWindowSeconds)"
assert_eq "status names the stream" "$S" "$(kubectl get evs -n "$NS" orders -o jsonpath='{.status.jetStream.name}')"
assert_eq "status.observedGeneration is the generation" \
  "$(kubectl get evs -n "$NS" orders -o jsonpath='{.metadata.generation}')" \
  "$(kubectl get evs -n "$NS" orders -o jsonpath='{.status.observedGeneration}')"
assert_eq "the finalizer is set" "sidelog.dev/jetstream" \
  "$(kubectl get evs -n "$NS" orders -o jsonpath='{.metadata.finalizers[0]}')"
assert_ok "kubectl get evs shows the printer columns" kubectl get evs -n "$NS" orders -o wide
assert_contains "READY True, reason Created" "$OUT" "Created"
assert_ok "an Event was recorded" kubectl get events -n "$NS" --field-selector involvedObject.name=orders,reason=Created -o name
assert_eq "exactly one Created event" "1" "$(grep -c . <<<"$OUT")"

echo "# edit retention: the stream follows"
assert_ok "retention edited" apply_stream orders "  retention: {maxAge: 24h, maxCommits: 1000}
  deletionPolicy: Delete"
wait_until "JetStream maxAge follows to 24h" 10 js_field_is "$S" config.maxAgeSeconds 86400
assert_eq "and maxMsgs to 1000" "1000" "$(js_field "$S" config.maxMsgs)"
wait_until "Ready=True reason Updated" 10 is_ready_with "$NS" orders True/Updated
wait_until "observedGeneration follows to 2" 10 bash -c "[ \"\$($KUBECTL get evs -n $NS orders -o jsonpath='{.status.observedGeneration}')\" = 2 ]"

echo "# drift: edited by hand, restored within a resync period"
assert_ok "someone sets maxMsgs=5 in JetStream" js set "$S" maxMsgs 5
wait_until "the operator restores maxMsgs=1000" 10 js_field_is "$S" config.maxMsgs 1000

echo "# an empty stream deleted in NATS comes back"
assert_ok "the empty stream is deleted in NATS" js delete "$S"
wait_until "it is recreated" 10 js_field_is "$S" exists true
wait_until "and Ready=True" 10 is_ready_with "$NS" orders True/Created

echo "# a stream that held data is never recreated"
assert_ok "a second stream applies" apply_stream ledger "  deletionPolicy: Retain"
assert_ok "it is Ready" kubectl wait -n "$NS" evs/ledger --for=condition=Ready --timeout=10s
L=SIDELOG_${NS}_ledger
assert_ok "a commit is published to it" js publish "sidelog.$NS.ledger.acct-1" '{"x":1}'
wait_until "status shows lastPosition 1" 10 bash -c "[ \"\$($KUBECTL get evs -n $NS ledger -o jsonpath='{.status.jetStream.lastPosition}')\" = 1 ]"
assert_ok "the stream with data is deleted in NATS" js delete "$L"
wait_until "Ready=False reason StreamLost" 10 is_ready_with "$NS" ledger False/StreamLost
sleep 3  # more than a resync period
assert_eq "the stream was not recreated" "false" "$(js_field "$L" exists)"
assert_ok "a StreamLost warning event" kubectl get events -n "$NS" --field-selector involvedObject.name=ledger,reason=StreamLost,type=Warning -o name
assert_contains "the event exists" "$OUT" "event"
assert_contains "the message says why" "$(kubectl get evs -n "$NS" ledger -o jsonpath='{.status.conditions[0].message}')" "reuse those positions"

echo "# storage is immutable (CEL at apply)"
assert_fails "changing storage is refused" apply_stream orders "  storage: memory
  deletionPolicy: Delete"
assert_contains "with the CEL message" "$OUT" "storage is immutable"

echo "# a change JetStream cannot make is a condition, not a crash loop"
assert_ok "replicas: 3 on a one-node NATS" apply_stream wide "  replicas: 3"
wait_until "Ready=False reason InvalidSpec" 10 is_ready_with "$NS" wide False/InvalidSpec
assert_contains "the message is JetStream's" "$(kubectl get evs -n "$NS" wide -o jsonpath='{.status.conditions[0].message}')" "replicas"
assert_ok "the operator is still healthy" curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/healthz"

echo "# a stream that already exists is adopted, and its config set to the spec"
assert_ok "a JetStream stream made by hand (default limits, discard old)" js create "SIDELOG_${NS}_legacy" "sidelog.$NS.legacy.>"
assert_ok "a commit in it" js publish "sidelog.$NS.legacy.x" '{}'
assert_ok "an EventStream of that name applies" apply_stream legacy "  retention: {maxCommits: 500}"
wait_until "Ready=True reason Adopted" 10 is_ready_with "$NS" legacy True/Adopted
assert_eq "its config follows the spec" "500" "$(js_field "SIDELOG_${NS}_legacy" config.maxMsgs)"
assert_eq "its commit is kept" "1" "$(js_field "SIDELOG_${NS}_legacy" messages)"
assert_contains "the message names what changed" \
  "$(kubectl get evs -n "$NS" legacy -o jsonpath='{.status.conditions[0].message}')" "maxCommits unlimited -> 500"

echo "# a change JetStream cannot make is UnsupportedChange, and the stream is left alone"
assert_ok "a memory stream made by hand" js create "SIDELOG_${NS}_scratch" "sidelog.$NS.scratch.>" memory
assert_ok "an EventStream of that name, with file storage (the default)" apply_stream scratch "  replicas: 1"
wait_until "Ready=False reason UnsupportedChange" 10 is_ready_with "$NS" scratch False/UnsupportedChange
assert_contains "the message says why" \
  "$(kubectl get evs -n "$NS" scratch -o jsonpath='{.status.conditions[0].message}')" "cannot change storage in place"
assert_eq "the stream keeps its memory storage" "memory" "$(js_field "SIDELOG_${NS}_scratch" config.storage)"
assert_ok "the operator is still healthy" curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/healthz"
assert_ok "kubectl delete evs/scratch" kubectl delete evs -n "$NS" scratch --timeout=20s
assert_ok "applied again with storage: memory" apply_stream scratch "  storage: memory"
wait_until "it is adopted" 10 is_ready_with "$NS" scratch True/Adopted
assert_ok "kubectl delete evs/scratch" kubectl delete evs -n "$NS" scratch --timeout=20s
assert_ok "kubectl delete evs/legacy" kubectl delete evs -n "$NS" legacy --timeout=20s

echo "# deletion: Retain keeps the stream, Delete removes it"
assert_ok "kubectl delete evs/ledger (Retain)" kubectl delete evs -n "$NS" ledger --timeout=20s
assert_ok "a retained, populated stream: recreate it by hand to check Retain" js create "$L" "sidelog.$NS.ledger.>"
assert_ok "a third stream, Retain" apply_stream keep "  deletionPolicy: Retain"
assert_ok "it is Ready" kubectl wait -n "$NS" evs/keep --for=condition=Ready --timeout=10s
assert_ok "kubectl delete evs/keep" kubectl delete evs -n "$NS" keep --timeout=20s
assert_eq "Retain kept the JetStream stream" "true" "$(js_field "SIDELOG_${NS}_keep" exists)"
assert_ok "kubectl delete evs/orders (Delete)" kubectl delete evs -n "$NS" orders --timeout=20s
assert_eq "Delete removed the JetStream stream" "false" "$(js_field "$S" exists)"
assert_ok "kubectl delete evs/wide" kubectl delete evs -n "$NS" wide --timeout=20s

echo "# health and metrics"
H=http://127.0.0.1:${OPERATOR_HEALTH[op1]}
assert_ok "/readyz" curl -fsS "$H/readyz"
assert_ok "/metrics" curl -fsS "$H/metrics"
assert_contains "reconciles by kind and result" "$OUT" 'sidelog_operator_reconciles_total{kind="EventStream",result="success"}'
assert_contains "reconcile durations" "$OUT" 'sidelog_operator_reconcile_duration_seconds_count{kind="EventStream"}'
assert_contains "queue depth" "$OUT" 'sidelog_operator_queue_depth{kind="EventStream"}'
assert_contains "leadership" "$OUT" 'sidelog_operator_leader 1'
assert_ok "structured logs (one JSON object per line)" python3 -c "import json,sys; [json.loads(l) for l in open('$WORK/operator-op1.log') if l.strip()]"
