#!/usr/bin/env bash
# System calls per 4 KiB ranged GET: `strace -c -f` on one ferryd worker over N keep-alive
# requests from one curl (sequential, so epoll_wait shows 1 per request; under wrk -c64 it is
# shared by many). Deterministic, unlike wall-clock ratios on a shared machine.
#   bench/serve/syscalls.sh [BINARY]   (N=2000 requests; FERRYD_ARGS="..." extra flags)
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRYD=${1:-}
if [ -z "$FERRYD" ]; then cargo build --release -q -p ferryd; FERRYD=target/release/ferryd; fi
N=${N:-2000}
WORK=$(mktemp -d /tmp/ferry-bench-sys.XXXXXX)
cleanup() { kill "${STRACE_PID:-}" "${FERRYD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www"
head -c 64M /dev/urandom > "$WORK/www/big.bin"
# shellcheck disable=SC2086 # FERRYD_ARGS is a list of flags
"$FERRYD" "$WORK/www" --listen 127.0.0.1:0 --workers 1 --log-level warn ${FERRYD_ARGS:-} > "$WORK/ferryd.out" 2>&1 &
FERRYD_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'listening on http://[^ ]*' "$WORK/ferryd.out" | sed 's:^listening on ::; s:/$::')
curl -sf -r 4096-8191 -o /dev/null "$URL/big.bin"
for i in $(seq "$N"); do
  [ "$i" -gt 1 ] && echo next
  printf 'url = "%s/big.bin"\noutput = "/dev/null"\nrange = "%d-%d"\n' "$URL" $((i * 4096)) $((i * 4096 + 4095))
done > "$WORK/curl.cfg"
strace -c -f -p "$FERRYD_PID" -o "$WORK/strace" 2>/dev/null & STRACE_PID=$!
sleep 1
curl -sf -K "$WORK/curl.cfg"
sleep 0.5
kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
awk -v n="$N" '$NF != "total" && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {printf "%-14s %.2f per request\n", $NF, $4 / n}' "$WORK/strace"
