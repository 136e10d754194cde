#!/usr/bin/env python3
"""Eviction study, third round (docs/EVICTION.md, "Third study"): is a request's output_length
the signal that lifts an online policy to 0.45 at 5,859 blocks?

Replays a Mooncake-format trace with the same semantics as `kvstash-sim cache` (scheduler/cache_sim.cc):
score the resident prefix, OnAccess the resident blocks, OnInsert the others head first, evicting
while full. `prefix-arc` here is a line-for-line port of tiers/prefix_arc_policy.cc; the script
checks that it reproduces the C++ figure before printing anything else.

    python3 tools/eviction_study.py [--trace ../shared/traces/synthetic_trace.jsonl] [--capacity 5859]

Needs python3-sortedcontainers. About 30 s on the synthetic trace.
"""
import argparse
import bisect
import collections
import heapq
import json

from sortedcontainers import SortedList

T0, T1, T2 = 0, 1, 2  # T0: advised "unlikely reuse", evicted before anything else


class PrefixArc:
    """tiers/prefix_arc_policy.cc: insert = OnInsert, access = OnAccess, erase = OnErase,
    advise = OnAdvise, victim = PickVictim."""

    def __init__(self):
        self.tick, self.p = 0, 0.0
        self.size = [0, 0, 0]
        self.nodes, self.waiting = {}, collections.Counter()
        self.leaves = [SortedList(), SortedList(), SortedList()]
        self.ghosts = {T1: collections.OrderedDict(), T2: collections.OrderedDict()}

    def _ratio(self, num, den):
        d = len(self.ghosts[den])
        return 1.0 if d == 0 else len(self.ghosts[num]) / d

    def _starts_run(self, parent):
        node = self.nodes.get(parent) if parent is not None else None
        return parent is None or node is None or node["accessed"]

    def _move(self, key, node, dest):
        if node["children"] == 0:
            self.leaves[node["list"]].remove((node["tick"], key))
            self.leaves[dest].add((node["tick"], key))
        self.size[node["list"]] -= 1
        self.size[dest] += 1
        node["list"] = dest

    def insert(self, key, parent):
        self.tick += 1
        node = {"parent": parent, "tick": self.tick, "list": T1, "children": 0, "accessed": False}
        resident = len(self.nodes) + 1
        adapt = self._starts_run(parent)
        if key in self.ghosts[T1]:
            del self.ghosts[T1][key]
            if adapt:
                self.p = min(resident, self.p + max(1.0, self._ratio(T2, T1)))
            node["list"] = T2
        elif key in self.ghosts[T2]:
            del self.ghosts[T2][key]
            if adapt:
                self.p = max(0.0, self.p - max(1.0, self._ratio(T1, T2)))
            node["list"] = T2
        node["children"] = self.waiting.pop(key, 0)
        if parent is not None:
            pn = self.nodes.get(parent)
            if pn is not None:
                if pn["children"] == 0:
                    self.leaves[pn["list"]].remove((pn["tick"], parent))
                pn["children"] += 1
            else:
                self.waiting[parent] += 1
        if node["children"] == 0:
            self.leaves[node["list"]].add((node["tick"], key))
        self.size[node["list"]] += 1
        self.nodes[key] = node

    def advise(self, key, advice):
        node = self.nodes.get(key)
        if node is None or node["list"] == T2:
            return
        if advice == "likely":
            self._move(key, node, T2)
        elif node["list"] == T1:
            self._move(key, node, T0)

    def access(self, key):
        node = self.nodes.get(key)
        if node is None:
            return
        self._move(key, node, T2)
        if node["children"] == 0:
            self.leaves[T2].remove((node["tick"], key))
        self.tick += 1
        node["tick"], node["accessed"] = self.tick, True
        if node["children"] == 0:
            self.leaves[T2].add((node["tick"], key))

    def erase(self, key):
        node = self.nodes.pop(key)
        self.size[node["list"]] -= 1
        self.leaves[node["list"]].remove((node["tick"], key))
        ghost = T2 if node["list"] == T2 else T1
        self.ghosts[T1].pop(key, None)
        self.ghosts[T2].pop(key, None)
        self.ghosts[ghost][key] = True
        bound = max(64, 3 * len(self.nodes))
        for g in self.ghosts.values():
            while len(g) > bound:
                g.popitem(last=False)
        parent = node["parent"]
        if parent is None:
            return
        pn = self.nodes.get(parent)
        if pn is not None:
            pn["children"] -= 1
            if pn["children"] == 0:
                self.leaves[pn["list"]].add((pn["tick"], parent))
        elif parent in self.waiting:
            self.waiting[parent] -= 1
            if self.waiting[parent] == 0:
                del self.waiting[parent]

    def victim(self):
        if self.leaves[T0]:
            return self.leaves[T0][0][1]
        first = T1 if self.size[T1] > self.p or self.size[T2] == 0 else T2
        for lst in (first, T2 if first == T1 else T1):
            if self.leaves[lst]:
                return self.leaves[lst][0][1]
        return None


