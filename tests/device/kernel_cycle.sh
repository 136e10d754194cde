#!/bin/bash
# Device cycle (issue 6: copy-kernel tuning and the codec on the GPU for CUDA tensors): card;
# gpu_test; codec_sdk_test (its GPU case); gpu_bench (arguments passed through, default
# `--only variants --reps 50`); the Python module tests on CUDA tensors (python_cycle.sh); then
# compute-sanitizer memcheck over the copy kernels. Device `run`, carry build-gpu/devcarry2
# (bash tests/device/make_devcarry.sh builds it). Logs under $OUT.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
R=$(pwd)
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
export LD_LIBRARY_PATH=${EXTRA}$D/lib:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
# The test binaries name kvstashd by its build path here.
mkdir -p /work/main/build-gpu/server && ln -sf $D/bin/kvstashd /work/main/build-gpu/server/kvstashd
cuobjdump -res-usage $D/bin/gpu_bench 2>/dev/null | grep -A1 CopyKernel | grep -oE "REG:[0-9]+ STACK:[0-9]+" | sort | uniq -c
echo "== gpu_test"; device_check gpu_test $OUT/gpu_test.log "^\[  PASSED|^\[  FAILED|Failure" in_tmp timeout 180 $D/bin/gpu_test
echo "== codec_sdk_test"; device_check codec_sdk_test $OUT/codec_sdk_test.log "^\[  PASSED|^\[  FAILED|^\[  SKIPPED|Failure|codec  " in_tmp timeout 120 $D/bin/codec_sdk_test
echo "== gpu_bench $*"; device_check gpu_bench $OUT/gpu_bench.log "." timeout 240 $D/bin/gpu_bench ${@:---only variants --reps 50}
if [ -z "$SKIP_PYTHON" ]; then echo "== python"; device_check python $OUT/python_cycle.log "^test_|^Ran|^OK|FAILED|Error|recomputed|codec|module ok" timeout 300 bash $R/tests/device/python_cycle.sh; fi
echo "== memcheck"; device_check memcheck $OUT/sanitizer.log "" in_tmp timeout ${MEMCHECK_S:-150} compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_test --gtest_filter='KvCopyDevice*'
device_checks_done
