#!/usr/bin/env bash
# The Consolidator against a real kube-apiserver, with kube-controller-manager's garbage
# collector: the shop's read model gets its ConfigMap, StatefulSet and Service, owned by it and
# written by server-side apply under the operator's least-privilege RBAC; kubectl shows its
# columns; a handler the database rejects is InvalidSpec with the database's message and the
# handler's event, and nothing is rolled out; a PostgreSQL target is a Deployment whose
# connection string comes from the Secret; deleting the Consolidator garbage-collects what it
# owns. (Pods need the node: tests/e2e/82-node-consolidator.sh runs them.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-cons
ensure_namespace "$NS"
start_nats
assert_ok "the operator's RBAC applies" operator_kubeconfig
SA=system:serviceaccount:sidelog-system:sidelog-operator
assert_eq "least privilege: it may not delete Services" "no" "$(kubectl auth can-i delete services --as=$SA 2>/dev/null || true)"
assert_eq "least privilege: it may not read Secrets of apps" "no" "$(kubectl auth can-i get secrets -n "$NS" --as=$SA 2>/dev/null || true)"
assert_eq "least privilege: it may not edit Consolidator specs" "no" "$(kubectl auth can-i update consolidators.sidelog.dev --as=$SA 2>/dev/null || true)"

# Garbage collection is kube-controller-manager's: run its collector against this API server.
KCM=$("$ROOT/scripts/k8s-tools" --path kube-controller-manager)
"$KCM" --kubeconfig="$KUBECONFIG" --controllers=garbagecollector --leader-elect=false \
  --secure-port=0 --concurrent-gc-syncs=5 >"$WORK/kcm.log" 2>&1 &
KCM_PID=$!
trap '_rc=$?; kill -KILL $KCM_PID 2>/dev/null || true; _operator_cleanup; (exit $_rc); _on_exit' EXIT

LEASE_NAMESPACE=sidelog-system start_operator op1 --namespace "$NS" --kubeconfig "$WORK/kubeconfig" \
  --consolidator-status-period 1s

field() { kubectl get -n "$NS" "$1" -o jsonpath="$2" 2>&1; }
cond() { field "cons/$1" "{.status.conditions[?(@.type==\"$2\")].status}/{.status.conditions[?(@.type==\"$2\")].reason}"; }
cond_is() { local got; got=$(cond "$1" "$2"); [ "$got" = "$3" ] || { echo "$2 of $1 is '$got', want '$3'"; return 1; }; }
message() { field "cons/$1" "{.status.conditions[?(@.type==\"$2\")].message}"; }
exists() { kubectl get -n "$NS" "$1" >/dev/null 2>&1; }
gone() { ! exists "$1"; }
owner_of() { field "$1" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}'; }
shop() { sed "s/namespace: shop/namespace: $NS/" "$ROOT/examples/shop/k8s/consolidator.yaml"; }

echo "# the shop's read model"
start=$(date +%s%N)
assert_ok "the shop's Consolidator applies" kubectl apply -f <(shop)
wait_until "its StatefulSet exists" 15 exists statefulset/order-summary
echo "  (ConfigMap, StatefulSet and Service $(( ($(date +%s%N) - start) / 1000000 )) ms after kubectl apply)"
UID_=$(field cons/order-summary '{.metadata.uid}')
for o in configmap/order-summary-consolidator statefulset/order-summary service/order-summary; do
  assert_eq "$o is owned by the Consolidator" "Consolidator/order-summary/$UID_" "$(owner_of "$o")"
  assert_eq "$o is written by server-side apply as sidelog-operator" "sidelog-operator/Apply" \
    "$(field "$o" '{.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}')"
done
assert_eq "a StatefulSet of 1" "1" "$(field statefulset/order-summary '{.spec.replicas}')"
assert_eq "its claim is the spec's size" "1Gi" \
  "$(field statefulset/order-summary '{.spec.volumeClaimTemplates[0].spec.resources.requests.storage}')"
assert_eq "the Service serves the query API" "http/4390" "$(field service/order-summary '{.spec.ports[0].name}/{.spec.ports[0].port}')"
assert_contains "the config names the operator's NATS" \
  "$(field configmap/order-summary-consolidator '{.data.consolidator\.yaml}')" "$NATS_URL"