def prefix_score(r, resident):
    """Tokens request r hits: its longest resident prefix, capped at its input length."""
    ids, n = r["hash_ids"], 0
    while n < len(ids) and ids[n] in resident:
        n += 1
    return min(n * 512, r["input_length"])


def replay_arc(trace, capacity, advise, after_request=False):
    """advise(request, document_request_count) -> None | "likely" | "unlikely" for its new blocks,
    given with each block's insert (as the daemon applies PutOptions::advice) or, with
    after_request, once the whole request is in."""
    policy, resident, hit, total = PrefixArc(), set(), 0, 0
    seen = collections.Counter()
    for r in trace:
        ids = r["hash_ids"]
        hit += prefix_score(r, resident)
        total += r["input_length"]
        seen[ids[0]] += 1
        advice = advise(r, seen[ids[0]])
        parent, inserted = None, []
        for block in ids:
            if block in resident:
                policy.access(block)
            else:
                while len(resident) >= capacity:
                    v = policy.victim()
                    resident.discard(v)
                    policy.erase(v)
                resident.add(block)
                policy.insert(block, parent)
                inserted.append(block)
                if advice and not after_request:
                    policy.advise(block, advice)
            parent = block
        if advice and after_request:
            for block in inserted:
                policy.advise(block, advice)
    return hit / total


def output_class(o):
    return 0 if o <= 5 else 1 if o <= 20 else 2 if o <= 50 else 3 if o <= 200 else 4


