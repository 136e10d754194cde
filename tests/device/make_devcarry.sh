#!/bin/bash
# Assembles build-gpu/devcarry2 (git-ignored) for the device tool: stripped binaries, the Debian
# shared libraries they need, the UCX cma module, and what python_cycle.sh needs to build the Python
# module for the device's Python (static kvstash libraries, UCX headers, the module's link line).
# Run from the repository root after building kvstashd, the tests and kvstash_python in build-gpu.
# Then: device run `bash tests/device/hbm_cycle.sh` / `bash tests/device/python_cycle.sh`, carry build-gpu/devcarry2.
set -euo pipefail
B=build-gpu; D=$B/devcarry2
rm -rf $D; mkdir -p $D/bin $D/lib $D/ucx $D/static $D/inc $D/libstd
BINS="server/kvstashd tests/integration/hbm_daemon_test tests/integration/codec_sdk_test tests/unit/gpu_test tests/unit/gpu_codec_test tests/unit/server_test bench/gpu_bench cli/kvstash"
for b in $BINS; do strip -o $D/bin/$(basename $b) $B/$b; done
for b in $BINS; do ldd $B/$b; done | awk '/=>/{print $3}' | sort -u |
  grep -vE "/lib(c|m|dl|pthread|rt)\.so|ld-linux" | while read -r f; do cp -L "$f" $D/lib/; done
mv $D/lib/libstdc++.so.6 $D/lib/libgcc_s.so.1 $D/libstd/
cp -L /usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0 $D/ucx/
cp -r /usr/include/ucp /usr/include/ucs /usr/include/uct /usr/include/ucm $D/inc/
# The Python module's link line, with paths rewritten to the carry ($D expanded on the device).
python3 - "$B" "$D" <<'PY'
import os, re, shlex, shutil, subprocess, sys
b, d = sys.argv[1], sys.argv[2]
cmd = shlex.split(subprocess.run(['ninja', '-C', b, '-t', 'commands', 'kvstash_python'], capture_output=True,
                                 text=True, check=True).stdout.strip().splitlines()[-1])
args = cmd[cmd.index('-o') + 2:]
out = []
def soname(p):
    m = re.search(r'Library soname: \[(.*?)\]', subprocess.run(['readelf', '-d', p], capture_output=True, text=True).stdout)
    return m.group(1) if m else os.path.basename(p)
for a in args:
    if a == '&&': break
    if a.endswith('.o'):
        out.append('/tmp/pyk/' + os.path.basename(a).replace('.cc.o', '.o'))
    elif a.endswith('.a'):
        subprocess.run(['strip', '--strip-debug', '-o', f'{d}/static/{os.path.basename(a)}', f'{b}/{a}'], check=True)
        out.append('$D/static/' + os.path.basename(a))
    elif a.startswith('/') and '.so' in a or a == '-lre2':
        real = os.path.realpath('/usr/lib/x86_64-linux-gnu/libre2.so' if a == '-lre2' else a)
        sn = soname(real)
        if not os.path.exists(f'{d}/lib/{sn}'): shutil.copy(real, f'{d}/lib/{sn}')
        out.append('$D/lib/' + sn)
    elif not (a.startswith('-L') or a.startswith('-Wl,-rpath')):
        out.append(a)
open(f'{d}/linkargs.txt', 'w').write(' '.join(out) + '\n')
PY
du -sh $D
