#!/usr/bin/env python3
"""Generates Mooncake-format traces of chosen shapes for `kvstash-sim cache` (docs/EVICTION.md,
"Generated traces"). Output: JSON Lines {"timestamp" (ms, non-decreasing), "input_length",
"output_length", "hash_ids"}, one 512-token block per hash id, as in Mooncake's published traces.

    python3 tools/trace_gen.py --shape multi-turn --seed 1 --requests 12000 > multi_turn.jsonl

Shapes (every parameter is drawn from the distribution named in SHAPES below, from one seeded
random.Random, so a (shape, seed, requests) triple always gives the same bytes):

  multi-turn   chat sessions: a shared system prompt (one of a few, Zipf), then turns; each turn's
               prompt is the previous prompt + the previous answer + a new user message, so it
               extends the previous turn's chain; think times between turns are long (minutes).
  system-prompt  one-shot requests behind a few long shared system prompts (Zipf) with a private
               user message each.
  agent        tool/agent loops: a long repeated prefix (tool definitions, task) shared by the
               agents of a task family, then many short steps, each appending a tool result;
               steps follow each other within seconds.
  documents    one-shot documents: a long document requested once or again a few times
               (self-exciting: a document asked about before is asked about again sooner), each
               time with a short private question.
  mixed        the four above interleaved, one quarter of the arrivals each.

Block identity follows the content, as a prefix hash does: a block's id is fixed by its parent's
id and its own tokens. Appending to a context whose last block is partial changes that block's id
(its tokens changed) and keeps every full block before it.
"""
import argparse
import heapq
import itertools
import json
import math
import random
import sys

BLOCK = 512  # tokens per block (kTraceBlockTokens)


class Ids:
    """Hands out block ids: the same (parent id, content tag) pair always gets the same id."""

    def __init__(self):
        self._ids = {}
        self._next = itertools.count()

    def block(self, parent, tag):
        key = (parent, tag)
        if key not in self._ids:
            self._ids[key] = next(self._next)
        return self._ids[key]


class Context:
    """A token sequence as a chain of block ids. `tags` are the content tags of its segments:
    two contexts built from the same segments in the same order have the same ids."""

    def __init__(self, ids):
        self.ids = ids
        self.segments = []  # (tag, tokens)
        self.length = 0

    def append(self, tag, tokens):
        self.segments.append((tag, max(0, int(tokens))))
        self.length += max(0, int(tokens))

    def hash_ids(self):
        # Block i's tag is the list of (segment tag, tokens) pieces that fall in tokens
        # [512 i, 512 (i+1)); with its parent id it fixes the block's id.
        out, parent, pieces, filled = [], None, [], 0
        for tag, tokens in self.segments:
            left = tokens
            while left > 0:
                take = min(left, BLOCK - filled)
                pieces.append((tag, take))
                filled += take
                left -= take
                if filled == BLOCK:
                    parent = self.ids.block(parent, tuple(pieces))
                    out.append(parent)
                    pieces, filled = [], 0
        if filled:
            out.append(self.ids.block(parent, tuple(pieces)))
        return out

    def copy(self):
        c = Context(self.ids)
        c.segments = list(self.segments)
        c.length = self.length
        return c


def lognormal(rng, median, sigma, lo=1, hi=None):
    v = median * math.exp(rng.gauss(0.0, sigma))
    v = max(lo, v)
    return int(min(hi, v) if hi else v)


def zipf_pick(rng, n, s):
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return rng.choices(range(n), weights=weights)[0]


# Each shape: a generator of (time_s, input_context, output_length) events; the caller merges
# them by time. Distributions are stated next to each parameter.
SHAPES = {}


def shape(name):
    def register(fn):
        SHAPES[name] = fn
        return fn

    return register


@shape("multi-turn")
def multi_turn(rng, ids, uid, duration_s, rate):
    # Sessions arrive as a Poisson process (rate sessions/s). System prompt: one of 6, Zipf(1.0),
    # lengths 600-3000 tokens (uniform, fixed per prompt). Turns per session: 1 + geometric(p = 0.2),
    # 5 on average, capped at 40. First user message: lognormal(median 300, sigma 1.0) tokens;
    # later messages lognormal(median 120, sigma 1.0). Answers: lognormal(median 250, sigma 0.8),
    # capped at 4,000. Think time between turns: lognormal(median 90 s, sigma 1.0) — long gaps.
    prompts = [rng.randint(600, 3000) for _ in range(6)]
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return
        ctx = Context(ids)
        p = zipf_pick(rng, len(prompts), 1.0)
        ctx.append(("sys", p), prompts[p])
        session = next(uid)
        ctx.append(("user", session, 0), lognormal(rng, 300, 1.0))
        turns = 1
        while rng.random() > 0.2 and turns < 40:
            turns += 1
        at = t
        for turn in range(turns):
            if at >= duration_s:
                break
            out = lognormal(rng, 250, 0.8, hi=4000)
            yield at, ctx.copy(), out
            ctx.append(("answer", session, turn), out)
            ctx.append(("user", session, turn + 1), lognormal(rng, 120, 1.0))
            at += lognormal(rng, 90, 1.0, lo=1)


