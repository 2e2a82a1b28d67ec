#!/usr/bin/env bash
# The example shop's custom resources apply as they are, get their defaults, list under the
# sidelog category with the printer columns, and take status through the status subresource.
source "$(dirname "$0")/lib.sh"
ensure_crds

examples=$ROOT/examples/shop/k8s
assert_ok "the shop namespace applies" kubectl apply -f "$examples/00-namespace.yaml"
assert_ok "a server-side dry run accepts every example" kubectl apply --dry-run=server -f "$examples/"
assert_ok "kubectl apply -f examples/shop/k8s/ succeeds" kubectl apply -f "$examples/"
for obj in eventstream/orders eventstream/payments eventstream/customers \
  eventservice/orders eventservice/billing consolidator/order-summary; do
  assert_contains "created $obj" "$OUT" "${obj/\//.sidelog.dev/}"
done

assert_ok "kubectl get sidelog -n shop" kubectl get sidelog -n shop
listing=$OUT
for name in eventstream.sidelog.dev/orders eventstream.sidelog.dev/payments \
  eventstream.sidelog.dev/customers eventservice.sidelog.dev/orders \
  eventservice.sidelog.dev/billing consolidator.sidelog.dev/order-summary; do
  assert_contains "kubectl get sidelog lists $name" "$listing" "$name"
done
assert_contains "EventStream columns" "$listing" "READY   EVENTS   LAST   AGE"
assert_contains "EventService columns" "$listing" "READY   DEPENDENCIES   PODS   AGE"
assert_contains "Consolidator columns" "$listing" "READY   LAG   AGE"
assert_ok "kubectl get evs -o wide" kubectl get evs -n shop -o wide
assert_contains "wide EventStream columns" "$OUT" "STORAGE   REPLICAS   REASON"
assert_ok "kubectl get evsvc" kubectl get evsvc -n shop
assert_ok "kubectl get cons" kubectl get cons -n shop

# Defaults are filled in by the API server.
get() { kubectl get -n shop "$1" -o jsonpath="$2"; }
assert_eq "customers gets storage file by default" "file" "$(get evs/customers '{.spec.storage}')"
assert_eq "customers gets replicas 1 by default" "1" "$(get evs/customers '{.spec.replicas}')"
assert_eq "customers gets producerPolicy Single by default" "Single" "$(get evs/customers '{.spec.producerPolicy}')"
assert_eq "customers gets deletionPolicy Retain by default" "Retain" "$(get evs/customers '{.spec.deletionPolicy}')"
assert_eq "payments' retention gets discard New by default" "New" "$(get evs/payments '{.spec.retention.discard}')"
assert_eq "payments' state machine is not strict by default" "false" "$(get evs/payments '{.spec.entity.stateMachine.strict}')"
assert_eq "orders keeps its strict state machine" "true" "$(get evs/orders '{.spec.entity.stateMachine.strict}')"
assert_eq "orders keeps a JSON Schema as written" '["customerId"]' "$(get evs/orders '{.spec.entity.schemas.OrderCreated.required}')"
assert_eq "orders keeps a reducer's constant value" "true" "$(get evs/orders '{.spec.entity.reducers.OrderPlaced[0].value}')"
assert_eq "the orders sidecar port defaults to 4380" "4380" "$(get evsvc/orders '{.spec.sidecar.port}')"
assert_eq "the billing sidecar log level defaults to info" "info" "$(get evsvc/billing '{.spec.sidecar.logLevel}')"
assert_eq "order-summary's delivery is pull" "pull" "$(get cons/order-summary '{.spec.delivery}')"
assert_eq "order-summary has 1 replica by default" "1" "$(get cons/order-summary '{.spec.replicas}')"
assert_eq "order-summary keeps its 9 handlers" "9" "$(get cons/order-summary '{.spec.handlers[*].event}' | wc -w | tr -d ' ')"

# Mutable fields change; storage does not (see invalid/evs-storage-immutable.yaml).
assert_ok "orders' replicas can change" kubectl patch -n shop evs/orders --type=merge -p '{"spec":{"replicas":3}}'
assert_eq "orders now has 3 replicas" "3" "$(get evs/orders '{.spec.replicas}')"
assert_ok "orders' retention can change" kubectl patch -n shop evs/orders --type=merge -p '{"spec":{"retention":{"maxAge":"17520h"}}}'
assert_ok "orders' replicas can change back" kubectl patch -n shop evs/orders --type=merge -p '{"spec":{"replicas":1}}'

# Status goes through the status subresource, and the printer columns show it.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status='{"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"StreamReady","message":"JetStream stream SIDELOG_shop_orders exists","lastTransitionTime":"'"$now"'","observedGeneration":1}],"jetStream":{"name":"SIDELOG_shop_orders","subjects":["sidelog.shop.orders.>"],"events":42,"bytes":4096,"firstPosition":1,"lastPosition":40}}}'
assert_ok "the operator's status patch is accepted" \
  kubectl patch -n shop evs/orders --subresource=status --type=merge -p "$status"
assert_ok "kubectl get evs orders" kubectl get -n shop evs/orders --no-headers
assert_eq "printer columns show Ready, Events and Last" "orders True 42 40" "$(awk '{print $1, $2, $3, $4}' <<<"$OUT")"
assert_ok "a spec patch does not touch status" kubectl patch -n shop evs/orders --type=merge -p '{"status":{"jetStream":{"events":1}}}'
assert_eq "status is unchanged by the main resource" "42" "$(get evs/orders '{.status.jetStream.events}')"
assert_fails "a condition with a bad status is refused" kubectl patch -n shop evs/orders --subresource=status --type=merge \
  -p '{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"X","message":"","lastTransitionTime":"'"$now"'"}]}}'
assert_contains "the error names status.conditions[0].status" "$OUT" "status.conditions[0].status"

svc_status='{"status":{"observedGeneration":1,"injectedPods":2,"dependencies":[{"service":"orders","streams":["orders"]}],"conditions":[{"type":"Ready","status":"True","reason":"ConfigRendered","message":"","lastTransitionTime":"'"$now"'"},{"type":"DependenciesResolved","status":"True","reason":"Resolved","message":"","lastTransitionTime":"'"$now"'"}]}}'
assert_ok "an EventService status patch is accepted" \
  kubectl patch -n shop evsvc/billing --subresource=status --type=merge -p "$svc_status"
assert_eq "printer columns show Ready, Dependencies and Pods" "billing True True 2" \
  "$(kubectl get -n shop evsvc/billing --no-headers | awk '{print $1, $2, $3, $4}')"

cons_status='{"status":{"observedGeneration":1,"lag":{"events":7,"seconds":1},"sources":[{"stream":"orders","position":40}],"rebuild":{"requestedAt":"'"$now"'","progress":100},"conditions":[{"type":"Ready","status":"True","reason":"Following","message":"","lastTransitionTime":"'"$now"'"},{"type":"Rebuilding","status":"False","reason":"Idle","message":"","lastTransitionTime":"'"$now"'"}]}}'
assert_ok "a Consolidator status patch is accepted" \
  kubectl patch -n shop cons/order-summary --subresource=status --type=merge -p "$cons_status"
assert_eq "printer columns show Ready and Lag" "order-summary True 7" \
  "$(kubectl get -n shop cons/order-summary --no-headers | awk '{print $1, $2, $3}')"
