#!/usr/bin/env bash
# A local kvstash cluster in one command: etcd, two kvstashd, the conductor with its HTTP front door,
# PREFILL + DECODE emulated kvstash-node processes (a LLaMA-70B-class model whose steps take the
# cost model's time), then kvstash-replay of a window of a Mooncake-format trace through the front
# door, printed beside the simulator's prediction for the same window. Everything runs on 127.0.0.1
# with ports chosen at run time and is stopped at the end (or on Ctrl-C).
#
#   deploy/cluster-demo.sh [TRACE [WINDOW_SECONDS]]
#
# TRACE defaults to ../shared/traces/synthetic_trace.jsonl beside the checkout; WINDOW_SECONDS (of
# trace time) to 60. Environment knobs (defaults in brackets): PREFILL [2], DECODE [2], POLICY
# [global-cache-aware], ADMISSION [off], SPEED [1] (trace seconds per wall second), TIME_SCALE [1]
# (node step time x this; SPEED=1/TIME_SCALE keeps the run like for like), WINDOW_START [0] (trace
# seconds skipped before the window), KV_BYTES_SCALE [0.002]
# (the emulated KV's share of the model's true 320 KiB/token), MAX_OUTPUT [64] (cap on output
# tokens), STORE [on] (off: no prefix reuse: every prefill recomputes its prompt; the P/D handoff
# still goes through the store; the simulator is given no cache), POOL_PAGES [65536], KEEP [0] (1:
# leave the work directory), KVSTASH_BUILD_DIR [build]. Prometheus file_sd targets of every
# /metrics endpoint are written to WORK/prometheus-targets.json while the cluster runs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${KVSTASH_BUILD_DIR:-$repo/build}
[[ "$build" = /* ]] || build="$repo/$build"
trace=${1:-$repo/../shared/traces/synthetic_trace.jsonl}
window=${2:-60}
prefill=${PREFILL:-2} decode=${DECODE:-2} policy=${POLICY:-global-cache-aware} admission=${ADMISSION:-off}
speed=${SPEED:-1} time_scale=${TIME_SCALE:-1} kv_scale=${KV_BYTES_SCALE:-0.002} max_output=${MAX_OUTPUT:-64}
store_mode=${STORE:-on} pool_pages=${POOL_PAGES:-65536}
model=$repo/deploy/models/llama-70b-emulated

[[ -f "$trace" ]] || { echo "cluster-demo: no trace at $trace" >&2; exit 2; }
command -v etcd >/dev/null || { echo "cluster-demo: needs etcd (deploy/install-deps.sh installs etcd-server)" >&2; exit 2; }
for bin in server/kvstashd scheduler/kvstash-conductor node/kvstash-node replay/kvstash-replay; do
  if [[ ! -x "$build/$bin" ]]; then
    "$repo/deploy/build.sh" RelWithDebInfo "$build" kvstashd kvstash-conductor kvstash-node kvstash-replay
    break
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kvstash-demo.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ "${KEEP:-0}" == 1 ]] && echo "cluster-demo: logs kept in $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits (bounded) for a line matching $2 in file $1 and prints it.
wait_line() {
  for _ in $(seq 600); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1  # polling a child's output file for its ready line
  done
  echo "cluster-demo: timed out waiting for '$2' in $1" >&2
  cat "$1" "$1.err" 2>/dev/null | tail -5 >&2
  return 1
}
field() { grep -o "$2=[^ ]*" <<<"$1" | cut -d= -f2; }

client_port=$(free_port) peer_port=$(free_port)
etcd_url=http://127.0.0.1:$client_port
etcd --name demo --data-dir "$work/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "$etcd_url/health" 2>/dev/null | grep -q true && break
  sleep 0.1  # polling etcd's readiness probe
done

targets=()
for d in 1 2; do
  "$build/server/kvstashd" --etcd "$etcd_url" --cluster demo --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    --member-id "demo-$d" --dram-capacity 1GiB --log-level warn >"$work/kvstashd$d.out" 2>"$work/kvstashd$d.out.err" &
  pids+=($!)
  line=$(wait_line "$work/kvstashd$d.out" "ready")
  targets+=("$(field "$line" metrics)")
done

"$build/scheduler/kvstash-conductor" --listen 127.0.0.1:0 --metrics-port 0 --http 127.0.0.1:0 --policy "$policy" \
  --admission "$admission" --write-profile "$work/profile" --instance-timeout-s 10 \
  >"$work/conductor.out" 2>"$work/conductor.err" &
pids+=($!)
conductor_grpc=127.0.0.1:$(wait_line "$work/conductor.out" "listening on port" | grep -o "port [0-9]*" | cut -d' ' -f2)
conductor_metrics=$(wait_line "$work/conductor.err" "metrics on" | grep -o "http://[^/]*" | sed 's#http://##')
front_door=$(wait_line "$work/conductor.err" "front door on" | grep -o "http://[^/]*" | sed 's#http://##')
targets+=("$conductor_metrics")

store_args=(--etcd "$etcd_url" --cluster demo)
sim_cache_blocks=$((pool_pages / 32))
if [[ "$store_mode" == off ]]; then
  store_args+=(--no-prefix-reuse)
  sim_cache_blocks=0
fi
n=0
for role in $(printf 'prefill %.0s' $(seq "$prefill")) $(printf 'decode %.0s' $(seq "$decode")); do
  n=$((n + 1))
  "$build/node/kvstash-node" serve --model "$model" --engine emulated --time-scale "$time_scale" \
    --kv-bytes-scale "$kv_scale" --profile "$work/profile" "${store_args[@]}" --conductor "$conductor_grpc" \
    --role "$role" --instance-id "$role-$n" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --pool-pages "$pool_pages" --log-level warn \
    >"$work/node$n.out" 2>"$work/node$n.out.err" &
  pids+=($!)
  line=$(wait_line "$work/node$n.out" "ready")
  targets+=("$(field "$line" metrics)")
done
printf '[{"targets": [%s], "labels": {"job": "kvstash-demo"}}]\n' \
  "$(printf '"%s",' "${targets[@]}" | sed 's/,$//')" >"$work/prometheus-targets.json"
for _ in $(seq 300); do
  live=$(curl -sf "http://$conductor_metrics/metrics" | grep -c '^kvstash_conductor_live_instances{role="\(prefill\|decode\)"} [1-9]' || true)
  [[ "$live" == 2 ]] && break
  sleep 0.1  # polling the conductor until every role has live instances
done

echo "cluster-demo: etcd, 2 kvstashd, conductor (front door http://$front_door), $prefill prefill + $decode decode" \
  "emulated nodes (store $store_mode); replaying ${window}s of $trace" >&2
"$build/replay/kvstash-replay" --front-door "$front_door" --trace "$trace" --window-s "$window" --speed "$speed" \
  --time-scale "$time_scale" --policy "$policy" --admission "$admission" --prefill "$prefill" --decode "$decode" \
  --local-cache-blocks "$sim_cache_blocks" --profile "$work/profile" --max-output-tokens "$max_output" \
  --vocab 32000 --window-start-s "${WINDOW_START:-0}"
