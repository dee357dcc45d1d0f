#!/usr/bin/env bash
# ferryd vs nginx (sendfile on), measured in one run on this machine. Prints ratios.
#   1. 1 GiB GET with curl to /dev/null: throughput ferryd/nginx (goal >= 1.0)
#   2. 4 KiB ranged GETs at random offsets, wrk -c64: requests/s ferryd/nginx (goal >= 1.0)
#   3. ferryd peak RSS (VmHWM) during 256 concurrent range downloads of the 1 GiB file (goal <= 64 MiB)
#   4. 4 KiB ranged GETs over HTTP/2 (h2c with prior knowledge, h2load -c16 -m16): requests/s
#   5. a 512 MiB GET over TLS (HTTP/1.1, curl, fixtures/tls/ certificates): throughput
# Usage: bench/serve/run.sh [SECONDS_PER_WRK_RUN]   (ROUNDS=5 interleaved rounds, medians reported)
#   FERRYD_ARGS="..." extra ferryd flags (e.g. --no-index); INDEX_BUSY_GIB=N adds a sparse N GiB
#   file the content indexer hashes while the rounds run (pair with --index-rate to spread it out)
#   PROTOCOLS=0 skips 4 and 5 (they need h2load, from nghttp2-client)
# Wall-clock ratios on a shared 2-core machine swing by +-15 % between runs; for the CPU work per
# request, a steadier figure, see bench/serve/instr.sh (instructions per 4 KiB GET, callgrind).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}

missing=()
for t in nginx:nginx-light wrk:wrk curl:curl h2load:nghttp2-client; do command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -z "${FERRYD:-}" ]; then   # FERRYD=path measures another build (an A/B of two commits)
  cargo build --release -q -p ferryd
  FERRYD=target/release/ferryd
fi

