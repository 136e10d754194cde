#!/usr/bin/env python3
"""Why prefix-arc-unguarded loses to LRU on a trace (docs/EVICTION.md, "Why prefix-arc lost to
LRU"): replays the trace through tools/eviction_study.py's line-for-line port of ARC's
bookkeeping and classifies every victim — its list (T1: touched once since resident; T2:
reused), whether it extended a reused chain (inserted under a parent that the same request had
just read), and whether the trace names it again (a victim that is named again is a miss ARC
caused). Prints ARC's target p and |T1| at the end, and the same counts for leaf LRU.

    python3 tools/arc_diagnosis.py --trace multi_turn.jsonl --capacity 8000
"""
import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eviction_study import T1, T2, PrefixArc  # noqa: E402


def replay(trace, capacity, leaf_lru):
    policy, resident = PrefixArc(), set()
    next_use = [dict() for _ in trace]
    later = {}
    for i in range(len(trace) - 1, -1, -1):
        for b in trace[i]["hash_ids"]:
            next_use[i][b] = later.get(b)
        for b in trace[i]["hash_ids"]:
            later[b] = i
    last_use, extension = {}, set()
    counts = collections.Counter()
    hit = total = 0
    for i, r in enumerate(trace):
        ids = r["hash_ids"]
        n = 0
        while n < len(ids) and ids[n] in resident:
            n += 1
        hit += min(n * 512, r["input_length"])
        total += r["input_length"]
        parent, parent_read = None, False
        for b in ids:
            last_use[b] = next_use[i][b]
            if b in resident:
                policy.access(b)
                parent_read = True
            else:
                while len(resident) >= capacity:
                    if leaf_lru:
                        v = min((policy.leaves[T1][0] if policy.leaves[T1] else (1 << 62, None)),
                                (policy.leaves[T2][0] if policy.leaves[T2] else (1 << 62, None)))[1]
                    else:
                        v = policy.victim()
                    lst = policy.nodes[v]["list"]
                    again = last_use.get(v) is not None
                    kind = "T1 extension of a reused chain" if (lst == T1 and v in extension) else \
                        "T1 other" if lst == T1 else "T2"
                    counts[(kind, "named again" if again else "never named again")] += 1
                    resident.discard(v)
                    policy.erase(v)
                    extension.discard(v)
                resident.add(b)
                policy.insert(b, parent)
                if parent_read:
                    extension.add(b)
                parent_read = False
            parent = b
    return hit / total, counts, policy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", required=True)
    ap.add_argument("--capacity", type=int, required=True)
    args = ap.parse_args()
    trace = [json.loads(line) for line in open(args.trace) if line.strip()]
    for name, leaf_lru in (("prefix-arc-unguarded", False), ("leaf LRU (prefix)", True)):
        ratio, counts, policy = replay(trace, args.capacity, leaf_lru)
        print(f"{name}: hit ratio {ratio:.4f}; at the end p = {policy.p:.0f}, |T1| = {policy.size[T1]}, "
              f"|T2| = {policy.size[T2]}")
        for (kind, again), n in sorted(counts.items()):
            print(f"  victims {kind:32s} {again:18s} {n:7d}")


if __name__ == "__main__":
    main()
