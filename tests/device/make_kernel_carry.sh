#!/bin/bash
# Assembles build-gpu/devcarry3 (git-ignored): just gpu_test and gpu_bench, stripped, with the Debian
# shared libraries they need — a small carry for kernel work (bulk_cycle.sh). Run from the repository
# root after `ninja -C build-gpu gpu_test gpu_bench`.
set -euo pipefail
B=build-gpu; D=$B/devcarry3
rm -rf $D; mkdir -p $D/bin $D/lib $D/libstd
BINS="tests/unit/gpu_test bench/gpu_bench"
for b in $BINS; do strip -o $D/bin/$(basename $b) $B/$b; done
for b in $BINS; do ldd $B/$b; done | awk '/=>/{print $3}' | sort -u |
  grep -vE "/lib(c|m|dl|pthread|rt)\.so|ld-linux" | while read -r f; do cp -L "$f" $D/lib/; done
mv $D/lib/libstdc++.so.6 $D/lib/libgcc_s.so.1 $D/libstd/ 2>/dev/null || true
du -sh $D
