#!/usr/bin/env bash
# Interleaved A/B of two ferryd binaries: curl POST + one PATCH of SIZE MiB into each, ROUNDS rounds.
# Usage: ROUNDS=7 bench/tus/ab.sh FERRYD_BEFORE FERRYD_AFTER [SIZE_MIB]   (prints median and best ratios)
set -euo pipefail
A=$1; B=$2; SIZE_MIB=${3:-512}; ROUNDS=${ROUNDS:-5}
WORK=$(mktemp -d /tmp/ferry-tus-ab.XXXXXX)
trap 'kill $PA $PB 2>/dev/null || true; rm -rf "$WORK"' EXIT
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/src.bin"; BYTES=$(stat -c %s "$WORK/src.bin")
start() { mkdir -p "$WORK/$2"; "$1" "$WORK/$2" --listen 127.0.0.1:0 --public-uploads --no-index --log-level warn > "$WORK/$2.out" 2>&1 & echo $!; }
PA=$(start "$A" a); PB=$(start "$B" b); sleep 1
ep() { grep -o 'listening on http://[^ ]*' "$WORK/$1.out" | sed 's:^listening on ::; s:/$::'; }
EA="$(ep a)/files/"; EB="$(ep b)/files/"
up() { local t0 loc; t0=$(date +%s.%N)
  loc=$(curl -sS -D - -o /dev/null -X POST "$1" -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $BYTES" \
        -H "Upload-Metadata: filename $(printf %s "$2" | base64)" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case $loc in http*) ;; *) loc="${1%%/files/*}$loc" ;; esac
  curl -sS -f -o /dev/null -X PATCH -T "$WORK/src.bin" "$loc" -H 'Tus-Resumable: 1.0.0' \
       -H 'Content-Type: application/offset+octet-stream' -H 'Upload-Offset: 0' -H 'Expect:'
  python3 -c "print($(date +%s.%N)-$t0)"; }
as=(); bs=()
for r in $(seq "$ROUNDS"); do
  sync; as+=("$(up "$EA" "r$r.bin")"); rm -f "$WORK"/a/r$r.bin
  sync; bs+=("$(up "$EB" "r$r.bin")"); rm -f "$WORK"/b/r$r.bin
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mn() { printf '%s\n' "$@" | sort -g | head -1; }
echo "A (before) seconds: ${as[*]}"; echo "B (after)  seconds: ${bs[*]}"
python3 -c "
b=$BYTES/1e6; ma,mb=$(med "${as[@]}"),$(med "${bs[@]}"); na,nb=$(mn "${as[@]}"),$(mn "${bs[@]}")
print(f'median: before {b/ma:.0f} MB/s, after {b/mb:.0f} MB/s, after/before {ma/mb:.3f}')
print(f'best:   before {b/na:.0f} MB/s, after {b/nb:.0f} MB/s, after/before {na/nb:.3f}')"