@shape("system-prompt")
def system_prompt(rng, ids, uid, duration_s, rate):
    # Requests arrive as a Poisson process (rate requests/s). System prompt: one of 12, Zipf(1.2),
    # lengths lognormal(median 4,000 tokens, sigma 0.6) fixed per prompt. User message:
    # lognormal(median 400, sigma 1.0). Answer: lognormal(median 200, sigma 0.8).
    prompts = [lognormal(rng, 4000, 0.6, lo=512, hi=30000) for _ in range(12)]
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return
        ctx = Context(ids)
        p = zipf_pick(rng, len(prompts), 1.2)
        ctx.append(("sys", p), prompts[p])
        ctx.append(("user", next(uid)), lognormal(rng, 400, 1.0))
        yield t, ctx, lognormal(rng, 200, 0.8, hi=4000)


@shape("agent")
def agent(rng, ids, uid, duration_s, rate):
    # Agent runs arrive as a Poisson process (rate runs/s). Task family: one of 8, Zipf(1.0); its
    # tool definitions + instructions: lognormal(median 6,000 tokens, sigma 0.5), shared by every
    # run of the family. Task statement: lognormal(median 500, sigma 0.8). Steps per run:
    # 2 + geometric(p = 0.1), 11 on average, capped at 60. Each step's answer (a tool call):
    # lognormal(median 80, sigma 0.6); the tool result appended after it: lognormal(median 700,
    # sigma 1.2), capped at 8,000. Gap between steps: lognormal(median 4 s, sigma 0.8).
    families = [lognormal(rng, 6000, 0.5, lo=1024, hi=30000) for _ in range(8)]
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return
        ctx = Context(ids)
        f = zipf_pick(rng, len(families), 1.0)
        ctx.append(("tools", f), families[f])
        run = next(uid)
        ctx.append(("task", run), lognormal(rng, 500, 0.8))
        steps = 2
        while rng.random() > 0.1 and steps < 60:
            steps += 1
        at = t
        for step in range(steps):
            if at >= duration_s:
                break
            out = lognormal(rng, 80, 0.6, hi=2000)
            yield at, ctx.copy(), out
            ctx.append(("call", run, step), out)
            ctx.append(("result", run, step), lognormal(rng, 700, 1.2, hi=8000))
            at += lognormal(rng, 4, 0.8, lo=0.05)


@shape("documents")
def documents(rng, ids, uid, duration_s, rate):
    # New documents arrive as a Poisson process (rate documents/s); length lognormal(median
    # 12,000 tokens, sigma 0.8), capped at 100,000. After each request a document is asked about
    # again with probability min(0.85, 0.35 + 0.1 k) after its k-th request, after an exponential
    # gap of mean 600 s / k (self-exciting: popular documents come back sooner). Question:
    # lognormal(median 60, sigma 0.6) tokens; answer lognormal(median 150, sigma 1.0).
    t = 0.0
    pending = []  # (time, seq, document context, k)
    seq = itertools.count()
    while True:
        t += rng.expovariate(rate)
        while pending and pending[0][0] <= min(t, duration_s):
            at, _, doc, k = heapq.heappop(pending)
            yield from document_request(rng, uid, pending, seq, at, doc, k)
        if t >= duration_s:
            return
        doc = Context(ids)
        doc.append(("doc", next(uid)), lognormal(rng, 12000, 0.8, lo=512, hi=100000))
        yield from document_request(rng, uid, pending, seq, t, doc, 1)


def document_request(rng, uid, pending, seq, at, doc, k):
    ctx = doc.copy()
    ctx.append(("question", next(uid)), lognormal(rng, 60, 0.6))
    yield at, ctx, lognormal(rng, 150, 1.0, hi=4000)
    if rng.random() < min(0.85, 0.35 + 0.1 * k):
        heapq.heappush(pending, (at + rng.expovariate(k / 600.0), next(seq), doc, k + 1))


@shape("mixed")
def mixed(rng, ids, uid, duration_s, rate):
    # rate: a scale of each part's own base rate; each part runs at a quarter of it.
    parts = [SHAPES[n](random.Random(rng.random()), ids, uid, duration_s, BASE_RATE[n] * rate / 4)
             for n in ("multi-turn", "system-prompt", "agent", "documents")]
    return heapq.merge(*parts, key=lambda e: e[0])


# Arrival rates (per second) that give about 3.3 requests/s (12,000 an hour) for each shape;
# "mixed" takes a scale (1 = each part at a quarter of its own rate).
BASE_RATE = {"multi-turn": 0.6, "system-prompt": 3.3, "agent": 0.3, "documents": 1.4, "mixed": 1.0}


def generate(shape_name, seed, requests):
    """The first `requests` requests of the shape's hour-long (or longer) arrival process."""
    rng = random.Random(seed)
    ids = Ids()
    uid = itertools.count()
    # The process runs at its base rate for longer than `requests` need; the first `requests`
    # by time are written, so a short trace is the beginning of a long one.
    duration = 1.5 * requests / 3.3
    events = SHAPES[shape_name](rng, ids, uid, duration, BASE_RATE[shape_name])
    # Shapes with sessions yield a session's turns together: order by time before numbering.
    ordered = sorted(((at, i, ctx, out) for i, (at, ctx, out) in enumerate(events)),
                     key=lambda e: (e[0], e[1]))
    for at, _, ctx, out in ordered[:requests]:
        yield {"timestamp": int(at * 1000), "input_length": ctx.length, "output_length": out,
               "hash_ids": ctx.hash_ids()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=12000, help="requests to write (about one hour at 12,000)")
    ap.add_argument("--out", help="output file (default stdout)")
    args = ap.parse_args()
    sink = open(args.out, "w") if args.out else sys.stdout
    for r in generate(args.shape, args.seed, args.requests):
        sink.write(json.dumps(r) + "\n")
    if args.out:
        sink.close()


if __name__ == "__main__":
    main()
