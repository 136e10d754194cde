#!/bin/bash
# Device cycle (issue 6: copy-kernel tuning and the codec on the GPU for CUDA tensors): card;
# gpu_test; codec_sdk_test (its GPU case); gpu_bench (arguments passed through, default
# `--only variants --reps 50`); the Python module tests on CUDA tensors (python_cycle.sh); then
# compute-sanitizer memcheck over the copy kernels. Device `run`, carry build-gpu/devcarry2
# (bash tests/device/make_devcarry.sh builds it). Logs under $OUT.
D=$(cd "${DEVCARRY:-build-gpu/devcarry2}" && pwd)
R=$(pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
export LD_LIBRARY_PATH=${EXTRA}$D/lib:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx
# The test binaries name kvstashd by its build path here.
mkdir -p /work/main/build-gpu/server && ln -sf $D/bin/kvstashd /work/main/build-gpu/server/kvstashd
cuobjdump -res-usage $D/bin/gpu_bench 2>/dev/null | grep -A1 CopyKernel | grep -oE "REG:[0-9]+ STACK:[0-9]+" | sort | uniq -c
echo "== gpu_test"; (cd /tmp && timeout 180 $D/bin/gpu_test 2>&1) > $OUT/gpu_test.log; grep -E "^\[  PASSED|^\[  FAILED|Failure" $OUT/gpu_test.log | head -20
echo "== codec_sdk_test"; (cd /tmp && timeout 120 $D/bin/codec_sdk_test 2>&1) > $OUT/codec_sdk_test.log; grep -E "^\[  PASSED|^\[  FAILED|^\[  SKIPPED|Failure|codec  " $OUT/codec_sdk_test.log | head -20
echo "== gpu_bench $*"; timeout 240 $D/bin/gpu_bench ${@:---only variants --reps 50} 2>&1 | tee $OUT/gpu_bench.log
if [ -z "$SKIP_PYTHON" ]; then echo "== python"; timeout 300 bash $R/tests/device/python_cycle.sh 2>&1 | grep -E "^test_|^Ran|^OK|FAILED|Error|recomputed|codec|module ok" | head -40; fi
echo "== memcheck"; (cd /tmp && timeout ${MEMCHECK_S:-150} compute-sanitizer --tool memcheck $D/bin/gpu_test --gtest_filter='KvCopyDevice*' 2>&1) | tail -4 | tee $OUT/sanitizer.log
