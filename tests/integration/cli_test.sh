#!/usr/bin/env bash
# End-to-end test of the `kvstash` CLI against a real standalone kvstashd.
#   usage: bash cli_test.sh <path-to-kvstashd> <path-to-kvstash>
# Starts the daemon on ephemeral ports, reads its ready line (blocking, no sleeps), exercises every
# command, then stops the daemon with SIGTERM and requires a clean exit.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: bash cli_test.sh <path-to-kvstashd> <path-to-kvstash>" >&2
  exit 2
fi
KVSTASHD=$1
KVSTASH=$2

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

fail() {
  echo "cli_test: FAIL: $*" >&2
  echo "--- last stdout:" >&2; cat "$tmp/out" >&2 2>/dev/null || true
  echo "--- last stderr:" >&2; cat "$tmp/err" >&2 2>/dev/null || true
  echo "--- daemon log:" >&2; tail -n 50 "$tmp/daemon.log" >&2 2>/dev/null || true
  exit 1
}

# run WANT_RC CMD...: runs CMD with stdout in $tmp/out, stderr in $tmp/err; requires exit WANT_RC.
run() {
  local want=$1
  shift
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc -eq $want ]] || fail "'$*' exited $rc, want $want"
}
out_has() { grep -q -- "$1" "$tmp/out" || fail "stdout of the last command lacks '$1'"; }
err_has() { grep -q -- "$1" "$tmp/err" || fail "stderr of the last command lacks '$1'"; }
# json EXPR: evaluates a python expression over the last stdout parsed as JSON (bound to j); true required.
json() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$tmp/out" "$1" || fail "JSON check failed: $1"
}
block_count() {
  "$KVSTASH" ls --all --limit 1000 --json >"$tmp/count.json"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["count"])' "$tmp/count.json"
}

# --- start the daemon; its first stdout line says where it listens -----------------------------
mkfifo "$tmp/ready"
"$KVSTASHD" --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --dram-capacity 256MiB \
  >"$tmp/ready" 2>"$tmp/daemon.log" &
daemon_pid=$!
exec 3<"$tmp/ready"
ready=""
read -r -t 60 ready <&3 || fail "kvstashd printed no ready line"
[[ $ready =~ ^kvstashd\ ready\ grpc=([0-9.]+:[0-9]+)\ metrics=([0-9.]+:[0-9]+)$ ]] ||
  fail "unexpected ready line: '$ready'"
export KVSTASH_ADDR=${BASH_REMATCH[1]}
echo "cli_test: kvstashd at $KVSTASH_ADDR"

# --- status ---------------------------------------------------------------------------------------
run 0 "$KVSTASH" status
out_has "$KVSTASH_ADDR"
out_has "dram"
run 0 "$KVSTASH" status --json
json 'j["serving"] is True and j["address"] == "'"$KVSTASH_ADDR"'"'
json 'any(t["tier"] == "dram" and t["capacity_bytes"] == 256 << 20 for t in j["tiers"])'
json 'j["version"] != "" and j["uptime_ms"] >= 0'

# --- put / get round trip -------------------------------------------------------------------------
K1=00112233445566778899aabbccddeeff
K2=0123456789abcdef0123456789abcdef
K3=fedcba9876543210fedcba9876543210
head -c 100000 /dev/urandom >"$tmp/block1"
head -c 4096 /dev/urandom >"$tmp/block2"
run 0 "$KVSTASH" put "$K1" "$tmp/block1"
out_has "stored $K1"
run 0 "$KVSTASH" put "$K1" "$tmp/block1"
out_has "exists $K1"
run 0 "$KVSTASH" get "$K1" -o "$tmp/got1"
cmp "$tmp/block1" "$tmp/got1" || fail "get -o FILE returned different bytes"
run 0 "$KVSTASH" get "$K1" -o -
cmp "$tmp/block1" "$tmp/out" || fail "get -o - returned different bytes"
run 0 "$KVSTASH" put "$K2" "$tmp/block2" --parent "$K1" --pin --json
json 'j["outcome"] == "stored" and j["size"] == 4096'
# put from stdin
run 0 bash -c "'$KVSTASH' put $K3 - <'$tmp/block2'"
out_has "stored $K3"

