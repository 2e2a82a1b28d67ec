#!/usr/bin/env bash
# Every custom resource a user is shown is accepted by the API server as written: the examples
# in examples/shop/k8s/, and each fenced ```yaml block of README.md and docs/*.md that holds a
# sidelog.dev resource. Server-side dry runs, so nothing is stored; the namespaces they name are
# created first, since a dry run checks that the namespace exists.
source "$(dirname "$0")/lib.sh"
ensure_crds

work=$(mktemp -d)
trap 'rm -rf "$work"; _on_exit' EXIT

# The yaml blocks of a Markdown file that name apiVersion sidelog.dev/..., one file each in
# $work/snippets, each starting with a comment "# <doc>:<line of the fence>". A fence may be
# indented (inside a list item); its indentation is taken off the block's lines.
mkdir "$work/snippets"
extract_snippets() {
  awk -v dir="$work/snippets" -v doc="${1#"$ROOT"/}" \
    -v offset="$(find "$work/snippets" -name '*.yaml' | wc -l)" '
    !inside && /^[[:space:]]*```yaml[[:space:]]*$/ {
      inside = 1; start = NR; text = ""
      indent = $0; sub(/```.*/, "", indent)
      next
    }
    inside && /^[[:space:]]*```[[:space:]]*$/ {
      inside = 0
      if (text ~ /(^|\n)[[:space:]]*apiVersion:[[:space:]]*sidelog\.dev\//) {
        file = dir "/" (++n + offset) ".yaml"
        printf "# %s:%d\n%s", doc, start, text > file
        close(file)
      }
      next
    }
    inside {
      line = $0
      if (substr(line, 1, length(indent)) == indent) line = substr(line, length(indent) + 1)
      text = text line "\n"
    }
  ' "$1"
}

for doc in "$ROOT/README.md" "$ROOT"/docs/*.md; do
  extract_snippets "$doc"
done
mapfile -t snippets < <(find "$work/snippets" -name '*.yaml' | sort -V)
mapfile -t examples < <(find "$ROOT/examples/shop/k8s" -name '*.yaml' | sort)

# The namespaces the resources name.
namespaces() {
  kubectl create --dry-run=client -o json -f "$1" |
    jq -r 'if .kind == "List" then .items[] else . end | .metadata.namespace // empty'
}
for file in "${examples[@]}" "${snippets[@]}"; do
  for ns in $(namespaces "$file"); do ensure_namespace "$ns"; done
done

if [ ${#snippets[@]} -ge 2 ]; then
  pass "the docs show ${#snippets[@]} sidelog.dev resources"
else
  fail "the docs show only ${#snippets[@]} sidelog.dev resources (want the README's and docs/consolidator.md's)"
fi

# Each file on its own, so a refusal names the file it came from.
for file in "${examples[@]}"; do
  assert_ok "examples/shop/k8s/$(basename "$file") is accepted" \
    kubectl apply --dry-run=server -f "$file"
done
for file in "${snippets[@]}"; do
  origin=$(head -n 1 "$file" | sed 's/^# //')
  if OUT=$(kubectl apply --dry-run=server -f "$file" 2>&1) && grep -qF ".sidelog.dev/" <<<"$OUT"; then
    pass "the yaml block at $origin is accepted"
  else
    fail "the yaml block at $origin is refused" "$OUT"
  fi
done

# DESIGN.md's transitions, written as it writes them: no quotes, `event` is just a key.
cat >"$work/design-transitions.yaml" <<'EOF'
apiVersion: sidelog.dev/v1alpha1
kind: EventStream
metadata:
  name: design-transitions
spec:
  entity:
    stateMachine:
      initial: new
      strict: true
      transitions:
        - {event: OrderCreated, from: [new], to: created}
        - {event: OrderPaid, from: [created], to: paid}
        - {event: OrderCancelled, from: [created, paid], to: cancelled}
EOF
assert_ok "DESIGN.md's unquoted {event: OrderCreated, from: [new], to: created} is accepted" \
  kubectl apply --dry-run=server -o json -f "$work/design-transitions.yaml"
assert_eq "the API server keeps the transition's event" "OrderCreated" \
  "$(jq -r '.spec.entity.stateMachine.transitions[0].event' <<<"$OUT")"

# The same with the old key: a bare `on` is the boolean true to kubectl, and the error names it.
sed 's/{event: /{on: /' "$work/design-transitions.yaml" >"$work/design-transitions-on.yaml"
assert_fails "the same transitions with a bare on: are refused" \
  kubectl apply --dry-run=server -f "$work/design-transitions-on.yaml"
assert_contains "the refusal names the field kubectl read as true" "$OUT" \
  "spec.entity.stateMachine.transitions[0].true"
