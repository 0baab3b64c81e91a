#!/usr/bin/env bash
# Weir demo: a real CNI chain (bridge + host-local + portmap) with weir
# chained into it by weir-install, weir-daemon running, and two pods in two
# Kubernetes namespaces created through libcni. Then `weirctl pods`.
#
#   demo.sh                run the demo; Ctrl-C stops it and removes everything
#   demo.sh --for SECONDS  run it for SECONDS, then clean up (smoke test / CI)
#   demo.sh --clean        remove everything a previous (or running) demo created
#
# Needs root. Builds nothing: `make demo` builds the binaries first. Reads
# WEIR_BIN_DIR, WEIR_CNI_BIN_DIR, WEIR_TOOL_BIN_DIR (defaults under ./bin).
#
# Everything the demo creates is recorded under $STATE, so --clean works
# from another shell and after a crash.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${WEIR_BIN_DIR:-$REPO/bin}
CNIBIN=${WEIR_CNI_BIN_DIR:-$REPO/bin/cni}
TOOLBIN=${WEIR_TOOL_BIN_DIR:-$REPO/bin/tools}

STATE=/run/weir-demo
LOCK=/run/weir-demo.lock # serialises a Ctrl-C cleanup with a concurrent --clean
BRIDGE=weirdemo0
SUBNET=10.213.7.0/24
NETWORK=weir-demo
HTTP_ADDR=${WEIR_DEMO_HTTP:-127.0.0.1:9847}
# namespace/pod pairs; each pod gets the netns "wdemo-<pod>".
PODS=("shop/web" "data/db")
READY_TIMEOUT=20 # seconds to wait for the daemon's /readyz

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
# Each step tolerates "already gone" so --clean is safe to run repeatedly.
clean() {
  exec 9>"$LOCK"
  flock 9
  [ -d "$STATE" ] || { rm -f "$LOCK"; flock -u 9; return 0; }
  log "cleaning up"
  if [ -f "$STATE/daemon.pid" ]; then
    pid=$(cat "$STATE/daemon.pid")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q weir-daemon; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true # reaps it when it is our child
    fi
  fi
  if [ -f "$STATE/netns" ]; then
    while read -r ns podns pod; do
      if [ -x "$STATE/podctl" ] && [ -e "/run/netns/$ns" ]; then
        "$STATE/podctl" del --conf-dir "$STATE/net.d" --bin-dir "$STATE/cni-bin" \
          --cache-dir "$STATE/cni-cache" --netns "$ns" --namespace "$podns" --name "$pod" || true
      fi
      ip netns delete "$ns" 2>/dev/null || true
    done <"$STATE/netns"
  fi
  ip link delete "$BRIDGE" 2>/dev/null || true
  if [ -f "$STATE/nat-chains.before" ]; then
    remove_new_chains nat "$STATE/nat-chains.before"
  fi
  if [ -f "$STATE/ip_forward" ]; then
    cat "$STATE/ip_forward" >/proc/sys/net/ipv4/ip_forward
  fi
  rm -rf "$STATE"
  rm -f "$LOCK" # a waiter holds the unlinked file, takes the lock, finds no $STATE
  flock -u 9
  log "clean"
}

# remove_new_chains TABLE BEFORE_FILE: delete CNI-* chains not listed in
# BEFORE_FILE (portmap leaves CNI-HOSTPORT-* behind), and jumps into them.
remove_new_chains() {
  local table=$1 before=$2 chain parent n
  for chain in $(iptables -w 5 -t "$table" -S | awk '$1=="-N" && $2 ~ /^CNI-/ {print $2}'); do
    grep -qxF "$chain" "$before" && continue
    for parent in $(iptables -w 5 -t "$table" -S | awk '$1=="-N"||$1=="-P" {print $2}'); do
      for n in $(iptables -w 5 -t "$table" -L "$parent" -n --line-numbers | awk -v c="$chain" 'NR>2 && $2==c {print $1}' | sort -rn); do
        iptables -w 5 -t "$table" -D "$parent" "$n" || true
      done
    done
    iptables -w 5 -t "$table" -F "$chain" || true
    iptables -w 5 -t "$table" -X "$chain" || true
  done
}

if [ "${1:-}" = "--clean" ]; then
  [ "$(id -u)" = 0 ] || die "needs root"
  clean
  exit 0
fi

RUN_FOR=""
if [ "${1:-}" = "--for" ]; then
  RUN_FOR=${2:?--for needs a number of seconds}
  [[ $RUN_FOR =~ ^[0-9]+$ ]] || die "--for $RUN_FOR: want a whole number of seconds"
elif [ -n "${1:-}" ]; then
  die "unknown argument $1 (want --clean or --for SECONDS)"
fi

