#!/usr/bin/env bash
# The Helm chart charts/sidelog: it lints; its CRDs are crds/ and its RBAC is
# deploy/rbac/operator.yaml; it renders with the documented variants and the real API server
# accepts every object under the restricted Pod Security Standard; its schema refuses bad values;
# it installs, upgrades and uninstalls. Pods never run here (no node), so what they would run is
# run on this machine instead: the operator with the Deployment's flags as the chart's
# ServiceAccount, the helm test scripts as the test ServiceAccount, and nats-server with the
# chart's nats.conf (1 server, and a 3-server cluster).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds

CHART=$ROOT/charts/sidelog
NS=e2e-chart
REL=e2e41
FULL=$REL-sidelog
NATS_CURRENT=$("$ROOT/scripts/k8s-tools" --path nats-server)
APP_VERSION=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$CHART/Chart.yaml")

render() { helm template "$REL" "$CHART" -n "$NS" "$@"; }

# field KIND NAME PATH < MANIFESTS: one field of one rendered object. PATH is dot-separated;
# a list is indexed by number or by [name=VALUE]. Lists and maps print as JSON.
field() {
  python3 -c '
import json, re, sys, yaml
kind, name, path = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == kind and d["metadata"]["name"] == name]
if not docs: sys.exit(f"no {kind} {name} rendered")
v = docs[0]
for part in re.findall(r"\[name=[^\]]*\]|[^.\[]+", path):
    m = re.fullmatch(r"\[name=(.*)\]", part)
    if m: v = next(x for x in v if x.get("name") == m.group(1))
    elif isinstance(v, list): v = v[int(part)]
    else: v = v[part]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)' "$@"
}

# nats_conf MANIFESTS: the nats.conf of the rendered NATS ConfigMap.
nats_conf() {
  python3 -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-nats-config"))["data"]["nats.conf"])' <<<"$1"
}

# kinds < MANIFESTS: "Kind/name" of every object, one a line.
kinds() { python3 -c 'import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d: print(d["kind"] + "/" + d["metadata"]["name"])'; }

echo "# lint"
assert_ok "helm lint" helm lint "$CHART"
assert_ok "helm lint --strict" helm lint --strict "$CHART"
assert_ok "helm lint --strict with an existing NATS" helm lint --strict "$CHART" --set nats.enabled=false,nats.url=nats://x:4222
assert_ok "helm lint --strict with 3 NATS servers" helm lint --strict "$CHART" --set nats.replicas=3

echo "# values.yaml documents every value"
undocumented=$(python3 - "$CHART/values.yaml" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
stack = []
for i, line in enumerate(lines):
    m = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
    if not m:
        continue
    while stack and stack[-1][0] >= len(m.group(1)):
        stack.pop()
    stack.append((len(m.group(1)), m.group(2)))
    path = [k for _, k in stack]
    # The defaults inside resources and security contexts are parts of one documented value.
    if any(p in ("resources", "podSecurityContext", "securityContext") for p in path[:-1]):
        continue
    if not lines[i - 1].strip().startswith("#"):
        print(".".join(path))
PY
)
assert_eq "every key in values.yaml has a comment above it" "" "$undocumented"

echo "# the chart's CRDs are the project's"
assert_ok "charts/sidelog/crds/ is identical to crds/" diff -r "$ROOT/crds" "$CHART/crds"
assert_ok "helm template --include-crds" render --include-crds
assert_eq "it carries the three CRDs" \
  "CustomResourceDefinition/consolidators.sidelog.dev CustomResourceDefinition/eventservices.sidelog.dev CustomResourceDefinition/eventstreams.sidelog.dev" \
  "$(kinds <<<"$OUT" | grep CustomResourceDefinition | sort | xargs)"

echo "# the chart's RBAC is deploy/rbac/operator.yaml's"
rules_of() {  # KIND NAME-SUFFIX < MANIFESTS: the rules of the object whose name ends so, as JSON
  python3 -c 'import json, sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == sys.argv[1] and d["metadata"]["name"].endswith(sys.argv[2])]
assert len(docs) == 1, f"{len(docs)} {sys.argv[1]} objects named *{sys.argv[2]}"
print(json.dumps(docs[0]["rules"], sort_keys=True))' "$@"
}
rendered=$(render --show-only templates/rbac.yaml)
assert_eq "the ClusterRole's rules equal deploy/rbac/operator.yaml's" \
  "$(rules_of ClusterRole sidelog-operator <"$ROOT/deploy/rbac/operator.yaml")" \
  "$(rules_of ClusterRole "$FULL-operator" <<<"$rendered")"
assert_eq "the leader-election Role's rules equal deploy/rbac/operator.yaml's" \
  "$(rules_of Role leader-election <"$ROOT/deploy/rbac/operator.yaml")" \
  "$(rules_of Role leader-election <<<"$rendered")"
