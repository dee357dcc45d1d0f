#!/usr/bin/env bash
# CPU time (user + kernel, all of ferryd's threads, from /proc/PID/task/*/schedstat) per 4 KiB
# random ranged GET, one worker, `--no-index`, wrk -t1 -c16. Unlike instr.sh this counts the
# kernel's share (system calls, loopback TCP); it is steadier than req/s on a shared machine but
# still moves with the neighbours: run two builds interleaved and compare medians.
#   bench/serve/cpu.sh [BINARY|nginx]   (D=5 seconds per run; FERRYD_ARGS, default --no-index)
# WORKERS=2 CONNS=64: two server workers and wrk -t2 -c64, as in run.sh (what the workers share
# shows there: cache lines bouncing between cores).
# `nginx` measures nginx the same way (one process, sendfile on): the figure to beat.
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRYD=${1:-}
if [ -z "$FERRYD" ]; then cargo build --release -q -p ferryd; FERRYD=target/release/ferryd; fi
FERRYD_ARGS=${FERRYD_ARGS---no-index}
# shellcheck source=bench/serve/lib.sh
. bench/serve/lib.sh
make_work cpu
start_one "$FERRYD"
wrk -t"${WORKERS:-1}" -c"${CONNS:-16}" -d2s -s "$WORK/ranges.lua" "$URL" > /dev/null   # warm-up
a=$(server_cpu_ns); read -r ua sa < <(server_ticks)
out=$(wrk -t"${WORKERS:-1}" -c"${CONNS:-16}" -d"${D:-5}s" -s "$WORK/ranges.lua" "$URL")
b=$(server_cpu_ns); read -r ub sb < <(server_ticks)
reqs=$(awk '/requests in/ {print $1}' <<< "$out")
hz=$(getconf CLK_TCK)
python3 -c "
u, k = ($ub - $ua) / $hz, ($sb - $sa) / $hz
print(f'{($b - $a) / $reqs / 1000:.2f} us CPU per request over $reqs requests (user {u / $reqs * 1e6:.1f}, kernel {k / $reqs * 1e6:.1f} us)')"
