#!/usr/bin/env bash
# The shop's Consolidator on the real node: the chart's operator runs sidelog-consolidator from
# the config it rendered, in a StatefulSet pod with its SQLite file on a claim, reading the
# chart's NATS. It becomes Ready; after 10,000 events appended through an injected sidecar its
# lag falls to 0 and the query API (through its Service) answers the folded rows; a rebuild
# asked for by the annotation goes through Rebuilding to done while queries keep answering; a
# change of a handler rebuilds by itself.
source "$(dirname "$0")/lib.sh"
REL=sidelog
SYS=sidelog-system
NS=shop-cons
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-e2e-cons.XXXXXX")
cleanup() {
  kubectl delete namespace "$NS" --timeout=60s >/dev/null 2>&1 || true
  for evs in $(kubectl get evs -n "$NS" -o name 2>/dev/null); do
    kubectl patch -n "$NS" "$evs" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  kubectl wait --for=delete "namespace/$NS" --timeout=60s >/dev/null 2>&1 || true
  helm uninstall "$REL" -n "$SYS" --wait --timeout 60s >/dev/null 2>&1 || true
  kubectl delete pvc --all -n "$SYS" --wait=false >/dev/null 2>&1 || true
  kubectl delete pv sidelog-e2e-cons-nats sidelog-e2e-cons-data --wait=false >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap '_rc=$?; cleanup; (exit $_rc); _on_exit' EXIT

# The node has no volume provisioner: hostPath volumes for NATS's claim and the read model's,
# owned by their pods' user.
pv() {  # NAME DIR CLAIM_NAMESPACE CLAIM: each reserved for its claim
  mkdir -p "$2" && chown 65532:65532 "$2"
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $3, name: $4}
  hostPath: {path: $2, type: Directory}
YAML
}
pv sidelog-e2e-cons-nats "$WORK/nats" "$SYS" "data-$REL-nats-0"
pv sidelog-e2e-cons-data "$WORK/data" "$NS" data-order-summary-0

echo "# the chart, the shop's streams and services, and an app pod to append with"
assert_ok "helm install --wait" helm install "$REL" "$ROOT/charts/sidelog" -n "$SYS" --create-namespace \
  --set consolidator.statusPeriod=1s --set operator.replicas=1 --wait --timeout 180s
shop() { sed "s/namespace: shop/namespace: $NS/" "$ROOT/examples/shop/k8s/$1"; }
kubectl wait --for=delete "namespace/$NS" --timeout=60s >/dev/null 2>&1 || true
kubectl create namespace "$NS" >/dev/null
assert_ok "the shop's streams apply" kubectl apply -f <(shop streams.yaml)
assert_ok "the shop's services apply" kubectl apply -f <(shop services.yaml)
assert_ok "every EventService is Ready" kubectl wait -n "$NS" evsvc --all --for=condition=Ready --timeout=60s
TAG=$("$ROOT/scripts/images" --list | awk '$1 == "sidelog/sidecar" {print $2}')
assert_ok "an orders app pod, labelled for injection, runs" \
  kubectl run orders-app -n "$NS" --image="docker.io/sidelog/test-app:$TAG" --image-pull-policy=IfNotPresent \
  --labels=sidelog.dev/inject=true,app=orders --command -- sleep 3600
assert_ok "it is Ready with its sidecar" kubectl wait -n "$NS" pod/orders-app --for=condition=Ready --timeout=90s
app() { kubectl exec -n "$NS" orders-app -c orders-app -- sh -c "$1"; }
QUERY=http://order-summary.$NS.svc:4390

echo "# the Consolidator"
field() { kubectl get -n "$NS" "$1" -o jsonpath="$2" 2>&1; }
cond() { field cons/order-summary "{.status.conditions[?(@.type==\"$1\")].status}/{.status.conditions[?(@.type==\"$1\")].reason}"; }
cond_is() { local got; got=$(cond "$1"); [ "$got" = "$2" ] || { echo "$1 is '$got', want '$2'"; return 1; }; }
start=$(date +%s%N)
assert_ok "the shop's Consolidator applies" kubectl apply -f <(shop consolidator.yaml)
wait_until "it is Ready: its pod runs the rendered config and follows" 120 cond_is Ready True/Following
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "  (Ready $ready_ms ms after kubectl apply)"
assert_eq "its claim is bound to the read model's volume" "Bound sidelog-e2e-cons-data" \
  "$(field pvc/data-order-summary-0 '{.status.phase} {.spec.volumeName}')"
assert_eq "the pod runs the operator's image" "sidelog/consolidator:$TAG" \
  "$(field pod/order-summary-0 '{.spec.containers[0].image}')"
assert_eq "both sources are listed" "orders customers" \
  "$(field cons/order-summary '{.status.sources[*].stream}' | tr ' ' '\n' | sort -r | tr '\n' ' ' | sed 's/ $//')"

echo "# 10,000 events: 100 orders of 1 OrderCreated and 99 ItemAdded, one commit each"
append_script='i=1; while [ $i -le 100 ]; do
  ev="{\"id\":\"o$i-0\",\"type\":\"OrderCreated\",\"data\":{\"customerId\":\"c-$i\"}}"
  j=1; while [ $j -le 99 ]; do
    ev="$ev,{\"id\":\"o$i-$j\",\"type\":\"ItemAdded\",\"data\":{\"item\":{\"sku\":\"s$j\",\"price\":1}}}"
    j=$((j+1))
  done
  curl -fsS -o /dev/null -X POST "$SIDELOG_URL/v1/streams/orders/entities/o-$i/events" \
    -H "Content-Type: application/json" -d "{\"expectedVersion\":\"none\",\"events\":[$ev]}" || exit 1
  i=$((i+1))
