#!/usr/bin/env bash
# The EventService lifecycle against a real kube-apiserver and nats-server: the shop's services
# resolve and get their sidecar ConfigMaps; a second producer of a Single stream alone gets
# ProducerConflict; a deleted stream makes its consumers StreamNotFound and they recover; a
# changed reducer re-renders every ConfigMap that lists the stream; the real sidecar runs the
# rendered config (writes its produced stream, 403 on a consumed one); 30 s of appends cost a
# bounded number of status patches; `sidelog graph` draws the namespace.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-evsvc
ensure_namespace "$NS"
start_nats
assert_ok "the operator's RBAC applies" operator_kubeconfig
SA=system:serviceaccount:sidelog-system:sidelog-operator
assert_eq "least privilege: it may not delete ConfigMaps" "no" "$(kubectl auth can-i delete configmaps --as=$SA 2>/dev/null || true)"
assert_eq "least privilege: it may not edit EventService specs" "no" "$(kubectl auth can-i update eventservices.sidelog.dev --as=$SA 2>/dev/null || true)"
LEASE_NAMESPACE=sidelog-system start_operator op1 --namespace "$NS" --kubeconfig "$WORK/kubeconfig"

# The shop's objects, in this test's namespace.
shop() { sed "s/namespace: shop/namespace: $NS/" "$ROOT/examples/shop/k8s/$1"; }
field() { kubectl get -n "$NS" "$1" -o jsonpath="$2" 2>&1; }
cond() { field "evsvc/$1" "{.status.conditions[?(@.type==\"$2\")].status}/{.status.conditions[?(@.type==\"$2\")].reason}"; }
cond_is() { local got; got=$(cond "$1" "$2"); [ "$got" = "$3" ] || { echo "$2 of $1 is '$got', want '$3'"; return 1; }; }
hash_of() { field "configmap/sidelog-$1" '{.metadata.annotations.sidelog\.dev/config-hash}'; }

echo "# the shop's streams and services"
assert_ok "the shop's streams apply" kubectl apply -f <(shop streams.yaml)
assert_ok "the shop's services apply" kubectl apply -f <(shop services.yaml)
wait_until "orders is Ready" 10 cond_is orders Ready True/ConfigRendered
wait_until "billing is Ready" 10 cond_is billing Ready True/ConfigRendered
assert_eq "billing's dependencies are resolved" "True/Resolved" "$(cond billing DependenciesResolved)"
assert_eq "billing depends on orders through the orders stream" '[{"service":"orders","streams":["orders"]}]' \
  "$(field evsvc/billing '{.status.dependencies}')"
assert_eq "orders has billing as its dependent" '[{"service":"billing","streams":["orders"]}]' \
  "$(field evsvc/orders '{.status.dependents}')"
assert_eq "observedGeneration" "$(field evsvc/billing '{.metadata.generation}')" "$(field evsvc/billing '{.status.observedGeneration}')"
assert_ok "kubectl get evsvc" kubectl get evsvc -n "$NS"
assert_contains "with the columns" "$OUT" "READY   DEPENDENCIES   PODS   AGE"
assert_contains "billing True True" "$(kubectl get evsvc -n "$NS" billing --no-headers | awk '{print $1, $2, $3}')" "billing True True"
assert_ok "kubectl get evsvc -o wide shows the reason" kubectl get evsvc -n "$NS" -o wide
assert_contains "reason Resolved" "$OUT" "Resolved"
assert_eq "the ConfigMap is owned by the EventService" "EventService/billing/$(field evsvc/billing '{.metadata.uid}')" \
  "$(field configmap/sidelog-billing '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}')"
assert_eq "written by server-side apply as sidelog-operator" "sidelog-operator/Apply" \
  "$(field configmap/sidelog-billing '{.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}')"
assert_eq "status names its hash" "$(hash_of billing)" "$(field evsvc/billing '{.status.sidecarConfig.hash}')"

