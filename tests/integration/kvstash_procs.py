"""Child processes and HTTP helpers shared by the Python integration tests (standard library only).

Every wait is bounded; children are started on run-time ports and print one ready line.
"""
import http.client
import json
import re
import signal
import subprocess
import time

DEADLINE_S = 30


def wait_for(what, condition, deadline_s=DEADLINE_S):
    """Polls condition() until it is true; fails naming `what` after the deadline."""
    give_up = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(proc, sig=signal.SIGTERM):
    """Sends `sig` (SIGTERM: a clean stop) and waits; the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_ready(name, argv):
    """A child printing `<name> ready k=v ...` on stdout: (process, {k: v})."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith(f"{name} ready "):
        stop(proc)
        raise AssertionError(f"{name} did not become ready: {line!r}")
    return proc, dict(f.split("=", 1) for f in line.split()[2:])


def start_conductor(binary, block_tokens, *extra):
    """kvstash-conductor with its front door, on run-time ports: (process, grpc, metrics, front door)."""
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--http", "127.0.0.1:0",
                             "--block-tokens", str(block_tokens), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_line, front_line, listen_line = proc.stderr.readline(), proc.stderr.readline(), proc.stdout.readline()
    m = re.search(r"http://([^/]+)/metrics", metrics_line)
    f = re.search(r"http://([^/]+)/v1/completions", front_line)
    p = re.search(r"listening on port (\d+)", listen_line)
    if not (m and f and p):
        stop(proc)
        raise AssertionError(f"kvstash-conductor did not start: {metrics_line!r} {front_line!r} {listen_line!r}")
    return proc, f"127.0.0.1:{p.group(1)}", m.group(1), f.group(1)


def request(address, body, method="POST", path="/v1/completions"):
    """(status, content type, body bytes); `body` is sent as JSON unless None."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def metric(address, name, labels=""):
    """One sample of a /metrics exposition, e.g. metric(a, "kvstash_node_kv_bytes_total", 'direction="stored"')."""
    status, _, data = request(address, None, "GET", "/metrics")
    assert status == 200, status
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, data.decode(), re.MULTILINE)
    return float(match.group(1)) if match else None
