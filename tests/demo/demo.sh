#!/usr/bin/env bash
# Weir demo: a real CNI chain (bridge + host-local + portmap) with weir
# chained into it by weir-install, weir-daemon running with its dashboard,
# and a small shop application in pods created through libcni:
#
#   shop/loadgen --HTTP/1.1--> shop/frontend --gRPC (HTTP/2)--> data/catalog
#                                            --HTTP/1.1-------> data/reviews
#
# reviews answers 500 to ~10% of requests (the error route), and the link
# into the reviews pod drops 3% of packets (netem on its host veth).
#
#   demo.sh                  run the demo; Ctrl-C stops it and removes everything
#   demo.sh --for SECONDS    run it for SECONDS, then clean up (smoke test / CI)
#   demo.sh --oap HOST:PORT  also export to a SkyWalking OAP (weir-daemon --oap)
#   demo.sh --clean          remove everything a previous (or running) demo created
#
# Needs root. Builds nothing but, when missing, podctl and the demo app:
# `make demo` builds the binaries first. Reads WEIR_BIN_DIR, WEIR_CNI_BIN_DIR,
# WEIR_TOOL_BIN_DIR (defaults under ./bin); WEIR_DEMO_HTTP (API address,
# default 127.0.0.1:9847) and WEIR_DEMO_RATE (loadgen requests/s, default 20).
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
PODS=("data/catalog" "data/reviews" "shop/frontend" "shop/loadgen")
CATALOG_PORT=9090
REVIEWS_PORT=8081
FRONTEND_PORT=8080
LOAD_RATE=${WEIR_DEMO_RATE:-20} # requests per second from loadgen
REVIEWS_ERROR_RATE=0.1          # share of /reviews/{id} answered with 500
NETEM_LOSS=3%                   # packet loss on the link into the reviews pod
# Endpoint names for the metrics: the app's routes, so /product/7 and
# /product/8 count as one endpoint "GET:/product/{id}".
ROUTE_PATTERNS="/product/{id},/reviews/{id}"
LOSS_RULE=(-m statistic --mode random --probability 0.03 -j DROP) # the same without netem
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
  if [ -f "$STATE/app.pids" ]; then
    while read -r pid; do stop_pid "$pid" "$STATE/app"; done <"$STATE/app.pids"
  fi
  if [ -f "$STATE/netem" ]; then
    tc qdisc del dev "$(cat "$STATE/netem")" root 2>/dev/null || true
  fi
  if [ -f "$STATE/loss-rule" ]; then
    ip netns exec "$(cat "$STATE/loss-rule")" iptables -w 5 -D INPUT "${LOSS_RULE[@]}" 2>/dev/null || true
  fi
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

# stop_pid PID EXE: TERM, then KILL, a process whose command line starts
# with EXE (so a recycled pid is never signalled); reap it if it is ours.
stop_pid() {
  local pid=$1 exe=$2
  [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^$exe " || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
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
OAP=""
while [ $# -gt 0 ]; do
  case $1 in
    --for)
      RUN_FOR=${2:?--for needs a number of seconds}
      [[ $RUN_FOR =~ ^[0-9]+$ ]] || die "--for $RUN_FOR: want a whole number of seconds"
      shift 2 ;;
    --oap)
      OAP=${2:?--oap needs HOST:PORT}
      [[ $OAP =~ ^[^:[:space:]]+:[0-9]+$ ]] || die "--oap $OAP: want HOST:PORT"
      shift 2 ;;
    *) die "unknown argument $1 (want --clean, --for SECONDS or --oap HOST:PORT)" ;;
  esac
done
[[ $LOAD_RATE =~ ^[0-9]+$ ]] && [ "$LOAD_RATE" -ge 1 ] ||
  die "WEIR_DEMO_RATE=$LOAD_RATE: want a whole number of requests per second, at least 1"

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
# The demo application: frontend, catalog, reviews and loadgen in one binary.
if [ -x "$TOOLBIN/demo-app" ]; then
  cp "$TOOLBIN/demo-app" "$STATE/app"
else
  log "building the demo app (add it to 'make demo' to skip this)"
  (cd "$REPO" && CGO_ENABLED=0 go build -o "$STATE/app" ./tests/demo/app)
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
DAEMON_ARGS=(--socket "$STATE/weir.sock" --state-dir "$STATE/state" --http "$HTTP_ADDR" --node-name "$(hostname)")
[ -z "$OAP" ] || DAEMON_ARGS+=(--oap "$OAP")
# Older daemons have no route patterns; they then name endpoints verbatim.
if "$BIN/weir-daemon" -h 2>&1 | grep -q -- '-metrics.route-patterns'; then
  DAEMON_ARGS+=(--metrics.route-patterns "$ROUTE_PATTERNS")
