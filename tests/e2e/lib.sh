# shellcheck shell=bash
# Helpers for the e2e tests, sourced by each tests/e2e/NN-*.sh. Bash only, so that a fresh
# machine needs nothing beyond kubectl, helm and the control plane (scripts/e2e starts it).
#
# A test calls assertions; each prints one "ok" or "FAIL" line, and a failure shows what was
# expected and what came instead. The script goes on after a failed assertion and exits 1 at
# the end; an unexpected error (set -e) stops it at once, naming the line.
set -Eeuo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_NAME=$(basename "$0" .sh)
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
HELM=${HELM:-$("$ROOT/scripts/k8s-tools" --path helm)}
WAIT_TIMEOUT=${E2E_WAIT_TIMEOUT:-60s}

_passed=0
_failed=0

kubectl() { "$KUBECTL" "$@"; }
helm() { "$HELM" "$@"; }

_on_error() {
  echo "  ERROR $E2E_NAME line $1: '$2' exited $3" >&2
}
_on_exit() {
  local rc=$?
  echo "-- $E2E_NAME: $_passed checks passed, $_failed failed"
  if [ "$rc" -ne 0 ]; then
    echo "-- $E2E_NAME: aborted (exit $rc)"
    exit "$rc"
  fi
  [ "$_failed" -eq 0 ] || exit 1
}
trap '_on_error "$LINENO" "$BASH_COMMAND" "$?"' ERR
trap _on_exit EXIT

[ -x "$KUBECTL" ] || { echo "kubectl not found at $KUBECTL (set KUBECTL)" >&2; exit 1; }
[ -n "${KUBECONFIG:-}" ] || {
  echo "KUBECONFIG is not set: run tests through scripts/e2e, or eval \"\$(scripts/controlplane env)\"" >&2
  exit 1
}

pass() { _passed=$((_passed + 1)); echo "  ok   $1"; }

# fail DESCRIPTION [DETAIL]: records a failure; DETAIL (often command output) is indented.
fail() {
  _failed=$((_failed + 1))
  echo "  FAIL $1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/       | /' | head -n 40; fi
}

# assert_ok DESCRIPTION CMD...: CMD must exit 0. Its output is kept in $OUT.
assert_ok() {
  local desc=$1; shift
  if OUT=$("$@" 2>&1); then pass "$desc"; else fail "$desc (exit $?: $*)" "$OUT"; fi
}

# assert_fails DESCRIPTION CMD...: CMD must exit non-zero. Its output is kept in $OUT.
assert_fails() {
  local desc=$1; shift
  if OUT=$("$@" 2>&1); then fail "$desc (expected a failure, got exit 0: $*)" "$OUT"; else pass "$desc"; fi
}

# assert_contains DESCRIPTION HAYSTACK NEEDLE: NEEDLE must occur in HAYSTACK (fixed string).
assert_contains() {
  if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1 (no '$3' in:)" "$2"; fi
}

# assert_not_contains DESCRIPTION HAYSTACK NEEDLE
assert_not_contains() {
  if grep -qF -- "$3" <<<"$2"; then fail "$1 (unexpected '$3' in:)" "$2"; else pass "$1"; fi
}

# assert_eq DESCRIPTION EXPECTED ACTUAL
assert_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}

# wait_until DESCRIPTION SECONDS CMD...: passes when CMD succeeds within SECONDS (polls every
# 0.2 s), fails showing CMD's last output otherwise.
wait_until() {
  local desc=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs)) out=
  while :; do
    if out=$("$@" 2>&1); then pass "$desc"; return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "$desc (not within ${secs}s: $*)" "$out"
      return 0
    fi
    sleep 0.2
  done
}

# ensure_crds: installs crds/ and waits until every CRD is established. Idempotent, so each test
# can call it and run alone.
ensure_crds() {
  kubectl apply -f "$ROOT/crds/" >/dev/null
  kubectl wait --for=condition=established --timeout="$WAIT_TIMEOUT" \
    crd/eventstreams.sidelog.dev crd/eventservices.sidelog.dev crd/consolidators.sidelog.dev >/dev/null
}

# ensure_namespace NAME
ensure_namespace() {
  kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null
}
