#!/usr/bin/env bash
# One command from a fresh clone to a running kvstash: installs what is missing, builds Release,
# starts a standalone daemon on free ports, runs the demo, the CLI and a /metrics scrape against it,
# then stops the daemon with SIGTERM and checks that it exits cleanly. Exits non-zero if any step
# fails; the daemon never outlives this script.
#
# Environment: KVSTASH_BUILD_DIR (default build/), plus what deploy/build.sh reads.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
build_dir=${KVSTASH_BUILD_DIR:-build}

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
./deploy/install-deps.sh

step "build (Release into $build_dir)"
./deploy/build.sh Release "$build_dir" kvstashd kvstash kvstash-demo kvstash-node

work=$(mktemp -d "${TMPDIR:-/tmp}/kvstash-quickstart.XXXXXX")
daemon_log="$work/kvstashd.log"
daemon_pid=""
drain_pid=""
node_pids=()

cleanup() {
  local rc=$?
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  for pid in "${node_pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$drain_pid" ]]; then
    kill "$drain_pid" 2>/dev/null || true
    wait "$drain_pid" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    echo "quickstart: FAILED (exit $rc)" >&2
    if [[ -s "$daemon_log" ]]; then
      echo "--- last lines of the daemon log ($daemon_log) ---" >&2
      tail -n 40 "$daemon_log" >&2
      return
    fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "start kvstashd (standalone, 512MiB DRAM, ports picked by the kernel)"
ready_fifo="$work/ready"
mkfifo "$ready_fifo"
# stdout carries exactly one line, the ready line; logs go to stderr.
"$build_dir/server/kvstashd" --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --dram-capacity 512MiB >"$ready_fifo" 2>"$daemon_log" &
daemon_pid=$!
exec 3<"$ready_fifo"

ready=""
if ! read -r -t 60 ready <&3; then
  echo "quickstart: kvstashd did not print its ready line within 60 s (or exited)" >&2
  exit 1
fi
# Keep reading stdout so that anything the daemon writes later can never block it on a full pipe.
cat <&3 >>"$daemon_log" &
drain_pid=$!
exec 3<&-

re='^kvstashd ready grpc=([^ ]+:[0-9]+) metrics=([^ ]+:[0-9]+)$'
if ! [[ "$ready" =~ $re ]]; then
  echo "quickstart: unexpected ready line: '$ready'" >&2
  exit 1
fi
grpc_addr=${BASH_REMATCH[1]}
metrics_addr=${BASH_REMATCH[2]}
echo "$ready  (pid $daemon_pid, log $daemon_log)"

step "demo: put, look up and fetch 300 prefix chains"
"$build_dir/examples/kvstash-demo" --addr "$grpc_addr" --chains 300

step "kvstash status"
"$build_dir/cli/kvstash" --addr "$grpc_addr" status

step "curl -s http://$metrics_addr/metrics | head"
metrics=$(curl -fsS "http://$metrics_addr/metrics")
head -n 10 <<<"$metrics"

step "serve a model: a tiny seeded Llama, two kvstash-node processes on this daemon"
cat >"$work/tiny.json" <<'JSON'
{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "intermediate_size": 128, "vocab_size": 97, "max_position_embeddings": 1024, "torch_dtype": "float32"}
JSON
"$build_dir/node/kvstash-node" make-model --config "$work/tiny.json" --seed 1 --out "$work/model"
# Starts a node and sets node_http / node_metrics from its ready line (its gRPC address is not used here).
start_node() {
  local name=$1 fifo="$work/$1.ready" line
  mkfifo "$fifo"
  "$build_dir/node/kvstash-node" serve --model "$work/model" --engine cpu --store "$grpc_addr" \
    --block-tokens 32 --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    >"$fifo" 2>"$work/$name.log" &
  node_pids+=($!)
  if ! read -r -t 60 line <"$fifo"; then
    echo "quickstart: kvstash-node $name did not print its ready line" >&2
    exit 1
  fi
  [[ "$line" =~ ^kvstash-node\ ready\ grpc=[^\ ]+\ http=([^ ]+)\ metrics=([^ ]+)$ ]] || { echo "bad ready line: $line" >&2; exit 1; }
  node_http=${BASH_REMATCH[1]}
  node_metrics=${BASH_REMATCH[2]}
  echo "$name: $line"
}
start_node a
a_http=$node_http a_metrics=$node_metrics
start_node b
b_http=$node_http
body="{\"prompt\": [$(seq -s, 3 102 | awk -F, '{for(i=1;i<=NF;i++) printf "%s%d", (i>1?",":""), $i % 97}')], \"max_tokens\": 8, \"temperature\": 0}"
usage() { /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); u=r["usage"]; k=u["kvstash"]; print("tokens", r["choices"][0]["token_ids"], "| prompt", u["prompt_tokens"], "cached", u["prompt_tokens_details"]["cached_tokens"], "(store", k["cached_tokens_store"], "local", k["cached_tokens_local"], ") computed", k["computed_tokens"])'; }
echo "node a: $(curl -fsS -H 'Content-Type: application/json' -d "$body" "http://$a_http/v1/completions" | usage)"
# Node a stores its blocks in the background: wait until its metrics show them stored.
for _ in $(seq 1 100); do
  stored=$(curl -fsS "http://$a_metrics/metrics" | awk '/^kvstash_node_kv_bytes_total\{direction="stored"\}/ {print $2}')
  [[ -n "$stored" && "$stored" != "0" ]] && break
  sleep 0.1
done
answer_b=$(curl -fsS -H 'Content-Type: application/json' -d "$body" "http://$b_http/v1/completions" | usage)
echo "node b: $answer_b"
[[ "$answer_b" == *"store 96"* ]] || { echo "quickstart: node b did not take the prefix from the store" >&2; exit 1; }
for pid in "${node_pids[@]}"; do kill -TERM "$pid"; wait "$pid"; done
node_pids=()

step "stop kvstashd (SIGTERM)"
kill -TERM "$daemon_pid"
if ! timeout 30 tail --pid="$daemon_pid" -f /dev/null; then
  echo "quickstart: kvstashd did not exit within 30 s of SIGTERM" >&2
  exit 1
fi
daemon_rc=0
wait "$daemon_pid" || daemon_rc=$?
daemon_pid=""
if ((daemon_rc != 0)); then
  echo "quickstart: kvstashd exited with status $daemon_rc after SIGTERM" >&2
  exit 1
fi
wait "$drain_pid" 2>/dev/null || true
drain_pid=""
echo "kvstashd stopped cleanly"

printf '\nquickstart: OK. Serve a model yourself: README.md, "Serve a model". Run a daemon with:\n'
printf '  %s/server/kvstashd --config deploy/kvstashd.toml\n' "$build_dir"
