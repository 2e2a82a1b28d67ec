#!/usr/bin/env bash
# The operator's machinery under failure: killed mid-way it converges with no duplicate work;
# two operators elect one leader and the standby takes over after a kill -9; a kube-apiserver
# restart (with the watch's resourceVersion compacted away) is survived by relisting.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/operator.sh"
ensure_crds
NS=e2e-ha
ensure_namespace "$NS"
start_nats

many_streams() {  # FIRST LAST
  local i
  for i in $(seq "$1" "$2"); do
    printf -- '---\napiVersion: sidelog.dev/v1alpha1\nkind: EventStream\nmetadata: {name: s%03d, namespace: %s}\nspec: {deletionPolicy: Delete}\n' "$i" "$NS"
  done
}

echo "# killed mid-way, it converges without duplicate work"
start_operator a --namespace "$NS"
assert_ok "40 EventStreams apply at once" kubectl apply -f <(many_streams 1 40)
sleep 0.7
kill_operator a KILL
pass "the operator was killed (SIGKILL) while reconciling"
start_operator a2 --namespace "$NS"
assert_ok "after a restart all 40 are Ready" kubectl wait -n "$NS" evs --all --for=condition=Ready --timeout=60s
dups=$(kubectl get events -n "$NS" -o jsonpath='{range .items[?(@.reason=="Created")]}{.involvedObject.name}{"\n"}{end}' | sort | uniq -d)
assert_eq "no EventStream has two Created events" "" "$dups"
creates=$(kubectl get events -n "$NS" -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' | grep -cE '^(Created|Adopted)$' || true)
[ "$creates" -le 40 ] && [ "$creates" -ge 39 ] && pass "one Created or Adopted event per stream ($creates)" \
  || fail "one Created or Adopted event per stream (got $creates)"
missing=0
for i in $(seq 1 40); do
  [ "$(js_field "$(printf 'SIDELOG_%s_s%03d' "$NS" "$i")" exists)" = true ] || missing=$((missing + 1))
done
assert_eq "every JetStream stream exists" "0" "$missing"
kill_operator a2 TERM

echo "# two operators: one leader; kill -9 it and the other takes over"
start_operator x --namespace "$NS"
start_operator y --namespace "$NS"
leader_is_one() {
  local lx ly; lx=$(metric x sidelog_operator_leader); ly=$(metric y sidelog_operator_leader)
  [ "$lx$ly" = "10" ] || [ "$lx$ly" = "01" ] || { echo "leader gauges: x=$lx y=$ly"; return 1; }
}
wait_until "exactly one of them leads" 15 leader_is_one
holder=$(kubectl get lease -n default "sidelog-operator-$E2E_NAME" -o jsonpath='{.spec.holderIdentity}')
if [ "$holder" = x ]; then other=y; else other=x; fi
assert_eq "the Lease names the leader" "1" "$(metric "$holder" sidelog_operator_leader)"
assert_ok "the standby is ready (it is doing its job)" curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[$other]}/readyz"
kill_operator "$holder" KILL
pass "the leader ($holder) was killed with SIGKILL"
t0=$SECONDS
assert_ok "an EventStream applies" kubectl apply -f <(many_streams 41 41)
wait_until "the standby ($other) reconciles it" 20 is_ready_with "$NS" s041 True/Created
took=$((SECONDS - t0))
assert_eq "the Lease names the standby" "$other" \
  "$(kubectl get lease -n default "sidelog-operator-$E2E_NAME" -o jsonpath='{.spec.holderIdentity}')"
[ "$took" -le 10 ] && pass "took over within the lease duration plus retries and kubectl ($took s)" \
  || fail "took over in $took s, more than 4 s lease + retries"
kill_operator "$other" TERM
assert_eq "a stopped leader releases the Lease" "" \
  "$(kubectl get lease -n default "sidelog-operator-$E2E_NAME" -o jsonpath='{.spec.holderIdentity}')"

echo "# kube-apiserver restarts under the operator"
# Without leader election: an API server outage longer than the renew deadline makes a leader
# step down (exit), by design; what is tested here is the informer's reconnect and relist.
# It authenticates with a client certificate (relative paths in its kubeconfig), where the other
# tests use tokens.
start_operator w --namespace "$NS" --leader-elect false --kubeconfig "$SIDELOG_KUBECONFIG_CERT"
assert_ok "it starts and sees the streams" kubectl wait -n "$NS" evs/s001 --for=condition=Ready --timeout=10s
# Move etcd's revision on and compact it, so that the watch's resourceVersion is gone.
for i in 1 2 3; do kubectl create configmap -n "$NS" "bump-$i" >/dev/null; done
rev=$(curl -fsS -X POST "$SIDELOG_ETCD_URL/v3/kv/range" -d '{"key":"AA=="}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
assert_ok "etcd compacted at revision $rev" curl -fsS -X POST "$SIDELOG_ETCD_URL/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}"
assert_ok "kube-apiserver restarted" "$ROOT/scripts/controlplane" restart-apiserver
assert_ok "the operator is still running" kill -0 "${OPERATOR_PID[w]}"
assert_ok "an EventStream applies after the restart" kubectl apply -f <(many_streams 42 42)
wait_until "the operator reconciles it" 40 is_ready_with "$NS" s042 True/Created
assert_ok "an edit after the restart" kubectl patch evs -n "$NS" s001 --type merge -p '{"spec":{"retention":{"maxCommits":77}}}'
wait_until "is followed" 20 js_field_is "SIDELOG_${NS}_s001" config.maxMsgs 77
restarts=$(metric w 'sidelog_operator_watch_restarts_total{kind="EventStream"}')
[ "${restarts:-0}" != 0 ] && pass "watch restarts are counted ($restarts)" || fail "watch restarts are counted (got '$restarts')"
assert_ok "the watch resumed or relisted (logged)" grep -E '"msg":"(watch failed; reconnecting|watch expired; relisting)"' "$WORK/operator-w.log"
kill_operator w TERM
