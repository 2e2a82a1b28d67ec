#!/usr/bin/env bash
# The Helm chart installed into the real node: the operator (two replicas, leader election) and
# NATS with JetStream run in their pods from the images built offline, `helm test` passes, and
# the shop's EventStreams and EventServices are reconciled by the operator in its pod, which
# creates their JetStream streams in the NATS pod; app pods get their sidecars from the
# operator's webhook and replicate through the chart's NATS.
source "$(dirname "$0")/lib.sh"
REL=sidelog
SYS=sidelog-system
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-e2e-chart.XXXXXX")
# The shop's namespace goes while the operator still runs: it removes its EventStreams'
# finalizers. Whatever is left after that loses its finalizers by hand.
delete_shop() {
  kubectl delete namespace shop-node --timeout=60s >/dev/null 2>&1 && return 0
  for evs in $(kubectl get evs -n shop-node -o name 2>/dev/null); do
    kubectl patch -n shop-node "$evs" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  kubectl wait --for=delete namespace/shop-node --timeout=60s >/dev/null 2>&1 || true
}
cleanup() {
  delete_shop
  helm uninstall "$REL" -n "$SYS" --wait --timeout 60s >/dev/null 2>&1 || true
  kubectl delete pvc --all -n "$SYS" --wait=false >/dev/null 2>&1 || true
  kubectl delete pv sidelog-e2e-nats sidelog-e2e-billing-1 sidelog-e2e-billing-2 --wait=false >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap '_rc=$?; cleanup; (exit $_rc); _on_exit' EXIT

# The node has no volume provisioner: a hostPath volume for NATS's claim, owned by its user.
mkdir -p "$WORK/nats"
chown 65532:65532 "$WORK/nats"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: sidelog-e2e-nats}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  hostPath: {path: $WORK/nats, type: Directory}
YAML

echo "# helm install"
assert_ok "helm install --wait (operator and NATS Ready in their pods)" \
  helm install "$REL" "$ROOT/charts/sidelog" -n "$SYS" --create-namespace --wait --timeout 180s
assert_contains "NOTES.txt says what to do next" "$OUT" "kubectl"
assert_eq "two operator pods are Ready" "2" \
  "$(kubectl get pods -n "$SYS" -l app.kubernetes.io/component=operator -o jsonpath='{range .items[*]}{.status.containerStatuses[0].ready}{"\n"}{end}' | grep -c true)"
assert_eq "the NATS pod is Ready" "true" \
  "$(kubectl get pods -n "$SYS" -l app.kubernetes.io/component=nats -o jsonpath='{.items[0].status.containerStatuses[0].ready}')"
holds_lease() {
  local leader; leader=$(kubectl get lease -n "$SYS" -o jsonpath='{.items[0].spec.holderIdentity}')
  [ -n "$leader" ] && kubectl get pods -n "$SYS" -o name | grep -q "pod/$leader\$"
}
wait_until "one of them holds the Lease" 30 holds_lease
assert_ok "helm test passes" helm test "$REL" -n "$SYS" --timeout 120s
assert_contains "both test hooks succeeded" "$OUT" "Succeeded"

echo "# the shop, reconciled by the operator in its pod"
shop() { sed "s/namespace: shop/namespace: shop-node/" "$ROOT/examples/shop/k8s/$1"; }
kubectl wait --for=delete namespace/shop-node --timeout=60s >/dev/null 2>&1 || true
kubectl create namespace shop-node >/dev/null
assert_ok "the shop's streams apply" kubectl apply -f <(shop streams.yaml)
assert_ok "the shop's services apply" kubectl apply -f <(shop services.yaml)
assert_ok "every EventStream is Ready within 60 s" kubectl wait -n shop-node evs --all --for=condition=Ready --timeout=60s
assert_eq "orders' JetStream stream was created by the operator" "Created" \
  "$(kubectl get evs -n shop-node orders -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')"
assert_eq "named after the namespace and stream" "SIDELOG_shop-node_orders" \
  "$(kubectl get evs -n shop-node orders -o jsonpath='{.status.jetStream.name}')"
assert_ok "every EventService is Ready within 60 s" kubectl wait -n shop-node evsvc --all --for=condition=Ready --timeout=60s
assert_contains "billing's rendered config names the chart's NATS" \
  "$(kubectl get configmap -n shop-node sidelog-billing -o jsonpath='{.data.sidecar\.yaml}')" "$REL-nats"
