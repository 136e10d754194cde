#!/bin/bash
# Device cycle (issues 7 and 4) on a 16-core host: the data-plane bench (kvstash beside memcpy,
# iperf3 and Redis, shm and tcp; FULL_RUNS="1 2" for two, FULL_RUNS="" for none), then the cluster scaling bench (daemons on network
# namespaces) where namespaces can be made. Carry .devnet.tar.xz (tests/device/make_netcarry.sh).
set -u
export DEVNET=/tmp/devnet
mkdir -p $DEVNET && tar -C $DEVNET -xJf .devnet.tar.xz
export PATH=$DEVNET/bin:$PATH LD_LIBRARY_PATH=$DEVNET/lib UCX_MODULE_DIR=$DEVNET/ucx
{ nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread|NUMA node\(s\)"; uname -r; head -2 /etc/os-release; uptime; } | tee $OUT/host.txt
for r in ${FULL_RUNS-1}; do
  timeout 280 kvstash-bench-transfer --kvstashd $DEVNET/bin/kvstashd > $OUT/transfer_full_$r.txt 2>&1
  echo "transfer run $r: rc=$?"; uptime
done
timeout 120 kvstash-bench-transfer --kvstashd $DEVNET/bin/kvstashd --systems kvstash iperf3 redis --transports tcp \
  --block-kib 1024 > $OUT/transfer_tcp_3.txt 2>&1; echo "tcp run: rc=$?"
grep -E "^\| (iperf3|redis|kvstash) \| tcp .*1024 KiB|^\| iperf3" $OUT/transfer_full_1.txt | head -40
# A/B of the daemon's lanes when LANES_AB names two counts ("1 4"): alternated tcp 1 MiB runs.
for r in 1 2; do
  for l in ${LANES_AB:-}; do
    timeout 100 kvstash-bench-transfer --kvstashd $DEVNET/bin/kvstashd --systems kvstash iperf3 redis --transports tcp \
      --block-kib 1024 --ucx-lanes $l > $OUT/lanes_${l}_$r.txt 2>&1
    echo "== lanes $l run $r"; grep -E "^\| (kvstash|iperf3|redis)" $OUT/lanes_${l}_$r.txt | awk -F'|' '{print $2, $4, $6, $7, substr($11,1,30)}'
  done
done
# A/B against a baseline daemon when one is carried (bin/kvstashd.base): alternated tcp 1 MiB runs.
if [[ -x $DEVNET/bin/kvstashd.base ]]; then
  for r in 1 2; do
    for v in kvstashd.base kvstashd; do
      timeout 100 kvstash-bench-transfer --kvstashd $DEVNET/bin/$v --systems kvstash iperf3 --transports tcp \
        --block-kib 1024 > $OUT/ab_${v}_$r.txt 2>&1
      echo "== $v run $r"; grep -E "^\| (kvstash|iperf3)" $OUT/ab_${v}_$r.txt | awk -F'|' '{print $5, $6, $7, $11}'
    done
  done
fi
if ip netns add kvprobe 2>/dev/null; then
  ip netns del kvprobe
  for t in ${CLUSTER_THREADS:-1}; do
    timeout 200 kvstash-bench-cluster --threads $t > $OUT/cluster_t$t.txt 2>&1; echo "cluster, $t threads per client: rc=$?"; tail -6 $OUT/cluster_t$t.txt
  done
else
  echo "no network namespaces here: cluster bench skipped"
fi
