#!/usr/bin/env bash
# The OCI images that scripts/images builds offline. Each is a valid OCI layout with its tag, runs
# as 65532:65532 with its entrypoint; the product images hold no shell; every program's libraries
# resolve inside the image's own root filesystem, and the program starts there as nonroot. A
# private containerd imports all six (`scripts/images --load`) and runs them. The pause binary
# blocks, reaps orphans as PID 1, and exits 0 on SIGTERM and SIGINT. deploy/Dockerfile describes
# the same entrypoints and user.
#
# Needs the C++ binaries built in $SIDELOG_BUILD_DIR (default build); the API server is not used.
source "$(dirname "$0")/lib.sh"

BUILD_DIR=${SIDELOG_BUILD_DIR:-$ROOT/build}
IMAGES_DIR=$BUILD_DIR/images
IMAGES=(operator sidecar consolidator nats test-app pause)
PRODUCTS=(operator sidecar consolidator nats)
declare -A ENTRYPOINT=(
  [operator]=/usr/local/bin/sidelog-operator [sidecar]=/usr/local/bin/sidelog-sidecar
  [consolidator]=/usr/local/bin/sidelog-consolidator [nats]=/nats-server [test-app]=""
  [pause]=/pause)
# Commands that show each image's programs start in its root filesystem.
declare -A SMOKE=(
  [operator]="/usr/local/bin/sidelog-operator --help"
  [sidecar]="/usr/local/bin/sidelog-sidecar --help;/usr/local/bin/sidelog --help"
  [consolidator]="/usr/local/bin/sidelog-consolidator --help"
  [nats]="/nats-server --version"
  [test-app]="/usr/bin/curl --version;/usr/local/bin/sidelog --help;/bin/sh -c true;/usr/local/bin/pause -v"
  [pause]="/pause -v")
