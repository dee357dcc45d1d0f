#!/usr/bin/env bash
# Benchmark for issue 3: ferry get vs aria2c and axel, all fetching from nginx on loopback.
#
#   bench/get/run.sh            # all scenarios
#   SCENARIOS="cap straggler" bench/get/run.sh
#
# Scenarios (from the issue):
#   cap        256 MiB, nginx `limit_rate 8m; limit_rate_after 0;`, 16 connections.
#              Targets: ferry <= aria2c (-x16 -s16 -k1M) and <= 1.05 x ideal (size / (16 x 8 MiB/s) = 2 s).
#   straggler  64 MiB, one connection in five at 256 KiB/s, the rest 8 MiB/s
#              (nginx `map $connection $rate { "~[05]$" 256k; default 8m; }`), 16 connections.
#              Target: ferry <= axel.
#   free       1 GiB, no limit, 16 connections. Target: ferry <= aria2c.
# Every run reports wall time and peak RSS (GNU time -v); target: ferry's peak RSS <= 32 MiB.
# Ratios are measured in one run, on the same machine, one tool after the other; each figure is
# the best of REPEAT runs (default 3), sha256-checked every time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
SCENARIOS="${SCENARIOS:-cap straggler free}"
PORT_CAP=18081 PORT_STRAGGLER=18082 PORT_FREE=18083

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need aria2c aria2
need axel axel
[ -x /usr/bin/time ] || { echo "installing time"; apt-get install -y -qq time >/dev/null; }

echo "building ferry (release)"
(cd "$ROOT" && cargo build --release -q -p ferry)
FERRY="$ROOT/target/release/ferry"

mkdir -p "$WORK/www" "$WORK/out" "$WORK/logs"
chmod 755 "$WORK" "$WORK/www"
make_file() { # name MiB
    [ -f "$WORK/www/$1" ] && [ "$(stat -c %s "$WORK/www/$1")" -eq $(($2 << 20)) ] && return
    echo "generating $1 ($2 MiB)"
    head -c $(($2 << 20)) /dev/urandom >"$WORK/www/$1"
    chmod 644 "$WORK/www/$1"
}
make_file f256 256
make_file f64 64
make_file f1g 1024

cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path $WORK/logs;
    proxy_temp_path $WORK/logs;
    fastcgi_temp_path $WORK/logs;
    uwsgi_temp_path $WORK/logs;
    scgi_temp_path $WORK/logs;
    map \$connection \$straggler_rate { "~[05]\$" 256k; default 8m; }
    server { listen 127.0.0.1:$PORT_CAP;       root $WORK/www; limit_rate 8m; limit_rate_after 0; }
    server { listen 127.0.0.1:$PORT_STRAGGLER; root $WORK/www; limit_rate \$straggler_rate; }
    server { listen 127.0.0.1:$PORT_FREE;      root $WORK/www; }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsI "http://127.0.0.1:$PORT_FREE/f64" >/dev/null 2>&1 && break; sleep 0.1; done

# measure LABEL FILE CMD... -> runs CMD $REPEAT times, prints the best wall time and the
# highest peak RSS, checks the file's sha256 after every run. Best-of, because the machine is
# shared: a run slowed down by someone else's build says nothing about the tool.
REPEAT="${REPEAT:-3}"
measure() {
    local label=$1 file=$2; shift 2
    local best="" peak=0 secs rss_kib got want
    want=$(sha256sum "$WORK/www/$file" | cut -d' ' -f1)
    for _ in $(seq "$REPEAT"); do
        rm -rf "$WORK/out"/*
        sync
        /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/logs/$label.log" 2>&1 || {
            echo "$label FAILED (see $WORK/logs/$label.log)"; return 1; }
        read -r secs rss_kib <"$WORK/time.txt"
        got=$(sha256sum "$WORK/out/$file" | cut -d' ' -f1)
        [ "$got" = "$want" ] || { echo "$label WRONG BYTES"; return 1; }
        if [ -z "$best" ] || [ "$(echo "$secs < $best" | bc)" = 1 ]; then best=$secs; fi
        [ "$rss_kib" -gt "$peak" ] && peak=$rss_kib
    done
    printf '%-22s %7.2f s  %6.1f MiB peak RSS  (best of %s)\n' "$label" "$best" "$(echo "$peak / 1024" | bc -l)" "$REPEAT"
    eval "T_${label//[^a-zA-Z0-9]/_}=$best"
}

# measure_ferry/aria/axel LABEL URL FILE
measure_ferry() { measure "$1" "$3" "$FERRY" get -q -x16 -k1M -d "$WORK/out" -o "$3" "$2"; }
measure_aria() { measure "$1" "$3" aria2c -q -x16 -s16 -k1M --file-allocation=none -d "$WORK/out" -o "$3" "$2"; }
measure_axel() { measure "$1" "$3" axel -q -n16 -o "$WORK/out/$3" "$2"; }

ratio() { echo "scale=2; $1 / $2" | bc -l; }

echo "== $(date -u +%FT%TZ) $(nproc) cores, $(nginx -v 2>&1), $(aria2c --version | head -1), $(axel --version | head -1)"
for s in $SCENARIOS; do
    case $s in
    cap)
        url="http://127.0.0.1:$PORT_CAP/f256"
        echo "-- cap: 256 MiB, 8 MiB/s per connection, 16 connections (ideal 2.00 s)"
        measure_ferry ferry_cap "$url" f256
        measure_aria aria2c_cap "$url" f256
        echo "   ferry/aria2c $(ratio "$T_ferry_cap" "$T_aria2c_cap")   ferry/ideal $(ratio "$T_ferry_cap" 2.0)"
        ;;
    straggler)
        url="http://127.0.0.1:$PORT_STRAGGLER/f64"
        echo "-- straggler: 64 MiB, 1 connection in 5 at 256 KiB/s, 16 connections (all-fast ideal 0.5 s)"
        measure_ferry ferry_straggler "$url" f64
        measure_aria aria2c_straggler "$url" f64
        measure_axel axel_straggler "$url" f64
        echo "   ferry/axel $(ratio "$T_ferry_straggler" "$T_axel_straggler")   ferry/aria2c $(ratio "$T_ferry_straggler" "$T_aria2c_straggler")"
        ;;
    free)
        url="http://127.0.0.1:$PORT_FREE/f1g"
        echo "-- free: 1 GiB, no limit, 16 connections"
        measure_ferry ferry_free "$url" f1g
        measure_aria aria2c_free "$url" f1g
        echo "   ferry/aria2c $(ratio "$T_ferry_free" "$T_aria2c_free")"
        ;;
    *) echo "unknown scenario $s"; exit 2 ;;
    esac
done
rm -rf "$WORK/out"/*
