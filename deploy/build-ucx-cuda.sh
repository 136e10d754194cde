#!/usr/bin/env bash
# Builds UCX with CUDA support from Debian's own source package (bookworm's ucx 1.13.1, the same
# version as the libucx0 kvstash links by default) into a prefix, for the GPU-direct data path (issue 20).
#
#   deploy/build-ucx-cuda.sh [PREFIX]
#
# PREFIX defaults to build-ucx-cuda/prefix under the repository. The script is idempotent: a prefix
# that already holds a CUDA-enabled build of the same version is left alone.
#
# Needs: a CUDA toolkit (CUDA_HOME, default /usr/local/cuda), build tools (installed when missing).
# NVML (nvml.h, libnvidia-ml.so) is not part of the toolkit; UCX's configure requires it for the CUDA
# transports. It comes from Debian non-free's libnvidia-ml-dev and libnvidia-ml1, downloaded and
# unpacked into the work directory (never installed: they depend on driver packages). At run time the
# real libnvidia-ml.so.1 comes from the machine's driver.
#
# Apt is pointed at a private sources list and lists directory, so the machine's own apt
# configuration is not changed. Only src/ of UCX is built and installed: a test app under test/apps
# does not compile against CUDA 13's cuCtxCreate signature, and kvstash needs none of the apps.
#
# One patch is applied (deploy/patches/ucx-1.13.1-cuda-ipc-md-lifetime.patch): UCX 1.13.1's cuda_ipc
# component unpacks remote keys with the md opened last and frees any md on close, so a process
# that closes one UCX context while another lives (kvstashd probing the GPU path) crashed on the
# next rendezvous with a CUDA buffer (seen on the H100); the patch keeps the first md for good and
# locks its uuid map.
#
# Link kvstash against the result with -DKVSTASH_UCX_PREFIX=PREFIX (deploy/build.sh reads
# KVSTASH_CMAKE_ARGS), or run Debian-UCX-linked binaries with LD_LIBRARY_PATH=PREFIX/lib: both are
# UCX 1.13.1, so the libraries are interchangeable and only the prefix has the CUDA transports.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${KVSTASH_UCX_CUDA_WORK:-$repo_root/build-ucx-cuda}
prefix=${1:-$work/prefix}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
ucx_version=1.13.1
jobs=${KVSTASH_JOBS:-$(nproc 2>/dev/null || echo 1)}

if [[ ! -x "$cuda_home/bin/nvcc" ]]; then
  echo "build-ucx-cuda: no CUDA toolkit at $cuda_home (set CUDA_HOME)" >&2
  exit 2
fi
# Patches to UCX's source (deploy/patches/ucx-$ucx_version-*.patch), each with its reason inside;
# their digest is part of the stamp, so a changed patch rebuilds.
patches=("$repo_root"/deploy/patches/ucx-"$ucx_version"-*.patch)
patch_digest=$(cat "${patches[@]}" 2>/dev/null | sha256sum | cut -c1-16)
stamp_line="ucx=$ucx_version cuda=$cuda_home patches=$patch_digest"
stamp="$prefix/.kvstash-ucx-cuda"
if [[ -f "$stamp" ]] && grep -qx "$stamp_line" "$stamp" &&
  [[ -e "$prefix/lib/ucx/libuct_cuda.so" ]]; then
  echo "build-ucx-cuda: $prefix already holds UCX $ucx_version with CUDA; nothing to do"
  exit 0
fi

mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/src" "$work/nvml"
# A private apt: deb-src for bookworm main (the UCX source) and deb for non-free (NVML).
cat >"$work/apt/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm non-free
EOF
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache::Archives=$work/apt/archives"
  -o "APT::Get::List-Cleanup=0")
# Build tools, and the libraries Debian's own build of UCX is configured with (verbs, rdmacm, numa), so
# that the CUDA build is a superset of the default one rather than a build without InfiniBand.
build_packages=(dpkg-dev build-essential autoconf automake libtool pkg-config libibverbs-dev librdmacm-dev
  libnuma-dev)
missing=()
for pkg in "${build_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  echo "build-ucx-cuda: installing ${missing[*]}"
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [[ ! -f "$work/apt/lists/.updated" ]]; then
  apt-get "${apt_opts[@]}" update
  touch "$work/apt/lists/.updated"
fi

src_dir="$work/src/ucx-$ucx_version"
if [[ ! -f "$src_dir/configure" && ! -f "$src_dir/autogen.sh" ]]; then
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --only-source "ucx=$ucx_version-1")
fi
if [[ ! -f "$work/nvml/usr/include/nvml.h" ]]; then
  (cd "$work/nvml" && apt-get "${apt_opts[@]}" download libnvidia-ml-dev libnvidia-ml1 &&
    for deb in ./*.deb; do dpkg -x "$deb" .; done)
fi
nvml_include=$(dirname "$(find "$work/nvml" -name nvml.h | head -1)")
nvml_lib=$(dirname "$(find "$work/nvml" -name 'libnvidia-ml.so*' | head -1)")
# Linking needs the unversioned name; the package ships only libnvidia-ml.so.1 (the -dev's link
# points into the driver's directory on some releases).
if [[ ! -e "$nvml_lib/libnvidia-ml.so" || -L "$nvml_lib/libnvidia-ml.so" && ! -e "$(readlink -f "$nvml_lib/libnvidia-ml.so")" ]]; then
  ln -sf "$(basename "$(find "$nvml_lib" -name 'libnvidia-ml.so.1*' | sort | head -1)")" "$nvml_lib/libnvidia-ml.so"
fi
echo "build-ucx-cuda: NVML headers $nvml_include, library $nvml_lib"

cd "$src_dir"
for p in "${patches[@]}"; do
  [[ -f "$p" ]] || continue
  if patch -p1 -R --dry-run -s -f <"$p" >/dev/null 2>&1; then
    echo "build-ucx-cuda: $(basename "$p") already applied"
  else
    echo "build-ucx-cuda: applying $(basename "$p")"
    patch -p1 -s -f <"$p"
  fi
done
[[ -f configure ]] || ./autogen.sh
build="$work/obj"
mkdir -p "$build"
cd "$build"
# Debian's own configure flags (debian/rules), plus CUDA; Java and Go bindings are not wanted.
configure_args=(--prefix="$prefix" --enable-mt --with-verbs --disable-backtrace-detail --disable-logging
  --enable-devel-headers --enable-cma --with-cuda="$cuda_home" --without-java --without-go
  --disable-doxygen-doc CPPFLAGS="-I$nvml_include" LDFLAGS="-L$nvml_lib -Wl,-rpath-link,$nvml_lib")
if [[ ! -f Makefile ]] || [[ "$(cat configured-with 2>/dev/null)" != "${configure_args[*]}" ]]; then
  "$src_dir/configure" "${configure_args[@]}"
  echo "${configure_args[*]}" >configured-with
fi
# src/ only: the libraries, their modules and the info/perf tools (ucx_info, ucx_perftest).
for dir in src/ucm src/ucs src/uct src/ucp src/tools/info src/tools/perf; do
  make -j"$jobs" -C "$dir"
  make -C "$dir" install
done
make install-pkgconfigDATA
if [[ ! -e "$prefix/lib/ucx/libuct_cuda.so" ]]; then
  echo "build-ucx-cuda: the build finished without libuct_cuda (configure did not enable CUDA); see $build/config.log" >&2
  exit 1
fi
echo "$stamp_line" >"$stamp"
echo "build-ucx-cuda: UCX $ucx_version with CUDA installed in $prefix"
ls "$prefix/lib/ucx"