assert_contains "and billing's own NATS credentials" \
  "$(kubectl get configmap -n shop-node sidelog-billing -o jsonpath='{.data.sidecar\.yaml}')" "/etc/sidelog/nats/identity/nats.creds"
assert_eq "which the operator issued into billing's Secret, owned by its EventService" "EventService/billing" \
  "$(kubectl get secret -n shop-node sidelog-nats-billing -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"
assert_ok "the NATS authority is in the release namespace" kubectl get secret -n "$SYS" sidelog-nats-auth

echo "# two app pods, their sidecars injected by the operator's webhook"
# The pods declare only their app: the label sidelog.dev/inject asks for the sidecar. orders is
# a Deployment matched by its EventService's selector (app: orders) and appends once, with no
# retry, so it passes only if its sidecar was ready before the app started; billing names its
# service by label and polls until it sees the commit.
app_template() {  # LABELS SCRIPT
  cat <<YAML
    metadata: {labels: {sidelog.dev/inject: "true", $1}}
    spec:
      terminationGracePeriodSeconds: 2
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: app
          image: docker.io/sidelog/test-app:$TAG
          imagePullPolicy: IfNotPresent
          command: [sh, -c, '$2']
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
YAML
}
TAG=$("$ROOT/scripts/images" --list | awk '$1 == "sidelog/sidecar" {print $2}')
orders_app() {
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders-app, namespace: shop-node}
spec:
  replicas: 1
  selector: {matchLabels: {app: orders}}
  template:
$(app_template "app: orders" 'curl -fsS -X POST "$SIDELOG_URL/v1/streams/orders/entities/o-1/events" -H "Content-Type: application/json" -d "{\"events\":[{\"id\":\"e1\",\"type\":\"OrderCreated\",\"data\":{\"customerId\":\"c-1\"}}]}" && echo && echo appended; exec sleep 3600' | sed 's/^/  /')
YAML
}
billing_app() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: billing-app
  namespace: shop-node
$(app_template "sidelog.dev/service: billing, app: billing-app" 'until curl -fsS "$SIDELOG_URL/v1/streams/orders/entities/o-1?consistency=strong"; do sleep 0.5; done; echo; echo seen; exec sleep 3600' | sed -e '1s/^    metadata: {labels:/  labels:/' -e '1s/}$//' -e 's/^    //')
YAML
}
# billing keeps its log on a claim (storage.type volumeClaim): each of its pods gets a generic
# ephemeral claim of 2Gi. The node has no provisioner: two hostPath volumes, one per billing pod
# this test starts, owned by the sidecar's user.
for i in 1 2; do
  mkdir -p "$WORK/billing-$i" && chown 65532:65532 "$WORK/billing-$i"
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: sidelog-e2e-billing-$i}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $WORK/billing-$i, type: Directory}
YAML
done
assert_ok "the orders Deployment applies, with no sidecar in its manifest" kubectl apply -f <(orders_app)
assert_ok "the billing app pod applies" kubectl apply -f <(billing_app)
wait_until "the orders app appended through its sidecar at its first try" 90 \
  bash -c "$KUBECTL logs -n shop-node deploy/orders-app -c app 2>/dev/null | grep -q appended"
wait_until "the billing pod reads the same entity through its own sidecar" 60 \
  bash -c "$KUBECTL logs -n shop-node billing-app -c app 2>/dev/null | grep -q seen"
assert_contains "folded by billing's copy of the orders rules" "$(kubectl logs -n shop-node billing-app -c app)" '"status":"created"'
assert_contains "from the commit the orders pod wrote" "$(kubectl logs -n shop-node billing-app -c app)" '"customerId":"c-1"'
orders_pod=$(kubectl get pods -n shop-node -l app=orders -o jsonpath='{.items[0].metadata.name}')
assert_eq "the injected sidecar is the pod's first init container, a native sidecar" "sidelog Always" \
  "$(kubectl get pod -n shop-node "$orders_pod" -o jsonpath='{.spec.initContainers[0].name} {.spec.initContainers[0].restartPolicy}')"
assert_eq "the sidecar is ready in the running pod" "true" \
  "$(kubectl get pod -n shop-node "$orders_pod" -o jsonpath='{.status.initContainerStatuses[0].ready}')"
assert_eq "labelled with its service by the selector that matched" "orders" \
  "$(kubectl get pod -n shop-node "$orders_pod" -o jsonpath='{.metadata.labels.sidelog\.dev/service}')"
assert_contains "its sidecar mounts orders' own NATS identity" \
  "$(kubectl get pod -n shop-node "$orders_pod" -o jsonpath='{.spec.volumes[*].secret.secretName}')" "sidelog-nats-orders"
