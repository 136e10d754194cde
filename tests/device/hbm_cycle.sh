#!/bin/bash
# Device cycle (issue 6 wiring): card; HBM daemon integration test; server_test's HBM case; gpu unit tests.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
R=$(pwd)
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# Use the device's libstdc++ unless it is older than Debian 12's (GLIBCXX_3.4.30).
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
export LD_LIBRARY_PATH=${EXTRA}$D/lib:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
# The test binaries name kvstashd by its build path here.
mkdir -p /work/main/build-gpu/server && ln -sf $D/bin/kvstashd /work/main/build-gpu/server/kvstashd
cd /tmp
device_check hbm_daemon_test $OUT/hbm_daemon_test.log "^\[  |Failure|Expected|Which is|error|Skipped|said" timeout 240 $D/bin/hbm_daemon_test
device_check server_test $OUT/server_test.log "^\[  |Failure" timeout 60 $D/bin/server_test --gtest_filter='Daemon*'
device_check gpu_codec_test $OUT/gpu_codec_test.log "^\[  PASSED|^\[  FAILED|Failure" timeout 120 $D/bin/gpu_codec_test
device_check gpu_test $OUT/gpu_test.log "^\[  PASSED|^\[  FAILED|Failure" timeout 120 $D/bin/gpu_test
# Daemon log of one HBM start, for the docs.
( timeout 20 $D/bin/kvstashd --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --hbm-capacity 1GiB --dram-capacity 1GiB & sleep 8; kill %1 ) 2>&1 | head -20 | tee $OUT/kvstashd_start.log
device_checks_done