assert_eq "the leader-election Role is in the release namespace" "$NS" \
  "$(field Role "$FULL-operator-leader-election" metadata.namespace <<<"$rendered")"
assert_eq "the ClusterRole is bound to the operator's ServiceAccount" \
  "[{\"kind\": \"ServiceAccount\", \"name\": \"$FULL-operator\", \"namespace\": \"$NS\"}]" \
  "$(field ClusterRoleBinding "$FULL-operator" subjects <<<"$rendered")"

echo "# the defaults"
assert_ok "helm template renders the defaults" render
defaults=$OUT
assert_eq "the objects" \
  "$(xargs -n1 <<<"ClusterRole/$FULL-operator ClusterRoleBinding/$FULL-operator ConfigMap/$FULL-nats-config Deployment/$FULL-operator PodDisruptionBudget/$FULL-operator Pod/$FULL-test-eventstream Pod/$FULL-test-operator-ready MutatingWebhookConfiguration/sidelog-sidecar-injector Role/$FULL-operator-leader-election Role/$FULL-operator-webhook-tls Role/$FULL-test RoleBinding/$FULL-operator-leader-election RoleBinding/$FULL-operator-webhook-tls RoleBinding/$FULL-test Service/$FULL-nats Service/$FULL-nats-headless Service/$FULL-operator-metrics Service/sidelog-webhook ServiceAccount/$FULL-operator ServiceAccount/$FULL-test StatefulSet/$FULL-nats" | sort | xargs)" \
  "$(kinds <<<"$defaults" | sort | xargs)"
op() { field Deployment "$FULL-operator" "$1" <<<"$defaults"; }
c=spec.template.spec.containers[name=operator]
assert_eq "2 operator replicas" "2" "$(op spec.replicas)"
assert_eq "the operator image is sidelog/operator at the appVersion" "sidelog/operator:$APP_VERSION" "$(op $c.image)"
assert_eq "pulled IfNotPresent" "IfNotPresent" "$(op $c.imagePullPolicy)"
args=$(op $c.args)
for a in "--nats=nats://$FULL-nats.$NS.svc.cluster.local:4222" "--leader-elect=true" \
  '--leader-election-namespace=$(POD_NAMESPACE)' '--identity=$(POD_NAME)' \
  "--dependency-cycles=warn" "--resync-period=30s" "--log-level=info" "--health-listen=0.0.0.0:8081" \
  "--webhook-listen=0.0.0.0:9443" "--webhook-cert-validity=8760h" "--sidecar-image=sidelog/sidecar:$APP_VERSION" \
  "--consolidator-image=sidelog/consolidator:$APP_VERSION" "--consolidator-status-period=5s"; do
  assert_contains "the operator runs with $a" "$args" "\"$a\""
done
assert_eq "POD_NAMESPACE is the pod's namespace" '{"fieldRef": {"fieldPath": "metadata.namespace"}}' "$(op "$c.env[name=POD_NAMESPACE].valueFrom")"
assert_eq "POD_NAME is the pod's name" '{"fieldRef": {"fieldPath": "metadata.name"}}' "$(op "$c.env[name=POD_NAME].valueFrom")"
assert_eq "liveness is /healthz on the health port" "/healthz health" "$(op $c.livenessProbe.httpGet.path) $(op $c.livenessProbe.httpGet.port)"
assert_eq "readiness is /readyz on the health port" "/readyz health" "$(op $c.readinessProbe.httpGet.path) $(op $c.readinessProbe.httpGet.port)"
wh() { field MutatingWebhookConfiguration sidelog-sidecar-injector "webhooks[name=inject.sidelog.dev].$1" <<<"$defaults"; }
assert_eq "the webhook calls the Service sidelog-webhook on /mutate" \
  "{\"name\": \"sidelog-webhook\", \"namespace\": \"$NS\", \"path\": \"/mutate\", \"port\": 443}" "$(wh clientConfig.service)"
assert_eq "only for labelled pods" '{"matchLabels": {"sidelog.dev/inject": "true"}}' "$(wh objectSelector)"
assert_contains "never for kube-system or the release namespace" "$(wh namespaceSelector)" "[\"kube-system\", \"$NS\"]"
assert_eq "Fail, None, 5 s, IfNeeded" "Fail None 5 IfNeeded" \
  "$(wh failurePolicy) $(wh sideEffects) $(wh timeoutSeconds) $(wh reinvocationPolicy)"
assert_eq "the Service sends 443 to the pods' webhook port" "webhook" \
  "$(field Service sidelog-webhook 'spec.ports[name=webhook].targetPort' <<<"$defaults")"
