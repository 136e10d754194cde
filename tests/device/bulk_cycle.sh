#!/bin/bash
# Device cycle for the bulk-copy (TMA) kernel variant (issue 6, the 1-byte scatter): card; the bulk
# kernel's resources and SASS; gpu_test; gpu_bench --only variants for each seed in $SEEDS and
# --only launch for each in $LAUNCH_SEEDS (default none); ncu DRAM
# and L2 counters of the default and bulk scatter for $NCU_SEEDS; compute-sanitizer memcheck over the
# copy tests. Device `run`, carry build-gpu/devcarry3 (bash tests/device/make_kernel_carry.sh).
# Logs under $OUT.
D=$(cd "${DEVCARRY:-build-gpu/devcarry3}" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
SEEDS=${SEEDS-3 7 11}
NCU_SEEDS=${NCU_SEEDS-3 11}
REPS=${REPS:-40}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
if ! strings $(ldconfig -p | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}') 2>/dev/null | grep -q GLIBCXX_3.4.30; then
  echo "device libstdc++ too old: using the carried one"; EXTRA=$D/libstd:
fi
export LD_LIBRARY_PATH=${EXTRA}$D/lib:$LD_LIBRARY_PATH
cuobjdump -res-usage $D/bin/gpu_bench 2>/dev/null | grep -A1 "BulkCopyKernel" | grep -oE "REG:[0-9]+ STACK:[0-9]+ SHARED:[0-9]+" | sort | uniq -c
cuobjdump -sass $D/bin/gpu_bench 2>/dev/null | awk '/Function :/{f=/Bulk/} f' | grep -oE "UBLKCP[.A-Z0-9]*|SYNCS[.A-Z0-9]*|UBLKRED[.A-Z0-9]*|DEPBAR[.A-Z0-9]*" | sort | uniq -c
echo "== gpu_test"; device_check gpu_test $OUT/gpu_test.log "^\[  PASSED|^\[  FAILED|^\[       OK.*(KvCopyDevice|Bulk)|Failure" in_tmp timeout ${TEST_S:-150} $D/bin/gpu_test
for seed in $SEEDS; do
  echo "== gpu_bench --only variants --seed $seed --reps $REPS $BENCH_ARGS"
  device_check "variants_seed$seed" $OUT/variants_seed$seed.log "^[^dG]" timeout ${BENCH_S:-120} $D/bin/gpu_bench --only variants --seed $seed --reps $REPS $BENCH_ARGS
done
for seed in $LAUNCH_SEEDS; do
  echo "== gpu_bench --only launch --seed $seed --reps $REPS"
  device_check "launch_seed$seed" $OUT/launch_seed$seed.log "^[^dG]" timeout ${BENCH_S:-120} $D/bin/gpu_bench --only launch --seed $seed --reps $REPS
done
if [ -n "$NCU_SEEDS" ]; then
  M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_op_read.sum,lts__t_sectors_op_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_op_write_hit_rate.pct
  for seed in $NCU_SEEDS; do
    echo "== ncu seed $seed"
    (cd /tmp && timeout ${NCU_S:-90} ncu --clock-control none -k regex:Copy --launch-count ${NCU_COUNT:-16} --metrics $M --csv \
      $D/bin/gpu_bench --only variants --dtypes 1 --variants "${NCU_VARIANTS:-default-scatter,bulk16Kx4 c3}" --reps 1 --seed $seed \
      > $OUT/ncu_seed$seed.csv 2> $OUT/ncu_seed$seed.err); echo "rc $?"
    python3 - $OUT/ncu_seed$seed.csv <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print(open(sys.argv[1]).read()[-2000:]); sys.exit()
h = rows[0]; ki = h.index('Kernel Name'); mi = h.index('Metric Name'); vi = h.index('Metric Value'); ui = h.index('Metric Unit'); ii = h.index('ID')
by = collections.OrderedDict()
for r in rows[1:]:
    by.setdefault((r[ii], r[ki]), {})[r[mi]] = float(r[vi].replace(',', '')) * {'Gbyte': 1e3, 'Mbyte': 1, 'Kbyte': 1e-3, 'byte': 1e-6, 'nsecond': 1e-3, 'usecond': 1, 'msecond': 1e3}.get(r[ui], 1)
print('id kernel                     us   DRAM rd MB  DRAM wr MB  L2 rd sect  L2 wr sect  DRAM %peak  L2 wr hit%')
for (i, k), m in by.items():
    name = ('Bulk' if 'Bulk' in k else 'LdSt') + ('-gather' if '<true' in k or '(bool)1' in k else '-scatter')
    g = lambda n: m.get(n, float('nan'))
    print(f"{i:>2} {name:<22} {g('gpu__time_duration.sum'):9.1f} {g('dram__bytes_read.sum'):11.1f} {g('dram__bytes_write.sum'):11.1f} {g('lts__t_sectors_op_read.sum'):11.0f} {g('lts__t_sectors_op_write.sum'):11.0f} {g('dram__throughput.avg.pct_of_peak_sustained_elapsed'):10.1f} {g('lts__t_sector_op_write_hit_rate.pct'):10.1f}")
    if i == '0': print('   first kernel name:', k[:100])
PY
  done
fi
echo "== memcheck"; device_check memcheck $OUT/sanitizer.log "" in_tmp timeout ${MEMCHECK_S:-120} compute-sanitizer --tool memcheck --error-exitcode 1 $D/bin/gpu_test \
  --gtest_filter="${MEMCHECK_FILTER:-KvCopyDeviceTest.*MatchesReferenceForEveryLayoutAndDtype:KvCopyDeviceTest.Bulk*}"
device_checks_done
