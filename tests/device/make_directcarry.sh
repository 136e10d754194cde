#!/bin/bash
# Assembles build-gpu/directcarry (git-ignored) for the GPU-direct device cycle (issue 20,
# tests/device/hbm_direct_cycle.sh): kvstashd, kvstash, kvstash-bench-hbm-direct, hbm_direct_test,
# hbm_daemon_test and transfer_test of build tree $1 (default build-me, a CUDA build), stripped,
# with the Debian shared libraries they need (not CUDA's: the device image has cudart) and the
# CUDA-enabled UCX of deploy/build-ucx-cuda.sh (required: the cycle is about it).
#   KVSTASH_JOBS=2 ./deploy/build.sh RelWithDebInfo build-me kvstashd kvstash kvstash-bench-hbm-direct \
#     hbm_direct_test hbm_daemon_test transfer_test
#   ./deploy/build-ucx-cuda.sh && bash tests/device/make_directcarry.sh build-me
set -euo pipefail
B=${1:-build-me}; D=build-gpu/directcarry
U=${KVSTASH_UCX_CUDA_PREFIX:-build-ucx-cuda/prefix}
[[ -e $U/lib/ucx/libuct_cuda.so.0 ]] || { echo "no CUDA UCX at $U: run deploy/build-ucx-cuda.sh" >&2; exit 2; }
rm -rf $D; mkdir -p $D/bin $D/lib $D/libstd $D/ucx-cuda/ucx $D/ucx-cuda/bin
BINS="server/kvstashd cli/kvstash bench/kvstash-bench-hbm-direct tests/integration/hbm_direct_test
  tests/integration/hbm_daemon_test tests/unit/transfer_test"
for b in $BINS; do strip -o $D/bin/$(basename $b) $B/$b; done
for b in $BINS; do ldd $B/$b; done | awk '/=>/{print $3}' | sort -u |
  grep -vE "/lib(c|m|dl|pthread|rt)\.so|ld-linux|libcuda|libcublas|libcudart|/usr/local/cuda|libuc[pmst]" |
  while read -r f; do cp -L "$f" $D/lib/; done
mv $D/lib/libstdc++.so.6 $D/lib/libgcc_s.so.1 $D/libstd/ 2>/dev/null || true
for f in $U/lib/lib*.so.0; do strip -o $D/ucx-cuda/$(basename $f) $f; done
for f in $U/lib/ucx/lib*.so.0; do strip -o $D/ucx-cuda/ucx/$(basename $f) $f; done
for f in ucx_info ucx_perftest; do strip -o $D/ucx-cuda/bin/$f $U/bin/$f; done
# The path the tests were built to start kvstashd from (KVSTASHD_PATH); the cycle links it there.
echo "$(cd $B && pwd)/server/kvstashd" > $D/kvstashd_path
du -sh $D