assert_eq "the pods run restricted" "true/true" \
  "$(field statefulset/order-summary '{.spec.template.spec.containers[0].securityContext.runAsNonRoot}/{.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}')"
wait_until "without pods it is not Ready" 10 cond_is order-summary Ready False/WorkloadNotReady
assert_contains "and says why" "$(message order-summary Ready)" "StatefulSet order-summary: 0 of 1 pods ready"
assert_ok "kubectl get cons" kubectl get cons -n "$NS"
assert_contains "with the columns" "$OUT" "READY   LAG   AGE"
assert_ok "kubectl get cons -o wide" kubectl get cons -n "$NS" -o wide
assert_contains "with Rebuilding and Lag Seconds" "$OUT" "REBUILDING   LAG SECONDS"
assert_ok "kubectl explain names the rebuild status" kubectl explain consolidator.status.rebuild
assert_contains "requestedAt and progress" "$OUT" "progress"

echo "# a handler the database rejects"
generation=$(field statefulset/order-summary '{.metadata.generation}')
assert_ok "a handler naming a missing table is accepted by the API server" \
  kubectl patch cons order-summary -n "$NS" --type=json \
  -p '[{"op":"replace","path":"/spec/handlers/5/sql","value":"UPDATE orderz SET status = '"'"'paid'"'"' WHERE id = :entity"}]'
wait_until "it is InvalidSpec" 10 cond_is order-summary Ready False/InvalidSpec
assert_contains "quoting the database" "$(message order-summary Ready)" "no such table: orderz"
assert_contains "and the handler's event" "$(message order-summary Ready)" "handlers[5] (orders/OrderPaid)"
assert_eq "nothing was rolled out" "$generation" "$(field statefulset/order-summary '{.metadata.generation}')"
assert_contains "a Warning Event says so" \
  "$(kubectl get events -n "$NS" --field-selector involvedObject.name=order-summary,reason=InvalidSpec -o jsonpath='{.items[*].type}')" "Warning"
assert_ok "the fix applies" kubectl apply -f <(shop)
wait_until "it is back to WorkloadNotReady" 10 cond_is order-summary Ready False/WorkloadNotReady

echo "# PostgreSQL: a Deployment, the connection from the Secret"
sed -e 's/name: order-summary/name: order-summary-pg/' \
  -e 's/^    sqlite:$/    postgres:/' -e 's/^      size: 1Gi$/      connectionSecretRef: {name: shop-db}/' \
  -e 's/^  delivery: pull$/  delivery: pull\n  replicas: 2/' <(shop) >"$WORK/pg.yaml"
assert_ok "a PostgreSQL Consolidator applies" kubectl apply -f "$WORK/pg.yaml"
wait_until "its Deployment exists" 15 exists deployment/order-summary-pg
assert_eq "of 2 replicas" "2" "$(field deployment/order-summary-pg '{.spec.replicas}')"
assert_eq "the connection comes from the Secret" "SIDELOG_CONSOLIDATOR_DATABASE=shop-db/uri" \
  "$(field deployment/order-summary-pg '{.spec.template.spec.containers[0].env[0].name}={.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name}/{.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.key}')"
assert_contains "and never from the ConfigMap" \
  "$(field configmap/order-summary-pg-consolidator '{.data.consolidator\.yaml}')" "connectionEnv: SIDELOG_CONSOLIDATOR_DATABASE"
assert_fails "replicas above 1 need PostgreSQL" kubectl apply -f <(shop | sed 's/^  delivery: pull$/  delivery: pull\n  replicas: 2/')

echo "# deleting a Consolidator deletes what it owns"
assert_ok "the Consolidators are deleted" kubectl delete cons -n "$NS" order-summary order-summary-pg --wait=true
wait_until "its StatefulSet is collected" 30 gone statefulset/order-summary
wait_until "its Service is collected" 30 gone service/order-summary
wait_until "its ConfigMap is collected" 30 gone configmap/order-summary-consolidator
wait_until "the Deployment is collected" 30 gone deployment/order-summary-pg
