#!/usr/bin/env bash
# Every custom resource in tests/e2e/invalid/ is rejected by the API server, and the error names
# the field at fault.
#
# Each file starts with comments: what is wrong, then one or more "# expect: TEXT" lines, each
# a text (usually a field path) that the error must contain. A file with several YAML documents
# tests an update: all but the last must apply, and the last must be rejected.
source "$(dirname "$0")/lib.sh"
ensure_crds

ns=e2e-invalid
ensure_namespace "$ns"
work=$(mktemp -d)
trap 'rm -rf "$work"; _on_exit' EXIT

count=0
for file in "$ROOT"/tests/e2e/invalid/*.yaml; do
  name=$(basename "$file" .yaml)
  count=$((count + 1))
  mapfile -t expects < <(sed -n 's/^# expect: //p' "$file")
  if [ ${#expects[@]} -eq 0 ]; then
    fail "$name: has no '# expect:' line"
    continue
  fi

  # Split the file into its documents: doc-1.yaml, doc-2.yaml, ...
  rm -f "$work"/doc-*.yaml
  awk -v dir="$work" 'BEGIN {n = 1} /^---[[:space:]]*$/ {n++; next} {print > (dir "/doc-" n ".yaml")}' "$file"
  docs=$(find "$work" -name 'doc-*.yaml' | wc -l)
  setup_ok=1
  for i in $(seq 1 $((docs - 1))); do
    if ! OUT=$(kubectl apply -n "$ns" -f "$work/doc-$i.yaml" 2>&1); then
      fail "$name: setup document $i should apply" "$OUT"
      setup_ok=0
    fi
  done
  [ "$setup_ok" = 1 ] || continue

  last=$work/doc-$docs.yaml
  if OUT=$(kubectl apply -n "$ns" -f "$last" 2>&1); then
    fail "$name: should be rejected, but was accepted" "$OUT"
    continue
  fi
  missing=()
  for want in "${expects[@]}"; do
    grep -qF -- "$want" <<<"$OUT" || missing+=("$want")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    pass "$name: rejected; the error has $(printf "'%s' " "${expects[@]}")"
  else
    fail "$name: rejected, but the error does not name: ${missing[*]}" "$OUT"
  fi
  if [ "$docs" -eq 1 ] && kubectl get -n "$ns" -f "$last" >/dev/null 2>&1; then
    fail "$name: the rejected object exists anyway"
  fi
done

if [ "$count" -ge 20 ]; then
  pass "the corpus has $count invalid resources (at least 20)"
else
  fail "the corpus has only $count invalid resources (want at least 20)"
fi
kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
