#!/usr/bin/env bash
# The sidecar injection webhook against a real kube-apiserver: a MutatingWebhookConfiguration
# whose clientConfig.url is the operator's HTTPS listener on 127.0.0.1 (the chart uses a
# Service reference instead). The operator makes its CA and certificate and patches the
# caBundle in; pods created through the API are stored with the sidecar, its volumes, env and
# probes; unlabelled pods and pods in kube-system are untouched; a labelled pod that no
# EventService owns is refused with a message that says why; with the operator stopped a
# labelled pod is refused and an unlabelled one admitted; the certificates rotate (a short
# validity) and pods created all through the rotation are admitted.
# There is no node in this phase: pods stay Pending, which is all admission needs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-inject
ensure_namespace "$NS"
start_nats
assert_ok "the operator's RBAC applies" operator_kubeconfig
# 30 s certificates: renewed after 20 s, within this test. (Earlier tests' operators made
# year-long ones in the same Secret: shortening the validity renews them at once.)
LEASE_NAMESPACE=sidelog-system start_operator op1 --namespace "$NS" --kubeconfig "$WORK/kubeconfig" \
  --webhook-cert-validity 30s
PORT=${OPERATOR_WEBHOOK[op1]}
webhook_config() {
  kubectl apply -f - <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: sidelog-sidecar-injector}
webhooks:
  - name: inject.sidelog.dev
    admissionReviewVersions: [v1]
    clientConfig: {url: "https://127.0.0.1:$PORT/mutate"}
    rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: Namespaced}]
    objectSelector: {matchLabels: {sidelog.dev/inject: "true"}}
    namespaceSelector:
      matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, sidelog-system]}]
    failurePolicy: Fail
    sideEffects: None
    timeoutSeconds: 5
    reinvocationPolicy: IfNeeded
YAML
}
cleanup_webhook() {
  kubectl delete mutatingwebhookconfiguration sidelog-sidecar-injector --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete pod -n kube-system e2e-inject-system --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap '_rc=$?; cleanup_webhook; _operator_cleanup; (exit $_rc); _on_exit' EXIT
bundle() { kubectl get mutatingwebhookconfiguration sidelog-sidecar-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}'; }
has_bundle() { [ -n "$(bundle)" ]; }
# pod NAME [LABELS] [NAMESPACE]: creates a pod (busybox-like, never scheduled here).
pod() {
  kubectl create -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: ${3:-$NS}, labels: {${2:-app: none}}}
spec:
  containers: [{name: app, image: docker.io/sidelog/test-app:0.1.0, command: [sleep, "3600"]}]
YAML
}
spec_of() { kubectl get pod -n "${2:-$NS}" "$1" -o json; }
jq_py() { python3 -c "import json,sys; o=json.load(sys.stdin); print($1)"; }

echo "# the webhook's TLS"
assert_ok "the webhook configuration applies, without a caBundle" webhook_config
wait_until "the operator patches the caBundle in" 20 has_bundle
wait_until "the operator is ready once it serves a certificate" 20 curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/readyz"
assert_ok "the Secret holds the CA and the certificate" kubectl get secret -n sidelog-system sidelog-webhook-tls
assert_eq "of type kubernetes.io/tls" "kubernetes.io/tls" "$(kubectl get secret -n sidelog-system sidelog-webhook-tls -o jsonpath='{.type}')"
# What the API server trusts: the caBundle (the Secret's CA, and during a rotation the one before).
bundle | base64 -d >"$WORK/webhook-ca.crt"
assert_ok "the listener's certificate verifies against the caBundle, for 127.0.0.1" \
  curl -fsS --cacert "$WORK/webhook-ca.crt" -X POST -H 'Content-Type: application/json' \
  -d '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"DELETE","namespace":"x"}}' \
  "https://127.0.0.1:$PORT/mutate"
assert_contains "and answers the review" "$OUT" '"uid":"u1"'
assert_contains "a DELETE is allowed unchanged" "$OUT" '"allowed":true'
assert_fails "a request that is not a review" curl -fsS --cacert "$WORK/webhook-ca.crt" -X POST -d 'nope' "https://127.0.0.1:$PORT/mutate"
assert_contains "is refused with 400" "$(curl -sS --cacert "$WORK/webhook-ca.crt" -X POST -d 'nope' "https://127.0.0.1:$PORT/mutate")" '"status":400'