WORK=$(mktemp -d /tmp/ferry-bench-serve.XXXXXX)
cleanup() { kill "${NGINX_PID:-}" "${FERRYD_PID:-}" "${FERRYD_TLS_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1G /dev/urandom > "$WORK/www/big.bin"
chmod 755 "$WORK" "$WORK/www"; chmod 644 "$WORK/www/big.bin"   # nginx workers run as nobody
cat "$WORK/www/big.bin" > /dev/null   # both servers read from the page cache
if [ "${INDEX_BUSY_GIB:-0}" -gt 0 ]; then mkdir -p "$WORK/www/busy"; truncate -s "${INDEX_BUSY_GIB}G" "$WORK/www/busy/sparse.bin"; fi

. bench/serve/lib.sh   # nginx_conf, free_port
NPORT=$(free_port); H2PORT=$(free_port); TLSPORT=$(free_port)
TLS=$PWD/fixtures/tls
nginx_conf "worker_processes auto;" "  server { listen 127.0.0.1:$NPORT; root $WORK/www; }
  # HTTP/2 without TLS, prior knowledge (nginx 1.22: \"listen ... http2\"; \"http2 on\" is 1.25.1+)
  server { listen 127.0.0.1:$H2PORT http2; root $WORK/www; }
  server {
    listen 127.0.0.1:$TLSPORT ssl;
    ssl_certificate $TLS/cert.pem;
    ssl_certificate_key $TLS/key.pem;
    root $WORK/tls;
  }"
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & NGINX_PID=$!
# shellcheck disable=SC2086 # FERRYD_ARGS is a list of flags
$FERRYD "$WORK/www" --listen 127.0.0.1:0 --log-level warn ${FERRYD_ARGS:-} > "$WORK/ferryd.out" & FERRYD_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
FURL=$(grep -o 'listening on http://[^ ]*' "$WORK/ferryd.out" | sed 's:^listening on ::; s:/$::')
NURL="http://127.0.0.1:$NPORT"
sleep 0.3
# The content indexer hashes big.bin once at start. The rounds wait for its digest (a HEAD
# with Repr-Digest), so that the hashing competes with neither server's first rounds; with
# INDEX_BUSY_GIB the indexer is meant to run during the rounds, and --no-index has no digest.
if [ "${INDEX_BUSY_GIB:-0}" -eq 0 ] && [[ " ${FERRYD_ARGS:-} " != *" --no-index "* ]]; then
  for _ in $(seq 600); do
    curl -sfI "$FURL/big.bin" | grep -qi '^repr-digest:' && break
    sleep 0.1
  done
  curl -sfI "$FURL/big.bin" | grep -qi '^repr-digest:' || { echo "ferryd's index did not hash big.bin within 60 s" >&2; exit 1; }
fi

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

if [ "${PROTOCOLS:-1}" != 0 ]; then
  # HTTP/2: 4 KiB ranged GETs, one fixed range (h2load sends the same headers with every
  # request), 16 connections with 16 streams each. TLS: a 512 MiB GET over HTTP/1.1 (curl
  # would pick h2 by ALPN with ferryd, and nginx's TLS port here offers HTTP/1.1 only).
  h2rps() { # one h2load run, requests/s; fails unless every request got a 206
    local out
    out=$(h2load -t2 -c16 -m16 -D "$DUR" --warm-up-time=1 -H 'Range: bytes=1048576-1052671' "$1/big.bin")
    grep -Eq 'requests: .* 0 failed, 0 errored' <<< "$out" || { echo "h2load against $1: $out" >&2; exit 1; }
    grep -q 'status codes: [1-9][0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' <<< "$out" || { echo "h2load against $1: $out" >&2; exit 1; }
    awk '/^finished in/ {gsub(",", "", $4); print $4}' <<< "$out"
  }
  tls_speed() { # one curl run over TLS, bytes/s; fails unless exactly 512 MiB arrived
    read -r s n < <(curl -sf --http1.1 --cacert "$TLS/ca.pem" -o /dev/null -w '%{speed_download} %{size_download}\n' "$1/half.bin")
    [ "$n" = 536870912 ] || { echo "$1 served $n bytes over TLS, not 512 MiB" >&2; exit 1; }
    echo "$s"
  }
  # The TLS file has a root of its own, served by a second ferryd (TLS or plain per listener)
  # started only now and without the content index, so that hashing it takes no CPU from the
  # rounds above or below.
  mkdir -p "$WORK/tls"; head -c 512M "$WORK/www/big.bin" > "$WORK/tls/half.bin"
  chmod 755 "$WORK/tls"; chmod 644 "$WORK/tls/half.bin"; cat "$WORK/tls/half.bin" > /dev/null
  $FERRYD "$WORK/tls" --listen 127.0.0.1:0 --log-level warn --no-index --tls-cert "$TLS/cert.pem" --tls-key "$TLS/key.pem" > "$WORK/ferryd-tls.out" & FERRYD_TLS_PID=$!
  for _ in $(seq 50); do grep -q listening "$WORK/ferryd-tls.out" 2>/dev/null && break; sleep 0.1; done
  FTURL=$(grep -o 'listening on https://[^ ]*' "$WORK/ferryd-tls.out" | sed 's:^listening on ::; s:/$::')
  NH2URL="http://127.0.0.1:$H2PORT"; NTURL="https://127.0.0.1:$TLSPORT"
  nh=(); fh=(); nt=(); ft=()
  for _ in $(seq "$ROUNDS"); do
    nh+=("$(h2rps "$NH2URL")"); fh+=("$(h2rps "$FURL")")
    nt+=("$(tls_speed "$NTURL")"); ft+=("$(tls_speed "$FTURL")")
  done
  NH=$(median "${nh[@]}"); FH=$(median "${fh[@]}"); NT=$(median "${nt[@]}"); FT=$(median "${ft[@]}")
  echo "4 KiB ranges over h2c, h2load -t2 -c16 -m16 ${DUR}s (median of $ROUNDS): nginx $NH req/s, ferryd $FH req/s, ratio ferryd/nginx = $(python3 -c "print(f'{$FH/$NH:.2f}')")"
  echo "512 MiB GET over TLS, curl --http1.1 (median of $ROUNDS): nginx $(python3 -c "print(f'{$NT/2**20:.0f}')") MiB/s, ferryd $(python3 -c "print(f'{$FT/2**20:.0f}')") MiB/s, ratio ferryd/nginx = $(python3 -c "print(f'{$FT/$NT:.2f}')")"
fi
