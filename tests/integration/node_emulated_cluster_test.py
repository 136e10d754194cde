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
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

NODE, KVSTASHD, CONDUCTOR, REPO = sys.argv[1:5]
CONFIG = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
              intermediate_size=512, vocab_size=1000, max_position_embeddings=8192, rope_theta=10000.0,
              rms_norm_eps=1e-5, torch_dtype="float16")
BLOCK_TOKENS = 32
HEAD_DIM = CONFIG["hidden_size"] // CONFIG["num_attention_heads"]
# K and V of every layer in fp16: the true bytes of one 32-token block.
BLOCK_BYTES = BLOCK_TOKENS * CONFIG["num_hidden_layers"] * 2 * CONFIG["num_key_value_heads"] * HEAD_DIM * 2
DEADLINE_S = 30


def wait_for(what, condition, deadline_s=DEADLINE_S):
    give_up = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_ready(name, argv):
    """A child printing `<name> ready k=v ...` on stdout: (process, fields)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith(f"{name} ready "):
        stop(proc)
        raise AssertionError(f"{name} did not become ready: {line!r}")
    return proc, dict(f.split("=", 1) for f in line.split()[2:])


def start_conductor():
    """kvstash-conductor on run-time ports: (process, grpc address, metrics address)."""
    proc = subprocess.Popen([CONDUCTOR, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--block-tokens",
                             str(BLOCK_TOKENS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_line = proc.stderr.readline()
    listen_line = proc.stdout.readline()
    m = re.search(r"http://([^/]+)/metrics", metrics_line)
    p = re.search(r"listening on port (\d+)", listen_line)
    if not m or not p:
        stop(proc)
        raise AssertionError(f"kvstash-conductor did not start: {metrics_line!r} {listen_line!r}")
    return proc, f"127.0.0.1:{p.group(1)}", m.group(1)


def request(address, method, path, body=None):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metric(address, name, labels=""):
    status, data = request(address, "GET", "/metrics")
    assert status == 200, status
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, data.decode(), re.MULTILINE)
    return float(match.group(1)) if match else None


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
        conductor, conductor_grpc, conductor_metrics = start_conductor()
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
            status, data = request(a_fields["http"], "POST", "/v1/completions", body)
            assert status == 200, (status, data)
            first = json.loads(data)
            assert first["usage"]["kvstash"]["computed_tokens"] == 100, first["usage"]
            wait_for("node A to store 3 blocks of the true size",
                     lambda: metric(a_fields["metrics"], "kvstash_node_kv_bytes_total", 'direction="stored"') ==
                     3 * BLOCK_BYTES)
            status, data = request(b_fields["http"], "POST", "/v1/completions", body)
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
            status, data = request(a_fields["http"], "POST", "/v1/completions",
                                   dict(body, kvstash_request_id=123456))
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
