#!/bin/bash
# GPU-direct device cycle (issue 20): the CUDA UCX's transports, the GPU-direct tests, and
# kvstash-bench-hbm-direct against kvstashd with an HBM tier (direct), with --hbm-serving staged,
# and DRAM-only (each also with --no-verify-sends where it matters), beside cudaMemcpy in the same run. Carry build-gpu/directcarry
# (tests/device/make_directcarry.sh). Logs under $OUT; exits 1 when a step failed.
#   SIZES (MiB, default 1,4,16), COUNT (blocks per size, 8), REPS (20), STEPS ("info tests bench"),
#   MODES (default "direct direct-noverify staged dram dram-noverify").
D=$(cd "${DIRECTCARRY:-build-gpu/directcarry}" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
STEPS=${STEPS:-"info tests bench"}
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  EXTRA=$D/libstd:
fi
CULIBS=""
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(python3 - <<'PY' 2>/dev/null
import glob, site
for s in site.getsitepackages():
    for d in glob.glob(s + '/nvidia/*/lib'): print(d)
PY
); do ls $dir/libcudart.so.13 >/dev/null 2>&1 && CULIBS=$CULIBS:$dir; done
# Every binary runs on the CUDA UCX (the same 1.13.1 as Debian's it was linked against).
export LD_LIBRARY_PATH=${EXTRA}$D/ucx-cuda:$D/lib${CULIBS}:$LD_LIBRARY_PATH UCX_MODULE_DIR=$D/ucx-cuda/ucx
K=$(cat $D/kvstashd_path); mkdir -p $(dirname $K); [[ -e $K ]] || ln -s $D/bin/kvstashd $K
ldd $D/bin/kvstashd | grep -E "not found|libucp|cudart"
case " $STEPS " in *" info "*)
  $D/ucx-cuda/bin/ucx_info -v | head -3
  $D/ucx-cuda/bin/ucx_info -d | grep -E "Transport: cuda|Memory domain: cuda" ;;
esac
case " $STEPS " in *" tests "*)
  device_check hbm_direct_test $OUT/hbm_direct_test.log "^\[  |Failure|Expected|Which is|Value of|skip" \
    in_tmp timeout 300 $D/bin/hbm_direct_test
  device_check hbm_daemon_test $OUT/hbm_daemon_test.log "^\[  (PASSED|FAILED|SKIPPED)|Failure" \
    in_tmp timeout 300 $D/bin/hbm_daemon_test
  device_check transfer_device_region $OUT/transfer_test.log "^\[  |Failure" \
    in_tmp timeout 120 $D/bin/transfer_test --gtest_filter='DeviceRegion*' ;;
esac
case " $STEPS " in *" bench "*)
  for mode in ${MODES:-direct direct-noverify staged dram dram-noverify}; do
    case $mode in
      direct) ARGS="--hbm-capacity 2GiB" ;;
      direct-noverify) ARGS="--hbm-capacity 2GiB --no-verify-sends" ;;
      dram-noverify) ARGS="--no-verify-sends" ;;
      staged) ARGS="--hbm-capacity 2GiB --hbm-serving staged" ;;
      dram) ARGS="" ;;
    esac
    $D/bin/kvstashd --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --dram-capacity 4GiB $ARGS \
      > $OUT/kvstashd_$mode.log 2>&1 &
    P=$!
    for i in $(seq 100); do
      ADDR=$(grep -oE "kvstashd ready grpc=[0-9.]+:[0-9]+" $OUT/kvstashd_$mode.log | head -1 | cut -d= -f2)
      [[ -n $ADDR ]] && break; sleep 0.2
    done
    echo "== $mode ($ARGS) at $ADDR"
    device_check bench_$mode $OUT/bench_$mode.log "" timeout 300 $D/bin/kvstash-bench-hbm-direct --addr "$ADDR" \
      --sizes ${SIZES:-1,4,16} --count ${COUNT:-8} --reps ${REPS:-20}
    kill $P; wait $P 2>/dev/null
  done ;;
esac
device_checks_done
