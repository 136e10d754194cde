"""Layer-wise P/D handoff under failure (issue 15): a kvstashd, the conductor's front door and emulated
kvstash-node processes (70B-shaped, one GPU's modelled time, KV bytes scaled down), on run-time ports.

* Two prefill nodes and two decode nodes: a 3000-token request streams its KV layer group by layer
  group; the decode node takes all of it from the slices (computes nothing) and the client gets the
  tokens a lone node gives.
* The decode node streaming a request is killed with SIGKILL after a few tokens: the stream ends with
  an error event (the tokens before it are the lone node's first ones), and the next request is served
  by the other decode node.
* The prefill node that is sending a request's slices is killed with SIGKILL once the decode node has
  loaded some of them: nothing was streamed yet, so the front door runs the request again on the other
  prefill node and the client gets the same tokens.
* The last prefill node killed the same way: the request fails with an error (never other tokens), and
  the decode node's waiting request is cancelled (its running sequences return to 0).

Usage: pd_handoff_test.py KVSTASH_NODE KVSTASHD KVSTASH_CONDUCTOR (standard library only).
"""
import http.client
import json
import os
import random
import signal
import sys
import tempfile
import threading

from kvstash_procs import metric, request, start_conductor, start_ready, stop, wait_for

NODE, KVSTASHD, CONDUCTOR = sys.argv[1:4]
CONFIG = dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
              intermediate_size=28672, vocab_size=32000, max_position_embeddings=16384, rope_theta=500000.0,
              rms_norm_eps=1e-5, torch_dtype="bfloat16")
BLOCK_TOKENS = 512
PROMPT_TOKENS = 3000


def start_node(model, *extra):
    return start_ready("kvstash-node", [NODE, "serve", "--model", model, "--engine", "emulated", "--gpus", "1",
                                        "--kv-bytes-scale", "0.001", "--max-batch-tokens", "512",
                                        "--block-tokens", str(BLOCK_TOKENS), "--pool-pages", "1024",
                                        "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                        "--metrics-listen", "127.0.0.1:0", "--heartbeat-ms", "50",
                                        "--handoff-timeout-ms", "20000", "--log-level", "error", *extra])


def sent(node_metrics):
    return metric(node_metrics, "kvstash_node_handoff_slices_total", 'direction="sent"') or 0