fi
log "starting weir-daemon (API on http://$HTTP_ADDR, log $STATE/daemon.log)"
"$BIN/weir-daemon" "${DAEMON_ARGS[@]}" >"$STATE/daemon.log" 2>&1 &
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

# pod_ip POD: the pod's IPv4 address on eth0.
pod_ip() {
  ip -n "wdemo-$1" -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}'
}

# start_app POD ARGS...: run the demo app in the pod's netns as our child
# (so it is reaped and stopped by clean), logging to $STATE/POD.log.
start_app() {
  local pod=$1
  shift
  ip netns exec "wdemo-$pod" "$STATE/app" "$@" >"$STATE/$pod.log" 2>&1 &
  echo $! >>"$STATE/app.pids"
}

# wait_http URL: until URL answers with 2xx (at most 5 s), or die.
wait_http() {
  for _ in $(seq 50); do
    curl -fsS -m 1 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$1 did not answer within 5s; see $STATE/*.log"
}

# ---------------------------------------------------------------- app
CATALOG_IP=$(pod_ip catalog) REVIEWS_IP=$(pod_ip reviews) FRONTEND_IP=$(pod_ip frontend)
[ -n "$CATALOG_IP" ] && [ -n "$REVIEWS_IP" ] && [ -n "$FRONTEND_IP" ] || die "a demo pod has no IPv4 address"
: >"$STATE/app.pids"
log "the shop: catalog $CATALOG_IP:$CATALOG_PORT (gRPC), reviews $REVIEWS_IP:$REVIEWS_PORT, frontend $FRONTEND_IP:$FRONTEND_PORT"
start_app catalog catalog --listen ":$CATALOG_PORT"
start_app reviews reviews --listen ":$REVIEWS_PORT" --error-rate "$REVIEWS_ERROR_RATE"
start_app frontend frontend --listen ":$FRONTEND_PORT" \
  --catalog "$CATALOG_IP:$CATALOG_PORT" --reviews "http://$REVIEWS_IP:$REVIEWS_PORT"
wait_http "http://$FRONTEND_IP:$FRONTEND_PORT/"

# The lossy edge: netem on the host end of the reviews pod's veth, so every
# packet the bridge delivers into that pod may be dropped. Kernels built
# without sch_netem get the same loss from an iptables "statistic" rule on
# INPUT inside the reviews pod (it goes away with the pod's netns).
REVIEWS_IFLINK=$(ip netns exec wdemo-reviews cat /sys/class/net/eth0/iflink)
REVIEWS_VETH=$(ip -o link show | awk -F': ' -v idx="$REVIEWS_IFLINK" '$1 == idx {split($2, a, "@"); print a[1]; exit}')
[ -n "$REVIEWS_VETH" ] || die "cannot find the host veth of the reviews pod (iflink $REVIEWS_IFLINK)"
if tc qdisc add dev "$REVIEWS_VETH" root netem loss "$NETEM_LOSS" 2>/dev/null; then
  echo "$REVIEWS_VETH" >"$STATE/netem"
  log "netem: $NETEM_LOSS loss on $REVIEWS_VETH (the link into data/reviews)"
else
  echo wdemo-reviews >"$STATE/loss-rule"
  ip netns exec wdemo-reviews iptables -w 5 -I INPUT "${LOSS_RULE[@]}"
  log "no sch_netem in this kernel: $NETEM_LOSS loss by iptables statistic on INPUT of data/reviews"
fi

log "loadgen: $LOAD_RATE requests/s to frontend"
start_app loadgen loadgen --target "http://$FRONTEND_IP:$FRONTEND_PORT" --rate "$LOAD_RATE"

log "weirctl pods"
"$BIN/weirctl" --http "$HTTP_ADDR" pods

cat <<EOF

Weir is running.
  dashboard:  http://$HTTP_ADDR/
  API:        http://$HTTP_ADDR/api/v1/services (also topology, pods, features)
  CLI:        $BIN/weirctl --http $HTTP_ADDR pods
  the shop:   curl http://$FRONTEND_IP:$FRONTEND_PORT/product/7
  run in pod: ip netns exec wdemo-frontend <command>
  logs:       $STATE/daemon.log, $STATE/weir-plugin.log, $STATE/{catalog,reviews,frontend,loadgen}.log
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