injected() { [ "$(kubectl get evsvc -n shop-node "$1" -o jsonpath='{.status.injectedPods}')" = 1 ]; }
wait_until "orders counts its injected pod (status.injectedPods)" 60 injected orders
wait_until "billing counts its own" 60 injected billing
assert_eq "billing's log is on its ephemeral claim" "billing-app-sidelog-data" \
  "$(kubectl get pvc -n shop-node -o jsonpath='{.items[*].metadata.name}')"
assert_ok "the billing pod is deleted" kubectl delete pod -n shop-node billing-app --wait --timeout=60s
assert_ok "its claim goes with it" kubectl wait -n shop-node pvc/billing-app-sidelog-data --for=delete --timeout=60s
assert_ok "and created again" kubectl apply -f <(billing_app)
wait_until "its new sidecar, on a new claim, rebuilds the log from JetStream: the entity is there" 90 \
  bash -c "$KUBECTL logs -n shop-node billing-app -c app 2>/dev/null | grep -q seen"
assert_contains "with the same state" "$(kubectl logs -n shop-node billing-app -c app)" '"customerId":"c-1"'

echo "# helm upgrade rolls the operator; helm uninstall keeps the CRDs and the NATS claim"
# Ready's lastTransitionTime of every EventStream and EventService: a failed reconcile during
# the roll would have flipped one of them.
ready_since() {
  kubectl get evs,evsvc -n shop-node \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}@{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}'
}
before_upgrade=$(ready_since)
assert_ok "helm upgrade with a changed value" \
  helm upgrade "$REL" "$ROOT/charts/sidelog" -n "$SYS" --reuse-values --set operator.logLevel=debug --wait --timeout 180s
assert_ok "the operator rolled out" kubectl rollout status -n "$SYS" "deployment/$REL-operator" --timeout=120s
assert_contains "its pods run with the new value" \
  "$(kubectl get deployment -n "$SYS" "$REL-operator" -o jsonpath='{.spec.template.spec.containers[0].args}')" "debug"
assert_ok "the EventStreams stay Ready" kubectl wait -n shop-node evs --all --for=condition=Ready --timeout=30s
assert_eq "no Ready condition changed during the roll" "$before_upgrade" "$(ready_since)"
# The new pods' own counters, read from the host over the bridge: the leader has reconciled
# (after a resync at most), and no reconcile of any pod failed.
operator_metrics() {
  local ip
  for ip in $(kubectl get pods -n "$SYS" -l app.kubernetes.io/component=operator -o jsonpath='{.items[*].status.podIP}'); do
    curl -fsS --max-time 5 "http://$ip:8081/metrics"
  done
}
# Read whole before matching: `grep -q` closing the pipe early would fail curl under pipefail.
leader_reconciled() {
  local metrics
  metrics=$(operator_metrics) || return 1
  grep -q 'sidelog_operator_reconciles_total{kind="EventStream",result="success"}' <<<"$metrics"
}
failed_reconciles() {
  local metrics
  metrics=$(operator_metrics) || return 1
  grep 'sidelog_operator_reconciles_total' <<<"$metrics" | grep 'result="error"' | grep -v ' 0$' || true
}
wait_until "the new leader has reconciled the shop" 60 leader_reconciled
assert_eq "no failed reconcile in any operator pod" "" \
  "$(failed_reconciles)"
assert_ok "the shop's namespace is deleted while the operator runs" delete_shop
# The operator goes before the NATS Service it talks to: a pod that keeps dialling a Service
# that no longer exists sends to an address no rule handles, which the guard must never see.
assert_ok "the operator is scaled to zero" kubectl scale -n "$SYS" "deployment/$REL-operator" --replicas=0
assert_ok "its pods are gone" kubectl wait -n "$SYS" pod -l app.kubernetes.io/component=operator --for=delete --timeout=60s
assert_eq "nothing tried to leave the machine so far" "0" "$("$ROOT/scripts/cluster" guard-drops)"
assert_ok "helm uninstall" helm uninstall "$REL" -n "$SYS" --wait --timeout 120s
assert_eq "no Deployment or StatefulSet is left" "" "$(kubectl get deploy,sts -n "$SYS" -o name)"
assert_ok "the CRDs stay (Helm's convention)" kubectl get crd eventstreams.sidelog.dev
assert_ok "NATS's claim stays, with its data" kubectl get pvc -n "$SYS" -o name
assert_contains "one claim" "$OUT" "persistentvolumeclaim/"
