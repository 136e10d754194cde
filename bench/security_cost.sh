#!/usr/bin/env bash
# What TLS and tokens cost (issue 16's benchmark): `kvstash bench` against one standalone kvstashd per
# security mode, each started by this script on loopback with run-time ports, in alternating order
# over ROUNDS rounds (load drifts within a round). Modes:
#
#   plain        no TLS, no tokens (the peer every other row is compared with)
#   plain-2p     plain with --no-eager-requests: the two-phase two-sided path that tenants take with
#                tokens on (eager requests carry no token), without any security (the seal's peer)
#   tls          TLS on the gRPC port
#   tokens       tokens on a plaintext port (what tokens alone cost, without TLS)
#   mtls+tokens  mutual TLS and tokens: a tenant's write token (inline, or two-sided UCX whose reads
#                carry grants the daemon seals) and an admin's (which may use the one-sided UCX path)
#
# Loads: inline 4 KiB, 1 thread, batch 1 (the control plane: one RPC per block, rates and p50/p99);
# inline 4 KiB, 4 threads; inline 1 MiB, 4 threads (bytes through gRPC, so through TLS); UCX one-sided
# 1 MiB over shared memory, 4 threads, one block and 16 blocks an RPC (bytes do not go through TLS;
# the RPCs that locate, lease and commit them do); UCX two-sided over tcp, 64 KiB and 1 MiB, 4
# threads, as a tenant (with tokens: sealed read grants; without: the same path unauthenticated).
# LOADS (space-separated names) picks a subset.
# Prints a markdown table of medians; raw JSON stays in OUT_DIR.
#
#   bench/security_cost.sh BUILD_DIR OUT_DIR [ROUNDS (default 3)]
set -euo pipefail
build=$(readlink -f "$1")
out=$2
rounds=${3:-3}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
certs="$out/certs"
[[ -f $certs/ca.pem ]] || bash "$here/deploy/make-test-certs.sh" "$certs" >/dev/null
tenant_token=bench-tenant-token-$RANDOM$RANDOM
admin_token=bench-admin-token-$RANDOM$RANDOM
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
printf '%s  bench-tenant  write\n%s  ops  admin\n' "$(sha "$tenant_token")" "$(sha "$admin_token")" >"$out/tokens"
printf '%s\n' "$tenant_token" >"$out/tenant.token"
printf '%s\n' "$admin_token" >"$out/admin.token"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_daemon MODE: starts kvstashd in MODE, sets $daemon (pid) and $addr.
start_daemon() {
  local mode=$1 p
  p=$(port)
  local args=(--standalone --listen "127.0.0.1:$p" --metrics-listen 127.0.0.1:0 --dram-capacity 2GiB --log-level warn)
  case $mode in
    plain-2p) args+=(--no-eager-requests) ;;
    tls) args+=(--tls-cert "$certs/server.pem" --tls-key "$certs/server.key") ;;
    tokens) args+=(--tokens-file "$out/tokens") ;;
    mtls+tokens) args+=(--tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-client-ca "$certs/ca.pem"
                        --tokens-file "$out/tokens") ;;
  esac
  "$build/server/kvstashd" "${args[@]}" >"$out/kvstashd_$mode.log" 2>&1 &
  daemon=$!
  addr=127.0.0.1:$p
}

# client_flags MODE WHO: the CLI's flags for a client of MODE (WHO: tenant or admin).
client_flags() {
  case $1 in
    plain | plain-2p) ;;
    tls) echo "--tls-ca $certs/ca.pem" ;;
    tokens) echo "--token-file $out/$2.token" ;;
    mtls+tokens) echo "--tls-ca $certs/ca.pem --tls-cert $certs/client.pem --tls-key $certs/client.key --token-file $out/$2.token" ;;
  esac
}

