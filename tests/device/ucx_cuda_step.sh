#!/bin/bash
# The `ucx` step of node_cycle.sh (issue 20): UCX 1.13.1 built with CUDA (deploy/build-ucx-cuda.sh),
# carried in $1/ucx-cuda. Lists its transports, moves device and pinned-host memory between two
# processes with ucx_perftest (tag and one-sided put), measures torch's cudaMemcpy of the same sizes
# beside it, and asks kvstashd which GPU data path it sees. Exits non-zero when a step fails.
#   ucx_cuda_step.sh CARRY "SIZES"
set -uo pipefail
D=$1; SIZES=${2:-"1048576 4194304 16777216"}
U=$D/ucx-cuda
if [[ ! -x $U/bin/ucx_info ]]; then echo "no CUDA UCX in $U (run deploy/build-ucx-cuda.sh, then make_nodecarry.sh)"; exit 1; fi
export LD_LIBRARY_PATH=$U:$LD_LIBRARY_PATH UCX_MODULE_DIR=$U/ucx
rc=0
echo "-- ucx_info -v / -d (transports)"
$U/bin/ucx_info -v | head -2
$U/bin/ucx_info -d > /tmp/ucx_info.txt 2>&1 || rc=1
grep -E "Transport|Memory domain" /tmp/ucx_info.txt | sort | uniq -c
grep -q "Transport: cuda_copy" /tmp/ucx_info.txt || { echo "cuda_copy missing"; rc=1; }
grep -q "Transport: cuda_ipc" /tmp/ucx_info.txt || { echo "cuda_ipc missing"; rc=1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# One ucx_perftest pair: server in the background, client prints the final line.
perf() {  # test memtypes size [VAR=value...] (UCX settings for both processes)
  local t=$1 m=$2 s=$3; shift 3
  local port; port=$(free_port)
  env "$@" timeout ${PERF_TIMEOUT:-20} $U/bin/ucx_perftest -p $port > /tmp/perf_server.log 2>&1 &
  local server=$!
  local tries=0
  until ss -ltn 2>/dev/null | grep -q ":$port " || ((tries++ >= 100)); do sleep 0.05; done
  local line
  line=$(env "$@" timeout ${PERF_TIMEOUT:-20} $U/bin/ucx_perftest 127.0.0.1 -p $port -t $t -m $m -s $s -n ${ITERS:-200} -w 20 2>&1 | tee /tmp/perf_client.log | grep -E "^Final:" )
  local status=$?
  wait $server
  if [[ $status != 0 || -z $line ]]; then
    echo "$t $m $s $*: FAILED"; grep -m1 "Caught signal" /tmp/perf_client.log /tmp/perf_server.log; return 1
  fi
  # Final: iterations, latency (typical avg overall), bandwidth MB/s (avg overall), msg/s (avg overall)
  echo "$t $m $s $*: $line"
}
echo "-- ucx_perftest between two processes (columns of Final: iters, lat typ/avg/overall us, MB/s avg/overall, msg/s)"
for size in $SIZES; do
  for mem in cuda,cuda host,cuda cuda,host host,host; do perf tag_bw $mem $size || rc=1; done
  # One-sided operations on device memory need UCX's newer protocol layer in 1.13.1: with the
  # default one (UCX_PROTO_ENABLE=n) a put or get naming CUDA memory is sent as a shared-memory
  # bcopy that dereferences the device pointer on the host and dies of SIGSEGV (seen on the H100,
  # every memory-type pair with a device side, any UCX_TLS). That crash is shown once, not counted.
  for mem in cuda,cuda host,cuda cuda,host; do
    perf ucp_put_bw $mem $size UCX_PROTO_ENABLE=y || rc=1
    perf ucp_get $mem $size UCX_PROTO_ENABLE=y || rc=1
  done
done
first=${SIZES%% *}
perf ucp_put_bw cuda,cuda $first UCX_PROTO_ENABLE=n || echo "(the known crash of UCX 1.13.1's default protocols on device memory; not counted)"
echo "-- cudaMemcpy of the same sizes (torch copy_, one process)"
python3 - "$SIZES" <<'PY' || rc=1
import sys, time, torch
for size in map(int, sys.argv[1].split()):
    a = torch.empty(size, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
    h = torch.empty(size, dtype=torch.uint8).pin_memory(); g = torch.empty(size, dtype=torch.uint8).pin_memory()
    for name, dst, src in (("device->device", b, a), ("device->pinned", h, a), ("pinned->device", a, h), ("pinned->pinned", g, h)):
        for _ in range(10): dst.copy_(src)
        torch.cuda.synchronize(); n = 200; t = time.perf_counter()
        for _ in range(n): dst.copy_(src)
        torch.cuda.synchronize(); dt = time.perf_counter() - t
        print(f"cudaMemcpy {name:15s} {size:>9d} B: {size * n / dt / 1e9:7.2f} GB/s")
PY
echo "-- kvstashd's GPU data path with this UCX (--hbm-capacity 256MiB)"
port=$(free_port); mport=$(free_port)
$D/bin/kvstashd --standalone --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$mport --dram-capacity 256MiB \
  --hbm-capacity 256MiB > /tmp/kvstashd_ucx.log 2>&1 &
k=$!
tries=0; until $D/bin/kvstash --addr 127.0.0.1:$port status > /tmp/status.txt 2>&1 || ((tries++ >= 100)); do sleep 0.1; done
grep -iE "gpu|data path|hbm" /tmp/status.txt | head
grep -i "gpu data path" /tmp/kvstashd_ucx.log | head -3
kill $k; wait $k
exit $rc
