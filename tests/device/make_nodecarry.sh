#!/bin/bash
# Assembles build-gpu/nodecarry (git-ignored) for the device tool: the cuda engine's binaries —
# kvstash-node, kvstash-node-cuda-check, kvstash-bench-node, kvstashd, kvstash-conductor, kvstash,
# node_cuda_engine_test —
# stripped, with the Debian shared libraries they need (not CUDA's: the device image has cudart and
# cuBLAS) and UCX's cma module. Run from the repository root after
#   KVSTASH_JOBS=1 ./deploy/build.sh RelWithDebInfo build-gpu kvstashd kvstash-node kvstash-node-cuda-check \
#     kvstash-bench-node kvstash-conductor kvstash node_cuda_engine_test
# Then: device run `bash tests/device/node_cycle.sh`, carry build-gpu/nodecarry.
set -euo pipefail
B=build-gpu; D=$B/nodecarry
rm -rf $D; mkdir -p $D/bin $D/lib $D/ucx $D/libstd
BINS="node/kvstash-node node/kvstash-node-cuda-check bench/kvstash-bench-node server/kvstashd scheduler/kvstash-conductor
  cli/kvstash tests/unit/node_cuda_engine_test"
for b in $BINS; do strip -o $D/bin/$(basename $b) $B/$b; done
for b in $BINS; do ldd $B/$b; done | awk '/=>/{print $3}' | sort -u |
  grep -vE "/lib(c|m|dl|pthread|rt)\.so|ld-linux|libcuda|libcublas|libcudart|/usr/local/cuda" |
  while read -r f; do cp -L "$f" $D/lib/; done
mv $D/lib/libstdc++.so.6 $D/lib/libgcc_s.so.1 $D/libstd/ 2>/dev/null || true
cp -L /usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0 $D/ucx/
# The CUDA-enabled UCX of deploy/build-ucx-cuda.sh, when built: the same version as Debian's, so the
# binaries above run on it with LD_LIBRARY_PATH and UCX_MODULE_DIR pointed at ucx-cuda/ (node_cycle.sh
# STEPS=ucx). Libraries stripped; ucx_info and ucx_perftest beside them.
U=${KVSTASH_UCX_CUDA_PREFIX:-build-ucx-cuda/prefix}
if [[ -e $U/lib/ucx/libuct_cuda.so.0 ]]; then
  mkdir -p $D/ucx-cuda/ucx $D/ucx-cuda/bin
  for f in $U/lib/lib*.so.0; do strip -o $D/ucx-cuda/$(basename $f) $f; done
  for f in $U/lib/ucx/lib*.so.0; do strip -o $D/ucx-cuda/ucx/$(basename $f) $f; done
  for f in ucx_info ucx_perftest; do strip -o $D/ucx-cuda/bin/$f $U/bin/$f; done
fi
du -sh $D
