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
#   flaky      (issue 15) 128 MiB, nginx `limit_rate 16m` per connection, behind the seeded
#              flaky proxy (tests/src/bin/flaky_proxy.rs): every connection cut after a random
#              1-8 MiB, one in seven silent; 8 connections, `--retry-wait 1s --timeout 5s`, many
#              tries, for ferry and aria2c alike. A fresh proxy with the same seed per run, the
#              two tools interleaved; reports the median of REPEAT runs (default 5), the load
#              average, and what the proxy did. Target: ferry <= aria2c.
# Every run reports wall time and peak RSS (GNU time -v); target: ferry's peak RSS <= 32 MiB.
# Ratios are measured in one run, on the same machine, one tool after the other; each figure is
# the best of REPEAT runs (default 3), sha256-checked every time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${BENCH_DIR:-/tmp/ferry-bench}"
SCENARIOS="${SCENARIOS:-cap straggler free flaky}"
PORT_CAP=18081 PORT_STRAGGLER=18082 PORT_FREE=18083 PORT_FLAKY=18084

. "$ROOT/bench/get/lib.sh"
need nginx nginx-light
need aria2c aria2
need axel axel
[ -x /usr/bin/time ] || { echo "installing time"; apt-get install -y -qq time >/dev/null; }

echo "building ferry and flaky_proxy (release)"
(cd "$ROOT" && cargo build --release -q -p ferry -p ferry-tests --bin ferry --bin flaky_proxy)
FERRY="$ROOT/target/release/ferry"
PROXY="$ROOT/target/release/flaky_proxy"

mkdir -p "$WORK/www" "$WORK/out" "$WORK/logs"
chmod 755 "$WORK" "$WORK/www"
make_file f256 256
make_file f64 64
make_file f1g 1024
make_file f128 128

start_nginx "    map \$connection \$straggler_rate { \"~[05]\$\" 256k; default 8m; }
    server { listen 127.0.0.1:$PORT_CAP;       root $WORK/www; limit_rate 8m; limit_rate_after 0; }
    server { listen 127.0.0.1:$PORT_STRAGGLER; root $WORK/www; limit_rate \$straggler_rate; }
    server { listen 127.0.0.1:$PORT_FREE;      root $WORK/www; }
    server { listen 127.0.0.1:$PORT_FLAKY;     root $WORK/www; limit_rate 16m; limit_rate_after 0; }
" "http://127.0.0.1:$PORT_FREE/f64"

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

# One timed run of a tool through a fresh flaky proxy (same seed every time): prints the wall
# time, appends the proxy's summary to $WORK/logs/LABEL.proxy, checks the sha256.
FLAKY_ARGS="${FLAKY_ARGS:---cut 1M-8M --direction down --silent-every 7}"
flaky_run() { # LABEL SEED CMD... (CMD gets the URL appended)
    local label=$1 seed=$2; shift 2
    local addr pid secs got
    # The previous proxy's address must not be read as this one's (it is gone: a tool given
    # it retries a refused connection forever; seen with aria2c --max-tries=0).
    rm -f "$WORK/proxy.addr"
    "$PROXY" --target "127.0.0.1:$PORT_FLAKY" --seed "$seed" $FLAKY_ARGS \
        >"$WORK/proxy.addr" 2>>"$WORK/logs/$label.proxy" &
    pid=$!
    for _ in $(seq 50); do [ -s "$WORK/proxy.addr" ] && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$WORK/proxy.addr")
    rm -rf "$WORK/out"/*
    sync
    /usr/bin/time -f "%e" -o "$WORK/time.txt" timeout "${FLAKY_CAP:-300}" "$@" "http://$addr/f128" >>"$WORK/logs/$label.log" 2>&1 || {
        kill "$pid"; echo "$label FAILED (see $WORK/logs/$label.log)" >&2; return 1; }
    kill "$pid"; wait "$pid" 2>/dev/null || true
    got=$(sha256sum "$WORK/out/f128" | cut -d' ' -f1)
    [ "$got" = "$(sha256sum "$WORK/www/f128" | cut -d' ' -f1)" ] || { echo "$label WRONG BYTES" >&2; return 1; }
    tail -1 "$WORK/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

flaky_scenario() {
    local n="${REPEAT_FLAKY:-5}" seed="${SEED:-1}" f a tf="" ta=""
    echo "-- flaky: 128 MiB, 16 MiB/s per connection, proxy $FLAKY_ARGS, seed $seed, 8 connections"
    : >"$WORK/logs/ferry_flaky.proxy"; : >"$WORK/logs/aria2c_flaky.proxy"
    for i in $(seq "$n"); do
        f=$(flaky_run ferry_flaky "$seed" "$FERRY" get -q -x8 -k1M --retry-wait 1s --timeout 5s \
            --max-tries 1000 -d "$WORK/out" -o f128) || return 1
        a=$(flaky_run aria2c_flaky "$seed" aria2c -q -x8 -s8 -k1M --retry-wait=1 --timeout=5 \
            --max-tries=0 --file-allocation=none -d "$WORK/out" -o f128) || return 1
        printf '   run %s: ferry %6.2f s   aria2c %6.2f s   load %s\n' "$i" "$f" "$a" "$(cut -d' ' -f1-3 /proc/loadavg)"
        tf="$tf$f\n"; ta="$ta$a\n"
    done
    T_ferry_flaky=$(printf "$tf" | median); T_aria2c_flaky=$(printf "$ta" | median)
    printf '%-22s %7.2f s  (median of %s)\n' ferry_flaky "$T_ferry_flaky" "$n"
    printf '%-22s %7.2f s  (median of %s)\n' aria2c_flaky "$T_aria2c_flaky" "$n"
    echo "   proxy, last ferry run:  $(tail -1 "$WORK/logs/ferry_flaky.proxy")"
    echo "   proxy, last aria2c run: $(tail -1 "$WORK/logs/aria2c_flaky.proxy")"
    echo "   ferry/aria2c $(ratio "$T_ferry_flaky" "$T_aria2c_flaky")"
}

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
    flaky) flaky_scenario ;;
    *) echo "unknown scenario $s"; exit 2 ;;
    esac
done
rm -rf "$WORK/out"/*
