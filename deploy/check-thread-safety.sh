#!/usr/bin/env bash
# Clang's thread-safety analysis over every translation unit of kvstash's modules (issue 19): the
# lock rules written as GUARDED_BY / REQUIRES (common/thread_annotations.h, common/mutex.h) are
# checked by the compiler, and any finding fails. Runs clang -fsyntax-only with -Wthread-safety
# -Werror=thread-safety on the compile commands of an already configured build tree (no second
# build), two at a time.
#
#   deploy/check-thread-safety.sh [BUILD_DIR]     (default build/)
#
# Tests, benchmarks and examples are not analysed: they use plain std::mutex on purpose.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"
if ! command -v clang++ >/dev/null 2>&1; then
  echo "check-thread-safety: clang++ is missing (deploy/install-deps.sh installs clang)" >&2
  exit 2
fi
if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "check-thread-safety: $build_dir/compile_commands.json is missing (configure the build first)" >&2
  exit 2
fi
start=$(date +%s)
python3 "$repo_root/tools/tsa_check.py" "$build_dir" common/ tiers/ transfer/ membership/ gpu/ server/ client/ \
  scheduler/ node/ cli/ replay/
echo "check-thread-safety: $(($(date +%s) - start)) s"