# --- stat -----------------------------------------------------------------------------------------
run 0 "$KVSTASH" stat "$K1"
out_has "100000"
run 0 "$KVSTASH" stat "$K1" --json
json 'j["key"] == "'"$K1"'" and j["size"] == 100000 and j["tier"] == "dram" and j["parent"] is None'
run 0 "$KVSTASH" stat "$K2" --json
json 'j["size"] == 4096 and j["pinned"] is True and j["parent"] == "'"$K1"'"'
run 0 "$KVSTASH" stat "$K2"
out_has "pinned"
out_has "$K1"

# --- ls: plain, json, paginated -------------------------------------------------------------------
run 0 "$KVSTASH" ls
out_has "$K1"
out_has "3 blocks"
run 0 "$KVSTASH" ls --json
json 'j["count"] == 3 and "'"$K1"'" in [b["key"] for b in j["blocks"]] and j["next_start_after"] is None'
run 0 "$KVSTASH" ls --limit 2 --json
json 'j["count"] == 2 and j["next_start_after"] == j["blocks"][-1]["key"]'
cursor=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["next_start_after"])' "$tmp/out")
run 0 "$KVSTASH" ls --limit 2 --start-after "$cursor" --json
json 'j["count"] == 1 and j["next_start_after"] is None and j["blocks"][0]["key"] > "'"$cursor"'"'
run 0 "$KVSTASH" ls --limit 1 --all --json
json 'j["count"] == 3 and sorted(b["key"] for b in j["blocks"]) == [b["key"] for b in j["blocks"]]'

# --- bad input: usage errors, nothing changes -----------------------------------------------------
before=$(block_count)
run 2 "$KVSTASH" put 00112233445566778899aabbccddeef "$tmp/block2"   # 31 hex digits
err_has "kvstash: put:"
err_has "32 hex digits"
run 2 "$KVSTASH" put 00112233445566778899aabbccddeefg "$tmp/block2"  # non-hex
err_has "non-hex"
run 2 "$KVSTASH" put "$K3" "$tmp/block2" --parent xyz
run 2 "$KVSTASH" get 0011 -o "$tmp/never"
[[ ! -e $tmp/never ]] || fail "get with a bad key created its output file"
run 2 "$KVSTASH" rm "$K1" not-a-key                                   # one bad key: nothing removed
run 2 "$KVSTASH" stat zz112233445566778899aabbccddeeff
run 2 "$KVSTASH" ls --limit 0
run 2 "$KVSTASH" frobnicate
err_has "kvstash:"
run 2 "$KVSTASH" bench --op sideways
run 2 "$KVSTASH" bench --block-size 3furlongs
run 2 "$KVSTASH" --addr nonsense status
run 1 "$KVSTASH" put "$K3" "$tmp/does-not-exist"
err_has "kvstash: put: NOT_FOUND"
: >"$tmp/empty"
run 1 "$KVSTASH" put "$K3" "$tmp/empty"
err_has "empty"
[[ $(block_count) -eq $before ]] || fail "bad commands changed the number of blocks"
run 0 "$KVSTASH" stat "$K1"

# --- rm -------------------------------------------------------------------------------------------
K4=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
run 0 "$KVSTASH" rm "$K1" "$K4"
out_has "removed $K1"
out_has "missing $K4"
run 0 "$KVSTASH" rm "$K1" --json
json 'j["removed"] == 0 and j["missing"] == 1 and j["results"][0]["outcome"] == "missing"'
run 1 "$KVSTASH" get "$K1" -o "$tmp/gone"
err_has "kvstash: get: NOT_FOUND: key $K1 not stored"
[[ ! -e $tmp/gone ]] || fail "a failed get created its output file"
run 1 "$KVSTASH" stat "$K1"
err_has "NOT_FOUND"
[[ $(block_count) -eq $((before - 1)) ]] || fail "rm did not remove exactly one block"

