# shellcheck shell=bash
# Process and port helpers shared by scripts/controlplane and scripts/cluster (sourced; they
# call `log` and `die`, which the sourcing script defines).

# free_port VAR: sets VAR to a TCP port that is free on 127.0.0.1 now: below the kernel's
# ephemeral range (so no outgoing connection takes it meanwhile), with no socket on it, and not
# handed out before by this script. Another process may still take it before we bind it, so
# `up` retries with fresh ports when a server fails to start.
PORTS_GIVEN=" "
free_port() {
  local lo=10000 hi p
  hi=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32767)
  [ "$hi" -gt $((lo + 1000)) ] || hi=32767
  for _ in $(seq 200); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
    case "$PORTS_GIVEN" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
      [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
      PORTS_GIVEN+="$p "
      printf -v "$1" '%s' "$p"
      return
    fi
  done
  die "found no free port"
}

# True if pid $1 is alive and runs the program $2 (guards against a reused pid).
is_ours() {
  local pid=$1 exe=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  local running; running=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # A binary replaced on disk while it runs reads as "<path> (deleted)".
  [ "${running% (deleted)}" = "$(readlink -f "$exe")" ]
}

# Stops pid $1 (running program $2): SIGTERM, then SIGKILL after 15 seconds.
stop_pid() {
  local pid=$1 exe=$2 name=$3
  is_ours "$pid" "$exe" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    is_ours "$pid" "$exe" || return 0
    sleep 0.1
  done
  log "$name did not stop in 15s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

