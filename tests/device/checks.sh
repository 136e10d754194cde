# checks.sh — sourced by the device scripts, so that a device run is a check and not only a log to
# read: each step's own exit status decides; the filter only chooses what is shown.
#
#   device_check NAME LOG FILTER CMD...  runs CMD with its output in LOG, shows LOG's lines matching
#                                        FILTER (grep -E; empty: the last 12 lines), records a failure
#   in_tmp CMD...                        runs CMD from /tmp (tests that write beside themselves)
#   device_checks_done                   names the failed steps and exits 1 when there were any
DEVICE_FAILED=()
device_check() {
  local name=$1 log=$2 filter=$3
  shift 3
  "$@" >"$log" 2>&1
  local rc=$?
  if [[ -n $filter ]]; then
    grep -E "$filter" "$log" | head -60
  else
    tail -12 "$log"
  fi
  if ((rc != 0)); then
    DEVICE_FAILED+=("$name(exit $rc)")
    echo "== $name FAILED (exit $rc; whole log in $log)"
  fi
  return 0
}
in_tmp() { (cd /tmp && "$@"); }
device_checks_done() {
  if ((${#DEVICE_FAILED[@]} > 0)); then
    echo "device cycle: FAILED: ${DEVICE_FAILED[*]}"
    exit 1
  fi
  echo "device cycle: every step passed"
}