# --- hash -----------------------------------------------------------------------------------------
seq 1 1300 | tr '\n' ' ' >"$tmp/tokens.txt"
run 0 "$KVSTASH" hash "$tmp/tokens.txt" --block-tokens 256
[[ $(grep -cE '^[0-9]+ [0-9a-f]{32}$' "$tmp/out") -eq 5 ]] || fail "1300 tokens / 256 should give 5 keys"
[[ $(wc -l <"$tmp/out") -eq 5 ]] || fail "hash printed extra lines on stdout"
err_has "partial block"
cp "$tmp/out" "$tmp/hash1"
run 0 "$KVSTASH" hash "$tmp/tokens.txt" --block-tokens 256
cmp "$tmp/hash1" "$tmp/out" || fail "hash is not deterministic"
# The same tokens as raw little-endian u32 give the same keys.
python3 -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<1300I", *range(1, 1301)))' "$tmp/tokens.u32"
run 0 "$KVSTASH" hash "$tmp/tokens.u32" --format u32 --block-tokens 256
cmp "$tmp/hash1" "$tmp/out" || fail "u32 and text token files disagree"
# A prefix of the tokens gives a prefix of the chain; another namespace gives other keys.
seq 1 768 >"$tmp/prefix.txt"
run 0 "$KVSTASH" hash "$tmp/prefix.txt" --block-tokens 256
[[ "$(cat "$tmp/out")" == "$(head -n 3 "$tmp/hash1")" ]] || fail "prefix chain differs from chain prefix"
run 0 "$KVSTASH" hash "$tmp/tokens.txt" --block-tokens 256 --namespace other-model
if cmp -s "$tmp/hash1" "$tmp/out"; then fail "namespaces do not change keys"; fi
run 0 "$KVSTASH" hash "$tmp/tokens.txt" --block-tokens 256 --json
json 'j["blocks"] == 5 and j["tokens"] == 1300 and j["partial_tokens"] == 20 and len(j["keys"]) == 5'
echo "1 2 banana" >"$tmp/bad-tokens.txt"
run 1 "$KVSTASH" hash "$tmp/bad-tokens.txt"
err_has "banana"
head -c 7 /dev/urandom >"$tmp/bad.u32"
run 1 "$KVSTASH" hash "$tmp/bad.u32" --format u32
err_has "multiple of 4"

# --- bench ----------------------------------------------------------------------------------------
before=$(block_count)
run 0 "$KVSTASH" bench --count 200 --block-size 64KiB --threads 2 --json
json 'j["put"]["ops"] == 200 and j["put"]["stored"] == 200 and j["put"]["gb_per_s"] > 0'
json 'j["get"]["ops"] == 200 and j["get"]["hits"] == 200 and j["get"]["mismatches"] == 0'
json 'j["get"]["verified"] > 0 and j["get"]["gb_per_s"] > 0 and j["put"]["errors"] == 0'
json 'j["put"]["latency_us"]["rpc"]["p50"] > 0 and j["get"]["latency_us"]["block"]["max"] > 0'
[[ $(block_count) -eq $before ]] || fail "bench left its blocks behind"
run 0 "$KVSTASH" bench --op put --count 50 --block-size 4KiB --batch 8 --keep
out_has "put"
[[ $(block_count) -eq $((before + 50)) ]] || fail "bench --keep did not keep 50 blocks"
run 0 "$KVSTASH" bench --op get --count 20 --block-size 1MiB --verify-every 1 --json
json '"put" not in j and j["get"]["ops"] == 20 and j["get"]["verified"] == 20'

# --- status counters moved ------------------------------------------------------------------------
run 0 "$KVSTASH" status --json
json 'j["put"]["stored"] > 0 and j["put"]["deduplicated"] >= 1 and j["get"]["hits"] > 0'
json 'sum(j["transfers"]["put_bytes"].values()) > 0 and j["transfers"]["two_sided_receives_open"] == 0'

# --- unreachable daemon ---------------------------------------------------------------------------
dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
run 1 "$KVSTASH" --addr "127.0.0.1:$dead_port" status
err_has "kvstash: cannot reach kvstashd at 127.0.0.1:$dead_port"
run 1 env KVSTASH_ADDR="127.0.0.1:$dead_port" "$KVSTASH" get "$K2" -o "$tmp/x"
err_has "cannot reach kvstashd at 127.0.0.1:$dead_port"
run 1 "$KVSTASH" --addr "127.0.0.1:$dead_port" bench --count 1
# --addr wins over $KVSTASH_ADDR
run 0 env KVSTASH_ADDR="127.0.0.1:$dead_port" "$KVSTASH" --addr "$KVSTASH_ADDR" stat "$K2"

# --- stop the daemon ------------------------------------------------------------------------------
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
exec 3<&-
[[ $rc -eq 0 ]] || fail "kvstashd exited $rc after SIGTERM, want 0"
echo "cli_test: PASS"
