"""Test support for the kvstash Python module: a real kvstashd child process on run-time ports.

KVSTASHD names the daemon binary; PYTHONPATH must reach the built `kvstash` module (ctest sets both).
"""
import os
import signal
import subprocess
import sys

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


class Daemon:
    """kvstashd on 127.0.0.1:0 (--standalone unless `standalone` is False: a cluster member through
    etcd flags in `extra`); waits for its ready line, stops on SIGTERM."""

    def __init__(self, dram="256MiB", extra=(), standalone=True):
        binary = os.environ.get("KVSTASHD")
        if not binary or not os.path.exists(binary):
            raise RuntimeError(f"KVSTASHD does not name a kvstashd binary: {binary!r}")
        self.proc = subprocess.Popen(
            [binary, *(["--standalone"] if standalone else []), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
             "--dram-capacity", dram, "--log-level", "warn", *extra],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("kvstashd ready "):
            self.stop()
            raise RuntimeError(f"kvstashd did not become ready: {line!r}")
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        self.address = fields["grpc"]

    def stop(self):
        """Stops the daemon; returns its exit status (0 after a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        status = self.stop()
        if exc[0] is None and status != 0:
            raise AssertionError(f"kvstashd exited with status {status} instead of stopping cleanly")
