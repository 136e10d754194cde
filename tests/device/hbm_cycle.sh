#!/bin/bash
# Device cycle (issue 6 wiring): card; HBM daemon integration test; server_test's HBM case; gpu unit tests.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
R=$(pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# Use the device's libstdc++ unless it is older than Debian 12's (GLIBCXX_3.4.30).
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
export LD_LIBRARY_PATH=${EXTRA}$D/lib:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
# The test binaries name kvstashd by its build path here.
mkdir -p /work/main/build-gpu/server && ln -sf $D/bin/kvstashd /work/main/build-gpu/server/kvstashd
cd /tmp
timeout 240 $D/bin/hbm_daemon_test 2>&1 | tee $OUT/hbm_daemon_test.log | grep -E "^\[  |Failure|Expected|Which is|error|Skipped|said" | head -60
timeout 60 $D/bin/server_test --gtest_filter='Daemon*' 2>&1 | tee $OUT/server_test.log | grep -E "^\[  |Failure" | head
timeout 120 $D/bin/gpu_codec_test 2>&1 | tee $OUT/gpu_codec_test.log | grep -E "^\[  PASSED|^\[  FAILED|Failure" | head
timeout 120 $D/bin/gpu_test 2>&1 | tee $OUT/gpu_test.log | grep -E "^\[  PASSED|^\[  FAILED|Failure" | head
# Daemon log of one HBM start, for the docs.
( timeout 20 $D/bin/kvstashd --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --hbm-capacity 1GiB --dram-capacity 1GiB & sleep 8; kill %1 ) 2>&1 | head -20 | tee $OUT/kvstashd_start.log
