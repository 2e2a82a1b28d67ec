#!/usr/bin/env bash
# The operator with NATS away: EventStreams turn Ready=False NatsUnavailable and come back
# without an operator restart; deletion never deadlocks (Retain goes at once, Delete waits and
# says why, the skip-cleanup annotation releases it, NATS coming back finishes it).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-nats
ensure_namespace "$NS"
start_nats
start_operator op1 --namespace "$NS"
op_pid=${OPERATOR_PID[op1]}

apply_stream() {  # NAME POLICY
  kubectl apply -f - <<YAML
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata: {name: $1, namespace: $NS}
spec: {deletionPolicy: $2}
YAML
}
for s in stay:Retain retained:Retain released:Delete finished:Delete; do
  assert_ok "EventStream ${s%%:*} (${s##*:}) applies" apply_stream "${s%%:*}" "${s##*:}"
done
assert_ok "all four are Ready" kubectl wait -n "$NS" evs --all --for=condition=Ready --timeout=15s
assert_eq "the operator sees NATS" "1" "$(metric op1 sidelog_operator_nats_connected)"

echo "# NATS goes away"
stop_nats
wait_until "Ready=False reason NatsUnavailable" 15 is_ready_with "$NS" stay False/NatsUnavailable
assert_eq "the metric says disconnected" "0" "$(metric op1 sidelog_operator_nats_connected)"
assert_contains "the message says what failed" \
  "$(kubectl get evs -n "$NS" stay -o jsonpath='{.status.conditions[0].message}')" "JetStream"
assert_ok "an EventStream applied meanwhile is accepted" apply_stream later Retain
wait_until "and waits with NatsUnavailable" 15 is_ready_with "$NS" later False/NatsUnavailable

echo "# deletion with NATS away"
assert_ok "deleting a Retain EventStream completes without NATS" \
  kubectl delete evs -n "$NS" retained --timeout=15s
assert_ok "a Delete EventStream is marked for deletion" kubectl delete evs -n "$NS" released finished --wait=false
sleep 3
assert_ok "it still exists, held by the finalizer" kubectl get evs -n "$NS" released
wait_until "its condition says why it waits" 10 is_ready_with "$NS" released False/DeletionFailed
assert_contains "and how to let it go" \
  "$(kubectl get evs -n "$NS" released -o jsonpath='{.status.conditions[0].message}')" "sidelog.dev/skip-cleanup"
assert_ok "annotating skip-cleanup" kubectl annotate evs -n "$NS" released sidelog.dev/skip-cleanup=true
assert_ok "releases it" kubectl wait -n "$NS" evs/released --for=delete --timeout=15s

echo "# NATS comes back"
start_nats
wait_until "Ready=True again, without an operator restart" 20 is_ready_with "$NS" stay True/Reconciled
assert_eq "the same operator process" "$op_pid" "${OPERATOR_PID[op1]}"
assert_ok "the process is alive" kill -0 "$op_pid"
wait_until "the EventStream applied while NATS was away is Created" 20 is_ready_with "$NS" later True/Created
assert_ok "the waiting Delete finishes" kubectl wait -n "$NS" evs/finished --for=delete --timeout=20s
assert_eq "and its JetStream stream is gone" "false" "$(js_field "SIDELOG_${NS}_finished" exists)"
assert_eq "the skip-cleanup one kept its stream" "true" "$(js_field "SIDELOG_${NS}_released" exists)"
assert_eq "the Retain one kept its stream" "true" "$(js_field "SIDELOG_${NS}_retained" exists)"