LD_SO=/lib64/ld-linux-x86-64.so.2
version=$(sed -n 's/^project([[:alnum:]_-]* VERSION \([0-9][0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
nats_version=$("$ROOT/scripts/k8s-tools" --versions | awk '$1 == "nats-server" {print substr($2, 2)}')

tmp=$(mktemp -d /tmp/sidelog-e2e-images.XXXXXX)
ctrd_pid=
cleanup() {
  if [ -n "$ctrd_pid" ] && kill -0 "$ctrd_pid" 2>/dev/null; then
    kill -TERM "$ctrd_pid"
    for _ in $(seq 50); do kill -0 "$ctrd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$ctrd_pid" 2>/dev/null || true
    wait "$ctrd_pid" 2>/dev/null || true
  fi
  # Whatever containerd left mounted under the temp dir, deepest first.
  awk -v d="$tmp" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf "$tmp"
}
trap 'rc=$?; cleanup; (exit $rc); _on_exit' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# assert_line DESCRIPTION TEXT LINE: LINE is one whole line of TEXT.
assert_line() {
  if grep -qxF -- "$3" <<<"$2"; then pass "$1"; else fail "$1 (no line '$3' in:)" "$2"; fi
}

# --- building -----------------------------------------------------------------------------------

if ! built=$("$ROOT/scripts/images" --build-dir "$BUILD_DIR" 2>&1); then
  fail "scripts/images --build-dir $BUILD_DIR builds the six images" "$built"
  exit 1
fi
pass "scripts/images --build-dir $BUILD_DIR builds the six images"
again=$("$ROOT/scripts/images" --build-dir "$BUILD_DIR" 2>&1)
assert_eq "a second run finds all six up to date" 6 "$(grep -c 'up to date' <<<"$again")"
"$ROOT/scripts/images" --build-dir "$BUILD_DIR" --list | sed 's/^/       /'

# --- each image ---------------------------------------------------------------------------------

# blob DIGEST: the path of a blob in the current layout.
blob() { echo "$layout/blobs/sha256/${1#sha256:}"; }

for name in "${IMAGES[@]}"; do
  layout=$IMAGES_DIR/$name
  want_tag=$version
  [ "$name" != nats ] || want_tag=$nats_version
  tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$layout/index.json")
  assert_eq "$name: the layout is tagged $want_tag" "$want_tag" "$tag"
  assert_eq "$name: oci-layout version 1.0.0" 1.0.0 "$(jq -r .imageLayoutVersion "$layout/oci-layout")"
  assert_ok "$name: umoci stat reads sidelog/$name:$tag" umoci stat --image "$layout:$tag"

  manifest_digest=$(jq -r '.manifests[0].digest' "$layout/index.json")
  manifest=$(cat "$(blob "$manifest_digest")")
  config=$(cat "$(blob "$(jq -r .config.digest <<<"$manifest")")")
  bad=""
  for d in "$manifest_digest" $(jq -r '.config.digest, .layers[].digest' <<<"$manifest"); do
    [ "sha256:$(sha256sum "$(blob "$d")" | cut -d' ' -f1)" = "$d" ] || bad+="$d "
  done
  assert_eq "$name: every blob matches its digest" "" "$bad"
  assert_eq "$name: linux/amd64" linux/amd64 "$(jq -r '.os + "/" + .architecture' <<<"$config")"
  assert_eq "$name: config User is 65532:65532" 65532:65532 "$(jq -r .config.User <<<"$config")"
  assert_eq "$name: entrypoint" "${ENTRYPOINT[$name]}" "$(jq -r '(.config.Entrypoint // []) | join(" ")' <<<"$config")"
  if [ "$name" = test-app ]; then
    assert_eq "test-app: idles in pause unless given a command" /usr/local/bin/pause \
      "$(jq -r '(.config.Cmd // []) | join(" ")' <<<"$config")"
    assert_contains "test-app: SIDELOG_URL is set" "$(jq -r '.config.Env[]' <<<"$config")" \
      SIDELOG_URL=http://127.0.0.1:4380
  fi
  assert_eq "$name: version label" "$tag" \
    "$(jq -r '.config.Labels["org.opencontainers.image.version"]' <<<"$config")"

  umoci unpack --image "$layout:$tag" "$tmp/$name" >/dev/null
  rootfs=$tmp/$name/rootfs
  assert_contains "$name: /etc/passwd has nonroot 65532" "$(cat "$rootfs/etc/passwd")" \
    "nonroot:x:65532:65532:"
  assert_eq "$name: /home/nonroot belongs to 65532" 65532:65532 "$(stat -c %u:%g "$rootfs/home/nonroot")"

  if [[ " ${PRODUCTS[*]} " == *" $name "* ]]; then
    shells=$(cd "$rootfs" && find . \( -name sh -o -name bash -o -name dash -o -name ash \
      -o -name zsh -o -name ksh -o -name mksh -o -name busybox \) -print)
    assert_eq "$name: no shell in the image" "" "$shells"
    others=$(cd "$rootfs" && find . -type f -perm -u+x ! -name '*.so*' -print |
      grep -v '^./usr/local/bin/\|^./nats-server$' || true)
    assert_eq "$name: no program but its own" "" "$others"
  fi

  # Every dynamic ELF program, resolved by the image's own dynamic loader and libraries.
  missing=""
  checked=0
  while IFS= read -r prog; do
    headers=$(readelf -l "$rootfs$prog" 2>/dev/null) || true
    grep -q 'program interpreter' <<<"$headers" || continue
    checked=$((checked + 1))
    listing=$(chroot "$rootfs" "$LD_SO" --list "$prog" 2>&1) || true
    if grep -q 'not found' <<<"$listing" || ! grep -q '=>' <<<"$listing"; then
      missing+="$prog: $(grep 'not found' <<<"$listing" || echo "$listing")"$'\n'
    fi
  done < <(cd "$rootfs" && find . -type f -perm -u+x ! -name '*.so*' -printf '/%P\n')
  if [ "$checked" -gt 0 ]; then
    assert_eq "$name: the libraries of its $checked dynamic programs resolve inside the image" "" "$missing"
  else
    assert_contains "$name: ${ENTRYPOINT[$name]} is static" \
      "$(readelf -d "$rootfs${ENTRYPOINT[$name]}" 2>&1)" "no dynamic section"
  fi

  IFS=';' read -ra smokes <<<"${SMOKE[$name]}"
  for cmd in "${smokes[@]}"; do
    read -ra argv <<<"$cmd"
    assert_ok "$name: '$cmd' runs in the image as 65532" \
      chroot --userspec=65532:65532 "$rootfs" "${argv[@]}"
  done
done
assert_eq "test-app: busybox's wget is left out (it crashes in pods)" "" \
  "$(ls "$tmp/test-app/rootfs/bin/wget" "$tmp/test-app/rootfs/usr/bin/wget" 2>/dev/null || true)"

# --- pause on the host --------------------------------------------------------------------------

pause=$tmp/pause/rootfs/pause
for sig in TERM INT; do
  "$pause" 2>"$tmp/pause.log" &
  pid=$!
  sleep 0.5
  if kill -0 "$pid" 2>/dev/null; then pass "pause blocks"; else fail "pause blocks (it exited)"; fi
  kill -"$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  assert_eq "pause exits 0 on SIG$sig" 0 "$rc"
done

# As PID 1 of its own PID namespace, pause reaps an orphan that exits.
if unshare --pid --fork --kill-child true 2>/dev/null; then
  unshare --pid --fork --kill-child -- "$pause" 2>"$tmp/pause.log" &
  upid=$!
  ppid=""
  for _ in $(seq 25); do ppid=$(pgrep -P "$upid" || true); [ -z "$ppid" ] || break; sleep 0.1; done
  # The sleep's parent exits at once, so the sleep is re-parented to pause, which must reap it.
  nsenter -t "$ppid" -p -- sh -c 'sleep 0.3 & exit 0'
  sleep 1
  children=$(ps -o stat= --ppid "$ppid" || true)
  assert_eq "pause (PID 1) leaves no zombie behind" "" "$(grep Z <<<"$children" || true)"
  kill -TERM "$ppid"
  rc=0
  wait "$upid" || rc=$?
  assert_eq "pause as PID 1 exits 0 on SIGTERM" 0 "$rc"
else
  echo "  skip pause as PID 1: unshare --pid is not permitted here"
fi

# --- a private containerd -----------------------------------------------------------------------

sock=$tmp/containerd/containerd.sock
mkdir -p "$tmp/containerd"
cat >"$tmp/containerd/config.toml" <<EOF
version = 2
root = "$tmp/containerd/root"
state = "$tmp/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
containerd --config "$tmp/containerd/config.toml" >"$tmp/containerd/log" 2>&1 &
ctrd_pid=$!
ctr=(ctr -a "$sock" -n k8s.io)
for _ in $(seq 50); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
assert_ok "a private containerd answers on $sock" "${ctr[@]}" version

assert_ok "scripts/images --load imports the six images" \
  "$ROOT/scripts/images" --build-dir "$BUILD_DIR" --load "$sock"
assert_ok "a second --load succeeds too" "$ROOT/scripts/images" --build-dir "$BUILD_DIR" --load "$sock"
refs=$("${ctr[@]}" images ls -q)
check=$("${ctr[@]}" images check)
for name in "${IMAGES[@]}"; do
  tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$IMAGES_DIR/$name/index.json")
  ref=docker.io/sidelog/$name:$tag
  assert_line "containerd lists $ref" "$refs" "$ref"
  assert_eq "containerd keeps one digest name for sidelog/$name" 1 \
    "$(grep -c "^docker.io/sidelog/$name@sha256:" <<<"$refs" || true)"
  assert_eq "$ref is complete and unpacked" 1 \
    "$(awk -v r="$ref" '$1 == r && $4 == "complete" && $NF == "true"' <<<"$check" | wc -l)"
done
assert_eq "containerd lists all six by tag" 6 "$(grep -c '^docker.io/sidelog/[a-z-]*:' <<<"$refs" || true)"

# The images run as containers (runc, without cgroups so nothing is left behind).
out=$(timeout 30 "${ctr[@]}" run --rm --cgroup "" "docker.io/sidelog/test-app:$version" e2e-images-id \
  sh -c 'id -u; id -g; echo "$SIDELOG_URL"' 2>&1) || true
assert_eq "test-app runs as 65532:65532 with SIDELOG_URL" \
  "65532 65532 http://127.0.0.1:4380" "$(tr '\n' ' ' <<<"$out" | sed 's/ $//')"
assert_ok "the operator image starts its entrypoint (--help)" \
  timeout 30 "${ctr[@]}" run --rm --cgroup "" "docker.io/sidelog/operator:$version" e2e-images-operator \
  /usr/local/bin/sidelog-operator --help
timeout 30 "${ctr[@]}" run --rm --cgroup "" "docker.io/sidelog/pause:$version" e2e-images-pause \
  >"$tmp/pause-ctr.log" 2>&1 &
run_pid=$!
for _ in $(seq 50); do
  "${ctr[@]}" task ls -q 2>/dev/null | grep -qx e2e-images-pause && break
  sleep 0.2
done
sleep 0.5
assert_contains "the pause container is running" "$("${ctr[@]}" task ls 2>&1)" RUNNING
"${ctr[@]}" task kill -s SIGTERM e2e-images-pause >/dev/null 2>&1 || true
rc=0
wait "$run_pid" || rc=$?
assert_eq "the pause container exits 0 on SIGTERM" 0 "$rc"

# --- deploy/Dockerfile --------------------------------------------------------------------------

for name in "${IMAGES[@]}"; do
  stage=$(awk -v n="$name" '$1 == "FROM" {on = ($NF == n); next} on' "$ROOT/deploy/Dockerfile")
  assert_contains "Dockerfile stage $name runs as 65532:65532" "$stage" "USER 65532:65532"
  if [ -n "${ENTRYPOINT[$name]}" ]; then
    assert_contains "Dockerfile stage $name has the same entrypoint" "$stage" \
      "ENTRYPOINT [\"${ENTRYPOINT[$name]}\"]"
  else
    assert_contains "Dockerfile stage $name has the same command" "$stage" \
      'CMD ["/usr/local/bin/pause"]'
  fi
done