loads=("inline4k1 tenant --data-path inline --block-size 4KiB --count 3000 --threads 1"
       "inline4k4 tenant --data-path inline --block-size 4KiB --count 6000 --threads 4"
       "inline1m4 tenant --data-path inline --block-size 1MiB --count 300 --threads 4"
       "shm1m4 admin --data-path ucx --ucx-transports posix,sysv,cma,self --block-size 1MiB --count 600 --threads 4"
       "shm1m4b16 admin --data-path ucx --ucx-transports posix,sysv,cma,self --block-size 1MiB --count 1600 --threads 4 --batch 16"
       "tcp64k4 tenant --data-path ucx --ucx-transports tcp --block-size 64KiB --count 3000 --threads 4"
       "tcp1m4 tenant --data-path ucx --ucx-transports tcp --block-size 1MiB --count 600 --threads 4")
if [[ -n ${LOADS:-} ]]; then
  picked=()
  for load in "${loads[@]}"; do [[ " $LOADS " == *" ${load%% *} "* ]] && picked+=("$load"); done
  loads=("${picked[@]}")
fi
modes=(plain plain-2p tls tokens mtls+tokens)
for round in $(seq "$rounds"); do
  order=("${modes[@]}")
  ((round % 2 == 0)) && order=(mtls+tokens tokens tls plain-2p plain)
  for mode in "${order[@]}"; do
    start_daemon "$mode"
    # shellcheck disable=SC2046
    for _ in $(seq 200); do
      "$build/cli/kvstash" --addr "$addr" $(client_flags "$mode" admin) status >/dev/null 2>&1 && break
      sleep 0.05  # polling for the daemon to answer
    done
    for load in "${loads[@]}"; do
      read -r name who rest <<<"$load"
      # shellcheck disable=SC2046,SC2086
      "$build/cli/kvstash" --addr "$addr" $(client_flags "$mode" "$who") bench --op both $rest --json \
        >"$out/${name}_${mode}_$round.json"
    done
    kill "$daemon"
    wait "$daemon" || true
    echo "security_cost: round $round, $mode done" >&2
  done
done

python3 - "$out" "$rounds" "${LOADS:-}" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
loads = [("inline4k1", "inline 4 KiB, 1 thread (control plane)"), ("inline4k4", "inline 4 KiB, 4 threads"),
         ("inline1m4", "inline 1 MiB, 4 threads"), ("shm1m4", "UCX one-sided shm 1 MiB, 4 threads (admin)"),
         ("shm1m4b16", "UCX one-sided shm 1 MiB, 4 threads, 16 blocks an RPC (admin)"),
         ("tcp64k4", "UCX two-sided tcp 64 KiB, 4 threads (tenant)"),
         ("tcp1m4", "UCX two-sided tcp 1 MiB, 4 threads (tenant)")]
if sys.argv[3]:
    loads = [l for l in loads if l[0] in sys.argv[3].split()]
modes = ["plain", "plain-2p", "tls", "tokens", "mtls+tokens"]
def med(load, mode, op, key):
    vals = []
    for r in rounds:
        d = json.load(open(f"{out}/{load}_{mode}_{r}.json"))[op]
        vals.append(d["latency_us"]["rpc"][key] if key in ("p50", "p99") else d[key])
    return statistics.median(vals)
print("| load | op | mode | ops/s | GB/s | p50 µs | p99 µs | ops/s vs plain | vs plain-2p |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for load, title in loads:
    for op in ("put", "get"):
        base = med(load, "plain", op, "ops_per_s")
        base2p = med(load, "plain-2p", op, "ops_per_s")
        for mode in modes:
            ops = med(load, mode, op, "ops_per_s")
            print(f"| {title} | {op} | {mode} | {ops:,.0f} | {med(load, mode, op, 'gb_per_s'):.2f} | "
                  f"{med(load, mode, op, 'p50'):,.0f} | {med(load, mode, op, 'p99'):,.0f} | {ops / base:.2f} | "
                  f"{ops / base2p:.2f} |")
PY
