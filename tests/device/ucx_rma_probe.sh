#!/bin/bash
# Probes UCX one-sided operations on CUDA memory with the CUDA UCX in $1/ucx-cuda (issue 20):
# ucx_perftest ucp_put_bw / ucp_get with each pair of memory types, full logs kept in $OUT.
#   ucx_rma_probe.sh CARRY SIZE
set -uo pipefail
D=$1; SIZE=${2:-1048576}; OUT=${OUT:-/tmp}
U=$D/ucx-cuda
export LD_LIBRARY_PATH=$U:$LD_LIBRARY_PATH UCX_MODULE_DIR=$U/ucx
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
probe() {  # test memtypes extra-env...
  local t=$1 m=$2; shift 2
  local port; port=$(free_port)
  local tag=${t}_${m/,/_}${1:+_$(echo "$*" | tr -c 'A-Za-z0-9_\n' '_')}
  env "$@" timeout ${PROBE_TIMEOUT:-30} $U/bin/ucx_perftest -p $port > $OUT/$tag.server.log 2>&1 &
  local server=$!
  local tries=0
  until ss -ltn 2>/dev/null | grep -q ":$port " || ((tries++ >= 100)); do sleep 0.05; done
  env "$@" timeout ${PROBE_TIMEOUT:-30} $U/bin/ucx_perftest 127.0.0.1 -p $port -t $t -m $m -s $SIZE -n 100 -w 10 > $OUT/$tag.client.log 2>&1
  local rc=$?
  wait $server; local src=$?
  echo "$tag: client rc=$rc server rc=$src $(grep -E '^Final:' $OUT/$tag.client.log)"
}
# PROBES: "test memtypes [VAR=value...]" separated by ';' (default: every pair of memory types).
PROBES=${PROBES:-"ucp_put_bw cuda,cuda;ucp_get cuda,cuda;ucp_put_bw host,cuda;ucp_get host,cuda;ucp_put_bw cuda,host;ucp_get cuda,host;ucp_put_bw host,host;ucp_get host,host"}
IFS=';' read -ra list <<<"$PROBES"
for p in "${list[@]}"; do probe $p; done
echo "-- first crash's log"
for f in $(ls $OUT/*.client.log | head -3); do echo "== $f"; grep -vE "^[|+]" $f | head -30; done