# ---------------------------------------------------------------- checks
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, a bridge, iptables)"
for f in "$BIN/weir" "$BIN/weir-daemon" "$BIN/weirctl" "$BIN/weir-install" \
         "$CNIBIN/bridge" "$CNIBIN/host-local" "$CNIBIN/portmap" "$CNIBIN/loopback"; do
  [ -x "$f" ] || die "missing $f: run 'make cni-plugins' (or 'make demo')"
done
if [ -d "$STATE" ]; then
  log "a previous demo left $STATE behind; removing it first"
  clean
fi
if ip route show | grep -q "^${SUBNET%/*}"; then
  die "$SUBNET is already routed on this host; not touching it"
fi

mkdir -p "$STATE"/{net.d,cni-bin,cni-cache,ipam,state}
trap 'clean' EXIT
trap 'exit 130' INT TERM

cat /proc/sys/net/ipv4/ip_forward >"$STATE/ip_forward"
iptables -w 5 -t nat -S | awk '$1=="-N" {print $2}' >"$STATE/nat-chains.before"
: >"$STATE/netns"

# podctl drives libcni like a runtime. `make demo` builds it into the tool
# dir; fall back to building it here for a direct run of this script.
if [ -x "$TOOLBIN/podctl" ]; then
  cp "$TOOLBIN/podctl" "$STATE/podctl"
else
  log "building podctl (add it to 'make demo' to skip this)"
  (cd "$REPO" && CGO_ENABLED=0 go build -o "$STATE/podctl" ./tests/demo/podctl)
fi

# ---------------------------------------------------------------- network
log "writing the node's CNI config: bridge $BRIDGE, $SUBNET"
for p in bridge host-local portmap loopback; do cp "$CNIBIN/$p" "$STATE/cni-bin/"; done
cat >"$STATE/net.d/10-$NETWORK.conflist" <<EOF
{
  "cniVersion": "1.1.0",
  "name": "$NETWORK",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$STATE/ipam",
                "ranges": [[{ "subnet": "$SUBNET" }]], "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "backend": "iptables", "capabilities": { "portMappings": true } }
  ]
}
EOF

log "weir-install: chaining weir into the config"
"$BIN/weir-install" --plugin-src "$BIN/weir" --cni-bin-dir "$STATE/cni-bin" --cni-conf-dir "$STATE/net.d" \
  --daemon-socket "$STATE/weir.sock" --spool-dir "$STATE/state/spool" --log-file "$STATE/weir-plugin.log"
cat "$STATE/net.d/"*.conflist

# ---------------------------------------------------------------- daemon
log "starting weir-daemon (API on http://$HTTP_ADDR, log $STATE/daemon.log)"
"$BIN/weir-daemon" --socket "$STATE/weir.sock" --state-dir "$STATE/state" \
  --http "$HTTP_ADDR" --node-name "$(hostname)" >"$STATE/daemon.log" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" >"$STATE/daemon.pid"
for _ in $(seq $((READY_TIMEOUT * 10))); do
  curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$STATE/daemon.log"; die "weir-daemon exited"; }
  sleep 0.1
done
curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null || { cat "$STATE/daemon.log"; die "weir-daemon not ready after ${READY_TIMEOUT}s"; }

# ---------------------------------------------------------------- pods
for entry in "${PODS[@]}"; do
  podns=${entry%/*} pod=${entry#*/} ns="wdemo-${entry#*/}"
  log "pod $podns/$pod: netns $ns, CNI ADD"
  ip netns add "$ns"
  echo "$ns $podns $pod" >>"$STATE/netns"
  ip -n "$ns" link set lo up
  "$STATE/podctl" add --conf-dir "$STATE/net.d" --bin-dir "$STATE/cni-bin" \
    --cache-dir "$STATE/cni-cache" --netns "$ns" --namespace "$podns" --name "$pod"
done

log "weirctl pods"
"$BIN/weirctl" --http "$HTTP_ADDR" pods

cat <<EOF

Weir is running.
  API:        http://$HTTP_ADDR/api/v1/pods
  CLI:        $BIN/weirctl --http $HTTP_ADDR pods
  run in pod: ip netns exec wdemo-web <command>
  logs:       $STATE/daemon.log, $STATE/weir-plugin.log
Stop with Ctrl-C here, or '$0 --clean' (make demo-clean) from another shell.
EOF

if [ -n "$RUN_FOR" ]; then
  sleep "$RUN_FOR"
else
  wait "$DAEMON_PID" || true
  # A --clean from another shell stops the daemon too: wait for it to
  # finish before deciding whether the daemon died on its own.
  exec 9>"$LOCK"
  flock 9
  still_here=$([ -d "$STATE" ] && echo yes || true)
  flock -u 9
  if [ -n "$still_here" ]; then
    log "weir-daemon exited on its own; its log:"
    tail -n 20 "$STATE/daemon.log" || true
  fi
fi
