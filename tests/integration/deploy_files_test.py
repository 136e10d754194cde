#!/usr/bin/env python3
"""deploy/ files are well-formed: Kubernetes manifests parse as YAML and hold the objects the
operations guide names, the kvstashd config inside the ConfigMap is valid TOML for a cluster
member, the Grafana dashboard is JSON whose queries use metrics kvstashd exports, and
prometheus.yml passes promtool.

usage: deploy_files_test.py REPO_ROOT PROMTOOL"""
import glob
import json
import os
import re
import subprocess
import sys
import tomllib

try:
    import yaml
except ImportError:
    print("deploy_files_test: SKIP: python3-yaml is not installed")
    sys.exit(77)

root, promtool = sys.argv[1], sys.argv[2]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


# Kubernetes manifests.
objects = []
for path in sorted(glob.glob(os.path.join(root, "deploy/k8s/*.yaml"))):
    with open(path) as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            failures.append(f"{path}: not YAML: {e}")
            continue
    for d in docs:
        check(isinstance(d, dict) and "apiVersion" in d and "kind" in d and "metadata" in d,
              f"{path}: a document without apiVersion/kind/metadata")
        objects.append(d)
kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
for want in [("Namespace", "kvstash"), ("DaemonSet", "kvstashd"), ("ConfigMap", "kvstashd-config"),
             ("StatefulSet", "kvstash-etcd"), ("Service", "kvstash-etcd"), ("Service", "kvstashd-metrics"),
             ("ServiceMonitor", "kvstashd")]:
    check(want in kinds, f"deploy/k8s lacks {want[0]} {want[1]}")
for o in objects:
    if o["kind"] == "DaemonSet":
        spec = o["spec"]["template"]["spec"]
        check(spec.get("hostNetwork") is True, "the kvstashd DaemonSet must use the host network (RDMA)")
        check(o["spec"]["selector"]["matchLabels"].items() <= o["spec"]["template"]["metadata"]["labels"].items(),
              "DaemonSet selector does not match its pod labels")
    if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kvstashd-config":
        conf = tomllib.loads(o["data"]["kvstashd.toml"])
        check(conf["server"]["standalone"] is False, "the k8s config must join the cluster")
        check(len(conf["cluster"]["etcd_endpoints"]) > 0, "the k8s config names no etcd endpoint")

# The example cluster config.
with open(os.path.join(root, "deploy/kvstashd-cluster.toml"), "rb") as f:
    conf = tomllib.load(f)
check(set(conf["cluster"]) <= {"etcd_endpoints", "name", "weight", "lease_ttl_s"}, "unknown [cluster] keys")

# Grafana dashboard.
# Metric families are registered in the sources (a string literal in a .cc, or in an *_impl.h that
# holds a class's members since the split into files of one job).
exported = set()
for src in (glob.glob(os.path.join(root, "server/**/*.cc"), recursive=True) + glob.glob(os.path.join(root, "common/*.cc")) +
            glob.glob(os.path.join(root, "node/*.cc")) + glob.glob(os.path.join(root, "scheduler/*.cc")) +
            glob.glob(os.path.join(root, "*/*_impl.h"))):
    with open(src) as f:
        exported |= set(re.findall(r'"(kvstash_[a-z_]+)"', f.read()))
with open(os.path.join(root, "deploy/grafana/kvstash-dashboard.json")) as f:
    dash = json.load(f)
check(len(dash["panels"]) >= 8, "the dashboard has too few panels")
titles = " ".join(p["title"].lower() for p in dash["panels"])
for topic in ["capacity", "hit ratio", "throughput", "latency", "evictions", "replicas", "node ttft",
              "prompt tokens by source", "conductor decisions", "live instances"]:
    check(topic in titles, f"the dashboard has no {topic} panel")
for p in dash["panels"]:
    for t in p["targets"]:
        for name in re.findall(r"\b(kvstash_[a-z_]+)", t["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            check(base in exported, f"dashboard panel '{p['title']}' queries unknown metric {name}")

# Prometheus configuration.
r = subprocess.run([promtool, "check", "config", os.path.join(root, "deploy/prometheus/prometheus.yml")],
                   capture_output=True, text=True)
check(r.returncode == 0, "promtool rejects prometheus.yml: " + r.stdout + r.stderr)

for f in failures:
    print("FAIL:", f)
print(f"deploy files: {len(objects)} Kubernetes objects, {len(dash['panels'])} dashboard panels, "
      f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
