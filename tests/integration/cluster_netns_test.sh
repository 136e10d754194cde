#!/usr/bin/env bash
# Three kvstash hosts made of network namespaces joined by a veth bridge (tests/support/
# netns_cluster.sh), one etcd, UCX over tcp between them, and a client host that finds the members
# through etcd: membership, a verified put/get bench across the hosts, and kill -9 of one host.
#
# usage: cluster_netns_test.sh KVSTASHD KVSTASH   (needs root for `ip netns`; exits 77 = skipped
# with a message where namespaces cannot be created)
set -euo pipefail
KVSTASHD=$(readlink -f "$1")
KVSTASH=$(readlink -f "$2")
say() { echo "cluster_netns_test: $*"; }
if ! command -v etcd >/dev/null; then say "SKIP: etcd is not installed (etcd-server)"; exit 77; fi
source "$(dirname "$0")/../support/netns_cluster.sh"
if ! netns_usable; then
  say "SKIP: cannot create network namespaces here (ip netns add needs CAP_SYS_ADMIN/CAP_NET_ADMIN)"; exit 77
fi
trap netns_cleanup EXIT

netns_setup e h1 h2 h3 c
netns_start_etcd
declare -A daemon_pid
for i in 1 2 3; do
  netns_start_daemon "h$i" netns "$KVSTASHD" --dram-capacity 256MiB
  daemon_pid[$i]=$NETNS_LAST_PID
done

cli() { netns_exec c "$KVSTASH" --etcd "$NETNS_ETCD_URL" --cluster netns "$@"; }
members() { cli status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["reachable_members"])' || echo 0; }
wait_members() {  # count, seconds
  for _ in $(seq $(($2 * 20))); do
    [[ "$(members)" == "$1" ]] && return 0
    sleep 0.05  # polling the member set
  done
  return 1
}
wait_members 3 5 || { say "FAIL: the client host does not see 3 members"; exit 1; }
say "3 members on 3 namespaced hosts found through etcd at $NETNS_ETCD_URL"

# A verified put/get bench from the client host over UCX tcp: every block compared byte-exact.
cli bench --op both --block-size 64KiB --count 1500 --threads 4 --batch 8 --data-path ucx \
  --ucx-transports tcp --json >"$NETNS_WORK/bench.json"
python3 - "$NETNS_WORK/bench.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["data_path"].startswith("ucx"), doc["data_path"]
for op in ("put", "get"):
    assert doc[op]["errors"] == 0, (op, doc[op])
assert doc["get"]["mismatches"] == 0 and doc["get"]["hits"] == 1500, doc["get"]
print("cluster_netns_test: bench over %s: put %.0f ops/s, get %.0f ops/s, 1500 blocks verified"
      % (doc["data_path"], doc["put"]["ops_per_s"], doc["get"]["ops_per_s"]))
PY
cli status --json | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for m in doc["members"]:
    assert m["reachable"], m
    assert m["address"].startswith("'"$NETNS_PREFIX"'."), m["address"]
    assert m["tiers"][0]["blocks"] == 0, m  # the bench removed its blocks again
print("cluster_netns_test: members", ", ".join(m["address"] for m in doc["members"]))'

# kill -9 host 2: it leaves the member set within its lease TTL (2 s), the rest keeps serving.
kill -9 "${daemon_pid[2]}"
wait_members 2 4 || { say "FAIL: the killed member was not dropped"; exit 1; }
cli bench --op both --block-size 16KiB --count 500 --threads 4 --data-path ucx --ucx-transports tcp --json \
  >"$NETNS_WORK/bench2.json" || { say "FAIL: bench after the kill: $(cat "$NETNS_WORK/bench2.json")"; exit 1; }
say "PASS"
