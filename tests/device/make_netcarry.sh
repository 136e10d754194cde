#!/bin/bash
# Assembles .devnet (git-excluded) for the device tool: the data-plane and cluster benches with
# their peers — kvstashd, kvstash, kvstash-bench-transfer, kvstash-bench-cluster, redis-server,
# redis-benchmark, iperf3, etcd, ip — and the Debian shared libraries they need, so that the
# benches run on a host with 16 cores instead of this 2-core VM. Run from the repository root
# after building build/ (Release). Then: device run `bash tests/device/net_cycle.sh`, carry .devnet.tar.xz.
set -euo pipefail
B=build; D=.devnet
rm -rf $D; mkdir -p $D/bin $D/lib $D/ucx
OURS="$B/server/kvstashd $B/cli/kvstash $B/bench/kvstash-bench-transfer"
PEERS="$(command -v redis-server) $(command -v redis-cli) $(command -v redis-benchmark) $(command -v iperf3) $(command -v etcd) $(command -v ip)"
for b in $OURS $PEERS; do strip -o $D/bin/$(basename $b) $b 2>/dev/null || cp $b $D/bin/; done
for b in $OURS $PEERS; do ldd $b 2>/dev/null || true; done | awk '/=>/{print $3}' | sort -u |
  grep -vE "/lib(c|m|dl|pthread|rt)\.so|ld-linux" | while read -r f; do cp -L "$f" $D/lib/; done
cp -L /usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0 $D/ucx/
# The cluster bench and its netns helper, pointed at the carried binaries (resolved on the device).
sed -e 's|^KVSTASHD=.*|KVSTASHD="$DEVNET/bin/kvstashd"|' -e 's|^KVSTASH=.*|KVSTASH="$DEVNET/bin/kvstash"|' \
    -e 's|^source .*|source "$DEVNET/netns_cluster.sh"|' $B/bench/kvstash-bench-cluster > $D/bin/kvstash-bench-cluster
chmod +x $D/bin/kvstash-bench-cluster
cp tests/support/netns_cluster.sh $D/
du -sh $D
# One compressed file travels (the carry limit is 64 MiB; the folder is larger).
tar -C $D -cJf .devnet.tar.xz .
ls -la .devnet.tar.xz