echo "# the rendered config runs in the real sidecar"
field configmap/sidelog-billing '{.data.sidecar\.yaml}' >"$WORK/billing.yaml"
assert_contains "it names the operator's NATS" "$(cat "$WORK/billing.yaml")" "$NATS_URL"
wait_until "the operator created the payments stream" 10 js_field_is "SIDELOG_${NS}_payments" exists true
wait_until "and the orders stream" 10 js_field_is "SIDELOG_${NS}_orders" exists true
api_port=$(free_port)
"$BUILD/sidecar/sidelog-sidecar" --config "$WORK/billing.yaml" --listen "127.0.0.1:$api_port" \
  --health-listen "127.0.0.1:$(free_port)" --data-dir "$WORK/billing-data" >"$WORK/sidecar.log" 2>&1 &
SIDECAR_PID=$!
trap '_rc=$?; kill -KILL $SIDECAR_PID 2>/dev/null || true; _operator_cleanup; (exit $_rc); _on_exit' EXIT
API=http://127.0.0.1:$api_port
wait_until "the sidecar is ready with the rendered config" 15 curl -fsS "$API/readyz"
append() {  # STREAM ENTITY TYPE DATA: prints the HTTP code
  curl -s -o "$WORK/answer" -w '%{http_code}' -X POST "$API/v1/streams/$1/entities/$2/events" \
    -H 'Content-Type: application/json' -d "{\"events\":[{\"type\":\"$3\",\"data\":$4}]}"
}
assert_eq "an append to the produced payments stream is 201" "201" \
  "$(append payments pay-1 PaymentRequested '{"orderId":"o-1","amount":12.5}')"
assert_eq "an append to the consumed orders stream is 403" "403" \
  "$(append orders o-1 OrderCreated '{"customerId":"c-1"}')"
assert_contains "the problem says why" "$(cat "$WORK/answer")" "orders"
assert_eq "the payments state machine came with the config (422 out of order)" "422" \
  "$(append payments pay-2 PaymentReceived '{"amount":1}')"

echo "# 30 s of appends at ~30/s: status patches stay bounded (resync period 2 s)"
patches() { metric op1 'sidelog_operator_api_writes_total{verb="patch",resource="eventstreams/status"}'; }
reconciles() { metric op1 'sidelog_operator_reconciles_total{kind="EventStream",result="success"}'; }
p0=$(patches); r0=$(reconciles); t0=$SECONDS; n=0; ok=0
while [ $((SECONDS - t0)) -lt 30 ] && [ "$n" -lt 1200 ]; do
  [ "$(append payments "load-$n" PaymentRequested '{"orderId":"o","amount":1}')" = 201 ] && ok=$((ok + 1))
  n=$((n + 1))
  sleep 0.02
done
elapsed=$((SECONDS - t0))
p1=$(patches); r1=$(reconciles)
p0=${p0:-0} r0=${r0:-0} p1=${p1:-0} r1=${r1:-0}
dp=$(( ${p1%.*} - ${p0%.*} )); dr=$(( ${r1%.*} - ${r0%.*} ))
echo "  $n appends in ${elapsed}s: $dp EventStream status patches, $dr EventStream reconciles (3 streams)"
assert_ok "hundreds of appends were made ($ok of $n answered 201)" test "$ok" -ge 300
# Every stream may be patched once per resync when its counters moved (only payments does),
# plus a few for the first sight.
assert_ok "at most one status patch per resync period ($dp in ${elapsed}s)" test "$dp" -le $((elapsed / 2 + 3))
assert_ok "reconciles are the resyncs, not the appends ($dr for 3 streams)" test "$dr" -le $((3 * (elapsed / 2 + 2)))
wait_until "status.jetStream.lastPosition follows within a resync" 10 bash -c \
  "[ \"\$($KUBECTL get evs -n $NS payments -o jsonpath='{.status.jetStream.events}')\" -ge $ok ]"

echo "# a second producer of a Single stream"
assert_ok "rogue, which also produces orders, applies" kubectl apply -f - <<YAML
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: rogue, namespace: $NS}
spec: {produces: [orders]}
YAML
wait_until "rogue alone gets ProducerConflict" 10 cond_is rogue DependenciesResolved False/ProducerConflict
assert_contains "naming the service that keeps it" "$(field evsvc/rogue '{.status.conditions[?(@.type=="DependenciesResolved")].message}')" "EventService orders"
assert_eq "orders keeps it" "True/Resolved" "$(cond orders DependenciesResolved)"
assert_eq "billing is still Ready" "True/ConfigRendered" "$(cond billing Ready)"
assert_ok "a ProducerConflict warning event" kubectl get events -n "$NS" --field-selector involvedObject.name=rogue,reason=ProducerConflict,type=Warning -o name
assert_contains "was recorded" "$OUT" "event"
assert_ok "rogue is deleted" kubectl delete evsvc -n "$NS" rogue --timeout=20s

