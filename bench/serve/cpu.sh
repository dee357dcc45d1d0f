#!/usr/bin/env bash
# CPU time (user + kernel, all of ferryd's threads, from /proc/PID/task/*/schedstat) per 4 KiB
# random ranged GET, one worker, `--no-index`, wrk -t1 -c16. Unlike instr.sh this counts the
# kernel's share (system calls, loopback TCP); it is steadier than req/s on a shared machine but
# still moves with the neighbours: run two builds interleaved and compare medians.
#   bench/serve/cpu.sh [BINARY]   (D=5 seconds per run)
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRYD=${1:-}
if [ -z "$FERRYD" ]; then cargo build --release -q -p ferryd; FERRYD=target/release/ferryd; fi
WORK=$(mktemp -d /tmp/ferry-bench-cpu.XXXXXX)
cleanup() { kill "${FERRYD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www"
head -c 64M /dev/urandom > "$WORK/www/big.bin"
cat > "$WORK/ranges.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local off = math.random(0, 16383) * 4096
  return wrk.format("GET", "/big.bin", { Range = "bytes=" .. off .. "-" .. (off + 4095) })
end
LUA
"$FERRYD" "$WORK/www" --listen 127.0.0.1:0 --workers 1 --log-level warn --no-index > "$WORK/ferryd.out" 2>&1 &
FERRYD_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'listening on http://[^ ]*' "$WORK/ferryd.out" | sed 's:^listening on ::; s:/$::')
wrk -t1 -c16 -d2s -s "$WORK/ranges.lua" "$URL" > /dev/null   # warm-up
cpu_ns() { cat /proc/"$FERRYD_PID"/task/*/schedstat | awk '{s += $1} END {print s}'; }
a=$(cpu_ns)
out=$(wrk -t1 -c16 -d"${D:-5}s" -s "$WORK/ranges.lua" "$URL")
b=$(cpu_ns)
reqs=$(awk '/requests in/ {print $1}' <<< "$out")
python3 -c "print(f'{($b - $a) / $reqs / 1000:.2f} us CPU per request over $reqs requests')"
