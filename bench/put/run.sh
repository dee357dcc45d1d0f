#!/usr/bin/env bash
# 1 GiB upload into ferryd over loopback, three clients, each into a fresh ferryd root (so
# instant upload never applies: ferryd holds no file of that size, so ferry does not hash),
# the stored file compared byte for byte with the source:
#   ferry put -x 4        (defaults: PATCHes paced from 8 MiB, a crc32 Upload-Checksum each)
#   tus-js-client         parallelUploads: 4 (Node, default chunkSize; the file in a Buffer, and
#                         as an fs.ReadStream it slices by path)
#   tuspy                 8 MiB PATCHes (tuspy has no parallel mode)
# plus ferry variants that isolate the costs: -x 1; sha256 instead of crc32 per PATCH; and
# -x 4 / -x 1 with no checksum (the same work as tus-js-client / tuspy, which send none).
# Prints the best of RUNS wall-clock times per client and MiB/s.
# The source file and ferryd's root live in BENCH_DIR, /dev/shm by default: on this VM the
# disk's write rate swings by 2-3x from run to run and drowns the clients' differences. Set
# BENCH_DIR=/tmp (or any disk path) to include the disk.
# Usage: [BENCH_DIR=DIR] [ONLY=REGEX] bench/put/run.sh [SIZE (default 1G)] [RUNS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-1G}
RUNS=${2:-3}
TOKEN=bench-token

cargo build --release -q -p ferry
# ferryd is built too; in a shared tree mid-edit, an existing binary is used with a warning.
cargo build --release -q -p ferryd 2>/dev/null || { [ -x target/release/ferryd ] && echo "warning: ferryd does not build right now; using the existing target/release/ferryd" >&2; } || exit 1
[ -d tests/interop/node_modules/tus-js-client ] || (cd tests/interop && npm install --silent)
python3 -c 'import tusclient' 2>/dev/null || pip install -q -r tests/interop/requirements.txt

BENCH_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BENCH_DIR" ] || BENCH_DIR=/tmp
WORK=$(mktemp -d "$BENCH_DIR/ferry-bench-put.XXXXXX")
cleanup() { [ -n "${FERRYD_PID:-}" ] && kill "$FERRYD_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
head -c "$SIZE" /dev/urandom > "$WORK/big.bin"
BYTES=$(stat -c %s "$WORK/big.bin")
cat "$WORK/big.bin" > /dev/null   # every client reads from the page cache

start_ferryd() { # fresh root; sets ROOT, FERRYD_PID, ENDPOINT
  ROOT=$(mktemp -d "$WORK/root.XXXXXX")
  rm -f "$WORK/ferryd.out"   # the previous run's address must not be read as this one's
  target/release/ferryd "$ROOT" --listen 127.0.0.1:0 --upload-token "$TOKEN" --log-level warn > "$WORK/ferryd.out" 2>&1 &
  FERRYD_PID=$!
  for _ in $(seq 400); do grep -q 'http://' "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.05; done
  grep -q 'http://' "$WORK/ferryd.out" || { echo "ferryd did not start:" >&2; cat "$WORK/ferryd.out" >&2; exit 1; }
  ENDPOINT="$(grep -o 'http://[^ /]*' "$WORK/ferryd.out" | head -1)/files/"
}
stop_ferryd() { kill "$FERRYD_PID"; wait "$FERRYD_PID" 2>/dev/null || true; FERRYD_PID=; rm -rf "$ROOT"; }

NAMES=(); CMDS=()
# ONLY=REGEX keeps the clients whose name matches (e.g. ONLY='x 4|tus-js').
add() { [[ -z "${ONLY:-}" || "$1" =~ $ONLY ]] || return 0; NAMES+=("$1"); CMDS+=("$2"); }
add "ferry put -x 4" 'FERRY_DATA_DIR=$WORK/data target/release/ferry put -q -x 4 --token $TOKEN $WORK/big.bin $ENDPOINT'
add "ferry put -x 1" 'FERRY_DATA_DIR=$WORK/data target/release/ferry put -q --token $TOKEN $WORK/big.bin $ENDPOINT'
add "ferry put -x 4 --checksum sha256" 'FERRY_DATA_DIR=$WORK/data target/release/ferry put -q -x 4 --checksum sha256 --token $TOKEN $WORK/big.bin $ENDPOINT'
add "ferry put -x 4, no sums (= tus-js)" 'FERRY_DATA_DIR=$WORK/data target/release/ferry put -q -x 4 --checksum none --token $TOKEN $WORK/big.bin $ENDPOINT'
add "ferry put -x 1, no sums (= tuspy)" 'FERRY_DATA_DIR=$WORK/data target/release/ferry put -q --checksum none --token $TOKEN $WORK/big.bin $ENDPOINT'
add "tus-js-client parallel 4 (Buffer)" 'node bench/put/tusjs_put.mjs $ENDPOINT $TOKEN $WORK/big.bin 4 buffer'
add "tus-js-client parallel 4 (ReadStream)" 'node bench/put/tusjs_put.mjs $ENDPOINT $TOKEN $WORK/big.bin 4 stream'
add "tuspy (8 MiB chunks)" 'python3 bench/put/tuspy_put.py $ENDPOINT $TOKEN $WORK/big.bin 8388608'

once() { # 'COMMAND' (evaluated once ENDPOINT is known): sets T to the wall time, verified.
  # Runs in this shell (not a $(...) subshell) so that a failure's exit reaches the trap
  # with FERRYD_PID set and no ferryd is left behind.
  start_ferryd
  local t0 t1
  t0=$(date +%s.%N)
  eval "$1" > "$WORK/client.out" 2>&1 || { echo "failed: $1" >&2; cat "$WORK/client.out" >&2; exit 1; }
  t1=$(date +%s.%N)
  cmp -s "$WORK/big.bin" "$ROOT/big.bin" || { echo "stored file differs from the source: $1" >&2; exit 1; }
  stop_ferryd
  T=$(python3 -c "print($t1 - $t0)")
}

# Rounds interleave the clients so that load from elsewhere on the machine spreads evenly.
declare -a BEST
for _ in $(seq "$RUNS"); do
  for i in "${!CMDS[@]}"; do
    once "${CMDS[$i]}"
    BEST[i]=$(python3 -c "b='${BEST[i]:-}'; print($T if not b else min($T, float(b)))")
  done
done
echo "upload of $(python3 -c "print(f'{$BYTES/2**20:.0f}')") MiB into ferryd (root in $BENCH_DIR), best of $RUNS, load average $(cut -d' ' -f1-3 /proc/loadavg):"
for i in "${!CMDS[@]}"; do
  python3 -c 'import sys; n, t, b = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]); print(f"{n:<40} {t:6.2f} s  {b / 2**20 / t:7.0f} MiB/s")' "${NAMES[i]}" "${BEST[i]}" "$BYTES"
done
