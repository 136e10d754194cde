"""A real etcd, kvstashd members and the kvstash CLI for the cluster operations tests (standard library only).

etcd runs on 127.0.0.1 with ports chosen at run time and can be stopped and started again on the same
ports and data (an outage) or on the same ports with fresh data (a lost etcd). Every wait is a bounded
poll of observable state.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request

from kvstash_procs import DEADLINE_S, stop, wait_for


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(text):
    return base64.b64encode(text.encode()).decode()


class Etcd:
    """One etcd member; `endpoint` stays the same across stop()/start()."""

    def __init__(self, root):
        self.dir = tempfile.mkdtemp(prefix="etcd-", dir=root)
        self.port, self.peer_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, fresh=False):
        if fresh:
            shutil.rmtree(os.path.join(self.dir, "data"), ignore_errors=True)
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(os.path.join(self.dir, "etcd.log"), "a") as log:
            self.proc = subprocess.Popen(
                ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"), "--listen-client-urls",
                 self.endpoint, "--advertise-client-urls", self.endpoint, "--listen-peer-urls", peer,
                 "--initial-advertise-peer-urls", peer, "--initial-cluster", f"t={peer}"],
                stdout=log, stderr=log)
        wait_for("etcd to be healthy", self.healthy)
        return self

    def healthy(self):
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                return b"true" in r.read()
        except (urllib.error.URLError, ConnectionError, OSError):
            if self.proc.poll() is not None:
                raise AssertionError("etcd exited; see " + os.path.join(self.dir, "etcd.log"))
            return False

    def stop(self):
        stop(self.proc, signal.SIGKILL)

    def call(self, path, body):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def get(self, key):
        """(value, lease id) of `key`, or (None, 0)."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        if not kvs:
            return None, 0
        return base64.b64decode(kvs[0].get("value", "")).decode(), int(kvs[0].get("lease", 0))

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def delete(self, key):
        self.call("/v3/kv/deleterange", {"key": _b64(key)})

    def revoke(self, lease):
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    def members(self, cluster):
        """{member id: record} under /kvstash/<cluster>/members/."""
        prefix = f"/kvstash/{cluster}/members/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)}).get("kvs", [])
        records = [json.loads(base64.b64decode(kv["value"])) for kv in kvs]
        return {r["id"]: r for r in records}


class Daemon:
    """A kvstashd child: stdout's ready line read, stderr kept in a file (log())."""

    def __init__(self, binary, root, *args):
        fd, self.log_path = tempfile.mkstemp(prefix="kvstashd-", suffix=".log", dir=root)
        self.log_file = os.fdopen(fd, "w")
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=self.log_file, text=True)
        line = self.proc.stdout.readline()
        self.ready = line.startswith("kvstashd ready ")
        fields = dict(f.split("=", 1) for f in line.split()[2:]) if self.ready else {}
        self.grpc, self.metrics = fields.get("grpc"), fields.get("metrics")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def exited(self, deadline_s=DEADLINE_S):
        """The exit status, waiting at most deadline_s (None when still running)."""
        try:
            return self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM):
        """Signals and waits; closes the pipe and the log file. The exit status."""
        status = stop(self.proc, sig)
        self.proc.stdout.close()
        self.log_file.close()
        return status


def cli(binary, *args, timeout=60):
    """(exit status, stdout, stderr) of one kvstash command."""
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr
