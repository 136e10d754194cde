# Sourced (bash) before running ctest in a sanitizer build: deploy/test.sh does, and so can anyone
# running the sanitizer suites by hand:   . tests/sanitizers/env.sh && ctest --test-dir build-asan
# Every process a test starts (kvstashd, the CLI, helpers) inherits these.
_kvstash_sanitizers=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A leak, an ASan report or a UBSan report fails the process (UBSan's through -fno-sanitize-recover
# at build time; halt_on_error here covers objects built without it).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_init_order=1:check_initialization_order=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$_kvstash_sanitizers/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# die_after_fork=0: ssd_tier_test's kill -9 case forks a child that starts the SSD tier's threads
# (and is then killed); TSAN otherwise ends such a child at its first thread.
export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$_kvstash_sanitizers/tsan.supp:halt_on_error=1:second_deadlock_stack=1:die_after_fork=0}
unset _kvstash_sanitizers
