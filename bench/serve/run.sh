#!/usr/bin/env bash
# ferryd vs nginx (sendfile on), measured in one run on this machine. Prints ratios.
#   1. 1 GiB GET with curl to /dev/null: throughput ferryd/nginx (goal >= 1.0)
#   2. 4 KiB ranged GETs at random offsets, wrk -c64: requests/s ferryd/nginx (goal >= 1.0)
#   3. ferryd peak RSS (VmHWM) during 256 concurrent range downloads of the 1 GiB file (goal <= 64 MiB)
# Usage: bench/serve/run.sh [SECONDS_PER_WRK_RUN]   (ROUNDS=5 interleaved rounds, medians reported)
#   FERRYD_ARGS="..." extra ferryd flags (e.g. --no-index); INDEX_BUSY_GIB=N adds a sparse N GiB
#   file the content indexer hashes while the rounds run (pair with --index-rate to spread it out)
# Wall-clock ratios on a shared 2-core machine swing by +-15 % between runs; for the CPU work per
# request, a steadier figure, see bench/serve/instr.sh (instructions per 4 KiB GET, callgrind).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}

missing=()
for t in nginx:nginx-light wrk:wrk curl:curl; do command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "${FERRYD:-}" ]; then   # FERRYD=path measures another build (an A/B of two commits)
  cargo build --release -q -p ferryd
  FERRYD=target/release/ferryd
fi

WORK=$(mktemp -d /tmp/ferry-bench-serve.XXXXXX)
cleanup() { kill "${NGINX_PID:-}" "${FERRYD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1G /dev/urandom > "$WORK/www/big.bin"
chmod 755 "$WORK" "$WORK/www"; chmod 644 "$WORK/www/big.bin"   # nginx workers run as nobody
cat "$WORK/www/big.bin" > /dev/null   # both servers read from the page cache
if [ "${INDEX_BUSY_GIB:-0}" -gt 0 ]; then mkdir -p "$WORK/www/busy"; truncate -s "${INDEX_BUSY_GIB}G" "$WORK/www/busy/sparse.bin"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NPORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$NPORT; root $WORK/www; }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & NGINX_PID=$!
# shellcheck disable=SC2086 # FERRYD_ARGS is a list of flags
$FERRYD "$WORK/www" --listen 127.0.0.1:0 --log-level warn ${FERRYD_ARGS:-} > "$WORK/ferryd.out" & FERRYD_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
FURL=$(grep -o 'listening on http://[^ ]*' "$WORK/ferryd.out" | sed 's:^listening on ::; s:/$::')
NURL="http://127.0.0.1:$NPORT"
sleep 0.3

ROUNDS=${ROUNDS:-5}
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
speed() { # one curl run, bytes/s; fails unless exactly 1 GiB arrived
  read -r s n < <(curl -sf -o /dev/null -w '%{speed_download} %{size_download}\n' "$1/big.bin")
  [ "$n" = 1073741824 ] || { echo "$1 served $n bytes, not 1 GiB" >&2; exit 1; }
  echo "$s"
}

cat > "$WORK/ranges.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local off = math.random(0, 262143) * 4096
  return wrk.format("GET", "/big.bin", { Range = "bytes=" .. off .. "-" .. (off + 4095) })
end
LUA
curl -sf -r 0-4095 -o /dev/null "$NURL/big.bin" && curl -sf -r 0-4095 -o /dev/null "$FURL/big.bin"
rps() { wrk -t2 -c64 -d"${DUR}s" -s "$WORK/ranges.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }

# Interleaved rounds (nginx, ferryd, nginx, ...) and medians: on a shared 2-core machine a
# single run says more about the neighbours than about the server.
ns=(); fs=(); nr=(); fr=()
for _ in $(seq "$ROUNDS"); do
  ns+=("$(speed "$NURL")"); fs+=("$(speed "$FURL")")
  nr+=("$(rps "$NURL")"); fr+=("$(rps "$FURL")")
done
NS=$(median "${ns[@]}"); FS=$(median "${fs[@]}"); NR=$(median "${nr[@]}"); FR=$(median "${fr[@]}")
echo "1 GiB GET (median of $ROUNDS): nginx $(python3 -c "print(f'{$NS/2**20:.0f}')") MiB/s, ferryd $(python3 -c "print(f'{$FS/2**20:.0f}')") MiB/s, ratio ferryd/nginx = $(python3 -c "print(f'{$FS/$NS:.2f}')")"
echo "4 KiB random ranges, wrk -t2 -c64 ${DUR}s (median of $ROUNDS): nginx $NR req/s, ferryd $FR req/s, ratio ferryd/nginx = $(python3 -c "print(f'{$FR/$NR:.2f}')")"

# 256 concurrent downloads, each a distinct 4 MiB range of the 1 GiB file.
pids=()
for i in $(seq 0 255); do
  a=$((i * 4194304)); b=$((a + 4194303))
  curl -s -o /dev/null -r "$a-$b" "$FURL/big.bin" & pids+=($!)
done
wait "${pids[@]}"
HWM=$(awk '/VmHWM/ {print $2}' /proc/$FERRYD_PID/status)
echo "ferryd peak RSS with 256 concurrent range downloads: $((HWM / 1024)) MiB (goal <= 64 MiB)"
