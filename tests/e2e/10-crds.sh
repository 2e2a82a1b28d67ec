#!/usr/bin/env bash
# The three CRDs install on a real API server, are established, and teach the API through
# kubectl explain, short names and the sidelog category.
source "$(dirname "$0")/lib.sh"

assert_ok "kubectl apply -f crds/ succeeds" kubectl apply -f "$ROOT/crds/"
for crd in eventstreams eventservices consolidators; do
  assert_ok "$crd.sidelog.dev is established" \
    kubectl wait --for=condition=established --timeout="$WAIT_TIMEOUT" "crd/$crd.sidelog.dev"
  assert_eq "$crd.sidelog.dev has NamesAccepted=True" "True" \
    "$(kubectl get crd "$crd.sidelog.dev" -o jsonpath='{.status.conditions[?(@.type=="NamesAccepted")].status}')"
  assert_eq "$crd.sidelog.dev has the status subresource" "{}" \
    "$(kubectl get crd "$crd.sidelog.dev" -o jsonpath='{.spec.versions[0].subresources.status}')"
done
assert_ok "applying the CRDs again changes nothing" kubectl apply -f "$ROOT/crds/"
assert_not_contains "second apply reports no change" "$OUT" "configured"

resources=$(kubectl api-resources --api-group=sidelog.dev --no-headers)
for pair in "eventstreams evs" "eventservices evsvc" "consolidators cons"; do
  read -r plural short <<<"$pair"
  assert_contains "$plural has short name $short" "$(awk -v r="$plural" '$1 == r {print $2}' <<<"$resources")" "$short"
done
assert_eq "all three kinds are in category sidelog" "consolidators eventservices eventstreams" \
  "$(kubectl get crd -o jsonpath='{range .items[?(@.spec.names.categories[0]=="sidelog")]}{.spec.names.plural}{" "}{end}' | xargs -n1 | sort | xargs)"

assert_ok "kubectl explain eventstream.spec.retention" kubectl explain eventstream.spec.retention
for text in "Limits on the stored history" "maxAge" "maxBytes" "maxCommits" "discard" "enum: New, Old"; do
  assert_contains "explain eventstream.spec.retention shows '$text'" "$OUT" "$text"
done
assert_ok "kubectl explain evs.spec.storage" kubectl explain evs.spec.storage
assert_contains "explain says storage is immutable" "$OUT" "Immutable"
assert_ok "kubectl explain evs.spec.entity.stateMachine.transitions" kubectl explain evs.spec.entity.stateMachine.transitions
assert_contains "explain lists transition fields" "$OUT" "-required-"
assert_ok "kubectl explain evsvc.spec.consumes" kubectl explain evsvc.spec.consumes
assert_contains "explain evsvc.spec.consumes documents types" "$OUT" "types"
assert_ok "kubectl explain cons.spec.target" kubectl explain cons.spec.target
assert_contains "explain cons.spec.target documents postgres" "$OUT" "postgres"
assert_ok "kubectl explain consolidator.status.lag" kubectl explain consolidator.status.lag

# Every field has a description, so explain never comes back empty: checked over the schema as
# the API server publishes it (OpenAPI v3), leaving out the rule-only subschemas (allOf, anyOf, not).
openapi=$(kubectl get --raw /openapi/v3/apis/sidelog.dev/v1alpha1)
for kind in eventstream eventservice consolidator; do
  undocumented=$(jq -r --arg k "$kind" '
    .components.schemas | to_entries[] | select(.key | ascii_downcase | endswith("." + $k)) | .value
    | . as $s
    | [paths(type == "object") | select(length >= 2 and .[-2] == "properties")
       | select(any(.[]; . == "allOf" or . == "anyOf" or . == "oneOf" or . == "not") | not)][] as $p
    | select(($s | getpath($p)).description == null)
    | $p | map(select(. != "properties" and . != "items" and . != "additionalProperties")) | join(".")
  ' <<<"$openapi")
  assert_eq "every $kind field published by the API server has a description" "" "$undocumented"
done
assert_ok "kubectl explain --recursive eventstream" kubectl explain eventstream --recursive
assert_contains "recursive explain reaches the transitions" "$OUT" "transitions"
