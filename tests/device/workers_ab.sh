#!/bin/bash
# Device A/B (issue 7 follow-up) of how many of the daemon's lanes one client's batch is dealt
# over: kvstash-bench-transfer, tcp, 1 MiB blocks, --ucx-lanes LANES (default 4), alternating
# --transfer-workers over WORKERS_AB (default "1 2 4") for ROUNDS rounds (default 2).
# Carry .devnet.tar.xz (tests/device/make_netcarry.sh).
set -u
export DEVNET=/tmp/devnet
mkdir -p $DEVNET && tar -C $DEVNET -xJf .devnet.tar.xz
export PATH=$DEVNET/bin:$PATH LD_LIBRARY_PATH=$DEVNET/lib UCX_MODULE_DIR=$DEVNET/ucx
{ nproc; lscpu | grep -E "Model name"; uptime; } | tee $OUT/host.txt
for r in $(seq 1 ${ROUNDS:-2}); do
  for w in ${WORKERS_AB:-1 2 4}; do
    timeout 150 kvstash-bench-transfer --kvstashd $DEVNET/bin/kvstashd --systems kvstash --transports tcp \
      --block-kib 1024 --ucx-lanes ${LANES:-4} --transfer-workers $w > $OUT/workers_${w}_$r.txt 2>&1
    echo "== workers $w round $r (rc=$?)"
    grep -E "^\| kvstash" $OUT/workers_${w}_$r.txt | awk -F'|' '{print $4, $6, $7, substr($11,1,40)}'
  done
done