done; echo appended'
start=$(date +%s%N)
assert_ok "the events are appended through the sidecar" app "$append_script"
appended_ms=$(( ($(date +%s%N) - start) / 1000000 ))
lag_zero() {  # (wait_until runs it in a subshell: what it saw goes to a file)
  local lag pos
  lag=$(field cons/order-summary '{.status.lag.events}')
  pos=$(field cons/order-summary '{.status.sources[?(@.stream=="orders")].position}')
  echo "${lag:-0}" >>"$WORK/lags"
  [ "$lag" = 0 ] && [ "$pos" = 100 ]
}
wait_until "the operator shows the lag falling to 0, every commit folded" 60 lag_zero
folded_ms=$(( ($(date +%s%N) - start) / 1000000 ))
max_lag=$(sort -n "$WORK/lags" | tail -n1)
echo "  (appended in $appended_ms ms; lag 0 in status $folded_ms ms after the first append; highest lag seen $max_lag positions)"
assert_contains "the query API answers through the Service" \
  "$(app "curl -fsS '$QUERY/v1/queries/order?id=o-42'")" '"items":99'
assert_contains "with every order open" "$(app "curl -fsS '$QUERY/v1/queries/open-orders'")" '"orders":100'

echo "# a rebuild asked for by the annotation"
# A reader in the app pod queries the Service every 100 ms while the rebuild runs.
app "rm -f /tmp/reads; (i=0; while [ \$i -lt 400 ]; do curl -fsS -m 2 -o /dev/null '$QUERY/v1/queries/open-orders' && echo ok >>/tmp/reads || echo fail >>/tmp/reads; i=\$((i+1)); sleep 0.1; done) >/dev/null 2>&1 &"
assert_ok "the annotation is set" kubectl annotate cons -n "$NS" order-summary "sidelog.dev/rebuild=$(date -u +%FT%TZ)"
rebuilt() {  # records what each look saw
  local c; c=$(cond Rebuilding)
  echo "$c" >>"$WORK/rebuilding"
  field cons/order-summary '{.status.rebuild.progress}' >>"$WORK/progress"
  echo >>"$WORK/progress"
  [ "$c" = False/RebuildDone ]
}
wait_until "the rebuild is done" 60 rebuilt
assert_contains "Rebuilding was True on the way" "$(cat "$WORK/rebuilding")" "True/Requested"
mapfile -t progress <"$WORK/progress"
echo "  (progress seen: ${progress[*]})"
rising=1 last=0
for p in "${progress[@]}"; do
  [ -n "$p" ] || continue
  [ "$p" -ge "$last" ] || rising=0
  last=$p
done
assert_eq "its progress only rose, to 100" "1/100" "$rising/$(field cons/order-summary '{.status.rebuild.progress}')"
assert_eq "a RebuildRequested Event" "Normal" \
  "$(kubectl get events -n "$NS" --field-selector involvedObject.name=order-summary,reason=RebuildRequested -o jsonpath='{.items[0].type}')"
assert_contains "the rebuilt view answers the same" "$(app "curl -fsS '$QUERY/v1/queries/order?id=o-42'")" '"items":99'
sleep 1
reads=$(app "cat /tmp/reads")
assert_eq "queries kept answering throughout" "0" "$(grep -c fail <<<"$reads" || true)"
assert_contains "and there were some" "$reads" "ok"

echo "# a changed handler rebuilds by itself"
assert_ok "ItemAdded now counts 10 per item" kubectl patch cons order-summary -n "$NS" --type=json \
  -p '[{"op":"replace","path":"/spec/handlers/3/sql","value":"UPDATE orders SET items = items + 10, version = :version, updated_at = :time WHERE id = :entity"}]'
wait_until "the operator records the projection change" 20 \
  bash -c "[ \"\$($KUBECTL get cons -n $NS order-summary -o jsonpath='{.status.rebuild.reason}')\" = ProjectionChanged ]"
wait_until "the new pod rebuilt, swapped and follows" 120 bash -c \
  "[ \"\$($KUBECTL get cons -n $NS order-summary -o jsonpath='{.status.rebuild.state} {.status.conditions[?(@.type==\"Ready\")].reason}')\" = 'done Following' ]"
assert_contains "the rows were rebuilt by the new handler" "$(app "curl -fsS '$QUERY/v1/queries/order?id=o-42'")" '"items":990'

echo "# a PostgreSQL target whose connection Secret is missing"
shop consolidator.yaml | sed -e 's/name: order-summary/name: order-summary-pg/' \
  -e 's/^    sqlite:$/    postgres:/' -e 's/^      size: 1Gi$/      connectionSecretRef: {name: shop-db}/' >"$WORK/pg.yaml"
assert_ok "it applies" kubectl apply -f "$WORK/pg.yaml"
pg_failing() {
  [ "$(field cons/order-summary-pg '{.status.conditions[?(@.type=="Ready")].reason}')" = PodFailing ]
}
wait_until "its pod cannot start: Ready False, PodFailing" 60 pg_failing
assert_contains "in the kubelet's words" \
  "$(field cons/order-summary-pg '{.status.conditions[?(@.type=="Ready")].message}')" 'secret "shop-db" not found'
assert_ok "it is deleted" kubectl delete cons -n "$NS" order-summary-pg --wait=true

echo "# deleting it: the workload goes, the claim stays (StatefulSet retention: Retain)"
assert_ok "the Consolidator is deleted" kubectl delete cons -n "$NS" order-summary --wait=true
wait_until "its StatefulSet is collected" 60 bash -c "! $KUBECTL get statefulset -n $NS order-summary >/dev/null 2>&1"
assert_ok "the read model's claim is kept" kubectl get pvc -n "$NS" data-order-summary-0
