"""`kvstash-node serve` end to end with a real HTTP client (issue 14): a kvstashd, two nodes on it.

The same 100-token prompt goes to node A and then to node B (blocks of 32 tokens): A computes all
100 prompt tokens, B fetches the 3 full blocks A stored (96 tokens) and computes 4, and both
generate the same tokens. A streamed completion gives the same tokens, one per event, and ends
with [DONE]; bad requests get 400 and change nothing; /metrics passes promtool and shows where the
prompt tokens came from; a node whose store is down at start computes; SIGTERM drains a stream in
flight and exits 0.

Usage: node_serve_test.py KVSTASH_NODE KVSTASHD PROMTOOL (Python's standard library only).
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from kvstash_procs import wait_for

NODE, KVSTASHD, PROMTOOL = sys.argv[1:4]
CONFIG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=128, vocab_size=97, max_position_embeddings=1024, rope_theta=10000.0,
              rms_norm_eps=1e-5, torch_dtype="float32")
BLOCK_TOKENS = 32
# K and V of every layer, fp32: the bytes of one store block.
HEAD_DIM = CONFIG["hidden_size"] // CONFIG["num_attention_heads"]
BLOCK_BYTES = BLOCK_TOKENS * CONFIG["num_hidden_layers"] * 2 * CONFIG["num_key_value_heads"] * HEAD_DIM * 4


class Process:
    """A child that prints one ready line `<name> ready k=v ...`; stops on SIGTERM."""

    def __init__(self, name, argv):
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith(f"{name} ready "):
            self.stop()
            raise AssertionError(f"{name} did not become ready: {line!r}")
        self.fields = dict(f.split("=", 1) for f in line.split()[2:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_node(model, store, *extra):
    argv = [NODE, "serve", "--model", model, "--engine", "cpu", "--threads", "1",
            "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
            "--page-tokens", "16",
            "--pool-pages", "256", "--block-tokens", str(BLOCK_TOKENS), "--max-batch-tokens", "2048",
            "--log-level", "warn", *extra]
    if store:
        argv += ["--store", store]
    return Process("kvstash-node", argv)


def connect(address):
    host, port = address.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def request(address, method, path, body=None):
    """(status, headers, body bytes); `body` is sent as is when bytes, as JSON otherwise."""
    conn = connect(address)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def complete(node, body):
    status, ctype, data = request(node.fields["http"], "POST", "/v1/completions", body)
    assert status == 200, (status, data)
    assert ctype.startswith("application/json"), ctype
    return json.loads(data)


def stream(node, body, on_first_event=None):
    """The events of a streamed completion, in order: dicts, then the string "[DONE]"."""
    conn = connect(node.fields["http"])
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read())
        assert resp.getheader("Content-Type").startswith("text/event-stream"), resp.getheader("Content-Type")
        events = []
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if not line:
                continue
            assert line.startswith("data: "), line
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
            if len(events) == 1 and on_first_event:
                on_first_event()
        return events
    finally:
        conn.close()


def metrics(address):
    status, _, data = request(address, "GET", "/metrics")
    assert status == 200, status
    return data.decode()


def metric(text, name, labels=""):
    """The value of one sample, e.g. metric(t, "kvstash_node_prompt_tokens_total", 'source="store"')."""
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def node_metric(node, name, labels=""):
    return metric(metrics(node.fields["metrics"]), name, labels)


def prompt_sources(node):
    text = metrics(node.fields["metrics"])
    return {s: metric(text, "kvstash_node_prompt_tokens_total", f'source="{s}"')
            for s in ("local", "store", "computed")}


def usage_split(reply):
    k = reply["usage"]["kvstash"]
    return k["cached_tokens_local"], k["cached_tokens_store"], k["computed_tokens"]


def check_prefix_through_store(a, b, prompt):
    body = dict(prompt=prompt, max_tokens=8, temperature=0)
    first = complete(a, body)
    assert first["object"] == "text_completion" and first["id"].startswith("cmpl-"), first
    choice = first["choices"][0]
    assert choice["text"] == "" and choice["finish_reason"] == "length" and len(choice["token_ids"]) == 8, first
    assert first["usage"]["prompt_tokens"] == 100 and first["usage"]["completion_tokens"] == 8, first
    assert first["usage"]["total_tokens"] == 108, first
    assert usage_split(first) == (0, 0, 100), first["usage"]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, first["usage"]
    assert first["usage"]["kvstash"]["ttft_ms"] > 0, first["usage"]
    # B can see A's blocks once A's background puts are committed.
    wait_for("node A to store 3 blocks",
             lambda: (node_metric(a, "kvstash_node_kv_bytes_total", 'direction="stored"') or 0) >= 3 * BLOCK_BYTES)
    second = complete(b, body)
    assert usage_split(second) == (0, 96, 4), second["usage"]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 96, second["usage"]
    assert second["choices"][0]["token_ids"] == choice["token_ids"], (second, first)
    assert node_metric(b, "kvstash_node_kv_bytes_total", 'direction="fetched"') == 3 * BLOCK_BYTES
    # Seeded sampling is reproducible across nodes too.
    sampled = dict(prompt=prompt, max_tokens=12, temperature=0.8, top_p=0.9, seed=5)
    assert complete(a, sampled)["choices"][0]["token_ids"] == complete(b, sampled)["choices"][0]["token_ids"]
    print("prefix through the store: A computed 100, B fetched 96 and computed 4, same tokens", flush=True)
    return choice["token_ids"]


def check_stream(a, prompt, expected):
    events = stream(a, dict(prompt=prompt, max_tokens=8, temperature=0))
    assert events[-1] == "[DONE]", events[-1]
    chunks, last = events[:-2], events[-2]
    assert all(len(c["choices"][0]["token_ids"]) == 1 and c["choices"][0]["finish_reason"] is None for c in chunks)
    assert len({c["id"] for c in events[:-1]}) == 1, "one id for the whole stream"
    tokens = [t for c in events[:-1] for t in c["choices"][0]["token_ids"]]
    assert tokens == expected, (tokens, expected)
    assert last["choices"][0]["finish_reason"] == "length", last
    assert last["usage"]["completion_tokens"] == 8 and usage_split(last) == (96, 0, 4), last["usage"]
    # stop_token_ids (kvstash's EOS ids) end the sequence at the first one generated, included.
    stop = expected[2]
    stopped = complete(a, dict(prompt=prompt, max_tokens=8, temperature=0, stop_token_ids=[stop]))
    cut = expected[:expected.index(stop) + 1]
    assert stopped["choices"][0]["token_ids"] == cut and stopped["choices"][0]["finish_reason"] == "stop", stopped
    events = stream(a, dict(prompt=prompt, max_tokens=8, temperature=0, stop_token_ids=[stop]))
    assert [t for c in events[:-1] for t in c["choices"][0]["token_ids"]] == cut
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-1] == "[DONE]"
    print(f"stream: {len(chunks)} token events, same tokens, [DONE]; stop_token_ids honoured", flush=True)


def check_bad_requests(a, prompt, expected):
    before = metrics(a.fields["metrics"])
    too_long = [1] * 1020
    bad = {
        "not json": b"{bad",
        "not an object": [1, 2, 3],
        "no prompt": dict(max_tokens=4),
        "text prompt": dict(prompt="hello world"),
        "nested prompt": dict(prompt=[[1, 2], [3]]),
        "negative id": dict(prompt=[1, -2, 3]),
        "float id": dict(prompt=[1, 2.5]),
        "id >= vocab": dict(prompt=[1, 2, 97]),
        "empty prompt": dict(prompt=[]),
        "longer than the context": dict(prompt=too_long, max_tokens=16),
        "max_tokens 0": dict(prompt=prompt, max_tokens=0),
        "max_tokens as text": dict(prompt=prompt, max_tokens="8"),
        "negative temperature": dict(prompt=prompt, temperature=-1),
        "top_p 0": dict(prompt=prompt, top_p=0),
        "temperature as text": dict(prompt=prompt, temperature="hot"),
        "stop id >= vocab": dict(prompt=prompt, stop_token_ids=[200]),
        "stop ids not a list": dict(prompt=prompt, stop_token_ids=3),
        "stream not a bool": dict(prompt=prompt, stream="yes"),
        "n 2": dict(prompt=prompt, n=2),
        "negative seed": dict(prompt=prompt, seed=-1),
    }
    for why, body in bad.items():
        status, ctype, data = request(a.fields["http"], "POST", "/v1/completions", body)
        assert status == 400, (why, status, data)
        assert ctype.startswith("application/json"), (why, ctype)
        error = json.loads(data)["error"]
        assert error["type"] == "invalid_request_error" and error["message"], (why, error)
        if why == "text prompt":
            assert "token ids" in error["message"], error
    after = metrics(a.fields["metrics"])
    for labels in ('source="local"', 'source="store"', 'source="computed"'):
        assert metric(before, "kvstash_node_prompt_tokens_total", labels) == \
            metric(after, "kvstash_node_prompt_tokens_total", labels), labels
    assert metric(before, "kvstash_node_requests_total", 'result="ok"') == \
        metric(after, "kvstash_node_requests_total", 'result="ok"')
    refused = (metric(after, "kvstash_node_requests_total", 'result="invalid_argument"') or 0) - \
        (metric(before, "kvstash_node_requests_total", 'result="invalid_argument"') or 0)
    assert refused == len(bad), refused
    again = complete(a, dict(prompt=prompt, max_tokens=8, temperature=0))
    assert again["choices"][0]["token_ids"] == expected and usage_split(again) == (96, 0, 4), again
    status, _, data = request(a.fields["http"], "GET", "/v1/nothing")
    assert status == 404 and json.loads(data)["error"]["message"], (status, data)
    print(f"bad requests: {len(bad)} answered 400, nothing changed", flush=True)


def check_endpoints_and_metrics(a, b):
    status, _, data = request(a.fields["http"], "GET", "/healthz")
    assert status == 200 and data == b"ok\n", (status, data)
    status, _, data = request(a.fields["http"], "GET", "/v1/models")
    models = json.loads(data)
    assert status == 200 and models["object"] == "list" and models["data"][0]["id"] == "model", models
    for node in (a, b):
        text = metrics(node.fields["metrics"])
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, (check.stdout, check.stderr, text)
        for family in ("kvstash_node_ttft_seconds_bucket", "kvstash_node_tbt_seconds_bucket",
                       "kvstash_node_running_sequences", "kvstash_node_waiting_sequences",
                       "kvstash_node_pool_pages_used"):
            assert family in text, family
    sources_b = prompt_sources(b)
    assert sources_b["store"] == 96 and sources_b["computed"] == 8, sources_b  # then the sampled one: local
    sources_a = prompt_sources(a)
    assert sources_a["computed"] >= 100 and sources_a["local"] >= 96 and sources_a["store"] == 0, sources_a
    print(f"metrics: promtool accepts both; prompt tokens A {sources_a}, B {sources_b}", flush=True)


def check_concurrent_and_leaving_clients(b):
    """Requests served at once (streamed and not) get their tokens alone; a client that leaves
    mid-stream costs nothing else."""
    rng = random.Random(23)
    prompts = [[rng.randrange(CONFIG["vocab_size"]) for _ in range(40 + 7 * i)] for i in range(4)]
    alone = [complete(b, dict(prompt=p, max_tokens=10, temperature=0))["choices"][0]["token_ids"] for p in prompts]
    together = [None] * len(prompts)

    def run(i):
        body = dict(prompt=prompts[i], max_tokens=10, temperature=0)
        if i % 2:
            together[i] = [t for c in stream(b, body)[:-1] for t in c["choices"][0]["token_ids"]]
        else:
            together[i] = complete(b, body)["choices"][0]["token_ids"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == alone, (together, alone)
    # A client that reads one event of a long stream and hangs up.
    conn = connect(b.fields["http"])
    conn.request("POST", "/v1/completions", body=json.dumps(dict(prompt=prompts[0], max_tokens=500, stream=True)),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.readline().startswith(b"data: "), resp.status
    conn.close()
    assert complete(b, dict(prompt=prompts[1], max_tokens=10, temperature=0))["choices"][0]["token_ids"] == alone[1]
    wait_for("node B to finish the abandoned stream",
             lambda: node_metric(b, "kvstash_node_running_sequences") == 0)
    print("concurrent requests: same tokens as alone; a client leaving mid-stream harms nothing", flush=True)


def check_store_down(model, prompt, expected):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    c = start_node(model, dead)
    late = None
    try:
        reply = complete(c, dict(prompt=prompt, max_tokens=8, temperature=0))
        assert reply["choices"][0]["token_ids"] == expected and usage_split(reply) == (0, 0, 100), reply
        # The store comes up on that address later: the node finds it and stores new prompts' blocks.
        late = Process("kvstashd", [KVSTASHD, "--standalone", "--listen", dead, "--metrics-listen", "127.0.0.1:0",
                                    "--dram-capacity", "64MiB", "--log-level", "warn"])
        rng = random.Random(99)

        def stores_a_fresh_prompt():
            fresh = [rng.randrange(CONFIG["vocab_size"]) for _ in range(40)]
            complete(c, dict(prompt=fresh, max_tokens=1, temperature=0))
            return (node_metric(c, "kvstash_node_kv_bytes_total", 'direction="stored"') or 0) > 0

        wait_for("the node to attach the store that came up late", stores_a_fresh_prompt)
    finally:
        assert c.stop() == 0
        if late:
            assert late.stop() == 0
    print("a store down at start: the node computes, same tokens; it attaches the store once it is up", flush=True)


def check_sigterm_drains(a, prompt):
    """SIGTERM while a long stream is in flight: the stream ends normally, then A exits 0."""
    events = stream(a, dict(prompt=prompt, max_tokens=900, temperature=0),
                    on_first_event=lambda: a.proc.send_signal(signal.SIGTERM))
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 900, events[-2:]
    assert sum(len(c["choices"][0]["token_ids"]) for c in events[:-1]) == 900
    assert a.proc.wait(timeout=60) == 0, a.proc.returncode
    print("SIGTERM: the stream in flight finished, exit 0", flush=True)


def main():
    with tempfile.TemporaryDirectory(prefix="kvstash_node_serve_") as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            json.dump(CONFIG, f)
        model = os.path.join(tmp, "model")
        subprocess.run([NODE, "make-model", "--config", config, "--seed", "7", "--out", model], check=True,
                       stdout=subprocess.DEVNULL)
        rng = random.Random(17)
        prompt = [rng.randrange(CONFIG["vocab_size"]) for _ in range(100)]
        daemon = Process("kvstashd", [KVSTASHD, "--standalone", "--listen", "127.0.0.1:0", "--metrics-listen",
                                      "127.0.0.1:0", "--dram-capacity", "256MiB", "--log-level", "warn"])
        nodes = []
        try:
            nodes.append(start_node(model, daemon.fields["grpc"]))
            nodes.append(start_node(model, daemon.fields["grpc"]))
            a, b = nodes
            expected = check_prefix_through_store(a, b, prompt)
            check_stream(a, prompt, expected)
            check_bad_requests(a, prompt, expected)
            check_endpoints_and_metrics(a, b)
            check_concurrent_and_leaving_clients(b)
            check_store_down(model, prompt, expected)
            check_sigterm_drains(a, prompt)
            assert b.stop() == 0, "node B did not stop cleanly"
        finally:
            for node in nodes:
                node.stop()
            daemon_status = daemon.stop()
        assert daemon_status == 0, f"kvstashd exited with {daemon_status}"
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
