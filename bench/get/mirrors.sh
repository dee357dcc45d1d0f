#!/usr/bin/env bash
# Benchmark for issue 9 point 4: one 256 MiB file on three mirrors, ferry get --mirror vs
# aria2c with the same three URLs, everything on loopback.
#
#   bench/get/mirrors.sh                 # 5 interleaved rounds
#   ROUNDS=9 CONNS=12 bench/get/mirrors.sh
#   FERRY=/path/to/ferry bench/get/mirrors.sh   # that binary, no build
#
# Three nginx servers share one root (so the same strong ETag: ferry may mix their bytes),
# each with its own per-connection cap: `limit_rate 2m`, `8m`, `32m` (`limit_rate_after 0`).
# The slow one is the main URL, for both tools. CONNS connections in all (default 12):
#   ferry  get -x CONNS --mirror B --mirror C A             (ferry chooses where they go)
#   aria2c -s CONNS -x CONNS/3 A B C                       (the issue's fair split: CONNS/3 per server)
#   aria2c -s CONNS -x CONNS A B C                         (aria2c free to choose too; its
#                                                           feedback URI selector is the default)
# Each round runs the three one after the other (interleaved, so a busy neighbour slows all of
# them alike); every output is compared byte for byte with the source. Prints each round with
# the load average, the medians, and the ratios ferry/aria2c. Target: ferry <= aria2c.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${BENCH_DIR:-/tmp/ferry-bench-mirrors}"
ROUNDS="${ROUNDS:-5}"
CONNS="${CONNS:-12}"
PORTS=(18091 18092 18093)
RATES=(2m 8m 32m)

. "$ROOT/bench/get/lib.sh"
need nginx nginx-light
need aria2c aria2
[ -x /usr/bin/time ] || { echo "installing time"; apt-get install -y -qq time >/dev/null; }

if [ -z "${FERRY:-}" ]; then
    echo "building ferry (release)"
    (cd "$ROOT" && cargo build --release -q -p ferry --bin ferry)
    FERRY="$ROOT/target/release/ferry"
fi

mkdir -p "$WORK/www" "$WORK/out" "$WORK/logs"
chmod 755 "$WORK" "$WORK/www"
make_file f256 256

servers=""
for i in 0 1 2; do
    servers="$servers    server { listen 127.0.0.1:${PORTS[$i]}; root $WORK/www; limit_rate ${RATES[$i]}; limit_rate_after 0; }
"
done
URLS=()
for p in "${PORTS[@]}"; do URLS+=("http://127.0.0.1:$p/f256"); done
start_nginx "$servers" "${URLS[@]}"

# timed LABEL CMD... -> runs CMD once into an empty $WORK/out, prints its wall time, checks
# the bytes (cmp against the source).
timed() {
    local label=$1; shift
    rm -rf "$WORK/out"/*
    sync
    /usr/bin/time -f "%e" -o "$WORK/time.txt" "$@" >>"$WORK/logs/$label.log" 2>&1 || {
        echo "$label FAILED (see $WORK/logs/$label.log)" >&2; return 1; }
    cmp -s "$WORK/out/f256" "$WORK/www/f256" || { echo "$label WRONG BYTES" >&2; return 1; }
    tail -1 "$WORK/time.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { printf "%.2f" "$(echo "scale=4; $1 / $2" | bc -l)"; }

PER=$((CONNS / 3))
FERRY_CMD=("$FERRY" get -q -x"$CONNS" -k1M --mirror "${URLS[1]}" --mirror "${URLS[2]}" -d "$WORK/out" -o f256 "${URLS[0]}")
ARIA_CMD=(aria2c -q -s"$CONNS" -x"$PER" -k1M --file-allocation=none -d "$WORK/out" -o f256 "${URLS[@]}")
ARIA_FREE_CMD=(aria2c -q -s"$CONNS" -x"$CONNS" -k1M --file-allocation=none -d "$WORK/out" -o f256 "${URLS[@]}")

echo "== $(date -u +%FT%TZ) $(nproc) cores, $(nginx -v 2>&1), $(aria2c --version | head -1)"
echo "-- 256 MiB on 3 mirrors capped at ${RATES[*]} per connection, $CONNS connections, $ROUNDS rounds"
echo "   ferry:      ${FERRY_CMD[*]}"
echo "   aria2c:     ${ARIA_CMD[*]}"
echo "   aria2c -x$CONNS: ${ARIA_FREE_CMD[*]}"
tf="" ta="" tx=""
for i in $(seq "$ROUNDS"); do
    f=$(timed ferry "${FERRY_CMD[@]}")
    a=$(timed aria2c "${ARIA_CMD[@]}")
    x=$(timed aria2c_free "${ARIA_FREE_CMD[@]}")
    printf '   round %s: ferry %6.2f s   aria2c -x%s %6.2f s   aria2c -x%s %6.2f s   load %s\n' \
        "$i" "$f" "$PER" "$a" "$CONNS" "$x" "$(cut -d' ' -f1-3 /proc/loadavg)"
    tf="$tf$f\n" ta="$ta$a\n" tx="$tx$x\n"
done
F=$(printf "$tf" | median) A=$(printf "$ta" | median) X=$(printf "$tx" | median)
printf 'median: ferry %.2f s   aria2c -x%s %.2f s   aria2c -x%s %.2f s\n' "$F" "$PER" "$A" "$CONNS" "$X"
echo "ferry/aria2c(-x$PER) $(ratio "$F" "$A")   ferry/aria2c(-x$CONNS) $(ratio "$F" "$X")   (ideal, all on the 32m mirror: $(ratio 256 $((CONNS * 32))) s)"
rm -rf "$WORK/out"/*
