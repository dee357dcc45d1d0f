#!/usr/bin/env bash
# User-space instructions per 4 KiB random ranged GET, for one ferryd worker: a noise-robust
# figure for CPU work per request on a shared machine, where wall-clock req/s mostly measures
# the neighbours (and this VM has no hardware counters for `perf stat -e instructions:u`).
# ferryd runs under callgrind; counters are zeroed after a warm-up, then one wrk run is
# counted, and the instructions executed (Ir) are divided by the requests wrk completed.
#   bench/serve/instr.sh [BINARY|nginx] [OUT.callgrind]  (default target/release/ferryd, built first)
# `nginx` counts nginx's instructions the same way (one process, sendfile on, as in run.sh).
# WAIT_DIGEST=1 waits until the file is indexed (responses carry Repr-Digest) before counting;
# FERRY_NO_INDEX=true runs ferryd without the content index.
# Keep OUT and read it with `callgrind_annotate --inclusive=yes OUT` to see where the work goes.
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRYD=${1:-}
OUT=${2:-}
if [ -z "$FERRYD" ]; then
  cargo build --release -q -p ferryd
  FERRYD=target/release/ferryd
fi
for t in valgrind callgrind_control wrk curl; do
  command -v "$t" >/dev/null || { echo "instr.sh needs $t" >&2; exit 1; }
done

# shellcheck source=bench/serve/lib.sh
. bench/serve/lib.sh
make_work instr

if [ -n "${WAIT_DIGEST:-}" ]; then
  # Index natively first (hashing under valgrind takes minutes); ferryd then starts from the cache.
  touch -d '1 minute ago' "$WORK/www/big.bin"
  "$FERRYD" "$WORK/www" --listen 127.0.0.1:0 --log-level info > "$WORK/pre.out" 2> "$WORK/pre.err" &
  PRE=$!
  for _ in $(seq 600); do grep -q "index: ready" "$WORK/pre.err" 2>/dev/null && break; sleep 0.1; done
  kill "$PRE"; wait "$PRE" 2>/dev/null || true
fi
start_one "$FERRYD" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p"
if [ -n "${WAIT_DIGEST:-}" ]; then
  # Count requests that carry Repr-Digest: wait (bounded) for the content index to hash the file.
  for _ in $(seq 1200); do curl -sfI "$URL/big.bin" | grep -qi '^repr-digest' && break; sleep 0.5; done
  curl -sfI "$URL/big.bin" | grep -qi '^repr-digest' || { echo "big.bin was never indexed" >&2; exit 1; }
fi
wrk -t1 -c16 -d3s -s "$WORK/ranges.lua" "$URL" > /dev/null   # warm-up: caches, allocator

callgrind_control -z "$SERVER_PID" > /dev/null 2>&1
out=$(wrk -t1 -c16 -d5s -s "$WORK/ranges.lua" "$URL")
callgrind_control -d "$SERVER_PID" > /dev/null 2>&1
reqs=$(awk '/requests in/ {print $1}' <<< "$out")
if grep -q 'Non-2xx' <<< "$out"; then echo "non-206 answers: $out" >&2; exit 1; fi
dump=$(ls -t "$WORK"/cg.* | head -1)
ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
[ -n "$OUT" ] && cp "$dump" "$OUT"
echo "$reqs requests, $ir Ir, $((ir / reqs)) instructions/request"
