#!/usr/bin/env python3
"""Chaos soak (issue 17): three kvstashd members with DRAM and SSD tiers on etcd, each on a host
made of a network namespace, clients on a fourth host putting and getting with every block compared
byte-exact, while a driver injects faults one episode at a time:

  kill9      kill -9 of member h2 or h3, restarted on the same SSD directory (recovery)
  link_cut   `ip link set eth0 down` on a member's host, then up again
  degrade    latency and loss on a member's link, then removed: `tc netem` (40 ms +- 20 ms, 5 % loss)
             where the kernel has it, else `tc tbf` (20 Mbit/s, 50 ms queue) + nftables 5 % random drop
  enospc     the SSD directory of h3 (a tmpfs of its own) filled to ENOSPC, then freed
  lease      SIGSTOP of h2 or h3 for longer than its etcd lease TTL (the lease expires), then SIGCONT

h1 is never killed or stopped, so its resident memory across the run shows whether a daemon's
memory stays flat (the DRAM arena is prefaulted, so growth is not the arena filling up).

Invariants, checked throughout and at the end (any violation fails the run, exit 1):
  * zero wrong bytes: every bench reports mismatches == 0 (every fetched block is compared);
  * only documented errors: every failed bench's first error carries one of ALLOWED_CODES
    (docs/RELIABILITY.md, "Chaos soak"); no bench client hangs past its time limit;
  * once the faults stop: all three members back in etcd, no open put reservations and no active
    leases left on any daemon, and etcd holds exactly one lease per member;
  * h1's resident memory at the end within 25 % + 32 MiB of its first sample after warm-up;
  * every daemon exits 0 within 20 s of SIGTERM.

usage: chaos_soak.py BIN_DIR [--minutes 3] [--seed N] [--json FILE]
BIN_DIR holds server/kvstashd and cli/kvstash (a build tree). Needs root (network namespaces,
tc, tmpfs mounts in a private mount namespace); exits 77 (skipped) with a message where it cannot.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ALLOWED_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED")
LEASE_TTL_S = 2
BENCH_LIMIT_S = 60  # a bench run longer than this is a hang


def say(msg):
    print(f"chaos_soak: {msg}", flush=True)


def skip(msg):
    say(f"SKIP: {msg}")
    sys.exit(77)


def run(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


class Cluster:
    """Namespaces on one bridge, etcd on host e, members h1..h3, clients on host c."""

    def __init__(self, bins, work, rng):
        self.bins, self.work, self.rng = bins, work, rng
        self.tag = f"ks{os.getpid() % 100000}"
        self.prefix = f"10.{rng.randrange(20, 220)}.{rng.randrange(0, 250)}"
        self.addr, self.hosts, self.procs, self.logs = {}, [], {}, {}
        self.etcd = None
        self.etcd_url = ""
        self.restarts = 0
        self.netem = False  # whether this kernel has sch_netem (probed at setup)

    def ns(self, h):
        return f"{self.tag}{h}"

    def exec_in(self, h, cmd, **kw):
        return run(["ip", "netns", "exec", self.ns(h)] + cmd, **kw)

    def setup(self, hosts):
        br = self.ns("br")
        run(["ip", "netns", "add", br])
        self.hosts.append("br")
        run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", br, "link", "set", "br0", "up"])
        for n, h in enumerate(hosts, start=1):
            ns = self.ns(h)
            run(["ip", "netns", "add", ns])
            self.hosts.append(h)
            run(["ip", "link", "add", ns, "type", "veth", "peer", "name", f"{ns}b"])
            run(["ip", "link", "set", ns, "netns", ns, "name", "eth0"])
            run(["ip", "link", "set", f"{ns}b", "netns", br])
            run(["ip", "-n", br, "link", "set", f"{ns}b", "master", "br0", "up"])
            self.addr[h] = f"{self.prefix}.{n}"
            run(["ip", "-n", ns, "addr", "add", f"{self.addr[h]}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def probe_netem(self):
        r = self.exec_in("c", ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
        self.netem = r.returncode == 0
        if self.netem:
            self.exec_in("c", ["tc", "qdisc", "del", "dev", "lo", "root"], check=False)

    def start_etcd(self):
        a = self.addr["e"]
        self.etcd_url = f"http://{a}:2379"
        log = open(os.path.join(self.work, "etcd.log"), "w")
        self.etcd = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("e"), "etcd", "--name", "soak", "--data-dir", os.path.join(self.work, "etcd"),
             "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
             "--listen-peer-urls", f"http://{a}:2380", "--initial-advertise-peer-urls", f"http://{a}:2380",
             "--initial-cluster", f"soak=http://{a}:2380"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.exec_in("e", ["curl", "-sf", f"{self.etcd_url}/health"], check=False)
            if '"true"' in r.stdout:
                return
            time.sleep(0.1)  # polling a readiness probe
        raise RuntimeError("etcd did not become healthy")

    def ssd_dir(self, h):
        return os.path.join(self.work, f"ssd-{h}")

    def mount_ssd(self, h, mib):
        d = self.ssd_dir(h)
        os.makedirs(d)
        run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", f"soak-{h}", d])

    def start_daemon(self, h):
        a = self.addr[h]
        config = os.path.join(self.work, "kvstashd.toml")
        if not os.path.exists(config):
            with open(config, "w") as f:  # small segments, so that a 48 MiB tier reclaims and wraps
                f.write('[ssd]\nsegment = "8MiB"\n')
        out = open(os.path.join(self.work, f"{h}.out"), "a")
        err = open(os.path.join(self.work, f"{h}.err"), "a")
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(h), os.path.join(self.bins, "server", "kvstashd"),
             "--config", config, "--etcd", self.etcd_url, "--cluster", "soak", "--lease-ttl", str(LEASE_TTL_S),
             "--listen", f"{a}:7370", "--metrics-listen", f"{a}:7371", "--ucx-transports", "tcp",
             "--log-level", "warn", "--dram-capacity", "32MiB", "--dram-prefault",
             "--ssd-dir", os.path.join(self.ssd_dir(h), "tier"), "--ssd-capacity", "48MiB",
             "--reservation-timeout-ms", "3000", "--max-reservation-timeout-ms", "3000",
             "--default-lease-ms", "2000"],
            stdout=out, stderr=err)
        self.procs[h] = p
        path = os.path.join(self.work, f"{h}.out")
        ready_before = open(path).read().count("kvstashd ready")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if open(path).read().count("kvstashd ready") > ready_before:
                return p
            if p.poll() is not None:
                break
            time.sleep(0.05)  # polling for the ready line
        raise RuntimeError(f"kvstashd on {h} did not start: {open(os.path.join(self.work, f'{h}.err')).read()[-2000:]}")

    def cli(self, args, timeout=30):
        return self.exec_in("c", [os.path.join(self.bins, "cli", "kvstash"), "--etcd", self.etcd_url,
                                  "--cluster", "soak", "--timeout-ms", "5000"] + args, check=False, timeout=timeout)

    def reachable_members(self):
        try:
            r = self.cli(["status", "--json"], timeout=20)
            return json.loads(r.stdout)["reachable_members"]
        except (subprocess.TimeoutExpired, ValueError, KeyError):
            return -1

    def metrics(self, h):
        r = self.exec_in(h, ["curl", "-sf", "--max-time", "5", f"http://{self.addr[h]}:7371/metrics"], check=False)
        values = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^(kvstash_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m:
                values[m.group(1)] = values.get(m.group(1), 0.0) + float(m.group(3))
        return values

    def etcd_leases(self):
        r = self.exec_in("e", ["etcdctl", "--endpoints", self.etcd_url, "lease", "list"], check=False)
        return len([line for line in r.stdout.splitlines() if line.strip() and not line.startswith("found")])

    def cleanup(self):
        for p in list(self.procs.values()) + ([self.etcd] if self.etcd else []):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                p.kill()
                p.wait()
        for h in self.hosts:
            run(["ip", "netns", "del", self.ns(h)], check=False)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.benches = 0
        self.failed_benches = 0
        self.put_ops = self.get_ops = self.hits = self.misses = self.verified = 0
        self.mismatches = 0
        self.errors = 0
        self.unreachable = 0  # blocks whose member did not answer (a miss or a failed put, not an error)
        self.refused_puts = 0  # puts a daemon refused (busy or full)
        self.error_codes = {}
        self.violations = []
        self.faults = {}

    def violation(self, msg):
        with self.lock:
            self.violations.append(msg)
        say(f"VIOLATION: {msg}")


def client_loop(cluster, stats, stop, worker):
    while not stop.is_set():
        args = ["bench", "--op", "both", "--block-size", "64KiB", "--count", "160", "--threads", "2", "--batch", "4",
                "--verify-every", "1", "--data-path", "ucx", "--ucx-transports", "tcp", "--duration-s", "20", "--json"]
        try:
            r = cluster.cli(args, timeout=BENCH_LIMIT_S)
        except subprocess.TimeoutExpired:
            stats.violation(f"client {worker}: a bench ran past {BENCH_LIMIT_S} s (hang)")
            continue
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            doc = None
        with stats.lock:
            stats.benches += 1
            if r.returncode != 0:
                stats.failed_benches += 1
        if doc is None:
            # No JSON at all: the bench refused to start (no member reachable, etcd cut off...).
            text = [line for line in (r.stderr or r.stdout).strip().splitlines() if not line.startswith("[")]
            first = text[-1] if text else f"exit {r.returncode}"
            record_error(stats, first, worker)
            continue
        if r.returncode != 0:
            # The bench's own verdict (members that did not answer, puts refused): its code is checked.
            text = [line for line in r.stderr.strip().splitlines() if not line.startswith("[")]
            record_error(stats, text[-1] if text else f"exit {r.returncode}", worker)
        with stats.lock:
            for op in ("put", "get"):
                part = doc.get(op) or {}
                stats.unreachable += part.get("unreachable", 0)
                stats.refused_puts += part.get("failed", 0)
                if op == "put":
                    stats.put_ops += part.get("ops", 0)
                else:
                    stats.get_ops += part.get("ops", 0)
                    stats.hits += part.get("hits", 0)
                    stats.misses += part.get("misses", 0)
                    stats.verified += part.get("verified", 0)
                    stats.mismatches += part.get("mismatches", 0)
                stats.errors += part.get("errors", 0)
        for op in ("put", "get"):
            part = doc.get(op) or {}
            if part.get("mismatches", 0):
                stats.violation(f"client {worker}: {part['mismatches']} wrong blocks returned: {part.get('first_error')}")
            if part.get("first_error"):
                record_error(stats, part["first_error"], worker)


def record_error(stats, text, worker):
    m = re.search(r"\b([A-Z][A-Z_]{3,})\b", text)
    code = m.group(1) if m else "UNKNOWN"
    with stats.lock:
        stats.error_codes[code] = stats.error_codes.get(code, 0) + 1
    if code not in ALLOWED_CODES:
        stats.violation(f"client {worker}: undocumented error: {text[:300]}")


def inject(cluster, stats, kind, rng):
    """One fault episode: inject, hold, heal. Returns a line describing it."""
    hold = rng.uniform(1.5, 4.0)
    if kind == "kill9":
        h = rng.choice(["h2", "h3"])
        p = cluster.procs[h]
        p.kill()
        p.wait()
        time.sleep(hold)  # the member stays dead for this long (fault duration, not synchronisation)
        cluster.start_daemon(h)
        cluster.restarts += 1
        return f"kill -9 {h}, restarted after {hold:.1f} s"
    if kind == "link_cut":
        h = rng.choice(["h1", "h2", "h3"])
        cluster.exec_in(h, ["ip", "link", "set", "eth0", "down"])
        time.sleep(hold)  # fault duration
        cluster.exec_in(h, ["ip", "link", "set", "eth0", "up"])
        return f"link of {h} down for {hold:.1f} s"
    if kind == "degrade":
        h = rng.choice(["h1", "h2", "h3"])
        held = hold * 1.5
        if cluster.netem:
            cluster.exec_in(h, ["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "40ms", "20ms",
                                "loss", "5%"])
            what = "netem delay 40±20 ms, loss 5 %"
        else:
            # No sch_netem in this kernel: a slow link (tbf: 20 Mbit/s, packets queued up to 50 ms, then
            # dropped) and random loss of 5 % of the packets the host sends (nftables numgen).
            cluster.exec_in(h, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "20mbit", "burst", "32kbit",
                                "latency", "50ms"])
            cluster.exec_in(h, ["nft", "add", "table", "inet", "soak"])
            cluster.exec_in(h, ["nft", "add", "chain", "inet", "soak", "out",
                                "{ type filter hook output priority 0; }"])
            cluster.exec_in(h, ["nft", "add", "rule", "inet", "soak", "out", "numgen", "random", "mod", "100", "<", "5",
                                "drop"])
            what = "tbf 20 Mbit/s with a 50 ms queue, 5 % random loss"
        time.sleep(held)  # fault duration
        cluster.exec_in(h, ["tc", "qdisc", "del", "dev", "eth0", "root"])
        if not cluster.netem:
            cluster.exec_in(h, ["nft", "delete", "table", "inet", "soak"])
        return f"{what} on {h} for {held:.1f} s"
    if kind == "enospc":
        filler = os.path.join(cluster.ssd_dir("h3"), "filler")
        run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], check=False)  # stops at ENOSPC
        time.sleep(hold)  # fault duration
        os.remove(filler)
        return f"SSD directory of h3 full for {hold:.1f} s"
    if kind == "lease":
        h = rng.choice(["h2", "h3"])
        p = cluster.procs[h]
        os.kill(p.pid, signal.SIGSTOP)
        stopped = LEASE_TTL_S + 1.5
        time.sleep(stopped)  # longer than the lease TTL: etcd expires the member's lease
        os.kill(p.pid, signal.SIGCONT)
        return f"{h} stopped for {stopped:.1f} s (lease TTL {LEASE_TTL_S} s)"
    raise ValueError(kind)


def wait_until(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value is True:
            return True
        time.sleep(0.2)  # polling a condition with a deadline
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin_dir")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the summary here too")
    args = ap.parse_args()
    bins = os.path.abspath(args.bin_dir)
    for b in ("server/kvstashd", "cli/kvstash"):
        if not os.access(os.path.join(bins, b), os.X_OK):
            sys.exit(f"chaos_soak: {b} not found under {bins}")
    if os.geteuid() != 0:
        skip("needs root (network namespaces, tc, tmpfs)")
    for tool in ("ip", "tc", "nft", "etcd", "etcdctl", "curl", "unshare"):
        if shutil.which(tool) is None:
            skip(f"{tool} is not installed")
    if os.environ.get("KVSTASH_SOAK_UNSHARED") != "1":
        # A private mount namespace: the SSD tmpfs mounts vanish with this process, whatever happens.
        env = dict(os.environ, KVSTASH_SOAK_UNSHARED="1")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable] + sys.argv, env=env)
        sys.exit(r.returncode)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="kvstash-soak-")
    cluster = Cluster(bins, work, rng)
    probe = run(["ip", "netns", "add", f"{cluster.tag}probe"], check=False)
    if probe.returncode != 0:
        skip(f"cannot create network namespaces here: {probe.stderr.strip()}")
    run(["ip", "netns", "del", f"{cluster.tag}probe"])
    stats = Stats()
    stop = threading.Event()
    clients = []
    started = time.monotonic()
    summary = {}
    try:
        cluster.setup(["e", "h1", "h2", "h3", "c"])
        cluster.probe_netem()
        cluster.start_etcd()
        for h in ("h1", "h2", "h3"):
            cluster.mount_ssd(h, 64)
            cluster.start_daemon(h)
        if not wait_until("3 members", lambda: cluster.reachable_members() == 3, 20):
            raise RuntimeError("the client host does not see 3 members")
        say(f"seed {seed}: 3 members on namespaced hosts, etcd at {cluster.etcd_url}; {args.minutes} min of faults")
        for w in range(args.clients):
            t = threading.Thread(target=client_loop, args=(cluster, stats, stop, w), daemon=True)
            t.start()
            clients.append(t)
        rss = []
        end = started + args.minutes * 60
        kinds = ["kill9", "link_cut", "degrade", "enospc", "lease"]
        warmup_done = started + min(20.0, args.minutes * 60 / 4)
        while time.monotonic() < end:
            if time.monotonic() >= warmup_done:
                rss.append(rss_kib(cluster.procs["h1"].pid))
            kind = rng.choice(kinds)
            line = inject(cluster, stats, kind, rng)
            stats.faults[kind] = stats.faults.get(kind, 0) + 1
            say(f"{time.monotonic() - started:6.1f} s  {line}")
            time.sleep(rng.uniform(1.0, 3.0))  # quiet time between episodes (load keeps running)
        stop.set()
        for t in clients:
            t.join(BENCH_LIMIT_S + 10)
            if t.is_alive():
                stats.violation("a client did not finish its last bench")
        # The end state once faults stop.
        if not wait_until("3 members", lambda: cluster.reachable_members() == 3, 30):
            stats.violation("the 3 members are not all back in etcd 30 s after the last fault")

        def drained():
            for h in ("h1", "h2", "h3"):
                m = cluster.metrics(h)
                if m.get("kvstash_reservations_open", -1) != 0 or m.get("kvstash_active_leases", -1) != 0:
                    return False
            return True

        if not wait_until("no reservations or leases", drained, 15):
            left = {h: {k: cluster.metrics(h).get(k) for k in ("kvstash_reservations_open", "kvstash_active_leases")}
                    for h in ("h1", "h2", "h3")}
            stats.violation(f"reservations or block leases left open: {left}")
        if not wait_until("one etcd lease per member", lambda: cluster.etcd_leases() == 3, LEASE_TTL_S * 3 + 5):
            stats.violation(f"etcd holds {cluster.etcd_leases()} leases for 3 members")
        rss = [v for v in rss if v is not None]
        rss_end = rss_kib(cluster.procs["h1"].pid)
        if rss and rss_end is not None and rss_end > rss[0] * 1.25 + 32 * 1024:
            stats.violation(f"h1's resident memory grew from {rss[0]} KiB to {rss_end} KiB")
        exits = {}
        for h in ("h1", "h2", "h3"):
            p = cluster.procs[h]
            p.send_signal(signal.SIGTERM)
            try:
                exits[h] = p.wait(20)
            except subprocess.TimeoutExpired:
                exits[h] = "hung"
            if exits[h] != 0:
                stats.violation(f"kvstashd on {h} exited {exits[h]} on SIGTERM")
        summary = {
            "seed": seed, "minutes": round((time.monotonic() - started) / 60, 2),
            "faults": stats.faults, "daemon_restarts": cluster.restarts,
            "benches": stats.benches, "failed_benches": stats.failed_benches,
            "put_ops": stats.put_ops, "get_ops": stats.get_ops, "hits": stats.hits, "misses": stats.misses,
            "verified_byte_exact": stats.verified, "wrong_bytes_blocks": stats.mismatches,
            "block_errors": stats.errors, "unreachable_blocks": stats.unreachable, "refused_puts": stats.refused_puts,
            "bench_verdicts_by_code": stats.error_codes,
            "h1_rss_kib": {"start": rss[0] if rss else None, "end": rss_end, "max": max(rss + [rss_end or 0]) if rss else None},
            "exit_codes": exits, "violations": stats.violations,
        }
    except Exception as e:  # the harness itself failed: report it as a failure with the logs
        stats.violation(f"harness: {e!r}")
        summary = {"seed": seed, "violations": stats.violations}
    finally:
        stop.set()
        cluster.cleanup()
        for h in ("h1", "h2", "h3"):
            run(["umount", cluster.ssd_dir(h)], check=False)
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if stats.violations:
        tails = []
        for h in ("h1", "h2", "h3"):
            path = os.path.join(work, f"{h}.err")
            if os.path.exists(path):
                tails.append(f"--- {h}.err\n" + open(path).read()[-1500:])
        print("\n".join(tails))
        say(f"FAIL: {len(stats.violations)} violations (seed {seed}; logs in {work})")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    say(f"PASS (seed {seed})")


if __name__ == "__main__":
    main()