def replay_fitted_density(trace, capacity, horizon, use_output):
    """Leaf eviction by P(the document is requested within `horizon` requests | class, age), the
    table fitted on the whole trace in advance (perfect learning of these classes). Class: the
    document's request count (capped at 4) and, with use_output, the output class of its latest
    request. Evicts the lowest-probability class head (the oldest leaf of each class)."""
    n = len(trace)
    nxt, last = [None] * n, {}
    for i in range(n - 1, -1, -1):
        root = trace[i]["hash_ids"][0]
        nxt[i], last[root] = last.get(root), i

    def cls(k, r):
        return (min(k, 4), output_class(r["output_length"]) if use_output else 0)

    gaps, seen = collections.defaultdict(list), collections.Counter()
    for i, r in enumerate(trace):
        seen[r["hash_ids"][0]] += 1
        gaps[cls(seen[r["hash_ids"][0]], r)].append(nxt[i] - i if nxt[i] is not None else 1 << 40)
    for g in gaps.values():
        g.sort()
    memo = {}

    def prob(c, age):
        key = (c, age // 25)
        if key not in memo:
            g, a = gaps[c], key[1] * 25
            alive = len(g) - bisect.bisect_right(g, a)
            within = bisect.bisect_right(g, a + horizon) - bisect.bisect_right(g, a)
            memo[key] = (within + 0.5) / (alive + 1)
        return memo[key]

    resident, children, parent_of = {}, collections.Counter(), {}
    heaps = collections.defaultdict(list)
    hit = total = 0
    seen = collections.Counter()

    def push(b):
        if children[b] == 0:
            c, t = resident[b]
            heapq.heappush(heaps[c], (t, b))

    def head(c):
        h = heaps[c]
        while h:
            t, b = h[0]
            if resident.get(b) == (c, t) and children[b] == 0:
                return h[0]
            heapq.heappop(h)
        return None

    for now, r in enumerate(trace):
        ids = r["hash_ids"]
        hit += prefix_score(r, resident)
        total += r["input_length"]
        seen[ids[0]] += 1
        c = cls(seen[ids[0]], r)
        prev = None
        for b in ids:
            if b not in resident:
                while len(resident) >= capacity:
                    best = min((prob(cc, now - h[0]), cc) for cc in list(heaps) if (h := head(cc)))
                    _, v = heapq.heappop(heaps[best[1]])
                    del resident[v]
                    p = parent_of.pop(v, None)
                    if p is not None:
                        children[p] -= 1
                        if p in resident:
                            push(p)
                if prev is not None:
                    parent_of[b] = prev
                    children[prev] += 1
            resident[b] = (c, now)
            push(b)
            prev = b
    return hit / total


def first_request_auc(trace, within):
    """AUC of each feature of a document's first request for "requested again within `within`
    requests" (0.5 = no information; below 0.5 = smaller values mean reuse)."""
    first, again = {}, set()
    for i, r in enumerate(trace):
        root = r["hash_ids"][0]
        if root not in first:
            first[root] = i
        elif i - first[root] <= within:
            again.add(root)
    out = {}
    for name, feature in (("output_length", lambda r: r["output_length"]),
                          ("input_length", lambda r: r["input_length"]),
                          ("blocks", lambda r: len(r["hash_ids"]))):
        pos = [feature(trace[i]) for root, i in first.items() if root in again]
        neg = sorted(feature(trace[i]) for root, i in first.items() if root not in again)
        s = sum(bisect.bisect_left(neg, x) + 0.5 * (bisect.bisect_right(neg, x) - bisect.bisect_left(neg, x))
                for x in pos)
        out[name] = s / len(pos) / len(neg)
    return out, len(first), len(again)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default="../shared/traces/synthetic_trace.jsonl")
    ap.add_argument("--capacity", type=int, default=5859)
    args = ap.parse_args()
    trace = [json.loads(line) for line in open(args.trace)]

    aucs, docs, again = first_request_auc(trace, 1000)
    print(f"documents {docs}, requested again within 1,000 requests {again}")
    for name, auc in aucs.items():
        print(f"  AUC of the first request's {name}: {auc:.3f}")

    rows = [("prefix-arc (port of the C++ policy)", replay_arc(trace, args.capacity, lambda r, k: None))]
    def shipped(r, k):  # scheduler/cache_sim.h, EngineAdvice::kOutputLength
        return None if k > 1 else "likely" if r["output_length"] <= 20 else "unlikely" if r["output_length"] > 200 else None

    for hot in (10, 20):
        rows.append((f"prefix-arc, new document with output <= {hot}: likely",
                     replay_arc(trace, args.capacity,
                                lambda r, k, h=hot: "likely" if k == 1 and r["output_length"] <= h else None)))
        rows.append((f"prefix-arc, new document: output <= {hot} likely, > 200 unlikely",
                     replay_arc(trace, args.capacity,
                                lambda r, k, h=hot: None if k > 1 else "likely" if r["output_length"] <= h
                                else "unlikely" if r["output_length"] > 200 else None)))
    rows.append(("prefix-arc, any new block with output <= 10: likely",
                 replay_arc(trace, args.capacity, lambda r, k: "likely" if r["output_length"] <= 10 else None)))
    rows.append(("the shipped model, advice given after the whole request was put",
                 replay_arc(trace, args.capacity, shipped, after_request=True)))
    for horizon in (100, 300):
        rows.append((f"fitted P(reuse | count, age), horizon {horizon}",
                     replay_fitted_density(trace, args.capacity, horizon, False)))
        rows.append((f"fitted P(reuse | count, output class, age), horizon {horizon}",
                     replay_fitted_density(trace, args.capacity, horizon, True)))
    print(f"\n| variant at {args.capacity:,} blocks | hit ratio |\n| --- | --- |")
    for name, ratio in rows:
        print(f"| {name} | {ratio:.4f} |")


if __name__ == "__main__":
    main()
