#!/usr/bin/env python3
"""Runs `kvstash-sim cache --sweep --json` on one trace and prints a Markdown table: one row per
capacity, one column per policy and reference, and the default policy's margin over LRU
(docs/EVICTION.md, "Never below LRU"). Tiered runs (--extra "--ssd-blocks N") show each policy's
system hit ratio with the part served from DRAM in parentheses.

    python3 tools/eviction_sweep.py --sim build/scheduler/kvstash-sim --trace T.jsonl \\
        --sweep 500,1000,2000 [--ssd-blocks N] [--advice none]

Exits 1 when the default policy is below LRU - 0.002 at any capacity (the issue 21 bar).
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--advice", default="none")
    ap.add_argument("--extra", default="", help="more kvstash-sim cache arguments, space separated")
    args = ap.parse_args()
    cmd = [args.sim, "cache", "--trace", args.trace, "--sweep", args.sweep, "--advice", args.advice, "--json"]
    cmd += args.extra.split()
    doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    names = [r["policy"] for r in doc["sweep"][0]["rows"]]
    default = next(r["policy"] for r in doc["sweep"][0]["rows"] if r["default"])
    print("| capacity | " + " | ".join(names) + f" | {default} - lru |")
    print("| --- " * (len(names) + 2) + "|")
    worst = 1.0
    for point in doc["sweep"]:
        ratio = {r["policy"]: r["hit_ratio"] for r in point["rows"]}
        margin = ratio[default] - ratio["lru"]
        worst = min(worst, margin)
        dram = {r["policy"]: r["dram_hit_ratio"] for r in point["rows"] if "dram_hit_ratio" in r}
        cells = " | ".join(f"{ratio[n]:.4f}" + (f" ({dram[n]:.4f})" if n in dram else "") for n in names)
        print(f"| {point['capacity_blocks']:,} | {cells} | {margin:+.4f} |")
    print(f"\nworst {default} - lru: {worst:+.4f}", file=sys.stderr)
    return 1 if worst < -0.002 else 0


if __name__ == "__main__":
    sys.exit(main())
