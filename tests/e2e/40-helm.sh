#!/usr/bin/env bash
# The helm built by scripts/k8s-tools runs, and talks to the control plane.
source "$(dirname "$0")/lib.sh"

want=$("$ROOT/scripts/k8s-tools" --versions | awk '$1 == "helm" {print $2}')
assert_ok "helm version runs" helm version
assert_contains "helm version reports $want" "$OUT" "Version:\"$want\""
assert_ok "helm version --short" helm version --short
assert_eq "helm version --short is $want" "$want" "${OUT%%+*}"
assert_ok "helm list -A reaches the API server" helm list -A
assert_contains "helm list prints its header" "$OUT" "NAME"
