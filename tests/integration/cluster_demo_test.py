"""deploy/cluster-demo.sh and kvstash-replay end to end (issue 15): etcd, two kvstashd, the conductor's
front door and 2 prefill + 2 decode emulated nodes replay a short generated Mooncake-format trace, and
the table has a complete live row (every request answered) beside the simulator's row.

The trace is generated here (24 requests over 6 s of trace time, 3 shared prefixes of 1-4 blocks) and
run 10x faster with the nodes' steps 10x shorter (SPEED=10, TIME_SCALE=0.1), so it is like for like.

Usage: cluster_demo_test.py REPO BUILD_DIR (standard library only).
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

REPO, BUILD = sys.argv[1:3]


def write_trace(path):
    rng = random.Random(3)
    with open(path, "w") as f:
        for i in range(24):
            shared = rng.randrange(3)
            blocks = rng.randint(1, 4)
            ids = [shared * 100 + b for b in range(blocks)] + [1000 + i]
            f.write(json.dumps({"timestamp": i * 250, "input_length": 512 * blocks + rng.randint(1, 400),
                                "output_length": rng.randint(2, 20), "hash_ids": ids}) + "\n")


def main():
    with tempfile.TemporaryDirectory(prefix="kvstash_demo_test_") as tmp:
        trace = os.path.join(tmp, "trace.jsonl")
        write_trace(trace)
        env = dict(os.environ, KVSTASH_BUILD_DIR=BUILD, SPEED="10", TIME_SCALE="0.1", POOL_PAGES="4096", TMPDIR=tmp)
        done = subprocess.run([os.path.join(REPO, "deploy", "cluster-demo.sh"), trace, "10"], env=env,
                              capture_output=True, text=True, timeout=240)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        live = re.search(r"^live global-cache-aware\s+(\S+)s", out, re.MULTILINE)
        sim = re.search(r"^sim global-cache-aware\s+(\S+)s", out, re.MULTILINE)
        assert live and sim, out
        assert "failed" not in out, out
        assert "24 requests" in out, out
        assert float(live.group(1)) > 0 and float(sim.group(1)) > 0, out
        print(out, flush=True)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