echo "# a labelled pod before its EventService exists is refused, with the reason"
assert_fails "a labelled pod with no EventService" pod early "sidelog.dev/inject: \"true\", app: orders"
assert_contains "the API server says the webhook denied it" "$OUT" 'admission webhook "inject.sidelog.dev" denied the request'
assert_contains "naming the pod" "$OUT" "$NS/early"
assert_contains "and what to do" "$OUT" "sidelog.dev/service"

echo "# the shop's services, then their pods"
shop() { sed "s/namespace: shop/namespace: $NS/" "$ROOT/examples/shop/k8s/$1"; }
assert_ok "the shop's streams and services apply" kubectl apply -f <(shop streams.yaml) -f <(shop services.yaml)
ready() { [ "$(kubectl get evsvc -n "$NS" "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_until "orders is Ready" 20 ready orders
wait_until "billing is Ready" 20 ready billing

assert_ok "a pod labelled for injection, of orders by its selector" pod orders-1 "sidelog.dev/inject: \"true\", app: orders"
spec=$(spec_of orders-1)
assert_eq "the first init container is the sidecar" "sidelog" "$(jq_py 'o["spec"]["initContainers"][0]["name"]' <<<"$spec")"
assert_eq "a native sidecar (restartPolicy Always)" "Always" "$(jq_py 'o["spec"]["initContainers"][0]["restartPolicy"]' <<<"$spec")"
assert_eq "run with the rendered config" "['--config', '/etc/sidelog/config/sidecar.yaml']" "$(jq_py 'o["spec"]["initContainers"][0]["args"]' <<<"$spec")"
assert_eq "a startupProbe on /readyz of the health port" "/readyz 4381" \
  "$(jq_py 'o["spec"]["initContainers"][0]["startupProbe"]["httpGet"]["path"], o["spec"]["initContainers"][0]["startupProbe"]["httpGet"]["port"]' <<<"$spec" | tr -d "()',")"
assert_eq "liveness on /livez" "/livez" "$(jq_py 'o["spec"]["initContainers"][0]["livenessProbe"]["httpGet"]["path"]' <<<"$spec")"
assert_eq "a restricted securityContext" "True False True ['ALL'] RuntimeDefault" \
  "$(jq_py '" ".join(str(x) for x in [o["spec"]["initContainers"][0]["securityContext"][k] for k in ["runAsNonRoot","allowPrivilegeEscalation","readOnlyRootFilesystem"]] + [str(o["spec"]["initContainers"][0]["securityContext"]["capabilities"]["drop"]), o["spec"]["initContainers"][0]["securityContext"]["seccompProfile"]["type"]])' <<<"$spec")"
assert_eq "the config volume is orders' ConfigMap" "sidelog-orders" \
  "$(jq_py '[v for v in o["spec"]["volumes"] if v["name"]=="sidelog-config"][0]["configMap"]["name"]' <<<"$spec")"
assert_eq "the data volume is an emptyDir" "True" \
  "$(jq_py '"emptyDir" in [v for v in o["spec"]["volumes"] if v["name"]=="sidelog-data"][0]' <<<"$spec")"
assert_eq "the app gets SIDELOG_URL" "http://127.0.0.1:4380" \
  "$(jq_py '[e for e in o["spec"]["containers"][0]["env"] if e["name"]=="SIDELOG_URL"][0]["value"]' <<<"$spec")"
assert_eq "the pod is labelled with its service" "orders" "$(jq_py 'o["metadata"]["labels"]["sidelog.dev/service"]' <<<"$spec")"
assert_eq "and annotated with the config hash" "$(kubectl get configmap -n "$NS" sidelog-orders -o jsonpath='{.metadata.annotations.sidelog\.dev/config-hash}')" \
  "$(jq_py 'o["metadata"]["annotations"]["sidelog.dev/config-hash"]' <<<"$spec")"
assert_eq "and with the operator's version" "$(sed -n 's/^project([a-z]* VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")" \
  "$(jq_py 'o["metadata"]["annotations"]["sidelog.dev/injected"]' <<<"$spec")"

assert_ok "a pod that names billing by label" pod billing-1 "sidelog.dev/inject: \"true\", sidelog.dev/service: billing"
assert_eq "gets billing's config" "sidelog-billing" \
  "$(spec_of billing-1 | jq_py '[v for v in o["spec"]["volumes"] if v["name"]=="sidelog-config"][0]["configMap"]["name"]')"
assert_ok "an unlabelled pod" pod plain "app: orders"
assert_eq "is untouched" "None" "$(spec_of plain | jq_py 'o["spec"].get("initContainers")')"
assert_ok "a labelled pod in kube-system" pod e2e-inject-system "sidelog.dev/inject: \"true\", app: orders" kube-system
assert_eq "is untouched (namespaceSelector)" "None" "$(spec_of e2e-inject-system kube-system | jq_py 'o["spec"].get("initContainers")')"
assert_fails "a labelled pod naming a service that does not exist" pod nosuch "sidelog.dev/inject: \"true\", sidelog.dev/service: shipping"
assert_contains "is refused, with the services there are" "$OUT" "billing, orders"
assert_ok "kubectl create --dry-run=server shows the injected pod" \
  bash -c "\"$KUBECTL\" run dry -n $NS --image=docker.io/sidelog/test-app:0.1.0 --labels=sidelog.dev/inject=true,app=orders --dry-run=server -o json"
assert_contains "with the sidecar" "$OUT" '"name": "sidelog"'
assert_fails "and stores nothing" kubectl get pod -n "$NS" dry

echo "# the operator down: labelled pods are refused, others are not"
kill_operator op1
assert_fails "a labelled pod" pod down-1 "sidelog.dev/inject: \"true\", app: orders"
assert_contains "is refused: failurePolicy Fail, never admitted without its sidecar" "$OUT" "failed calling webhook"
assert_ok "an unlabelled pod is admitted" pod down-2 "app: orders"

echo "# certificate rotation with no gap in admission"
LEASE_NAMESPACE=sidelog-system start_operator op1 --namespace "$NS" --kubeconfig "$WORK/kubeconfig" \
  --webhook-cert-validity 30s --webhook-listen "127.0.0.1:$PORT" --log-level debug
wait_until "the operator is ready again" 20 curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/readyz"
first=$(bundle)
# A labelled pod every half second until the caBundle has changed and the new certificate is
# served (the listener's certificate chains to the new CA only), at most 40 s.
created=0 refused=0 rotated= rotated_bundle=
for i in $(seq 1 80); do
  if out=$(pod "rot-$i" "sidelog.dev/inject: \"true\", app: orders" 2>&1); then
    created=$((created + 1))
  else
    refused=$((refused + 1))
    echo "  rot-$i refused: $out"
  fi
  if [ -z "$rotated" ] && [ "$(bundle)" != "$first" ]; then rotated=$i rotated_bundle=$(bundle); fi
  if [ -n "$rotated" ] && [ "$i" -ge $((rotated + 20)) ]; then break; fi
  sleep 0.5
done
assert_ok "the caBundle changed (renewal after two thirds of 30 s)" test -n "$rotated"
assert_eq "every pod created through the rotation was admitted ($created)" "0" "$refused"
kubectl get secret -n sidelog-system sidelog-webhook-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/webhook-ca-new.crt"
assert_ok "the listener now serves a certificate of the new CA" \
  curl -sS --cacert "$WORK/webhook-ca-new.crt" -X POST -d 'nope' -o /dev/null "https://127.0.0.1:$PORT/mutate"
assert_eq "the changed caBundle held the new CA and the one before it" "2" \
  "$(base64 -d <<<"$rotated_bundle" | grep -c 'BEGIN CERTIFICATE')"
assert_ok "a pod after the rotation is injected" pod after "sidelog.dev/inject: \"true\", app: orders"
assert_eq "with its sidecar" "sidelog" "$(spec_of after | jq_py 'o["spec"]["initContainers"][0]["name"]')"
assert_contains "admissions are counted by result" "$(curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[op1]}/metrics")" 'sidelog_operator_admissions_total{result="patched"}'
