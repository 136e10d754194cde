"""Cluster operations as an operator meets them (issue 18), on a real etcd and real kvstashd members.

Each test reproduces one problem of the issue: a port clash, wildcard listens on several hosts, drains
that must stick, a drain seen by a client started after it, errors that name a dead member, etcd down at
start, the cluster status, the README's metric list, and what a stop costs. etcd's and the daemons'
ports are chosen at run time; waits are bounded polls.

Usage: cluster_ops_test.py KVSTASHD KVSTASH REPO (standard library only).
"""
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_procs import Daemon, Etcd, cli, free_port  # noqa: E402
from kvstash_procs import metric, request, wait_for  # noqa: E402

KVSTASHD, KVSTASH, REPO = sys.argv[1:4] if len(sys.argv) >= 4 else ("", "", "")
CLUSTER = "ops"


class ClusterOpsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="kvstash_cluster_ops_")
        self.root = self.tmp.name
        self.daemons = []
        self.etcd = Etcd(self.root)

    def tearDown(self):
        for d in self.daemons:
            d.stop(signal.SIGKILL)
        if self.etcd.proc is not None:
            self.etcd.stop()
        self.tmp.cleanup()

    # --- helpers -------------------------------------------------------------------------------------
    def daemon(self, *args, ttl=2, dram="32MiB", expect_ready=True):
        d = Daemon(KVSTASHD, self.root, "--etcd", self.etcd.endpoint, "--cluster", CLUSTER, "--lease-ttl", str(ttl),
                   "--dram-capacity", dram, "--no-ucx", *args)
        self.daemons.append(d)
        if expect_ready:
            self.assertTrue(d.ready, d.log())
        return d

    def member_daemon(self, member_id, *args, ttl=2, dram="32MiB"):
        return self.daemon("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--member-id", member_id,
                           *args, ttl=ttl, dram=dram)

    def kvstash(self, *args, cluster=True):
        pre = ["--etcd", self.etcd.endpoint, "--cluster", CLUSTER] if cluster else []
        return cli(KVSTASH, *pre, *args)

    def key_file(self, text):
        path = os.path.join(self.root, "block-" + text)
        with open(path, "w") as f:
            f.write(text * 64)
        return path

    def put_keys(self, n):
        """Puts n one-block keys through the cluster; {key: owner address}."""
        owners = {}
        for i in range(n):
            key = f"{0xabc000 + i:032x}"
            rc, out, err = self.kvstash("put", key, self.key_file(key[-6:]))
            self.assertEqual(rc, 0, err)
            rc, out, err = self.kvstash("stat", "--json", key)
            self.assertEqual(rc, 0, err)
            owners[key] = json.loads(out)["member"]
        return owners

    def registration(self, d, state):
        return metric(d.metrics, "kvstash_member_registration", f'state="{state}"')

    # --- 1. a port clash ---------------------------------------------------------------------------
    def test_port_clash_is_refused_and_a_lost_record_is_repaired(self):
        self.etcd.start()
        d1 = self.daemon("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
        key = f"/kvstash/{CLUSTER}/members/{d1.grpc}"
        # The default member id is the advertised gRPC address.
        self.assertIn(d1.grpc, self.etcd.members(CLUSTER))

        same_grpc = self.daemon("--listen", d1.grpc, "--metrics-listen", "127.0.0.1:0", expect_ready=False)
        self.assertFalse(same_grpc.ready)
        self.assertEqual(same_grpc.exited(), 1)
        self.assertIn(f"cannot listen for gRPC on {d1.grpc}", same_grpc.log())
        same_metrics = self.daemon("--listen", "127.0.0.1:0", "--metrics-listen", d1.metrics, expect_ready=False)
        self.assertFalse(same_metrics.ready)
        self.assertEqual(same_metrics.exited(), 1)
        self.assertIn("cannot listen for /metrics", same_metrics.log())
        # The first member is untouched: still registered, its record still its own.
        self.assertEqual(self.etcd.members(CLUSTER)[d1.grpc]["grpc"], d1.grpc)
        self.assertEqual(self.registration(d1, "registered"), 1)
        self.assertEqual(metric(d1.metrics, "kvstash_member_registrations_total"), 1)

        # A record that disappears while the lease lives is published again.
        self.etcd.delete(key)
        wait_for("the deleted record to be published again", lambda: d1.grpc in self.etcd.members(CLUSTER))
        self.assertIn("disappeared", d1.log())
        wait_for("the repair to be counted", lambda: metric(d1.metrics, "kvstash_member_registrations_total") == 2)

        # A record another address took over is left alone and reported, loudly, until it goes.
        taken = dict(self.etcd.members(CLUSTER)[d1.grpc], grpc="127.0.0.1:1")
        self.etcd.put(key, json.dumps(taken))
        wait_for("the conflict to show", lambda: self.registration(d1, "conflict") == 1)
        self.assertEqual(self.registration(d1, "registered"), 0)
        rc, out, err = self.kvstash("--addr", d1.grpc, "status", cluster=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("conflict", out)
        self.assertIn("not in its cluster: conflict", err)
        self.assertRegex(d1.log(), r"\[error\] member \S+ is NOT in cluster ops: .*taken over by 127\.0\.0\.1:1")
        self.etcd.delete(key)
        wait_for("the member to register again", lambda: self.registration(d1, "registered") == 1)
        self.assertEqual(self.etcd.members(CLUSTER)[d1.grpc]["grpc"], d1.grpc)
        rc, out, err = self.kvstash("--addr", d1.grpc, "status", cluster=False)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"membership\s+registered")

    # --- 2. wildcard listens on many hosts ---------------------------------------------------------
    def test_wildcard_listens_get_distinct_ids_and_advertise_names_the_address(self):
        self.etcd.start()
        host = socket.gethostname()
        a = self.daemon("--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0")
        b = self.daemon("--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0")
        port_a, port_b = a.grpc.rsplit(":", 1)[1], b.grpc.rsplit(":", 1)[1]
        members = self.etcd.members(CLUSTER)
        self.assertEqual(set(members), {f"{host}:{port_a}", f"{host}:{port_b}"})
        self.assertEqual(members[f"{host}:{port_a}"]["grpc"], f"{host}:{port_a}")
        c = self.daemon("--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0", "--advertise", "127.0.0.1")
        port_c = c.grpc.rsplit(":", 1)[1]
        record = self.etcd.members(CLUSTER)[f"127.0.0.1:{port_c}"]
        self.assertEqual(record["grpc"], f"127.0.0.1:{port_c}")
        self.assertTrue(record["metrics"].startswith("127.0.0.1:"), record)
        # The shipped cluster config starts as a member with the same defaults.
        shipped = self.daemon("--config", os.path.join(REPO, "deploy", "kvstashd-cluster.toml"), "--listen",
                              "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0")
        self.assertIn(f"{host}:{shipped.grpc.rsplit(':', 1)[1]}", self.etcd.members(CLUSTER))
        bad = self.daemon("--listen", "0.0.0.0:0", "--metrics-listen", "127.0.0.1:0", "--advertise", "h:1",
                          expect_ready=False)
        self.assertEqual(bad.exited(), 2)
        self.assertIn("advertise must be a host name", bad.log())

    # --- 3. a drain sticks ---------------------------------------------------------------------------
    def test_a_drain_survives_lease_loss_and_restart_until_undone(self):
        self.etcd.start()
        d = self.member_daemon("m1")
        rc, out, err = self.kvstash("drain", "m1")
        self.assertEqual(rc, 0, err)
        state = lambda: self.etcd.members(CLUSTER).get("m1", {}).get("state")  # noqa: E731
        self.assertEqual(state(), "draining")
        # Lease loss: the record goes with the lease and comes back draining.
        _, lease = self.etcd.get(f"/kvstash/{CLUSTER}/members/m1")
        self.etcd.revoke(lease)
        wait_for("the member to register again", lambda: self.etcd.get(f"/kvstash/{CLUSTER}/members/m1")[1] not in
                 (0, lease))
        self.assertEqual(state(), "draining")
        self.assertEqual(metric(d.metrics, "kvstash_member_draining"), 1)
        # Restart: registered draining from the first record on.
        d.stop()
        self.assertNotIn("m1", self.etcd.members(CLUSTER))
        d = self.member_daemon("m1")
        self.assertEqual(state(), "draining")
        self.assertIn("draining: its drain mark is set", d.log())
        rc, out, err = self.kvstash("drain", "m1", "--undo")
        self.assertEqual(rc, 0, err)
        self.assertEqual(state(), "serving")
        d.stop()
        d = self.member_daemon("m1")
        self.assertEqual(state(), "serving")
        self.assertEqual(metric(d.metrics, "kvstash_member_draining"), 0)

    # --- 4. a drain's keys for clients started after it ----------------------------------------------
    def test_a_client_started_after_a_drain_reads_the_drained_members_keys(self):
        self.etcd.start()
        m1, m2 = self.member_daemon("m1", ttl=10), self.member_daemon("m2", ttl=10)
        owners = self.put_keys(16)
        on_m1 = [k for k, owner in owners.items() if owner == m1.grpc]
        self.assertTrue(on_m1 and len(on_m1) < len(owners), owners)
        rc, _, err = self.kvstash("drain", "m1")
        self.assertEqual(rc, 0, err)
        record = self.etcd.members(CLUSTER)["m1"]
        self.assertGreater(record["draining_since_unix_ms"], 0)
        for key in on_m1:  # each CLI is a client started after the drain
            rc, out, err = self.kvstash("get", key, "-o", os.path.join(self.root, "out"))
            self.assertEqual(rc, 0, f"{key}: {err}")
            rc, out, err = self.kvstash("stat", "--json", key)
            self.assertEqual(rc, 0, err)
            # The get handed the block to its new owner.
            self.assertEqual(json.loads(out)["member"], m2.grpc)

    # --- 5. a dead member is named ------------------------------------------------------------------
    def test_errors_name_the_member_that_does_not_answer(self):
        self.etcd.start()
        self.member_daemon("m1", ttl=60)
        m2 = self.member_daemon("m2", ttl=60)
        owners = self.put_keys(16)
        on_m2 = [k for k, owner in owners.items() if owner == m2.grpc]
        self.assertTrue(on_m2, owners)
        m2.stop(signal.SIGKILL)  # its record stays for the 60 s TTL

        rc, out, err = self.kvstash("get", on_m2[0], "-o", os.path.join(self.root, "out"))
        self.assertEqual(rc, 1)
        self.assertIn("UNAVAILABLE", err)
        self.assertIn(f"member m2 at {m2.grpc} did not answer", err)
        rc, out, err = self.kvstash("get", "--json", on_m2[0], "-o", os.path.join(self.root, "out"))
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out)["code"], "UNAVAILABLE")
        rc, out, err = self.kvstash("stat", on_m2[0])
        self.assertEqual(rc, 1)
        self.assertIn(f"UNAVAILABLE: block {on_m2[0]} not found; member m2 at {m2.grpc} did not answer", err)
        # A put to a key m2 owns: named, not "written by another client".
        mine = [f"{0xbeef00 + i:032x}" for i in range(64)]
        results = [self.kvstash("put", "--json", k, self.key_file("y")) for k in mine[:16]]
        unreachable = [(rc, out, err) for rc, out, err in results if rc != 0]
        self.assertTrue(unreachable, "no key of 16 went to m2")
        for rc, out, err in unreachable:
            self.assertIn("UNAVAILABLE", err)
            self.assertIn(f"member m2 at {m2.grpc}", err)
            self.assertNotIn("another client", err)
            self.assertEqual(json.loads(out)["outcome"], "unreachable")
        # A plain miss: JSON on stdout too.
        missing = next(k for k in mine[16:] if self.kvstash("stat", "--json", k)[0] == 1)
        rc, out, err = self.kvstash("get", "--json", missing, "-o", os.path.join(self.root, "out"))
        self.assertEqual(rc, 1)
        doc = json.loads(out)
        self.assertEqual((doc["found"], doc["key"]), (False, missing))
        self.assertIn(doc["code"], ("NOT_FOUND", "UNAVAILABLE"))
        # bench: the refusals are the dead member, not a busy or full daemon.
        rc, out, err = self.kvstash("bench", "--op", "put", "--count", "40", "--block-size", "4KiB", "--threads", "1")
        self.assertEqual(rc, 1, out)
        self.assertIn("did not answer", err)
        self.assertIn(f"member m2 at {m2.grpc}", err)
        self.assertNotIn("busy or full", err)

    # --- 6. etcd at start ----------------------------------------------------------------------------
    def test_a_member_started_before_etcd_registers_once_it_answers(self):
        d = self.member_daemon("early")
        # A replicating member watches the members too: it starts as well, and reads them later.
        replicating = self.member_daemon("early-replicas", "--replicas", "2")
        self.assertIn("reading the members once etcd answers", replicating.log())
        self.assertRegex(d.log(), r"etcd does not answer at start \(cannot reach etcd \(127\.0\.0\.1:\d+: cannot "
                                  r"connect \(connection refused, or no route to the host\)\)\)")
        self.assertEqual(self.registration(d, "pending"), 1)
        rc, out, err = self.kvstash("--addr", d.grpc, "status", cluster=False)
        self.assertEqual(rc, 1)
        self.assertIn("pending", err)
        self.etcd.start()
        wait_for("the members to register", lambda: {"early", "early-replicas"} <= set(self.etcd.members(CLUSTER)))
        wait_for("the metric to say so", lambda: self.registration(replicating, "registered") == 1)
        wait_for("the metric to say so", lambda: self.registration(d, "registered") == 1)
        tls = Daemon(KVSTASHD, self.root, "--etcd", "https://127.0.0.1:1", "--listen", "127.0.0.1:0",
                     "--metrics-listen", "127.0.0.1:0", "--no-ucx", "--dram-capacity", "32MiB")
        self.daemons.append(tls)
        self.assertFalse(tls.ready)
        self.assertEqual(tls.exited(), 1)
        self.assertIn("is https: give the CA that signed etcd's certificate (--etcd-ca)", tls.log())

    # --- 7. cluster status --------------------------------------------------------------------------
    def test_cluster_status_shows_each_tier_and_counts_gets_as_hits(self):
        self.etcd.start()
        ssd = os.path.join(self.root, "ssd")
        os.mkdir(ssd)
        self.member_daemon("m1", "--ssd-dir", ssd, "--ssd-capacity", "512MiB")
        owners = self.put_keys(3)
        for key in owners:
            for _ in range(2):
                rc, _, err = self.kvstash("get", key, "-o", os.path.join(self.root, "out"))
                self.assertEqual(rc, 0, err)
        rc, out, err = self.kvstash("status", "--json")
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc["get"]["hits"], 6)
        self.assertEqual(doc["hits"]["hits"], 6)
        self.assertAlmostEqual(doc["hits"]["hit_ratio"], 1.0)
        self.assertAlmostEqual(doc["members"][0]["hit_ratio"], 1.0)
        self.assertEqual(doc["members"][0]["membership"], "registered")
        rc, out, err = self.kvstash("status")
        self.assertEqual(rc, 0, err)
        header = next(line for line in out.splitlines() if re.match(r"member\s+address", line))
        self.assertIn("dram used/capacity", header)
        self.assertIn("ssd used/capacity", header)
        self.assertNotIn(" capacity ", header.replace("used/capacity", ""))
        row = next(line for line in out.splitlines() if line.startswith("m1 "))
        self.assertIn("100.0%", row)
        self.assertIn("registered", row)

    # --- 8. the README's metrics, SSD recovery ------------------------------------------------------
    def test_every_metric_the_readme_names_is_exported_or_marked_conditional(self):
        self.etcd.start()
        d = self.member_daemon("m1")
        with open(os.path.join(REPO, "README.md")) as f:
            readme = f.read()
        section = readme[readme.index("## Metrics"):]
        section = section[:section.index("\n## ", 5)]
        rows = re.findall(r"^\| `(kvstash_[a-z_]+)` \| \w+ \|.*\| (.*) \|$", section, re.MULTILINE)
        self.assertGreater(len(rows), 30)
        status, _, body = request(d.metrics, None, "GET", "/metrics")
        self.assertEqual(status, 200)
        exported = set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.MULTILINE))
        named = {name for name, _ in rows}
        for name, meaning in rows:
            if "only with" not in meaning:
                self.assertIn(name, exported, f"README names {name}, which a cluster member does not export")
        self.assertEqual(exported - named, set(), "exported but not in the README's metric table")
        self.assertIn("skipped_in_hbm", section)

    def test_a_restart_logs_the_ssd_blocks_it_recovered(self):
        self.etcd.start()
        ssd = os.path.join(self.root, "ssd")
        os.mkdir(ssd)
        args = ("--ssd-dir", ssd, "--ssd-capacity", "512MiB")
        d = self.member_daemon("m1", *args, dram="8MiB")
        self.assertIn("0 blocks (0 B) recovered", d.log())
        rc, out, err = self.kvstash("bench", "--op", "put", "--count", "24", "--block-size", "1MiB", "--keep")
        self.assertEqual(rc, 0, err)
        wait_for("DRAM victims on SSD", lambda: (metric(d.metrics, "kvstash_tier_blocks", 'tier="ssd"') or 0) > 0)
        on_ssd = int(metric(d.metrics, "kvstash_tier_blocks", 'tier="ssd"'))
        d.stop()
        d = self.member_daemon("m1", *args, dram="8MiB")
        m = re.search(r"SSD tier: .*, (\d+) blocks \(.*\) recovered from it", d.log())
        self.assertTrue(m, d.log())
        self.assertGreaterEqual(int(m.group(1)), on_ssd)

    # --- 9. shutdown -------------------------------------------------------------------------------
    def test_a_stop_logs_where_its_time_went_and_exits_right_after(self):
        self.etcd.start()
        d = self.member_daemon("m1", "--dram-prefault", dram="256MiB")
        start = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        wait_for("the stop to be logged", lambda: "stopped cleanly" in d.log())
        logged = time.monotonic()
        self.assertIsNotNone(d.exited(deadline_s=1.0), "still running 1 s after 'stopped cleanly'")
        self.assertEqual(d.proc.returncode, 0)
        m = re.search(r"stopped cleanly in ([\d.]+) s \(services ([\d.]+) s, releasing memory and tiers ([\d.]+) s\)",
                      d.log())
        self.assertTrue(m, d.log())
        self.assertLessEqual(float(m.group(1)), logged - start + 0.05)
        self.assertNotIn("m1", self.etcd.members(CLUSTER))  # the lease was revoked on the way out


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
