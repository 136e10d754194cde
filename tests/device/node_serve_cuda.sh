#!/bin/bash
# Two `kvstash-node serve --engine cuda` processes on one kvstashd (device smoke test): the same
# greedy completion sent to each; the second must report the prompt's full blocks as cached tokens
# from the store and return the same tokens. Usage: node_serve_cuda.sh CARRY_DIR WORK_DIR
set -u
D=$1 W=$2
cat > $W/serve.json <<'JSON'
{"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 1536,
 "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}
JSON
$D/bin/kvstash-node make-model --config $W/serve.json --seed 5 --out $W/serve > /dev/null || exit 1
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM $p 2>/dev/null; done; wait; }
trap cleanup EXIT
mkfifo $W/daemon.ready
$D/bin/kvstashd --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --dram-capacity 1GiB \
  > $W/daemon.ready 2> $W/daemon.log &
pids+=($!)
read -r -t 60 line < $W/daemon.ready || { echo "kvstashd: no ready line"; cat $W/daemon.log | tail; exit 1; }
[[ "$line" =~ grpc=([^ ]+) ]] && store=${BASH_REMATCH[1]}
start_node() {
  mkfifo $W/$1.ready
  $D/bin/kvstash-node serve --model $W/serve --engine cuda --cuda-device 0 --store $store --block-tokens 64 \
    --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 > $W/$1.ready 2> $W/$1.log &
  pids+=($!)
  read -r -t 90 line < $W/$1.ready || { echo "node $1: no ready line"; tail $W/$1.log; exit 1; }
  echo "node $1: $line"
  [[ "$line" =~ http=([^ ]+)\ metrics=([^ ]+) ]] && eval "$1_http=${BASH_REMATCH[1]} $1_metrics=${BASH_REMATCH[2]}"
}
start_node a
start_node b
python3 - "$a_http" "$b_http" "$a_metrics" <<'PY'
import json, sys, time, urllib.request
def complete(addr):
    body = json.dumps({"prompt": [(7 * i + 3) % 1000 for i in range(300)], "max_tokens": 16, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://{addr}/v1/completions", body, {"Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req, timeout=60))
    return r["choices"][0]["token_ids"], r["usage"]
ta, ua = complete(sys.argv[1])
print("node a:", ta, "usage", json.dumps(ua["kvstash"]))
for _ in range(200):  # node a puts its blocks in the background: wait until its metrics count them
    m = urllib.request.urlopen(f"http://{sys.argv[3]}/metrics", timeout=10).read().decode()
    if any(l.startswith('kvstash_node_kv_bytes_total{direction="stored"}') and float(l.split()[-1]) > 0
           for l in m.splitlines()): break
    time.sleep(0.05)
tb, ub = complete(sys.argv[2])
print("node b:", tb, "usage", json.dumps(ub["kvstash"]))
ok = tb == ta and ub["kvstash"]["cached_tokens_store"] == 256
print("serve check:", "PASS (same tokens, 256 of 300 prompt tokens from the store)" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
