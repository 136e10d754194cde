#!/usr/bin/env bash
# kvstash-bench-cluster: aggregate get throughput of 4 clients against clusters of 1, 2 and 3
# daemons on namespaced hosts (tests/support/netns_cluster.sh: veth bridge, UCX over tcp), with
# the scaling efficiency against the 1-daemon figure and, as the limit measured in the same run,
# iperf3 between two of the namespaced hosts. Every fetched block is compared with what was put.
#
# usage: kvstash-bench-cluster [--quick] [--json] [--threads N]   (needs root for `ip netns`)
# --threads: caller threads in each of the 4 client processes (default 1). One thread per client
# makes the clients the limit as soon as the daemons can serve four streams; more show the daemons'.
set -euo pipefail
KVSTASHD="@KVSTASHD@"
KVSTASH="@KVSTASH@"
quick=0 json=0 threads=1
for a in "$@"; do
  if [[ "${want_threads:-0}" == 1 ]]; then threads=$a; want_threads=0; continue; fi
  case "$a" in
    --quick) quick=1 ;;
    --json) json=1 ;;
    --threads) want_threads=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kvstash-bench-cluster: unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[1-9][0-9]?$ ]] || { echo "kvstash-bench-cluster: --threads takes 1..99" >&2; exit 2; }
block_size=256KiB
count=$((quick ? 200 : 1000))  # blocks per client
clients=4
source "@NETNS_LIB@"
if ! netns_usable; then
  echo "kvstash-bench-cluster: needs network namespaces (run as root with iproute2)" >&2; exit 1
fi
command -v etcd >/dev/null || { echo "kvstash-bench-cluster: needs etcd (etcd-server)" >&2; exit 1; }
trap netns_cleanup EXIT
log() { ((json)) || echo "$*" >&2; }

netns_setup e h1 h2 h3 c1 c2 c3 c4
netns_start_etcd

# The network's limit: one iperf3 stream from a client host to a daemon host.
iperf_gbps=null
if command -v iperf3 >/dev/null; then
  ip netns exec "${NETNS_TAG}h1" iperf3 -s -1 -B "$(netns_addr h1)" >/dev/null 2>&1 &
  NETNS_PIDS+=($!)
  for _ in $(seq 100); do
    netns_exec c1 iperf3 -c "$(netns_addr h1)" -t $((quick ? 1 : 3)) -J >"$NETNS_WORK/iperf.json" 2>/dev/null && break
    sleep 0.05  # the server may not listen yet
  done
  iperf_gbps=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' \
    "$NETNS_WORK/iperf.json" 2>/dev/null || echo null)
fi
log "network limit (iperf3, 1 stream c1 -> h1): ${iperf_gbps} Gb/s"

results=()
for k in 1 2 3; do
  cluster="bench$k"
  pids=()
  for i in $(seq "$k"); do
    netns_start_daemon "h$i" "$cluster" "$KVSTASHD" --dram-capacity 2GiB
    pids+=("$NETNS_LAST_PID")
  done
  cli() { netns_exec "$1" "$KVSTASH" --etcd "$NETNS_ETCD_URL" --cluster "$cluster" "${@:2}"; }
  for _ in $(seq 100); do
    n=$(cli c1 status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["reachable_members"])' || echo 0)
    [[ "$n" == "$k" ]] && break
    sleep 0.05  # polling the member set
  done
  [[ "$n" == "$k" ]] || { echo "kvstash-bench-cluster: $k daemons did not all join" >&2; exit 1; }
  bench_pids=()
  for c in $(seq "$clients"); do
    cli "c$c" bench --op both --block-size "$block_size" --count "$count" --threads "$threads" --batch 8 \
      --data-path ucx --ucx-transports tcp --json >"$NETNS_WORK/bench-$k-$c.json" &
    bench_pids+=($!)
  done
  for p in "${bench_pids[@]}"; do wait "$p" || { echo "kvstash-bench-cluster: a client failed (see its output)" >&2; exit 1; }; done
  results+=("$(python3 - "$k" "$NETNS_WORK" "$clients" <<'PY'
import json, sys
k, work, clients = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
docs = [json.load(open(f"{work}/bench-{k}-{c}.json")) for c in range(1, clients + 1)]
for d in docs:
    g = d["get"]
    assert g["errors"] == 0 and g["mismatches"] == 0 and g["misses"] == 0, g
print(json.dumps({"daemons": k, "clients": clients,
                  "get_gb_per_s": sum(d["get"]["gb_per_s"] for d in docs),
                  "get_ops_per_s": sum(d["get"]["ops_per_s"] for d in docs),
                  "put_gb_per_s": sum(d["put"]["gb_per_s"] for d in docs),
                  "get_p99_us": max(d["get"]["latency_us"]["rpc"]["p99"] for d in docs)}))
PY
)")
  for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  log "$k daemon(s): ${results[-1]}"
done

python3 - "$json" "$iperf_gbps" "$block_size" "$count" "$(nproc)" "$threads" "${results[@]}" <<'PY'
import json, sys
as_json, iperf, block, count, cores = sys.argv[1] == "1", sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
threads = int(sys.argv[6])
rows = [json.loads(r) for r in sys.argv[7:]]
base = rows[0]["get_gb_per_s"]
for r in rows:
    r["scaling_efficiency"] = r["get_gb_per_s"] / (r["daemons"] * base) if base > 0 else 0
doc = {"block_size": block, "blocks_per_client": count, "threads_per_client": threads, "cpu_cores": cores,
       "transport": "ucx tcp over veth",
       "iperf3_gbps": None if iperf == "null" else float(iperf), "results": rows}
if as_json:
    print(json.dumps(doc, indent=2))
    sys.exit(0)
print(f"kvstash-bench-cluster: 4 clients x {threads} threads, {block} blocks, {count} per client, UCX tcp between namespaced hosts, {cores} cores")
print(f"{'daemons':>7} {'get GB/s':>9} {'get ops/s':>10} {'put GB/s':>9} {'get p99 us':>11} {'efficiency':>10}")
for r in rows:
    print(f"{r['daemons']:>7} {r['get_gb_per_s']:>9.3f} {r['get_ops_per_s']:>10.0f} {r['put_gb_per_s']:>9.3f} "
          f"{r['get_p99_us']:>11.0f} {100 * r['scaling_efficiency']:>9.0f}%")
print(f"network limit (iperf3, one stream between two namespaced hosts): {iperf} Gb/s")
PY
