#!/usr/bin/env bash
# The installable SDK (issue 19): installs the sdk component of a built tree into a scratch prefix,
# then, using only what was installed,
#   * checks the prefix holds the public headers and nothing internal;
#   * builds examples/ against it with find_package(kvstash) and runs the demo against a real
#     kvstashd (ephemeral ports, ready line read, no sleeps);
#   * compiles and runs a program with pkg-config's flags for kvstash.pc;
#   * installs the python component into a fresh virtual environment and imports kvstash there
#     without PYTHONPATH.
#   usage: bash sdk_install_test.sh BUILD_DIR SOURCE_DIR KVSTASHD [PYTHON]
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: bash sdk_install_test.sh BUILD_DIR SOURCE_DIR KVSTASHD [PYTHON]" >&2
  exit 2
fi
BUILD=$1; SRC=$2; KVSTASHD=$3; PY=${4:-}
tmp=$(mktemp -d)
daemon_pid=""
cleanup() {
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "sdk_install_test: FAIL: $*" >&2; exit 1; }
prefix=$tmp/prefix

# --- install the sdk component ---------------------------------------------------------------------
cmake --install "$BUILD" --prefix "$prefix" --component sdk > "$tmp/install.log" || { cat "$tmp/install.log"; fail "install"; }
for h in client.h block_key.h prefix_hasher.h result.h status.h limits.h reuse_advice.h version.h; do
  [[ -f $prefix/include/kvstash/$h ]] || fail "include/kvstash/$h was not installed"
done
# (No `| head` or `| grep -q` under pipefail: a reader that stops early makes the writer fail.)
extra=$(find "$prefix/include" -type f ! -path "$prefix/include/kvstash/*" -print -quit)
[[ -z $extra ]] || fail "headers outside include/kvstash/ were installed: $extra"
# Every installed header compiles on its own with only the prefix on the include path (no internal
# header reached from a public one).
for h in "$prefix"/include/kvstash/*.h; do
  echo "#include \"kvstash/$(basename "$h")\"" > "$tmp/one.cc"
  c++ -std=c++20 -fsyntax-only -I"$prefix/include" "$tmp/one.cc" || fail "$(basename "$h") does not compile alone"
done
lib=$(find "$prefix" -name 'libkvstash.so*' -type f -print -quit)
[[ -n $lib ]] || fail "libkvstash.so was not installed"
[[ -f $(dirname "$lib")/cmake/kvstash/kvstashConfig.cmake ]] || fail "the CMake package was not installed"
[[ -f $(dirname "$lib")/pkgconfig/kvstash.pc ]] || fail "kvstash.pc was not installed"
# The library exports the kvstash namespace only.
foreign=$(nm -D --defined-only -C "$lib" | awk '{ $1=""; $2=""; print }' | sed 's/^ *//' |
  grep -vE '^(kvstash::|typeinfo for kvstash::|typeinfo name for kvstash::|vtable for kvstash::|KVSTASH_|_init$|_fini$)' |
  grep -v '^$' | head -5 || true)
[[ -z $foreign ]] || fail "libkvstash.so exports symbols outside kvstash::: $foreign"

# --- examples/ against the installed package ----------------------------------------------------
cmake -S "$SRC/examples" -B "$tmp/examples" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  > "$tmp/examples.log" 2>&1 || { cat "$tmp/examples.log"; fail "configuring examples/ against the install"; }
cmake --build "$tmp/examples" > "$tmp/examples-build.log" 2>&1 ||
  { cat "$tmp/examples-build.log"; fail "building examples/ against the install"; }
demo_deps=$(ldd "$tmp/examples/kvstash-demo")
grep -q "$prefix" <<<"$demo_deps" || fail "kvstash-demo does not load the installed libkvstash: $demo_deps"

mkfifo "$tmp/ready"
"$KVSTASHD" --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --dram-capacity 128MiB \
  >"$tmp/ready" 2>"$tmp/daemon.log" &
daemon_pid=$!
exec 3<"$tmp/ready"
ready=""
read -r -t 60 ready <&3 || fail "kvstashd printed no ready line"
[[ $ready =~ grpc=([0-9.]+:[0-9]+) ]] || fail "unexpected ready line: '$ready'"
addr=${BASH_REMATCH[1]}
"$tmp/examples/kvstash-demo" --addr "$addr" --chains 20 --block-bytes 4096 > "$tmp/demo.out" 2>&1 ||
  { cat "$tmp/demo.out"; fail "kvstash-demo built against the install failed against kvstashd"; }

# --- pkg-config --------------------------------------------------------------------------------
cat > "$tmp/pc.cc" <<'CC'
#include <cstdio>
#include <cstring>

#include "kvstash/client.h"
#include "kvstash/prefix_hasher.h"
#include "kvstash/version.h"

int main(int argc, char** argv) {
  if (std::strcmp(kvstash::LibraryVersion(), KVSTASH_VERSION_STRING) != 0) return 3;
  kvstash::ClientOptions options;
  options.address = argv[1];
  auto client = kvstash::Client::Connect(options);
  if (!client.ok()) return 4;
  const kvstash::PrefixHasher hasher(kvstash::Namespace{"sdk-install-test", "vllm", "fp16", 0}, 4);
  std::vector<uint32_t> tokens{1, 2, 3, 4, 5, 6, 7, 8};
  auto keys = hasher.Chain(tokens);
  std::vector<std::byte> block(1000, std::byte{7});
  std::vector<kvstash::PutItem> items(1);
  items[0].key = keys[0];
  items[0].data = block;
  auto put = (*client)->Put(items);
  if (!put.ok()) return 5;
  auto hit = (*client)->Lookup(keys);
  if (!hit.ok() || hit->hit_blocks != 1) return 6;
  std::printf("pkg-config program: version %s, %zu of %zu blocks found\n", kvstash::LibraryVersion(), hit->hit_blocks,
              keys.size());
  return 0;
}
CC
flags=$(PKG_CONFIG_PATH=$(dirname "$lib")/pkgconfig pkg-config --cflags --libs kvstash) || fail "pkg-config kvstash"
c++ "$tmp/pc.cc" -o "$tmp/pc" $flags -Wl,-rpath,"$(dirname "$lib")" 2>"$tmp/pc.log" || { cat "$tmp/pc.log"; fail "compiling with pkg-config's flags"; }
"$tmp/pc" "$addr" || fail "the pkg-config program exited $?"

# --- the Python module into a virtual environment ----------------------------------------------
if [[ -n $PY ]]; then
  "$PY" -m venv --without-pip --system-site-packages "$tmp/venv" || fail "python -m venv"
  KVSTASH_PYTHON=$tmp/venv/bin/python cmake --install "$BUILD" --component python > "$tmp/py.log" 2>&1 ||
    { cat "$tmp/py.log"; fail "installing the python component"; }
  env -u PYTHONPATH "$tmp/venv/bin/python" -c "
import kvstash, sys
assert kvstash.__file__.startswith(sys.prefix), kvstash.__file__
c = kvstash.Client('$addr')
print('python module from', kvstash.__file__)
" || fail "import kvstash in the virtual environment"
fi
echo "sdk_install_test: passed"