assert_eq "the health port is 8081" "8081" "$(op "$c.ports[name=health].containerPort")"
assert_eq "terminationGracePeriodSeconds 20" "20" "$(op spec.template.spec.terminationGracePeriodSeconds)"
assert_eq "resources by default" '{"limits": {"memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}}' "$(op $c.resources)"
assert_eq "the PodDisruptionBudget keeps 1 operator" "1" "$(field PodDisruptionBudget "$FULL-operator" spec.minAvailable <<<"$defaults")"
assert_eq "the metrics Service: port 8081 named metrics" "metrics 8081" \
  "$(field Service "$FULL-operator-metrics" spec.ports.0.name <<<"$defaults") $(field Service "$FULL-operator-metrics" spec.ports.0.port <<<"$defaults")"
nats() { field StatefulSet "$FULL-nats" "$1" <<<"$defaults"; }
n=spec.template.spec.containers[name=nats]
assert_eq "1 NATS server" "1" "$(nats spec.replicas)"
assert_eq "the NATS image" "sidelog/nats:2.14.9" "$(nats $n.image)"
assert_eq "nats-server reads the ConfigMap's file" '["-c", "/etc/nats/nats.conf"]' "$(nats $n.args)"
assert_eq "NATS readiness asks whether JetStream is enabled" "/healthz?js-enabled-only=true monitor" \
  "$(nats $n.readinessProbe.httpGet.path) $(nats $n.readinessProbe.httpGet.port)"
assert_eq "the monitoring port is 8222" "8222" "$(nats "$n.ports[name=monitor].containerPort")"
assert_eq "the JetStream store is a 1Gi claim" "1Gi" "$(nats spec.volumeClaimTemplates.0.spec.resources.requests.storage)"
assert_eq "on the default StorageClass" "" "$(nats spec.volumeClaimTemplates.0.spec.storageClassName 2>/dev/null || true)"
assert_eq "the NATS client Service listens on 4222" "4222" "$(field Service "$FULL-nats" spec.ports.0.port <<<"$defaults")"
assert_contains "one server syncs every write" "$(nats_conf "$defaults")" "sync_interval: always"

