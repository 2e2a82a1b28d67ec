#!/usr/bin/env bash
# docs/crds.md is generated from crds/ (scripts/crd-docs) and must be up to date.
source "$(dirname "$0")/lib.sh"

assert_ok "docs/crds.md matches crds/ (else run scripts/crd-docs)" "$ROOT/scripts/crd-docs" --check
for kind in EventStream EventService Consolidator; do
  assert_contains "docs/crds.md has a section for $kind" "$(cat "$ROOT/docs/crds.md")" "## $kind"
done
