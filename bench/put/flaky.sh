#!/usr/bin/env bash
# Uploads on a bad link (issue 15 point 4): a seeded flaky TCP proxy (tests/src/bin/flaky_proxy.rs)
# in front of a fresh ferryd cuts every connection after a random 1-8 MiB and leaves one
# connection in seven silent (open, swallowing what it is sent, answering nothing). Through it:
#   ferry put                      defaults (chunks from 8 MiB adapting to the link, crc32 per PATCH,
#                                  --retry-wait 1s, --timeout 30s)
#   ferry put -x 4                 the same in 4 parts
#   ... --timeout 5s               the same with the issue's stall timeout (--retry-wait 1s)
#   tus-js-client                  parallelUploads 4, 8 MiB chunks, retries every 1 s (many),
#                                  given CAP seconds (120) at most
# Each run uses one proxy seed for every client, so within a round all meet the same faults in
# the same connection order; round r uses seed r. The stored file is compared byte for byte
# with the source. Prints each run, then per client: runs finished, median time of the
# finished runs, and the median time ferry sat out stall timeouts (from its -v log: each
# "no bytes received for N s" is N seconds spent waiting on a silent connection).
# tus-js-client is given CAP seconds (120), ferry FERRY_CAP (600). SEEDS="2 5" picks the seeds
# (default 1..RUNS).
# Usage: [BENCH_DIR=DIR] [ONLY=REGEX] [CAP=SECS] [SEEDS=LIST] bench/put/flaky.sh [SIZE (64M)] [RUNS (3)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-64M}
RUNS=${2:-3}
CAP=${CAP:-120}
FERRY_CAP=${FERRY_CAP:-600}
SEEDS=${SEEDS:-$(seq "$RUNS")}
TOKEN=bench-token

cargo build --release -q -p ferry -p ferryd
cargo build --release -q -p ferry-tests --bin flaky_proxy
[ -d tests/interop/node_modules/tus-js-client ] || (cd tests/interop && npm install --silent)

BENCH_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BENCH_DIR" ] || BENCH_DIR=/tmp
WORK=$(mktemp -d "$BENCH_DIR/ferry-bench-flaky.XXXXXX")
FERRYD_PID=; PROXY_PID=
stop_all() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  [ -n "$FERRYD_PID" ] && kill "$FERRYD_PID" 2>/dev/null && wait "$FERRYD_PID" 2>/dev/null
  PROXY_PID=; FERRYD_PID=
  return 0
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
head -c "$SIZE" /dev/urandom > "$WORK/big.bin"
BYTES=$(stat -c %s "$WORK/big.bin")

wait_line() { # FILE PATTERN: waits up to 20 s for PATTERN in FILE
  for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

start() { # SEED: fresh ferryd root behind a fresh proxy; sets ROOT, ENDPOINT
  ROOT=$(mktemp -d "$WORK/root.XXXXXX")
  # The previous run's lines must not be read as this run's (they name processes now gone).
  rm -f "$WORK/ferryd.out" "$WORK/proxy.out"
  target/release/ferryd "$ROOT" --listen 127.0.0.1:0 --upload-token "$TOKEN" --log-level warn > "$WORK/ferryd.out" 2>&1 &
  FERRYD_PID=$!
  wait_line "$WORK/ferryd.out" 'http://'
  local addr
  addr=$(grep -o 'http://[^ /]*' "$WORK/ferryd.out" | head -1 | sed 's|http://||')
  target/release/flaky_proxy --target "$addr" --cut 1M-8M --silent-every 7 --seed "$1" > "$WORK/proxy.out" 2> "$WORK/proxy.err" &
  PROXY_PID=$!
  wait_line "$WORK/proxy.out" 'listening on'
  ENDPOINT="http://$(sed -n 's/^listening on //p' "$WORK/proxy.out" | head -1)/files/"
}

NAMES=(); CMDS=()
add() { [[ -z "${ONLY:-}" || "$1" =~ $ONLY ]] || return 0; NAMES+=("$1"); CMDS+=("$2"); }
FERRY='FERRY_DATA_DIR=$WORK/data FERRY_LOG=warn,ferry::put=info target/release/ferry put -v --token $TOKEN'
add "ferry put" "$FERRY \$WORK/big.bin \$ENDPOINT"
add "ferry put -x 4" "$FERRY -x 4 \$WORK/big.bin \$ENDPOINT"
add "ferry put --timeout 5s" "$FERRY --timeout 5s \$WORK/big.bin \$ENDPOINT"
add "ferry put -x 4 --timeout 5s" "$FERRY -x 4 --timeout 5s \$WORK/big.bin \$ENDPOINT"
add "tus-js-client parallel 4, 8 MiB" 'node bench/put/tusjs_put.mjs $ENDPOINT $TOKEN $WORK/big.bin 4 buffer 8388608 1000'

once() { # COMMAND SEED: sets T (seconds), OK (ok|failed|capped|differs), STALL (seconds)
  start "$2"
  rm -rf "$WORK/data"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  local cap=$FERRY_CAP
  [[ "$1" == *tusjs* ]] && cap=$CAP
  WORK=$WORK TOKEN=$TOKEN ENDPOINT=$ENDPOINT timeout "$cap" bash -c "$1" > "$WORK/client.out" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  T=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  if [ "$rc" = 124 ]; then OK=capped
  elif [ "$rc" != 0 ]; then OK=failed; tail -3 "$WORK/client.out" >&2
  elif cmp -s "$WORK/big.bin" "$ROOT/big.bin"; then OK=ok
  else OK=differs
  fi
  STALL=$({ grep -o 'no bytes received for [0-9]* s' "$WORK/client.out" || true; } | awk '{s += $5} END {print s + 0}')
  stop_all
  rm -rf "$ROOT"
}

declare -A TIMES STALLS
echo "run  seed  client                              result   time    stall"
for r in $SEEDS; do
  for i in "${!CMDS[@]}"; do
    once "${CMDS[$i]}" "$r"
    printf '%-4s %-5s %-35s %-8s %6ss %5ss\n' "$r" "$r" "${NAMES[i]}" "$OK" "$T" "$STALL"
    [ "$OK" = ok ] && TIMES[$i]+="$T " && STALLS[$i]+="$STALL "
    [ "$OK" = differs ] && { echo "stored file differs from the source: ${NAMES[i]}" >&2; exit 1; }
  done
done
echo
echo "upload of $(python3 -c "print(f'{$BYTES/2**20:.0f}')") MiB through flaky_proxy --cut 1M-8M --silent-every 7 (seeds $(echo $SEEDS)), tus-js-client capped at ${CAP} s, load average $(cut -d' ' -f1-3 /proc/loadavg):"
for i in "${!CMDS[@]}"; do
  python3 - "${NAMES[i]}" "$(echo $SEEDS | wc -w)" "${TIMES[$i]:-}" "${STALLS[$i]:-}" <<'EOF'
import statistics, sys
name, runs, times, stalls = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
med = f"{statistics.median(map(float, times)):6.2f} s" if times else "     -  "
stall = f"{statistics.median(map(float, stalls)):5.0f} s" if stalls else "    -"
print(f"{name:<35} finished {len(times)}/{runs}  median {med}  median stall wait {stall}")
EOF
done
