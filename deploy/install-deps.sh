#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages kvstash needs to build, test and run.
# Idempotent: when every package is already installed it touches nothing and returns at once.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache g++
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libxxhash-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  libcpp-httplib-dev nlohmann-json3-dev
  libucx-dev ucx-utils  # the one-sided data plane (transfer/); ucx_info for diagnostics
  iperf3 redis-server redis-tools  # peers that bench/ measures beside kvstash in the same run
  gnuplot-nox  # kvstash-sim --plots
  liburing-dev librocksdb-dev fio  # the SSD tier (io_uring, RocksDB index) and its benchmark peer
  pybind11-dev python3-dev python3-numpy python3-torch  # the Python module and the real-model test
  etcd-server etcd-client python3-yaml iproute2  # cluster membership and its tests (etcd, netns, manifests)
  nftables  # the chaos soak's packet loss (tests/soak/)
  prometheus  # for promtool, which checks the /metrics exposition in tests
  libgtest-dev libgmock-dev libbenchmark-dev
  libsentencepiece-dev sentencepiece  # kvstash-node text prompts (tokenizer.model); spm_train makes test tokenizers
  clang libclang-rt-14-dev  # fuzz/ (libFuzzer, ASan, UBSan)
  libssl-dev openssl  # token hashes (libcrypto SHA-256); deploy/make-test-certs.sh
  python3 curl
)

# One dpkg-query for all packages; a package it does not know is simply absent from the output.
declare -A installed=()
while read -r pkg state; do
  [[ "$state" == "install ok installed" ]] && installed["${pkg%%:*}"]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for pkg in "${PACKAGES[@]}"; do
  [[ -n "${installed[$pkg]:-}" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed; nothing to do"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${#missing[@]} missing package(s): ${missing[*]}"
