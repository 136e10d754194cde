#!/usr/bin/env bash
# Installs what is missing, builds RelWithDebInfo, and runs every test (unit and integration).
# Exits non-zero on any build or test failure. This is what CI runs (.ci/run).
#
# Environment: KVSTASH_BUILD_DIR (default build/), plus what deploy/build.sh reads.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
build_dir=${KVSTASH_BUILD_DIR:-build}

./deploy/install-deps.sh
./deploy/build.sh RelWithDebInfo "$build_dir"
ctest --test-dir "$build_dir" --output-on-failure -j2 --timeout 600 --no-tests=error
# Every parser fuzz/ covers, for a bounded time each (KVSTASH_FUZZ_SECONDS, default 20).
KVSTASH_FUZZ_BUILD="${build_dir}-fuzz" ./fuzz/run.sh "${KVSTASH_FUZZ_SECONDS:-20}"
