#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/CMakeLists.txt: clang, libFuzzer, ASan + UBSan) and runs each for a
# bounded time from its checked-in seeds (fuzz/corpus/<target>/). Fails on any crash, leak or
# sanitizer report; the input that caused it is left in $build/artifacts/ — make it a regression
# test named after what it found. CI runs it with the default time (deploy/test.sh).
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET (default 20)] [TARGET...]
# Environment: KVSTASH_FUZZ_BUILD (default build-fuzz/), CCACHE_DIR as deploy/build.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-20}
shift || true
build=${KVSTASH_FUZZ_BUILD:-$repo/build-fuzz}
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$repo/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >/dev/null
cmake --build "$build" -j "${KVSTASH_JOBS:-$(nproc)}"
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(trace_lines_fuzz handoff_slice_fuzz safetensors_fuzz model_config_fuzz member_record_fuzz
    node_request_fuzz completion_request_fuzz daemon_config_fuzz
    ssd_record_fuzz wire_header_fuzz conductor_request_fuzz store_request_fuzz)
fi
mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  work=$(mktemp -d)  # new inputs go here, not into the checked-in seeds
  echo "fuzz: $t for ${seconds}s"
  if ! "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" "$work" "$repo/fuzz/corpus/$t" >"$build/$t.log" 2>&1; then
    failed+=("$t")
    tail -40 "$build/$t.log"
  else
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$build/$t.log" | tail -1 || true
  fi
  rm -rf "$work"
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each: no crash, leak or sanitizer report"
