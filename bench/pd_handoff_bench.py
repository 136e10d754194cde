"""Layer-wise vs after-prefill P/D handoff (issue 15), on this machine: a kvstashd, the conductor's front
door and one prefill + one decode emulated kvstash-node (deploy/models/llama-70b-emulated: 80 layers,
modelled on --gpus H100s), all on run-time ports. Fresh random prompts (no prefix reuse), one request
at a time.

For each handoff mode and prompt length it reports, from the front door's usage:
  prefill  = the prefill node's own TTFT (its last layer and the first token), from the Prefill call;
  ready    = when the decode node had all the KV and sent its first token event, from the same call;
  gap      = ready - prefill, and gap / prefill (the target: at most 10% for prompts of 8k and more).
and the KV bytes per second the prefill produced beside the store's put+get throughput for the same
bytes measured in the same run (what a handoff through the store can move on this machine).

With --engine cuda (on the device: --bin-dir holding kvstashd, kvstash-node, kvstash-conductor and
kvstash; --model a checkpoint) both nodes share the GPU, and the first request of each length is also
run on a lone node: the P/D tokens must equal its tokens.

Usage: pd_handoff_bench.py BUILD_DIR [--prompts 8192,16384,32768] [--reps 3] [--kv-bytes-scale 0.125]
                           [--gpus 8] [--layer-group 0] [--engine emulated|cuda --model DIR --bin-dir DIR]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from kvstash_procs import metric, request, start_conductor, start_ready, stop, wait_for  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(REPO, "deploy", "models", "llama-70b-emulated")
BLOCK_TOKENS = 512


def moved_bytes(mode, nodes):
    """KV bytes that crossed the store so far: the slices the decode node loaded (layer-wise) or the
    blocks it fetched (after the prefill)."""
    if mode == "layerwise":
        return metric(nodes["decode"]["metrics"], "kvstash_node_handoff_bytes_total", 'direction="received"') or 0
    return metric(nodes["decode"]["metrics"], "kvstash_node_kv_bytes_total", 'direction="fetched"') or 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--prompts", default="8192,16384,32768")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kv-bytes-scale", default="0.125")
    ap.add_argument("--gpus", default="8")
    ap.add_argument("--layer-group", default="0")
    ap.add_argument("--modes", default="layerwise,after-prefill")
    ap.add_argument("--engine", default="emulated", choices=["emulated", "cuda"])
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--bin-dir", default="", help="all binaries in one directory (the device carry)")
    ap.add_argument("--max-tokens", type=int, default=2)
    args = ap.parse_args()

    def binary(sub, name):
        return os.path.join(args.bin_dir, name) if args.bin_dir else os.path.join(args.build, sub, name)
    node_bin = binary("node", "kvstash-node")
    engine_args = (["--engine", "emulated", "--gpus", args.gpus, "--kv-bytes-scale", args.kv_bytes_scale]
                   if args.engine == "emulated" else ["--engine", "cuda", "--cuda-device", "0"])
    lengths = [int(x) for x in args.prompts.split(",")]
    pool_pages = max(lengths) // 16 + 64
    rng = random.Random(1)
    prompts = {n: [[rng.randrange(32000) for _ in range(n)] for _ in range(args.reps)] for n in lengths}
    expected = {}
    if args.engine == "cuda":
        lone, lone_at = start_ready("kvstash-node", [node_bin, "serve", "--model", args.model, *engine_args,
                                                     "--block-tokens", str(BLOCK_TOKENS), "--pool-pages",
                                                     str(pool_pages), "--listen", "127.0.0.1:0", "--http-listen",
                                                     "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                                     "--log-level", "error"])
        try:
            for n in lengths:
                status, _, data = request(lone_at["http"], dict(prompt=prompts[n][0], max_tokens=args.max_tokens,
                                                                temperature=0))
                assert status == 200, (status, data[:300])
                expected[n] = json.loads(data)["choices"][0]["token_ids"]
        finally:
            stop(lone)
    rows, limits = [], []
    for mode in args.modes.split(","):
        procs = []
        try:
            daemon, store = start_ready("kvstashd", [binary("server", "kvstashd"), "--standalone",
                                                     "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                                     "--dram-capacity", "6GiB",
                                                     "--log-level", "warn"])
            procs.append(daemon)
            conductor, grpc_at, metrics_at, front = start_conductor(
                binary("scheduler", "kvstash-conductor"), BLOCK_TOKENS, "--handoff", mode,
                "--store-wait-ms", "60000")  # after-prefill: the decode node must find every block
            procs.append(conductor)
            nodes = {}
            for role in ("prefill", "decode"):
                proc, at = start_ready("kvstash-node", [
                    node_bin, "serve", "--model", args.model, *engine_args, "--block-tokens", str(BLOCK_TOKENS),
                    "--pool-pages", str(pool_pages), "--store", store["grpc"], "--conductor", grpc_at,
                    "--role", role, "--instance-id", role, "--listen", "127.0.0.1:0", "--http-listen",
                    "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--handoff-layer-group", args.layer_group,
                    "--no-local-cache", "--log-level", "error"])
                procs.append(proc)
                nodes[role] = at
            wait_for("P and D registered",
                     lambda: metric(metrics_at, "kvstash_conductor_live_instances", 'role="decode"') == 1 and
                     metric(metrics_at, "kvstash_conductor_live_instances", 'role="prefill"') == 1)
            for n in lengths:
                samples = []
                moved = []
                for rep in range(args.reps):
                    before = moved_bytes(mode, nodes)
                    status, _, data = request(front, dict(prompt=prompts[n][rep], max_tokens=args.max_tokens,
                                                          temperature=0))
                    assert status == 200, (status, data[:300])
                    reply = json.loads(data)
                    kv = reply["usage"]["kvstash"]
                    if rep == 0 and n in expected:
                        assert reply["choices"][0]["token_ids"] == expected[n], (mode, n, reply, expected[n])
                        print(f"{mode} {n} tokens: the lone node's tokens {expected[n]}", flush=True)
                    assert kv["decode"]["computed_tokens"] == 0, kv
                    samples.append((kv["prefill_ms"], kv["decode_ready_ms"]))
                    moved.append(moved_bytes(mode, nodes) - before)
                prefill = statistics.median(s[0] for s in samples)
                ready = statistics.median(s[1] for s in samples)
                mb = statistics.median(moved) / 1e6
                rows.append((mode, n, prefill, ready, mb))
                print(f"{mode:14s} {n:6d} tokens: prefill {prefill:8.1f} ms  decode ready {ready:8.1f} ms  "
                      f"gap {ready - prefill:7.1f} ms ({100 * (ready - prefill) / prefill:5.1f}%)", flush=True)
            # The store's own put and get rate for slice-sized objects, one caller (as the sender).
            bench = subprocess.run([binary("cli", "kvstash"), "--addr", store["grpc"], "bench",
                                    "--op", "both", "--block-size", "4MiB", "--count", "64", "--threads", "1",
                                    "--json"], capture_output=True, text=True, timeout=300)
            result = json.loads(bench.stdout)
            limits.append((mode, result["put"]["gb_per_s"], result["get"]["gb_per_s"]))
        finally:
            for proc in reversed(procs):
                stop(proc)
    print()
    print("| handoff | prompt | KV moved (MB) | prefill (ms) | decode ready (ms) | gap (ms) | gap / prefill |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, n, prefill, ready, mb in rows:
        print(f"| {mode} | {n} | {mb:.0f} | {prefill:.0f} | {ready:.0f} | {ready - prefill:.0f} | "
              f"{100 * (ready - prefill) / prefill:.1f}% |")
    for mode, put, get in limits:
        print(f"store in the {mode} run: kvstash bench 4 MiB objects, 1 thread: put {put:.2f} GB/s, get {get:.2f} GB/s")


if __name__ == "__main__":
    main()