echo "# every container runs restricted"
restricted() {  # < MANIFESTS: prints each container that is not restricted, and why
  python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if not d: continue
    spec = d["spec"] if d["kind"] == "Pod" else d.get("spec", {}).get("template", {}).get("spec")
    if not spec: continue
    pod = spec.get("securityContext", {})
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        get = lambda k: sc.get(k, pod.get(k))
        want = {
            "runAsNonRoot": get("runAsNonRoot") is True,
            "runAsUser 65532": get("runAsUser") == 65532,
            "seccompProfile RuntimeDefault": (get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": "ALL" in sc.get("capabilities", {}).get("drop", []),
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        }
        for k, ok in want.items():
            if not ok: print(d["kind"], d["metadata"]["name"], c["name"] + ": not", k)'
}
for v in "" "nats.replicas=3" "nats.enabled=false,nats.url=nats://x:4222"; do
  assert_eq "every container is restricted${v:+ with $v}" "" "$(render ${v:+--set "$v"} | restricted)"
done
assert_eq "the check sees a container that is not" "Deployment $FULL-operator operator: not readOnlyRootFilesystem" \
  "$(render --set operator.securityContext.readOnlyRootFilesystem=false | restricted)"

echo "# the API server accepts every variant (server-side dry run, restricted Pod Security)"
ensure_namespace "$NS"
kubectl label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted >/dev/null
for v in "" "nats.enabled=false,nats.url=nats://x:4222" "nats.replicas=3" "operator.replicas=1"; do
  assert_ok "kubectl apply --dry-run=server accepts${v:+ $v}${v:- the defaults}" \
    bash -c 'set -o pipefail; "$1" template "$2" "$3" -n "$4" ${5:+--set "$5"} | "$6" apply --dry-run=server -f -' \
    _ "$HELM" "$REL" "$CHART" "$NS" "$v" "$KUBECTL"
  assert_not_contains "with no Pod Security warning${v:+ ($v)}" "$OUT" "violate PodSecurity"
done
OUT=$(render --set nats.securityContext.allowPrivilegeEscalation=true | kubectl apply --dry-run=server -f - 2>&1)
assert_contains "the API server does warn about a container that is not restricted" "$OUT" 'would violate PodSecurity "restricted'

echo "# variants"
assert_ok "with an existing NATS" render --set nats.enabled=false,nats.url=nats://nats.elsewhere:4222
external=$OUT
assert_contains "the operator connects to it" "$(field Deployment "$FULL-operator" "$c.args" <<<"$external")" '"--nats=nats://nats.elsewhere:4222"'
assert_not_contains "and no NATS is rendered" "$(kinds <<<"$external")" "$FULL-nats"
assert_ok "with 3 NATS servers" render --set nats.replicas=3
three=$OUT
assert_eq "the StatefulSet has 3 replicas" "3" "$(field StatefulSet "$FULL-nats" spec.replicas <<<"$three")"
conf3=$(nats_conf "$three")
for i in 0 1 2; do
  assert_contains "routes to server $i through the headless Service" "$conf3" \
    "nats://$FULL-nats-$i.$FULL-nats-headless.$NS.svc.cluster.local:6222"
done
assert_eq "the headless Service publishes servers that are not ready" "true" \
  "$(field Service "$FULL-nats-headless" spec.publishNotReadyAddresses <<<"$three")"
assert_eq "a PodDisruptionBudget keeps 2 of 3 NATS servers" "1" "$(field PodDisruptionBudget "$FULL-nats" spec.maxUnavailable <<<"$three")"
assert_not_contains "three servers leave fsync to NATS's default" "$conf3" "sync_interval"
assert_ok "with 1 operator" render --set operator.replicas=1
assert_not_contains "there is no operator PodDisruptionBudget" "$(kinds <<<"$OUT")" "PodDisruptionBudget/$FULL-operator"
assert_ok "with a storage class and size" render --set nats.storage.storageClassName=fast,nats.storage.size=10Gi
assert_eq "the claim asks for them" "fast 10Gi" \
  "$(field StatefulSet "$FULL-nats" spec.volumeClaimTemplates.0.spec.storageClassName <<<"$OUT") $(field StatefulSet "$FULL-nats" spec.volumeClaimTemplates.0.spec.resources.requests.storage <<<"$OUT")"
assert_ok "with flags from values" render --set operator.dependencyCycles=deny,operator.resyncPeriod=1m,operator.logLevel=debug,operator.image.tag=dev,operator.image.pullPolicy=Always
args=$(field Deployment "$FULL-operator" "$c.args" <<<"$OUT")
for a in --dependency-cycles=deny --resync-period=1m --log-level=debug; do assert_contains "the operator runs with $a" "$args" "\"$a\""; done
assert_eq "the image tag and pull policy follow" "sidelog/operator:dev Always" \
  "$(field Deployment "$FULL-operator" "$c.image" <<<"$OUT") $(field Deployment "$FULL-operator" "$c.imagePullPolicy" <<<"$OUT")"
assert_contains "by default the operator issues NATS identities" "$(render --show-only templates/deployment.yaml)" "--nats-identities=sidelog-nats-auth"
assert_contains "and the NATS servers include their authority" "$(nats_conf "$defaults")" 'include "../nats-auth/auth.conf"'
assert_contains "from its Secret" "$(render --show-only templates/nats/statefulset.yaml)" "secretName: sidelog-nats-auth"
assert_ok "with NATS credentials and TLS Secrets" render --set nats.enabled=false,nats.url=tls://n:4222,nats.credsSecret.name=creds,nats.tls.secretName=tls,nats.tls.mutual=true,nats.identities.enabled=false
args=$(field Deployment "$FULL-operator" "$c.args" <<<"$OUT")
for a in --nats-creds=/etc/sidelog/nats/creds/nats.creds --nats-tls-ca=/etc/sidelog/nats/tls/ca.crt \
  --nats-tls-cert=/etc/sidelog/nats/tls/tls.crt --nats-tls-key=/etc/sidelog/nats/tls/tls.key; do
  assert_contains "the operator runs with $a" "$args" "\"$a\""
done
assert_eq "the Secrets are mounted, next to the scratch /tmp" '[{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, {"name": "nats-creds", "secret": {"secretName": "creds"}}, {"name": "nats-tls", "secret": {"secretName": "tls"}}]' \
  "$(field Deployment "$FULL-operator" spec.template.spec.volumes <<<"$OUT")"
assert_ok "with scheduling values" render --set operator.nodeSelector.pool=system,operator.podLabels.team=a,operator.podAnnotations.x=y \
  --set 'operator.tolerations[0].key=dedicated,operator.tolerations[0].operator=Exists'
assert_eq "nodeSelector" '{"pool": "system"}' "$(field Deployment "$FULL-operator" spec.template.spec.nodeSelector <<<"$OUT")"
assert_eq "tolerations" '[{"key": "dedicated", "operator": "Exists"}]' "$(field Deployment "$FULL-operator" spec.template.spec.tolerations <<<"$OUT")"
assert_eq "pod labels" "a" "$(field Deployment "$FULL-operator" spec.template.metadata.labels.team <<<"$OUT")"
assert_eq "pod annotations" '{"x": "y"}' "$(field Deployment "$FULL-operator" spec.template.metadata.annotations <<<"$OUT")"

echo "# the values shown in docs/install.md"
snippets=$WORK/doc-values
mkdir -p "$snippets"
python3 - "$ROOT/docs/install.md" "$CHART/values.yaml" "$snippets" <<'PY'
import re, sys, yaml
doc, values, out = sys.argv[1:4]
keys = set(yaml.safe_load(open(values)))
n = 0
for block in re.findall(r"^```yaml\n(.*?)^```", open(doc).read(), re.S | re.M):
    v = yaml.safe_load(block)
    if isinstance(v, dict) and set(v) <= keys:  # a values file, not a Kubernetes object
        n += 1
        open(f"{out}/{n}.yaml", "w").write(block)
PY
count=$(find "$snippets" -name '*.yaml' | wc -l)
assert_eq "docs/install.md shows values files" "yes" "$([ "$count" -ge 2 ] && echo yes || echo "only $count")"
for f in "$snippets"/*.yaml; do
  assert_ok "the values of docs/install.md block $(basename "$f" .yaml) render" render -f "$f"
  assert_ok "and the API server accepts them" \
    bash -c 'set -o pipefail; "$1" template "$2" "$3" -n "$4" -f "$5" | "$6" apply --dry-run=server -f -' \
    _ "$HELM" "$REL" "$CHART" "$NS" "$f" "$KUBECTL"
done

echo "# the ServiceMonitor (rendered only, its CRD is not installed here)"
assert_ok "metrics.serviceMonitor.enabled=true without monitoring.coreos.com/v1" render --set metrics.serviceMonitor.enabled=true
assert_not_contains "renders no ServiceMonitor" "$(kinds <<<"$OUT")" "ServiceMonitor"
assert_ok "metrics.serviceMonitor.enabled=true where monitoring.coreos.com/v1 is served" \
  render --set metrics.serviceMonitor.enabled=true --api-versions monitoring.coreos.com/v1
monitored=$OUT
assert_contains "renders the ServiceMonitor" "$(kinds <<<"$monitored")" "ServiceMonitor/$FULL-operator"
assert_eq "it scrapes the port named metrics" "metrics /metrics" \
  "$(field ServiceMonitor "$FULL-operator" spec.endpoints.0.port <<<"$monitored") $(field ServiceMonitor "$FULL-operator" spec.endpoints.0.path <<<"$monitored")"
selector=$(field ServiceMonitor "$FULL-operator" spec.selector.matchLabels <<<"$monitored")
assert_eq "it selects the metrics Service by its labels" "$selector" "$(python3 -c 'import json, sys
sel, labels = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({k: labels.get(k) for k in sel}))' "$selector" "$(field Service "$FULL-operator-metrics" metadata.labels <<<"$monitored")")"
assert_ok "metrics.serviceMonitor.force=true renders it anyway" render --set metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.force=true
assert_contains "the ServiceMonitor is there" "$(kinds <<<"$OUT")" "ServiceMonitor/$FULL-operator"

echo "# bad values are refused, naming the value"
refused() {  # DESCRIPTION NEEDLE --set ...
  local desc=$1 needle=$2; shift 2
  assert_fails "$desc is refused" render "$@"
  assert_contains "the message names $needle" "$OUT" "$needle"
}
refused "operator.replicas=0" "at '/operator/replicas': minimum: got 0, want 1" --set operator.replicas=0
refused "nats.replicas=2" "at '/nats/replicas': value must be one of 1, 3" --set nats.replicas=2
refused "a typo'd key" "additional properties 'replcas' not allowed" --set operator.replcas=2
refused "a typo'd top-level key" "additional properties 'operater' not allowed" --set operater.replicas=2
refused "dependencyCycles=maybe" "at '/operator/dependencyCycles': value must be one of 'allow', 'warn', 'deny'" --set operator.dependencyCycles=maybe
refused "logLevel=verbose" "at '/operator/logLevel'" --set operator.logLevel=verbose
refused "a numeric image tag" "at '/operator/image/tag': got number, want string" --set operator.image.tag=2
refused "a numeric NATS image tag" "at '/nats/image/tag': got number, want string" --set nats.image.tag=3
refused "a resource that is not a quantity" "at '/operator/resources/limits/memory'" --set operator.resources.limits.memory=lots
refused "a resources key that does not exist" "additional properties 'limit' not allowed" --set operator.resources.limit.memory=1Gi
refused "a resync period that is not a duration" "at '/operator/resyncPeriod'" --set operator.resyncPeriod=30
refused "a pull policy that does not exist" "at '/operator/image/pullPolicy'" --set operator.image.pullPolicy=Sometimes
refused "a NATS URL without a scheme" "at '/nats/url'" --set nats.enabled=false,nats.url=x:4222
refused "nats.enabled=false without nats.url" "nats.url is required when nats.enabled=false" --set nats.enabled=false
refused "nats.url with nats.enabled" "nats.url is set while nats.enabled is true" --set nats.url=nats://x:4222
refused "a webhook timeout over 30 s" "at '/webhook/timeoutSeconds'" --set webhook.timeoutSeconds=31
refused "a webhook port below 1024" "at '/webhook/port'" --set webhook.port=443
refused "a certificate validity that is not a duration" "at '/webhook/certValidity'" --set webhook.certValidity=1y
assert_ok "webhook.enabled=false renders" render --set webhook.enabled=false
assert_not_contains "and no webhook object" "$(kinds <<<"$OUT")" "Webhook"
assert_contains "and the operator does not serve one" "$OUT" "--webhook-listen=off"

echo "# nats-server runs the chart's nats.conf"
# The paths and ports of the pod are moved onto this machine; the rest is the file as rendered.
# The authority the operator would make: an operator, a system account and an account.
mkdir -p "$WORK/nats-auth" "$WORK/chart-nats-t"
python3 "$ROOT/tests/integration/nats_jwt.py" "$WORK/nats-auth"
nats_conf "$defaults" >"$WORK/chart-nats-t/one.conf"
nats_conf "$three" >"$WORK/chart-nats-t/three.conf"
POD_NAME=$FULL-nats-0 assert_ok "nats-server $("$NATS_CURRENT" --version | awk '{print $2}') accepts the 1-server config" \
  "$NATS_CURRENT" -t -c "$WORK/chart-nats-t/one.conf"
POD_NAME=$FULL-nats-0 assert_ok "and the 3-server config" "$NATS_CURRENT" -t -c "$WORK/chart-nats-t/three.conf"
declare -a CHART_NATS_PIDS=()
stop_chart_nats() {
  local p
  for p in "${CHART_NATS_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  CHART_NATS_PIDS=()
}
trap '_rc=$?; stop_chart_nats; _operator_cleanup; (exit $_rc); _on_exit' EXIT
# start_chart_nats CONF I CLIENT MONITOR CLUSTER ROUTE-PORTS...: server I of the StatefulSet.
start_chart_nats() {
  local conf=$1 i=$2 client=$3 monitor=$4 cluster=$5; shift 5
  local dir=$WORK/chart-nats-$i j=0; mkdir -p "$dir"
  local script="s#store_dir: /data#store_dir: $dir/data#; s#/var/run/nats/#$dir/#"
  script+="; s#0.0.0.0:4222#127.0.0.1:$client#; s#0.0.0.0:8222#127.0.0.1:$monitor#; s#0.0.0.0:6222#127.0.0.1:$cluster#"
  for p in "$@"; do script+="; s#nats://$FULL-nats-$j\.[^ ]*:6222#nats://127.0.0.1:$p#"; j=$((j + 1)); done
  sed "$script" <<<"$conf" >"$dir/nats.conf"
  POD_NAME=$FULL-nats-$i "$NATS_CURRENT" -c "$dir/nats.conf" >"$dir/log" 2>&1 &
  CHART_NATS_PIDS+=($!)
}
m0=$(free_port)
start_chart_nats "$(nats_conf "$defaults")" 0 "$(free_port)" "$m0" 0
wait_until "it answers the readiness probe's /healthz?js-enabled-only=true" 10 curl -fsS "http://127.0.0.1:$m0/healthz?js-enabled-only=true"
assert_contains "its server name is the pod's name" "$(curl -fsS "http://127.0.0.1:$m0/varz")" "\"server_name\": \"$FULL-nats-0\""
assert_contains "it syncs always" "$(curl -fsS "http://127.0.0.1:$m0/varz")" '"sync_always": true'
assert_ok "the preStop command (lame duck mode, by pid file) is accepted" "$NATS_CURRENT" "-sl=ldm=$WORK/chart-nats-0/nats.pid"
exited() { case $(ps -o stat= -p "$1" || true) in "" | Z*) return 0 ;; esac; echo "pid $1 still runs"; return 1; }
wait_until "nats-server leaves lame duck mode and exits" 20 exited "${CHART_NATS_PIDS[0]}"
rc=0; exited "${CHART_NATS_PIDS[0]}" >/dev/null && { wait "${CHART_NATS_PIDS[0]}" || rc=$?; }
assert_eq "with status 0" "0" "$rc"
CHART_NATS_PIDS=()
routes=("$(free_port)" "$(free_port)" "$(free_port)")
monitors=()
for i in 0 1 2; do
  monitors+=("$(free_port)")
  start_chart_nats "$conf3" "$i" "$(free_port)" "${monitors[$i]}" "${routes[$i]}" "${routes[@]}"
done
for i in 0 1 2; do
  wait_until "server $i of 3 is healthy with JetStream clustered (/healthz)" 30 curl -fsS "http://127.0.0.1:${monitors[$i]}/healthz"
done
assert_eq "they form one JetStream cluster of 3 with a leader" "$FULL-nats 3 leader" \
  "$(curl -fsS "http://127.0.0.1:${monitors[0]}/jsz" | python3 -c 'import json, sys
m = json.load(sys.stdin).get("meta_cluster", {})
print(m.get("name"), m.get("cluster_size"), "leader" if m.get("leader") else "no leader")')"
stop_chart_nats

echo "# helm install --dry-run=server"
helm uninstall "$REL" -n "$NS" >/dev/null 2>&1 || true
assert_ok "helm install --dry-run=server" helm install "$REL" "$CHART" -n "$NS" --dry-run=server
assert_contains "its notes say how to try the shop" "$OUT" "kubectl apply -f examples/shop/k8s/"
assert_contains "and how to upgrade the CRDs" "$OUT" "kubectl apply -f charts/sidelog/crds/"

echo "# helm install, upgrade, uninstall"
assert_ok "helm install" helm install "$REL" "$CHART" -n "$NS"
assert_ok "helm status says deployed" helm status "$REL" -n "$NS"
assert_contains "status deployed" "$OUT" "STATUS: deployed"
for obj in deployment/$FULL-operator statefulset/$FULL-nats service/$FULL-nats service/$FULL-operator-metrics \
  serviceaccount/$FULL-operator role/$FULL-operator-leader-election poddisruptionbudget/$FULL-operator; do
  assert_ok "$obj exists" kubectl get -n "$NS" "$obj"
done
assert_ok "clusterrole/$FULL-operator exists" kubectl get "clusterrole/$FULL-operator"
assert_ok "helm upgrade with a changed value" helm upgrade "$REL" "$CHART" -n "$NS" --reuse-values --set operator.logLevel=debug
assert_contains "the Deployment follows" "$(kubectl get -n "$NS" "deployment/$FULL-operator" -o jsonpath='{.spec.template.spec.containers[0].args}')" "--log-level=debug"
assert_fails "helm upgrade with a bad value" helm upgrade "$REL" "$CHART" -n "$NS" --reuse-values --set nats.replicas=2
assert_contains "is refused by the schema" "$OUT" "/nats/replicas"
assert_ok "kubectl apply -f charts/sidelog/crds/ (the CRD upgrade) succeeds" kubectl apply -f "$CHART/crds/"

SA=system:serviceaccount:$NS:$FULL-operator
can() { kubectl auth can-i "$@" --as="$SA" 2>/dev/null || true; }
assert_eq "the operator may patch EventStreams" "yes" "$(can patch eventstreams.sidelog.dev -n shop)"
assert_eq "it may update Leases in the release namespace" "yes" "$(can update leases -n "$NS")"
assert_eq "but not in another namespace" "no" "$(can update leases -n default)"
assert_eq "it may not delete EventStreams" "no" "$(can delete eventstreams.sidelog.dev -n shop)"
assert_eq "it may not read Secrets" "no" "$(can list secrets -n "$NS")"
assert_eq "but its webhook's Secret" "yes" "$(can update secret/sidelog-webhook-tls -n "$NS")"
assert_eq "and not another one" "no" "$(can get secret/other -n "$NS")"
assert_eq "it may update its NATS authority" "yes" "$(can update secret/sidelog-nats-auth -n "$NS")"
assert_eq "it may write a service's NATS identity" "yes" "$(can patch secrets -n shop)"
assert_eq "but never read one" "no" "$(can get secrets -n shop)"
assert_eq "it may patch the injector's webhook configuration" "yes" "$(can patch mutatingwebhookconfiguration/sidelog-sidecar-injector)"
assert_eq "and no other" "no" "$(can patch mutatingwebhookconfiguration/other)"

echo "# the operator runs with the Deployment's flags, as the chart's ServiceAccount"
assert_ok "a token of the operator's ServiceAccount" sa_kubeconfig "$NS" "$FULL-operator" "$WORK/operator-sa"
start_nats
# The Deployment's args, with the pod's environment filled in; the NATS URL, the health and
# webhook listeners are this machine's, and it watches only the release namespace.
mapfile -t deploy_args < <(kubectl get -n "$NS" "deployment/$FULL-operator" -o json | python3 -c '
import json, sys
c = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]
for a in c["args"]:
    if a.startswith(("--nats=", "--health-listen=", "--webhook-listen=")): continue
    print(a.replace("$(POD_NAMESPACE)", sys.argv[1]).replace("$(POD_NAME)", "chart-op-1"))' "$NS")
assert_contains "the Deployment's flags are read" "${deploy_args[*]}" "--leader-election-namespace=$NS"
start_operator chart-op-1 "${deploy_args[@]}" --kubeconfig "$WORK/operator-sa/kubeconfig" --namespace "$NS"
lease_held_by() {
  local got; got=$(kubectl get lease -n "$NS" "$FULL-operator" -o jsonpath='{.spec.holderIdentity}' 2>&1)
  [ "$got" = "$1" ] || { echo "the Lease is held by '$got'"; return 1; }
}
wait_until "it holds the Lease $FULL-operator in the release namespace" 15 lease_held_by chart-op-1
wait_until "it is ready" 15 curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[chart-op-1]}/readyz"

echo "# the helm test pods' commands, as the test ServiceAccount"
tests=$(render --show-only templates/tests/eventstream.yaml)
assert_ok "the test ServiceAccount, Role and RoleBinding apply" \
  kubectl apply -f <(python3 -c 'import sys, yaml
print(yaml.safe_dump_all(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] != "Pod"))' <<<"$tests")
assert_ok "the test pods are admitted under restricted Pod Security" \
  bash -c 'set -o pipefail; "$1" template "$2" "$3" -n "$4" --show-only templates/tests/eventstream.yaml --show-only templates/tests/operator-ready.yaml | "$5" apply --dry-run=server -f -' \
  _ "$HELM" "$REL" "$CHART" "$NS" "$KUBECTL"
TSA=system:serviceaccount:$NS:$FULL-test
assert_eq "the test may create EventStreams in the release namespace" "yes" "$(kubectl auth can-i create eventstreams.sidelog.dev -n "$NS" --as="$TSA" 2>/dev/null || true)"
assert_eq "but not elsewhere" "no" "$(kubectl auth can-i create eventstreams.sidelog.dev -n default --as="$TSA" 2>/dev/null || true)"
assert_eq "and may not patch them" "no" "$(kubectl auth can-i patch eventstreams.sidelog.dev -n "$NS" --as="$TSA" 2>/dev/null || true)"
assert_ok "a token of the test ServiceAccount" sa_kubeconfig "$NS" "$FULL-test" "$WORK/test-sa"
script=$(field Pod "$FULL-test-eventstream" 'spec.containers.0.command.2' <<<"$tests")
env_of() { field Pod "$FULL-test-eventstream" "spec.containers.0.env[name=$1].value" <<<"$tests"; }
assert_eq "the test runs its script with the configured shell" "/bin/sh -c" \
  "$(field Pod "$FULL-test-eventstream" 'spec.containers.0.command.0' <<<"$tests") $(field Pod "$FULL-test-eventstream" 'spec.containers.0.command.1' <<<"$tests")"
assert_ok "the EventStream test passes against the operator" \
  env APISERVER="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" SA_DIR="$WORK/test-sa" \
  NAMESPACE="$(env_of NAMESPACE)" STREAM="$(env_of STREAM)" CURL="$(env_of CURL)" TIMEOUT_SECONDS=20 sh -c "$script"
assert_contains "it saw the EventStream Ready" "$OUT" "Ready"
assert_contains "and deleted" "$OUT" "deleted"
assert_eq "it was helm-test-$REL" "helm-test-$REL" "$(env_of STREAM)"
assert_eq "its JetStream stream is gone (deletionPolicy Delete)" "false" "$(js_field "SIDELOG_${NS}_helm-test-$REL" exists)"
assert_ok "the EventStream test fails where it may not create the EventStream" \
  bash -c '! env "$@" 2>&1' _ APISERVER="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')" SA_DIR="$WORK/test-sa" \
  NAMESPACE=default STREAM=x CURL=curl TIMEOUT_SECONDS=2 sh -c "$script"
assert_contains "and says why" "$OUT" "create failed"
assert_contains "with the API server's answer" "$OUT" "forbidden"
ready_cmd=$(render --show-only templates/tests/operator-ready.yaml | python3 -c 'import sys, yaml
print("\n".join(yaml.safe_load(sys.stdin)["spec"]["containers"][0]["command"]))')
assert_contains "the readiness test asks the metrics Service" "$ready_cmd" "http://$FULL-operator-metrics.$NS.svc.cluster.local:8081/readyz"
mapfile -t ready_argv < <(sed "s#^http://.*:8081/readyz\$#http://127.0.0.1:${OPERATOR_HEALTH[chart-op-1]}/readyz#" <<<"$ready_cmd")
assert_ok "the readiness test passes against the operator" "${ready_argv[@]}"
kubectl delete -f <(python3 -c 'import sys, yaml
print(yaml.safe_dump_all(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] != "Pod"))' <<<"$tests") >/dev/null
kill_operator chart-op-1

echo "# helm uninstall"
assert_ok "helm uninstall" helm uninstall "$REL" -n "$NS"
assert_fails "the Deployment is gone" kubectl get -n "$NS" "deployment/$FULL-operator"
assert_fails "the ClusterRole is gone" kubectl get "clusterrole/$FULL-operator"
assert_ok "the CRDs stay (Helm never deletes them)" kubectl get crd eventstreams.sidelog.dev eventservices.sidelog.dev consolidators.sidelog.dev