def main():
    rng = random.Random(5)
    prompts = [[rng.randrange(CONFIG["vocab_size"]) for _ in range(PROMPT_TOKENS)] for _ in range(5)]
    with tempfile.TemporaryDirectory(prefix="kvstash_pd_handoff_") as tmp:
        model = os.path.join(tmp, "model")
        os.mkdir(model)
        with open(os.path.join(model, "config.json"), "w") as f:
            json.dump(CONFIG, f)
        procs = []
        try:
            lone, lone_at = start_node(model)
            procs.append(lone)
            expected = []
            for i, p in enumerate(prompts):
                status, _, data = request(lone_at["http"], dict(prompt=p, max_tokens=40 if i == 3 else 6,
                                                                temperature=0))
                assert status == 200, (status, data)
                expected.append(json.loads(data)["choices"][0]["token_ids"])
            stop(lone)
            procs.remove(lone)

            daemon, store = start_ready("kvstashd", [KVSTASHD, "--standalone", "--listen", "127.0.0.1:0",
                                                     "--metrics-listen", "127.0.0.1:0", "--dram-capacity", "256MiB",
                                                     "--log-level", "warn"])
            procs.append(daemon)
            conductor, grpc_at, metrics_at, front = start_conductor(CONDUCTOR, BLOCK_TOKENS, "--instance-timeout-s", "2")
            procs.append(conductor)
            prefills = {}
            for name in ("p1", "p2"):
                proc, at = start_node(model, "--store", store["grpc"], "--conductor", grpc_at, "--role", "prefill",
                                      "--instance-id", name)
                procs.append(proc)
                prefills[name] = (proc, at["metrics"])
            decodes = {}
            for name in ("d1", "d2"):
                proc, at = start_node(model, "--store", store["grpc"], "--conductor", grpc_at, "--role", "decode",
                                      "--instance-id", name)
                procs.append(proc)
                decodes[name] = (proc, at["metrics"])
            wait_for("P and D registered",
                     lambda: metric(metrics_at, "kvstash_conductor_live_instances", 'role="prefill"') == 2 and
                     metric(metrics_at, "kvstash_conductor_live_instances", 'role="decode"') == 2)

            status, _, data = request(front, dict(prompt=prompts[0], max_tokens=6, temperature=0))
            assert status == 200, (status, data)
            reply = json.loads(data)
            kv = reply["usage"]["kvstash"]
            assert reply["choices"][0]["token_ids"] == expected[0], (reply, expected[0])
            assert kv["handoff"] == "layerwise" and kv["decode"]["cached_tokens_store"] == PROMPT_TOKENS, kv
            assert kv["decode"]["computed_tokens"] == 0 and kv["decode_ready_ms"] > 0, kv
            print(f"layer-wise handoff: the lone node's tokens; prefill {kv['prefill_ms']:.0f} ms, decode ready "
                  f"{kv['decode_ready_ms']:.0f} ms after the Prefill call", flush=True)

            # The decode node streaming a request killed after a few tokens.
            host, port = front.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/v1/completions", body=json.dumps(dict(prompt=prompts[3], max_tokens=40,
                                                                         temperature=0, stream=True)).encode(),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            streamed, events, killed = [], [], None
            while True:
                line = resp.readline().decode()
                if not line:
                    break
                if not line.startswith("data: "):
                    continue
                payload = line[len("data: "):].strip()
                if payload == "[DONE]":
                    break
                event = json.loads(payload)
                events.append(event)
                if "choices" in event:
                    streamed += event["choices"][0]["token_ids"]
                if len(streamed) >= 3 and killed is None:
                    killed = next(name for name, (_, m) in decodes.items()
                                  if metric(m, "kvstash_node_running_sequences") == 1)
                    assert stop(decodes[killed][0], signal.SIGKILL) is not None
            conn.close()
            assert killed is not None and "error" in events[-1], events[-2:]
            assert 3 <= len(streamed) < 40 and streamed == expected[3][:len(streamed)], (streamed, expected[3])
            survivor = next(name for name in decodes if name != killed)
            del decodes[killed]
            status, _, data = request(front, dict(prompt=prompts[4], max_tokens=6, temperature=0))
            assert status == 200, (status, data)
            reply = json.loads(data)
            assert reply["choices"][0]["token_ids"] == expected[4], (reply, expected[4])
            assert reply["usage"]["kvstash"]["decode_instance"] == survivor, reply["usage"]
            print(f"decode node {killed} killed after {len(streamed)} streamed tokens: the stream ended with an "
                  f"error; the next request went to {survivor}", flush=True)
            decode_metrics = decodes[survivor][1]

            def kill_the_sender_midway(prompt):
                """Sends `prompt`; SIGKILLs whichever prefill node is sending its slices once the decode
                node has loaded some. Returns (the HTTP reply, the killed node's name)."""
                base = {name: sent(m) for name, (_, m) in prefills.items()}
                received = metric(decode_metrics, "kvstash_node_handoff_slices_total", 'direction="received"')
                result = {}
                worker = threading.Thread(target=lambda: result.update(
                    reply=request(front, dict(prompt=prompt, max_tokens=6, temperature=0))))
                worker.start()
                sender = {}

                def some_slices_loaded():
                    for name, (_, m) in prefills.items():
                        if sent(m) >= base[name] + 4:
                            sender["name"] = name
                    loaded = metric(decode_metrics, "kvstash_node_handoff_slices_total", 'direction="received"')
                    return "name" in sender and loaded >= received + 2
                wait_for("a prefill node sending slices the decode node loads", some_slices_loaded)
                assert stop(prefills[sender["name"]][0], signal.SIGKILL) is not None
                del prefills[sender["name"]]
                worker.join(timeout=120)
                assert not worker.is_alive(), "the request did not end after its prefill node was killed"
                return result["reply"], sender["name"]

            (status, _, data), killed = kill_the_sender_midway(prompts[1])
            assert status == 200, (status, data)
            reply = json.loads(data)
            assert reply["choices"][0]["token_ids"] == expected[1], (reply, expected[1])
            assert reply["usage"]["kvstash"]["prefill_instance"] != killed, reply["usage"]
            print(f"prefill node {killed} killed mid-handoff: the request ran again on the other, same tokens",
                  flush=True)

            (status, _, data), killed = kill_the_sender_midway(prompts[2])
            if status == 200:  # only if the kill landed after the prefill's last slice
                assert json.loads(data)["choices"][0]["token_ids"] == expected[2], data
            else:
                assert status in (502, 503, 504) and "error" in json.loads(data), (status, data)
            wait_for("the decode node's waiting request to end",
                     lambda: metric(decode_metrics, "kvstash_node_running_sequences") == 0)
            print(f"the last prefill node killed mid-handoff: HTTP {status}, never other tokens; the decode node "
                  "dropped the request", flush=True)
        finally:
            for proc in reversed(procs):
                stop(proc)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
