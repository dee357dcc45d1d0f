#!/usr/bin/env bash
# Content index benchmark, measured in one run on this machine.
#   1. Indexing throughput: ferryd hashing a fresh tree of SIZE_MIB (files of 64 MiB and a
#      few small ones) from start to "index: ready", against `sha256sum` over the same files
#      (page cache warm for both; goal: ferryd >= 0.9x). sha256sum is timed twice: as is, and
#      at the indexer's priority (nice 19, idle I/O class), which is the fair comparison on a
#      shared machine.
#   2. Restart over an unchanged tree of FILES small files: seconds from start to
#      "index: ready", and how many files were hashed (goal: none, seconds not minutes).
# Usage: bench/index/run.sh [SIZE_MIB] [FILES]   (defaults 1024 and 100000; BENCH_DIR=/tmp;
#        FERRYD=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
FILES=${2:-100000}
if [ -z "${FERRYD:-}" ]; then
  cargo build --release -q -p ferryd
  FERRYD=$PWD/target/release/ferryd
fi

WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/ferry-bench-index.XXXXXX")
cleanup() { kill ${SRV_PID:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }

# Starts ferryd on $1 and waits for "index: ready"; prints "SECONDS HASHED".
index_once() {
  local root=$1 t0 line
  t0=$(now)
  rm -f "$WORK/srv.out" "$WORK/srv.err"   # the previous start's "ready" is not this one's
  "$FERRYD" "$root" --listen 127.0.0.1:0 --public-uploads --log-level info \
    > "$WORK/srv.out" 2> "$WORK/srv.err" &
  SRV_PID=$!
  until grep -q "index: ready" "$WORK/srv.err" 2>/dev/null; do
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$WORK/srv.err" >&2; exit 1; }
    sleep 0.02
  done
  line=$(grep "index: ready" "$WORK/srv.err" | head -1)
  echo "$(echo "$(now) - $t0" | bc -l) $(grep -o 'hashed=[0-9]*' <<< "$line" | cut -d= -f2)"
  kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=
}

echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. throughput over $SIZE_MIB MiB"
T="$WORK/tree"
mkdir -p "$T/a" "$T/b"
for i in $(seq 1 $((SIZE_MIB / 64))); do head -c 64M /dev/urandom > "$T/$([ $((i % 2)) = 0 ] && echo a || echo b)/f$i.bin"; done
for i in $(seq 1 100); do head -c 4096 /dev/urandom > "$T/a/small$i"; done
BYTES=$(du -sb "$T" | cut -f1)
find "$T" -type f -print0 | xargs -0 cat > /dev/null   # warm the page cache
t0=$(now); find "$T" -type f -print0 | xargs -0 sha256sum > /dev/null; SUM=$(echo "$(now) - $t0" | bc -l)
t0=$(now); find "$T" -type f -print0 | nice -n 19 ionice -c3 xargs -0 sha256sum > /dev/null; NICE=$(echo "$(now) - $t0" | bc -l)
read -r IDX HASHED < <(index_once "$T")
printf 'sha256sum          %6.2f s  %7.0f MiB/s\n' "$SUM" "$(echo "$BYTES / $SUM / 1048576" | bc -l)"
printf 'sha256sum nice 19  %6.2f s  %7.0f MiB/s\n' "$NICE" "$(echo "$BYTES / $NICE / 1048576" | bc -l)"
printf 'ferryd index       %6.2f s  %7.0f MiB/s  (%s files hashed, start to ready)\n' "$IDX" "$(echo "$BYTES / $IDX / 1048576" | bc -l)" "$HASHED"
printf 'ratio ferryd/sha256sum %.2f, ferryd/sha256sum-nice %.2f (goal >= 0.9)\n' \
  "$(echo "$SUM / $IDX" | bc -l)" "$(echo "$NICE / $IDX" | bc -l)"
rm -rf "$T"

echo "== 2. restart over $FILES unchanged files"
T="$WORK/many"
python3 - "$T" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(f"file {i}\n".encode())
PY
# Files younger than the indexer's settle time wait for it; these are old enough at once.
find "$T" -type f -print0 | xargs -0 touch -d '1 minute ago'
read -r FIRST FIRST_HASHED < <(index_once "$T")
read -r AGAIN AGAIN_HASHED < <(index_once "$T")
echo "first start: ${FIRST} s, $FIRST_HASHED files hashed"
echo "restart:     ${AGAIN} s, $AGAIN_HASHED files hashed (goal: 0, seconds)"
echo "cache: $(du -h "$WORK/.many.ferry/index.v1" | cut -f1) for $FILES entries"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
