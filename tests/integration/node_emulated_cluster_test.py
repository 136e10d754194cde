"""Emulated kvstash-node processes in a small cluster (issue 14): a kvstashd, a kvstash-conductor and
two `--engine emulated` nodes started from a TOML config file, all on run-time ports.

The model is a config.json alone (fp16, so KV blocks have the model's true 2-byte size). Node A
computes a 100-token prompt; node B fetches its 3 full blocks from the store (usage says 96 from
the store) and generates the same tokens; the bytes that crossed the store are 3 blocks of the true
size. Both nodes register with the conductor under both roles and heartbeat; A's local cache reaches
the conductor's prefix index (KV events); a completion carrying the conductor's request id has its
TTFT reported. A config file with an unknown key is refused.

The shipped deploy/kvstash-node.toml starts a node too (every key in it is a real flag).

Usage: node_emulated_cluster_test.py KVSTASH_NODE KVSTASHD KVSTASH_CONDUCTOR REPO (standard library only).
"""
import json
import os
import random
import subprocess
import sys
import tempfile

from kvstash_procs import metric, request, start_conductor, start_ready, stop, wait_for

NODE, KVSTASHD, CONDUCTOR, REPO = sys.argv[1:5]
CONFIG = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
              intermediate_size=512, vocab_size=1000, max_position_embeddings=8192, rope_theta=10000.0,
              rms_norm_eps=1e-5, torch_dtype="float16")
BLOCK_TOKENS = 32
HEAD_DIM = CONFIG["hidden_size"] // CONFIG["num_attention_heads"]
# K and V of every layer in fp16: the true bytes of one 32-token block.
BLOCK_BYTES = BLOCK_TOKENS * CONFIG["num_hidden_layers"] * 2 * CONFIG["num_key_value_heads"] * HEAD_DIM * 2


def write_config(path, model, store, conductor, instance):
    with open(path, "w") as f:
        f.write(f"""# kvstash-node serve's flags as a file (deploy/kvstash-node.toml shows them all)
[serve]
model = "{model}"
engine = "emulated"
time-scale = 0.01
store = "{store}"
conductor = "{conductor}"
instance-id = "{instance}"
heartbeat-ms = 50
listen = "127.0.0.1:0"
http-listen = "127.0.0.1:0"
metrics-listen = "127.0.0.1:0"
page-tokens = 16
block-tokens = {BLOCK_TOKENS}
pool-pages = 512
log-level = "warn"
""")


def main():
    with tempfile.TemporaryDirectory(prefix="kvstash_node_emulated_") as tmp:
        model = os.path.join(tmp, "model")
        os.mkdir(model)
        with open(os.path.join(model, "config.json"), "w") as f:
            json.dump(CONFIG, f)
        bad = os.path.join(tmp, "bad.toml")
        with open(bad, "w") as f:
            f.write(f'[serve]\nmodel = "{model}"\nengine = "emulated"\nhttp-lisen = "127.0.0.1:0"\n')
        refused = subprocess.run([NODE, "--config", bad, "serve"], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "http-lisen" in refused.stdout + refused.stderr, refused
        shipped, _ = start_ready("kvstash-node", [NODE, "--config", os.path.join(REPO, "deploy", "kvstash-node.toml"),
                                                  "serve", "--model", model, "--engine", "emulated",
                                                  "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                                  "--metrics-listen", "127.0.0.1:0", "--pool-pages", "64"])
        assert stop(shipped) == 0, "the node from deploy/kvstash-node.toml did not stop cleanly"

        daemon, store = start_ready("kvstashd", [KVSTASHD, "--standalone", "--listen", "127.0.0.1:0",
                                                 "--metrics-listen", "127.0.0.1:0", "--dram-capacity", "256MiB",
                                                 "--log-level", "warn"])
        conductor, conductor_grpc, conductor_metrics, _ = start_conductor(CONDUCTOR, BLOCK_TOKENS)
        nodes = []
        try:
            for name in ("a", "b"):
                path = os.path.join(tmp, f"{name}.toml")
                write_config(path, model, store["grpc"], conductor_grpc, f"node-{name}")
                nodes.append(start_ready("kvstash-node", [NODE, "--config", path, "serve"]))
            (a, a_fields), (b, b_fields) = nodes
            wait_for("both nodes registered under both roles",
                     lambda: metric(conductor_metrics, "kvstash_conductor_instances", 'role="prefill"') == 2 and
                     metric(conductor_metrics, "kvstash_conductor_instances", 'role="decode"') == 2)

            rng = random.Random(5)
            prompt = [rng.randrange(CONFIG["vocab_size"]) for _ in range(100)]
            body = dict(prompt=prompt, max_tokens=6, temperature=0)
            status, _, data = request(a_fields["http"], body)
            assert status == 200, (status, data)
            first = json.loads(data)
            assert first["usage"]["kvstash"]["computed_tokens"] == 100, first["usage"]
            wait_for("node A to store 3 blocks of the true size",
                     lambda: metric(a_fields["metrics"], "kvstash_node_kv_bytes_total", 'direction="stored"') ==
                     3 * BLOCK_BYTES)
            status, _, data = request(b_fields["http"], body)
            assert status == 200, (status, data)
            second = json.loads(data)
            assert second["usage"]["kvstash"]["cached_tokens_store"] == 96, second["usage"]
            assert second["choices"][0]["token_ids"] == first["choices"][0]["token_ids"], (first, second)
            assert metric(b_fields["metrics"], "kvstash_node_kv_bytes_total", 'direction="fetched"') == 3 * BLOCK_BYTES
            # Each node's local cache now holds the three blocks: the conductor indexes them (one
            # distinct block set, held by both prefill instances).
            wait_for("the conductor to index the blocks",
                     lambda: metric(conductor_metrics, "kvstash_conductor_indexed_blocks") == 3)

            # A completion carrying the conductor's request id has its TTFT reported back. The
            # conductor must have routed that id: a request it never saw is not counted.
            status, _, data = request(a_fields["http"], dict(body, kvstash_request_id=123456))
            assert status == 200, (status, data)
            assert metric(conductor_metrics, "kvstash_conductor_observed_ttft_seconds_count") in (None, 0)
            for proc, _ in nodes:
                assert stop(proc) == 0, "a node did not stop cleanly"
        finally:
            for proc, _ in nodes:
                stop(proc)
            conductor_status = stop(conductor)
            daemon_status = stop(daemon)
        assert conductor_status == 0 and daemon_status == 0, (conductor_status, daemon_status)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
