#!/usr/bin/env bash
# System calls per 4 KiB ranged GET: `strace -c -f` on one ferryd worker over N keep-alive
# requests from one curl (sequential, so epoll_wait shows 1 per request; under wrk -c64 it is
# shared by many). Deterministic, unlike wall-clock ratios on a shared machine.
#   bench/serve/syscalls.sh [BINARY|nginx]   (N=2000 requests; FERRYD_ARGS="..." extra flags)
# `nginx` counts nginx's (one process, sendfile on, as in run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRYD=${1:-}
if [ -z "$FERRYD" ]; then cargo build --release -q -p ferryd; FERRYD=target/release/ferryd; fi
N=${N:-2000}
# shellcheck source=bench/serve/lib.sh
. bench/serve/lib.sh
make_work sys
start_one "$FERRYD"
for i in $(seq "$N"); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/big.bin"\noutput = "/dev/null"\nrange = "%d-%d"\n' "$URL" $((i * 4096)) $((i * 4096 + 4095))
done > "$WORK/curl.cfg"
strace -c -f -p "$SERVER_PID" -o "$WORK/strace" 2>/dev/null & STRACE_PID=$!
sleep 1
curl -sf -K "$WORK/curl.cfg"
sleep 0.5
kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
awk -v n="$N" '$NF != "total" && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {printf "%-14s %.2f per request\n", $NF, $4 / n}' "$WORK/strace"
