#!/bin/bash
# HBM tier throughput on the device: kvstash bench (1 MiB blocks, put then get, UCX data path)
# against kvstashd with DRAM only and with an HBM tier, then pinned cudaMemcpyAsync of the same
# blocks (gpu_bench --only blockcopy) for the PCIe ceiling. Carry build-gpu/devcarry2; logs under $OUT.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
COUNT=${COUNT:-2048}
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
export LD_LIBRARY_PATH=$D/lib:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for run in 1 2; do
  for tier in dram hbm; do
    HBM=0; [ $tier = hbm ] && HBM=4GiB
    $D/bin/kvstashd --listen 127.0.0.1:17370 --metrics-listen 127.0.0.1:17371 --dram-capacity 6GiB \
      --hbm-capacity $HBM > /tmp/kvstashd_$tier.log 2>&1 &
    P=$!
    for i in $(seq 50); do $D/bin/kvstash --addr 127.0.0.1:17370 status >/dev/null 2>&1 && break; sleep 0.2; done
    echo "== run $run, tier $tier (--hbm-capacity $HBM)"
    device_check "bench_${tier}_$run" $OUT/bench_${tier}_$run.log "^[^\[]" timeout 120 $D/bin/kvstash --addr 127.0.0.1:17370 bench \
      --op both --block-size 1MiB --count $COUNT --threads 4 --batch 8 --data-path ucx --duration-s 60 --keep
    cat $OUT/bench_${tier}_$run.log >> $OUT/hbm_bench.log
    $D/bin/kvstash --addr 127.0.0.1:17370 status 2>&1 | grep -iE "hbm|dram" | head -4
    grep -iE "hbm|gpu" /tmp/kvstashd_$tier.log | head -3 >> $OUT/hbm_bench.log
    kill $P; wait $P 2>/dev/null
  done
done
device_check blockcopy $OUT/blockcopy.log "" $D/bin/gpu_bench --only blockcopy --pages $COUNT --reps 5
cat $OUT/blockcopy.log >> $OUT/hbm_bench.log
device_checks_done
