#!/usr/bin/env bash
# Upload throughput in headless chromium on loopback (issue 10 point 9): a SIZE_MIB file through
# ferryd's page vs through Uppy 6 (Dashboard + Tus) into the same ferryd, ROUNDS interleaved
# rounds, each upload in a fresh browser, timed from setting the file on the page's input to
# ferryd having published it. Prints every round, the medians, the CPU each upload took (the
# browser's, node and every chromium process from its start, and ferryd's: steadier than
# seconds on a shared machine)
# and page/Uppy in throughput (goal >= 1.0) for each Uppy set-up, then the SHA-256 speed of the page's hashing worker over
# the same file.
#
# Uppy set-ups (UPPY, space separated; the query string of bench/ui/uppy/bench.mjs):
#   defaults      Uppy's defaults: chunkSize Infinity (one PATCH), parallelUploads 1
#   parallel=4    tuned: four partial uploads at once, joined by concatenation (the page's
#                 number of parts for a file this size)
# Uppy lives in bench/ui/uppy/ only (package.json + package-lock.json, installed here with
# `npm ci`, bundled with esbuild into ferryd's ROOT); cargo and the tests never need it.
# ferryd runs with --no-index (so the page never takes the instant-upload path) on BENCH_DIR
# (/dev/shm by default, so the disk does not set the pace). SHOTS=DIR (bench/out/ui-upload by
# default, '' for none) gets one screenshot of each page mid-upload, from an extra untimed run.
# Page variants (PAGES, space separated): `page` = the assets compiled into ferryd; `NAME=DIR` =
# the assets of DIR (laid out as server/src/ui: assets/, vendor/), copied into ROOT/ui-NAME/ and
# loaded from there (bench/ui/upload.mjs rewrites the listing's asset prefix): a change tried
# without a rebuild, or A/B against another version (e.g. `base=/tmp/ui-main page=server/src/ui`),
# interleaved like the rest. FERRY_UI_DIR=DIR is short for PAGES=page=DIR.
# Usage: bench/ui/upload.sh [SIZE_MIB]   (512; ROUNDS=5, FERRYD=path to a build).
# Needs chromium, node, npm and tests/interop's node_modules (scripts/test installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-512}
ROUNDS=${ROUNDS:-5}
SHOTS=${SHOTS-bench/out/ui-upload}
read -r -a SETUPS <<< "${UPPY:-defaults parallel=4}"
read -r -a PAGES <<< "${PAGES:-page${FERRY_UI_DIR:+=$FERRY_UI_DIR}}"

