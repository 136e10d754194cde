# netns_cluster.sh — sourced by the namespaced cluster test and kvstash-bench-cluster: hosts made of
# network namespaces joined by a veth bridge that lives in its own namespace (no address is added
# to the machine's own network), an etcd on host "e", and kvstashd daemons on hosts h1..hN.
#
# Functions (all need root / CAP_NET_ADMIN):
#   netns_usable                 true when `ip netns add` works here
#   netns_setup HOST...          creates the bridge and one namespace + address per host name
#   netns_addr HOST              the host's address
#   netns_exec HOST CMD...       runs CMD inside the host's namespace
#   netns_start_etcd             etcd on host e (call after netns_setup including "e")
#   netns_start_daemon HOST CLUSTER KVSTASHD [ARGS...]   a member; sets NETNS_LAST_PID
#   netns_cleanup                kills what was started and removes the namespaces
NETNS_TAG="kv$$"
NETNS_PIDS=()
NETNS_HOSTS=()
NETNS_WORK=$(mktemp -d /tmp/kvstash-netns-XXXXXX)
NETNS_PREFIX="10.$((RANDOM % 200 + 20)).$((RANDOM % 250))"
declare -A NETNS_ADDR

netns_usable() {
  command -v ip >/dev/null || return 1
  ip netns add "${NETNS_TAG}p" 2>/dev/null || return 1
  ip netns del "${NETNS_TAG}p"
}

netns_setup() {
  ip netns add "${NETNS_TAG}br"
  ip -n "${NETNS_TAG}br" link add br0 type bridge
  ip -n "${NETNS_TAG}br" link set br0 up
  local n=${#NETNS_HOSTS[@]}
  for h in "$@"; do
    n=$((n + 1))
    local ns="${NETNS_TAG}$h"
    ip netns add "$ns"
    ip link add "${NETNS_TAG}$h" type veth peer name "${NETNS_TAG}${h}b"
    ip link set "${NETNS_TAG}$h" netns "$ns" name eth0
    ip link set "${NETNS_TAG}${h}b" netns "${NETNS_TAG}br"
    ip -n "${NETNS_TAG}br" link set "${NETNS_TAG}${h}b" master br0 up
    ip -n "$ns" addr add "$NETNS_PREFIX.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    NETNS_ADDR[$h]="$NETNS_PREFIX.$n"
    NETNS_HOSTS+=("$h")
  done
}

netns_addr() { echo "${NETNS_ADDR[$1]}"; }
netns_exec() { local h=$1; shift; ip netns exec "${NETNS_TAG}$h" "$@"; }
NETNS_ETCD_URL=""

netns_start_etcd() {
  local a; a=$(netns_addr e)
  NETNS_ETCD_URL="http://$a:2379"
  ip netns exec "${NETNS_TAG}e" etcd --name netns --data-dir "$NETNS_WORK/etcd" \
    --listen-client-urls "$NETNS_ETCD_URL" --advertise-client-urls "$NETNS_ETCD_URL" \
    --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
    --initial-cluster "netns=http://$a:2380" >"$NETNS_WORK/etcd.log" 2>&1 &
  NETNS_PIDS+=($!)
  for _ in $(seq 300); do
    netns_exec e curl -sf "$NETNS_ETCD_URL/health" 2>/dev/null | grep -q true && return 0
    sleep 0.1  # polling a readiness probe
  done
  echo "etcd did not become healthy" >&2
  return 1
}

netns_start_daemon() {  # HOST CLUSTER KVSTASHD [ARGS...]
  local h=$1 cluster=$2 bin=$3; shift 3
  local a; a=$(netns_addr "$h")
  local out="$NETNS_WORK/$h-$cluster.out"
  # `ip netns exec` execs the daemon: $! is the daemon's own pid (kill -9 hits it).
  ip netns exec "${NETNS_TAG}$h" "$bin" --etcd "$NETNS_ETCD_URL" --cluster "$cluster" --lease-ttl 2 \
    --listen "$a:7370" --metrics-listen "$a:7371" --ucx-transports tcp --log-level warn "$@" \
    >"$out" 2>"$out.err" &
  NETNS_LAST_PID=$!
  NETNS_PIDS+=($NETNS_LAST_PID)
  for _ in $(seq 300); do
    grep -q "kvstashd ready" "$out" 2>/dev/null && return 0
    kill -0 "$NETNS_LAST_PID" 2>/dev/null || break
    sleep 0.05  # polling for the ready line
  done
  echo "kvstashd on $h did not start: $(cat "$out.err")" >&2
  return 1
}

netns_cleanup() {
  for p in "${NETNS_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for h in "${NETNS_HOSTS[@]}" br; do ip netns del "${NETNS_TAG}$h" 2>/dev/null || true; done
  rm -rf "$NETNS_WORK"
}