echo "# a stream goes away and comes back"
assert_ok "the payments EventStream is deleted" kubectl delete evs -n "$NS" payments --timeout=20s
wait_until "billing becomes StreamNotFound within 5 s" 5 cond_is billing DependenciesResolved False/StreamNotFound
assert_contains "the message names payments" "$(field evsvc/billing '{.status.conditions[?(@.type=="DependenciesResolved")].message}')" "payments"
assert_eq "Ready follows" "False/StreamNotFound" "$(cond billing Ready)"
assert_not_contains "the config leaves payments out" "$(field configmap/sidelog-billing '{.data.sidecar\.yaml}')" "name: payments"
assert_ok "payments is applied again" kubectl apply -f <(shop streams.yaml)
wait_until "billing recovers within 5 s" 5 cond_is billing Ready True/ConfigRendered
assert_contains "and payments is back in its config" "$(field configmap/sidelog-billing '{.data.sidecar\.yaml}')" "name: payments"

echo "# a changed reducer re-renders every service that lists the stream"
hb=$(hash_of billing); ho=$(hash_of orders)
assert_ok "a reducer is added to orders" kubectl patch -n "$NS" evs/orders --type=merge \
  -p '{"spec":{"entity":{"reducers":{"OrderShipped":[{"op":"set","path":"/shipped","value":true}]}}}}'
changed() { [ "$(hash_of billing)" != "$hb" ] && [ "$(hash_of orders)" != "$ho" ]; }
wait_until "both ConfigMaps change within 5 s" 5 changed
assert_contains "billing's config has the new reducer" "$(field configmap/sidelog-billing '{.data.sidecar\.yaml}')" "OrderShipped"
wait_until "status follows the new hash" 5 bash -c "[ \"\$($KUBECTL get evsvc -n $NS billing -o jsonpath='{.status.sidecarConfig.hash}')\" = \"$(hash_of billing)\" ]"

echo "# a ConfigMap deleted by hand comes back"
assert_ok "sidelog-orders is deleted" kubectl delete configmap -n "$NS" sidelog-orders
wait_until "it is rendered again" 5 bash -c "[ -n \"\$($KUBECTL get configmap -n $NS sidelog-orders -o name 2>/dev/null)\" ]"

echo "# bad input"
assert_fails "a service that consumes what it produces (a cycle of one) is refused" kubectl apply -f - <<YAML
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: narcissus, namespace: $NS}
spec: {produces: [orders], consumes: [{stream: orders}]}
YAML
assert_contains "with the CRD's message" "$OUT" "may not also be in consumes"
assert_fails "a stream name that is not a DNS label is refused" kubectl apply -f - <<YAML
apiVersion: sidelog.dev/v1alpha1
kind: EventService
metadata: {name: bad, namespace: $NS}
spec: {consumes: [{stream: Orders_V2}]}
YAML
assert_contains "naming the field" "$OUT" "spec.consumes[0].stream"

echo "# sidelog graph"
assert_ok "sidelog graph -n $NS reads the cluster" "$BUILD/cli/sidelog" graph -n "$NS"
graph=$OUT
assert_contains "it names billing" "$graph" "billing"
assert_contains "the orders edge carries billing's types" "$graph" "OrderPlaced"
assert_ok "--format dot" "$BUILD/cli/sidelog" graph -n "$NS" --format dot
assert_contains "is a digraph" "$OUT" "digraph"

echo "# metrics"
assert_ok "/metrics" curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/metrics"
assert_contains "EventService reconciles" "$OUT" 'sidelog_operator_reconciles_total{kind="EventService",result="success"}'
assert_contains "ConfigMap applies" "$OUT" 'sidelog_operator_api_writes_total{verb="apply",resource="configmaps"}'