U=bench/ui/uppy
if [ ! "$U/node_modules/.package-lock.json" -nt "$U/package-lock.json" ]; then
  (cd "$U" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
if [ -z "${FERRYD:-}" ]; then
  cargo build --release -q -p ferryd
  FERRYD=target/release/ferryd
fi

WORK=$(mktemp -d "${BENCH_DIR:-/dev/shm}/ferry-bench-upload.XXXXXX")
cleanup() { kill "${FERRYD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ROOT=$WORK/www
mkdir -p "$ROOT/uppy-bench"
"$U/node_modules/.bin/esbuild" "$U/bench.mjs" --bundle --format=esm --minify \
  --outfile="$ROOT/uppy-bench/bench.js" --log-level=warning
cp "$U/index.html" "$ROOT/uppy-bench/"
# P[name]: the page run of each variant (`page` or `page@/ui-NAME/`).
declare -A P
PNAMES=()
for v in "${PAGES[@]}"; do
  n=${v%%=*}
  PNAMES+=("$n")
  if [ "$n" = "$v" ]; then P[$n]=page; continue; fi
  mkdir -p "$ROOT/ui-$n"
  cp -r "${v#*=}/assets/." "$ROOT/ui-$n/"
  cp -r "${v#*=}/vendor" "$ROOT/ui-$n/"
  P[$n]="page@/ui-$n/"
done
head -c $((SIZE << 20)) /dev/urandom > "$WORK/upload.bin"
"$FERRYD" "$ROOT" --listen 127.0.0.1:0 --public-uploads --no-index --state-dir "$WORK/state" \
  --log-level warn > "$WORK/ferryd.out" & FERRYD_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' "$WORK/ferryd.out" | head -1 | sed 's:/*$:/:')

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
# CPU seconds ferryd has used so far (utime + stime).
fcpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$FERRYD_PID/stat"; }
# one KIND [SHOT]: one upload; prints its seconds, the CPU seconds of the browser (node and
# every chromium process, from /proc) and of ferryd. The published copy is checked and removed.
one() {
  local out a b
  a=$(fcpu)
  out=$(node bench/ui/upload.mjs "$URL" "$1" "$WORK/upload.bin" "$ROOT/upload.bin" ${2:+"$2"} 2>&1) \
    || { echo "$1: $out" >&2; exit 1; }
  b=$(fcpu)
  cmp -s "$WORK/upload.bin" "$ROOT/upload.bin" || { echo "$1: the uploaded file differs" >&2; exit 1; }
  rm -f "$ROOT/upload.bin"
  echo "$out" | awk -v a="$a" -v b="$b" '$1 == "cpu" {c = $2} $1 != "cpu" {t = $1}
    END {printf "%s %.2f %.2f\n", t, c, b - a}'
}
name() { echo "uppy $1"; }
query() { if [ "$1" = defaults ]; then echo uppy; else echo "uppy?$1"; fi; }

# T[kind]: seconds; C[kind]: browser CPU seconds; F[kind]: ferryd CPU seconds.
declare -A T C F
run() {
  local w c f
  read -r w c f < <(one "$2")
  T[$1]+=" $w"; C[$1]+=" $c"; F[$1]+=" $f"
  line+="$3 $w s (cpu $c + $f s)"
}
for r in $(seq "$ROUNDS"); do
  line="round $r:"
  sep=" "
  for n in "${PNAMES[@]}"; do run "$n" "${P[$n]}" "$sep$n"; sep=", "; done
  for s in "${SETUPS[@]}"; do run "$s" "$(query "$s")" ", $(name "$s")"; done
  echo "$line (load $(cut -d' ' -f1 /proc/loadavg))"
done
MB=$(python3 -c "print($SIZE * 1048576 / 1e6)")
rate() { python3 -c "print(f'{$1:.2f} s ({$MB / $1:.0f} MB/s)')"; }
# shellcheck disable=SC2086
cpu() { echo "CPU browser $(median ${C[$1]}) s + ferryd $(median ${F[$1]}) s"; }
echo "upload $SIZE MiB, medians of $ROUNDS rounds:"
declare -A PT
for n in "${PNAMES[@]}"; do
  # shellcheck disable=SC2086
  PT[$n]=$(median ${T[$n]})
  echo "  $n: $(rate "${PT[$n]}"), $(cpu "$n")"
done
for s in "${SETUPS[@]}"; do
  # shellcheck disable=SC2086
  UT=$(median ${T[$s]})
  ratios=""
  for n in "${PNAMES[@]}"; do ratios+=" $n/Uppy $(python3 -c "print(f'{$UT / ${PT[$n]}:.2f}')")"; done
  echo "  $(name "$s"): $(rate "$UT"), $(cpu "$s");$ratios (throughput, goal >= 1.0)"
done
if [ -n "$SHOTS" ]; then
  mkdir -p "$SHOTS"
  one "${P[${PNAMES[-1]}]}" "$SHOTS/page.png" > /dev/null
  one "$(query "${SETUPS[0]}")" "$SHOTS/uppy.png" > /dev/null
  echo "screenshots mid-upload: $SHOTS/page.png $SHOTS/uppy.png"
fi
echo "sha-256 in the page's worker: $(node bench/ui/upload.mjs "$URL" "hash${P[${PNAMES[-1]}]#page}" "$WORK/upload.bin") MB/s over the same $SIZE MiB file"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
