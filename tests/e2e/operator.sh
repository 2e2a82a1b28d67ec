# shellcheck shell=bash
# Helpers for the operator's e2e tests (tests/e2e/6N-operator-*.sh), sourced after lib.sh: a
# real nats-server and sidelog-operator processes on loopback, stopped when the test exits.
#
#   start_nats              starts nats-server with JetStream on $NATS_PORT (picked once),
#                           store under $WORK/nats; again after stop_nats: same port and store
#   stop_nats
#   start_operator ID [FLAGS...]   starts an operator with identity ID, health on a free port
#                           (OPERATOR_HEALTH[ID]), its webhook on another (OPERATOR_WEBHOOK[ID],
#                           certificate for 127.0.0.1), logs in $WORK/operator-ID.log
#   kill_operator ID [SIGNAL]
#   sa_kubeconfig NS SA DIR writes DIR/kubeconfig with a token of ServiceAccount SA
#   operator_kubeconfig     applies deploy/rbac/operator.yaml and writes $WORK/kubeconfig with a
#                           token of its ServiceAccount (start_operator ... --kubeconfig it),
#                           so a missing or excess RBAC rule fails the test
#   js ARGS...              sidelog-jetstream-tool against this nats-server
#   ready_of NS NAME        prints "<Ready status>/<reason>" of an EventStream

BUILD=${SIDELOG_BUILD_DIR:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OPERATOR_BIN=$BUILD/operator/sidelog-operator
JS_TOOL=$BUILD/tests/operator/sidelog-jetstream-tool
NATS_BIN=${NATS_SERVER:-nats-server}
for bin in "$OPERATOR_BIN" "$JS_TOOL"; do
  [ -x "$bin" ] || { echo "$bin is not built: run make test (or cmake --build $BUILD)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidelog-e2e-operator.XXXXXX")
declare -A OPERATOR_PID OPERATOR_HEALTH OPERATOR_WEBHOOK
NATS_PID=

# A free TCP port on 127.0.0.1 below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((10000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}
NATS_PORT=$(free_port)
NATS_URL=nats://127.0.0.1:$NATS_PORT

_operator_cleanup() {
  local id
  for id in "${!OPERATOR_PID[@]}"; do
    kill -KILL "${OPERATOR_PID[$id]}" 2>/dev/null || true
    wait "${OPERATOR_PID[$id]}" 2>/dev/null || true
  done
  if [ -n "$NATS_PID" ]; then
    kill -KILL "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
  fi
  if [ "${_failed:-0}" -gt 0 ]; then
    for f in "$WORK"/operator-*.log; do
      [ -f "$f" ] || continue
      echo "-- last lines of $(basename "$f"):"
      tail -n 15 "$f" | cut -c1-400
    done
  fi
  rm -rf "$WORK"
}
trap '_rc=$?; _operator_cleanup; (exit $_rc); _on_exit' EXIT

start_nats() {
  mkdir -p "$WORK/nats"
  "$NATS_BIN" -js -sd "$WORK/nats" -a 127.0.0.1 -p "$NATS_PORT" >>"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then sleep 0.2; return 0; fi
    sleep 0.05
  done
  echo "nats-server did not start:" >&2
  tail "$WORK/nats.log" >&2
  return 1
}

stop_nats() {
  [ -n "$NATS_PID" ] || return 0
  kill -TERM "$NATS_PID" 2>/dev/null || true
  wait "$NATS_PID" 2>/dev/null || true
  NATS_PID=
}

start_operator() {
  local id=$1; shift
  local port webhook; port=$(free_port); webhook=$(free_port)
  OPERATOR_HEALTH[$id]=$port
  OPERATOR_WEBHOOK[$id]=$webhook
  "$OPERATOR_BIN" --nats "$NATS_URL" --identity "$id" --health-listen "127.0.0.1:$port" \
    --webhook-listen "127.0.0.1:$webhook" --webhook-hosts 127.0.0.1 \
    --leader-election-namespace "${LEASE_NAMESPACE:-default}" --leader-election-id "${LEASE_NAME:-sidelog-operator-$E2E_NAME}" \
    --lease-duration 4s --renew-deadline 3s --retry-period 1s --resync-period 2s "$@" \
    >>"$WORK/operator-$id.log" 2>&1 &
  OPERATOR_PID[$id]=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "operator $id did not start:" >&2
  tail "$WORK/operator-$id.log" >&2
  return 1
}

kill_operator() {
  local id=$1 sig=${2:-TERM}
  kill "-$sig" "${OPERATOR_PID[$id]}" 2>/dev/null || true
  wait "${OPERATOR_PID[$id]}" 2>/dev/null || true
  unset "OPERATOR_PID[$id]"
}

# metric ID NAME_WITH_LABELS: the value of one sample on operator ID's /metrics (empty if none).
metric() {
  curl -fsS "http://127.0.0.1:${OPERATOR_HEALTH[$1]}/metrics" 2>/dev/null |
    awk -v m="$2" '$1 == m {print $2}'
}

js() { "$JS_TOOL" --nats "$NATS_URL" "$@"; }

# sa_kubeconfig NS SERVICEACCOUNT DIR: DIR/kubeconfig with a token of that ServiceAccount (in
# a token file), and the files of a pod's service-account mount (DIR/token, DIR/ca.crt).
sa_kubeconfig() {
  local ns=$1 sa=$2 dir=$3 server ca
  mkdir -p "$dir"
  kubectl create token "$sa" -n "$ns" --duration=1h >"$dir/token"
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  cp "$ca" "$dir/ca.crt"
  cat >"$dir/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$dir/ca.crt"}}]
users: [{name: u, user: {tokenFile: "$dir/token"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
YAML
}

operator_kubeconfig() {
  ensure_namespace sidelog-system
  kubectl apply -f "$ROOT/deploy/rbac/operator.yaml" >/dev/null
  sa_kubeconfig sidelog-system sidelog-operator "$WORK"
}


ready_of() {
  kubectl get evs -n "$1" "$2" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}' 2>&1
}

# is_ready_with NS NAME STATUS/REASON: succeeds when the EventStream's Ready condition is that.
is_ready_with() {
  local got; got=$(ready_of "$1" "$2")
  [ "$got" = "$3" ] || { echo "Ready is '$got', want '$3'"; return 1; }
}

# js_field STREAM JQ-LIKE-PATH: one field of `js info` (python3 reads the JSON).
js_field() {
  js info "$1" | python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) else v)' "$2"
}

# js_field_is STREAM PATH VALUE
js_field_is() {
  local got; got=$(js_field "$1" "$2" 2>&1)
  [ "$got" = "$3" ] || { echo "$2 of $1 is '$got', want '$3'"; return 1; }
}
