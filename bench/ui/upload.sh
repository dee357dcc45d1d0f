#!/usr/bin/env bash
# Upload throughput in headless chromium on loopback (issue 10 point 9): a SIZE_MIB file through
# ferryd's page vs through Uppy 6 (Dashboard + Tus, its defaults) into the same ferryd, ROUNDS
# interleaved rounds, each in a fresh browser; medians and the ratio page/Uppy in throughput
# (goal >= 1.0). Then the SHA-256 speed of the page's hashing worker over HASH_MIB MiB.
#
# Uppy is fetched here only, with `npm pack` (pinned version, tarball hash checked), into
# bench/ui/.uppy/ (ignored by git) and served from ferryd's ROOT; cargo and the tests never
# need it. ferryd runs with --no-index (so the page never takes the instant-upload path) on
# BENCH_DIR (/dev/shm by default, so the disk does not set the pace).
# Usage: bench/ui/upload.sh [SIZE_MIB]   (512; ROUNDS=3, HASH_MIB=512, BENCH_DIR=/dev/shm,
# FERRYD=path to a ferryd build). Needs chromium, node and tests/interop's node_modules.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-512}
ROUNDS=${ROUNDS:-3}
HASH_MIB=${HASH_MIB:-512}
UPPY=6.0.1
UPPY_TGZ_SHA256=2635f034972f7e492a2b51cc447cf408587cdf916844232010bb7d46ab09ef70
CACHE=bench/ui/.uppy/$UPPY

if [ ! -f "$CACHE/uppy.min.mjs" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "uppy@$UPPY" > /dev/null)
  echo "$UPPY_TGZ_SHA256  $tmp/uppy-$UPPY.tgz" | sha256sum -c --quiet
  tar xzf "$tmp/uppy-$UPPY.tgz" -C "$tmp"
  mkdir -p "$CACHE"
  cp "$tmp"/package/dist/uppy.min.mjs "$tmp"/package/dist/uppy.min.css "$tmp"/package/LICENSE "$CACHE"/
  rm -rf "$tmp"
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
cp bench/ui/uppy/index.html bench/ui/uppy/bench.mjs "$CACHE"/* "$ROOT/uppy-bench/"
head -c $((SIZE << 20)) /dev/urandom > "$WORK/upload.bin"
"$FERRYD" "$ROOT" --listen 127.0.0.1:0 --public-uploads --no-index --state-dir "$WORK/state" \
  --log-level warn > "$WORK/ferryd.out" & FERRYD_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' "$WORK/ferryd.out" | head -1 | sed 's:/*$:/:')

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
one() {
  local t
  t=$(node bench/ui/upload.mjs "$URL" "$1" "$WORK/upload.bin" | awk -v w="$1" '$1 == w {print $2}')
  cmp -s "$WORK/upload.bin" "$ROOT/upload.bin" || { echo "$1: the uploaded file differs" >&2; exit 1; }
  rm -f "$ROOT/upload.bin"
  echo "$t"
}
p=(); u=()
for r in $(seq "$ROUNDS"); do
  p+=("$(one page)"); u+=("$(one uppy)")
  echo "round $r: page ${p[-1]} s, uppy ${u[-1]} s (load $(cut -d' ' -f1 /proc/loadavg))"
done
PT=$(median "${p[@]}"); UT=$(median "${u[@]}")
python3 - "$SIZE" "$PT" "$UT" <<'PY'
import sys
size, pt, ut = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
mb = size * 1048576 / 1e6
print(f"upload {size} MiB, median of rounds: page {pt:.2f} s ({mb/pt:.0f} MB/s), "
      f"Uppy {ut:.2f} s ({mb/ut:.0f} MB/s), page/Uppy throughput {ut/pt:.2f} (goal >= 1.0)")
PY
node bench/ui/upload.mjs "$URL" hash "$HASH_MIB" | awk -v m="$HASH_MIB" '{print "sha-256 in the page'"'"'s worker: " $2 " MB/s over " m " MiB"}'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
