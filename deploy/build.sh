#!/usr/bin/env bash
# Configures and builds kvstash with Ninja and ccache.
#
#   deploy/build.sh [Release|RelWithDebInfo|Debug] [build-dir] [target...]
#
# Defaults: RelWithDebInfo, build/ (relative to the repository root), every target.
#
# Environment: CCACHE_DIR (default ~/.cache/ccache), KVSTASH_JOBS (default: every core), and
# KVSTASH_CMAKE_ARGS (extra arguments for the configure step, split on spaces).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_type=${1:-RelWithDebInfo}
build_dir=${2:-build}
targets=("${@:3}")
case "$build_type" in
  Release | RelWithDebInfo | Debug) ;;
  *)
    echo "usage: deploy/build.sh [Release|RelWithDebInfo|Debug] [build-dir] [target...]" >&2
    exit 2
    ;;
esac
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"

export CCACHE_DIR=${CCACHE_DIR:-${HOME:-/tmp}/.cache/ccache}
# Paths relative to the checkout, so that clones elsewhere reuse the same cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo_root}
mkdir -p "$CCACHE_DIR"

cores=$(nproc 2>/dev/null || echo 1)
jobs=${KVSTASH_JOBS:-$cores}
if ! [[ "$jobs" =~ ^[0-9]+$ ]] || ((jobs < 1)); then jobs=1; fi
if ((jobs > cores)); then jobs=$cores; fi

# A build tree configured by another generator cannot be reused by Ninja: start it afresh.
if [[ -f "$build_dir/CMakeCache.txt" ]] &&
  ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  echo "build: $build_dir was not configured with Ninja; reconfiguring from scratch"
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
fi

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
read -r -a extra <<<"${KVSTASH_CMAKE_ARGS:-}"

echo "build: $build_type into $build_dir with -j$jobs (ccache: $CCACHE_DIR)"
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" \
  "${launcher[@]}" "${extra[@]}"
if ((${#targets[@]} > 0)); then
  cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}"
else
  cmake --build "$build_dir" -j "$jobs"
fi
