#!/usr/bin/env bash
# Before/after comparison of two build trees of kvstash on this machine (issue 19: the
# restructuring must not slow anything down). For each round, and each tree in turn:
# `kvstash-bench-transfer --quick --json` (every kvstash row beside memcpy, iperf3 and Redis, each
# tree's bench starting its own kvstashd) and `kvstash bench` (1 MiB over UCX, 64 KiB inline) against
# a standalone kvstashd of that tree (odd rounds run "before" first, even rounds "after" first).
# Then prints the kvstash rows' after/before ratios.
#
#   bench/ab_builds.sh BEFORE_BUILD_DIR AFTER_BUILD_DIR OUT_DIR [ROUNDS (default 2)]
set -euo pipefail
before=$(readlink -f "$1")
after=$(readlink -f "$2")
out=$3
rounds=${4:-2}
mkdir -p "$out"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for round in $(seq "$rounds"); do
  order="before after"
  ((round % 2 == 0)) && order="after before"  # alternate which tree runs first: load drifts within a round
  for v in $order; do
    b=$before
    [[ $v == after ]] && b=$after
    timeout 600 "$b/bench/kvstash-bench-transfer" --quick --json >"$out/transfer_${v}_$round.json" 2>"$out/transfer_${v}_$round.err"
    p=$(port)
    "$b/server/kvstashd" --standalone --listen "127.0.0.1:$p" --metrics-listen 127.0.0.1:0 --dram-capacity 2GiB \
      --log-level warn >"$out/kvstashd_${v}_$round.log" 2>&1 &
    d=$!
    for _ in $(seq 200); do
      "$b/cli/kvstash" --addr "127.0.0.1:$p" status >/dev/null 2>&1 && break
      sleep 0.05  # polling for the daemon to answer
    done
    "$b/cli/kvstash" --addr "127.0.0.1:$p" bench --op both --block-size 1MiB --count 300 --threads 4 --data-path ucx \
      --json >"$out/sdk1m_${v}_$round.json"
    "$b/cli/kvstash" --addr "127.0.0.1:$p" bench --op both --block-size 64KiB --count 2000 --threads 4 \
      --data-path inline --json >"$out/sdk64k_${v}_$round.json"
    kill "$d"
    wait "$d" || true
    echo "ab_builds: round $round, $v done"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
rows = {}
for v in ("before", "after"):
    for r in rounds:
        for row in json.load(open(f"{out}/transfer_{v}_{r}.json"))["rows"]:
            if row["system"] != "kvstash":
                continue
            blk = f"{row['block_bytes'] // 1024} KiB" if row["block_bytes"] < 1 << 20 else f"{row['block_bytes'] >> 20} MiB"
            sub = rows.setdefault((row["transport"], row["op"], blk), {}).setdefault((row["clients"], row.get("note", "")), {})
            sub.setdefault(v, []).append(row["gbps"])
print("| transport | op | block | rows | before GB/s | after GB/s | after / before, geometric mean (min-max) |")
print("| --- | --- | ---: | ---: | --- | --- | --- |")
order = {"64 KiB": 0, "1 MiB": 1, "16 MiB": 2}
every = []
for k in sorted(rows, key=lambda k: (k[0], k[1], order.get(k[2], 9))):
    ratios, b_all, a_all = [], [], []
    for sub in rows[k].values():
        if "before" in sub and "after" in sub:
            ratios.append(statistics.mean(sub["after"]) / statistics.mean(sub["before"]))
            b_all += sub["before"]
            a_all += sub["after"]
    every += ratios
    print(f"| {k[0]} | {k[1]} | {k[2]} | {len(ratios)} | {min(b_all):.2f}-{max(b_all):.2f} | {min(a_all):.2f}-{max(a_all):.2f} "
          f"| {statistics.geometric_mean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")
print(f"\nall {len(every)} kvstash rows: after / before geometric mean {statistics.geometric_mean(every):.3f}")
for name in ("sdk1m", "sdk64k"):
    for op in ("put", "get"):
        b = [json.load(open(f"{out}/{name}_before_{r}.json"))[op]["gb_per_s"] for r in rounds]
        a = [json.load(open(f"{out}/{name}_after_{r}.json"))[op]["gb_per_s"] for r in rounds]
        print(f"{name} {op}: before {' / '.join(f'{x:.3f}' for x in b)} GB/s, after {' / '.join(f'{x:.3f}' for x in a)} GB/s")
PY
