#!/usr/bin/env bash
# tus upload benchmark, measured in one run on this machine. Prints MB/s and ratios.
#   1. 1 GiB upload (POST + one streaming PATCH with curl) into ferryd vs into @tus/server
#      (file store), same client; also tus-js-client as the client (goal: ferryd >= @tus/server)
#   2. the disk's sequential write rate: dd bs=1M conv=fdatasync (goal: ferryd >= 0.9x)
#   3. ferryd peak RSS (VmHWM) with 16 concurrent 1 GiB uploads (goal <= 64 MiB)
# ferryd fdatasyncs before it acknowledges (and every 64 MiB); @tus/server's file store does
# not sync, so its figure is a page-cache figure.
# Usage: bench/tus/run.sh [SIZE_MIB]   (default 1024; needs ~18x SIZE of free disk)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
command -v curl >/dev/null && command -v node >/dev/null || { echo "needs curl and node" >&2; exit 1; }
[ -d tests/interop/node_modules/@tus/server ] || (cd tests/interop && npm install --no-audit --no-fund --silent)
cargo build --release -q -p ferryd
FERRYD=target/release/ferryd

WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/ferry-bench-tus.XXXXXX")
cleanup() { kill ${SRV_PID:-} ${FERRY_PID:-} ${NODE_PID:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
head -c "${SIZE_MIB}M" /dev/urandom > "$WORK/src.bin"
BYTES=$(stat -c %s "$WORK/src.bin")
now() { date +%s.%N; }

# Starts a server command in the background; sets SRV_PID and ENDPOINT (from "listening on URL").
start() {
  rm -f "$WORK/srv.out" "$WORK/srv.err"   # the previous server's address is not this one's
  "$@" > "$WORK/srv.out" 2>"$WORK/srv.err" &
  SRV_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/srv.out" 2>/dev/null && break; sleep 0.05; done
  ENDPOINT=$(grep -o 'http://[^ ]*' "$WORK/srv.out" | head -1); ENDPOINT=${ENDPOINT%/}
}
stop() { kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=; }

# One tus upload with curl: POST, then the whole file in one streaming PATCH. Prints seconds.
curl_upload() {
  local endpoint=$1 name=$2 t0 loc
  t0=$(now)
  loc=$(curl -sS -D - -o /dev/null -X POST "$endpoint" -H 'Tus-Resumable: 1.0.0' \
        -H "Upload-Length: $BYTES" -H "Upload-Metadata: filename $(printf %s "$name" | base64)" \
        | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case $loc in http*) ;; *) loc="${endpoint%%/files/*}$loc" ;; esac
  curl -sS -f -o /dev/null -X PATCH -T "$WORK/src.bin" "$loc" -H 'Tus-Resumable: 1.0.0' \
       -H 'Content-Type: application/offset+octet-stream' -H 'Upload-Offset: 0' -H 'Expect:'
  python3 -c "print($(now)-$t0)"
}

js_upload() {
  local endpoint=$1 t0
  t0=$(now)
  (cd tests/interop && node tus_js_upload.mjs "{\"endpoint\":\"$endpoint\",\"token\":\"x\",\"file\":\"$WORK/src.bin\"}" >/dev/null)
  python3 -c "print($(now)-$t0)"
}

# ROUNDS interleaved rounds (disk, ferryd, @tus/server) so load elsewhere on the machine hits
# all three alike; medians are reported.
ROUNDS=${ROUNDS:-3}
mkdir -p "$WORK/ferry" "$WORK/node"
start "$FERRYD" "$WORK/ferry" --listen 127.0.0.1:0 --public-uploads --log-level warn
FERRY_EP="$ENDPOINT/files/"; FERRY_PID=$SRV_PID
start node bench/tus/tus_node_server.mjs "$WORK/node"
NODE_EP="$ENDPOINT/"; NODE_PID=$SRV_PID; SRV_PID=
DDS=(); FCS=(); NCS=(); NDS=()
for r in $(seq "$ROUNDS"); do
  sync; t0=$(now); dd if="$WORK/src.bin" of="$WORK/dd.bin" bs=1M conv=fdatasync status=none
  DDS+=("$(python3 -c "print($(now)-$t0)")"); rm -f "$WORK/dd.bin"
  sync; FCS+=("$(curl_upload "$FERRY_EP" "a$r.bin")"); cmp "$WORK/src.bin" "$WORK/ferry/a$r.bin"; rm -f "$WORK/ferry/a$r.bin"
  sync; t0=$(now); curl_upload "$NODE_EP" "a$r.bin" > /dev/null; NCS+=("$(python3 -c "print($(now)-$t0)")")
  # @tus/server acknowledges before its data is on disk: also time until it is (fsync).
  python3 -c "import os,glob; f=os.open(max(glob.glob('$WORK/node/*'), key=os.path.getsize), os.O_RDONLY); os.fsync(f)"
  NDS+=("$(python3 -c "print($(now)-$t0)")"); rm -f "$WORK"/node/*
done
sync; FJ=$(js_upload "$FERRY_EP"); rm -f "$WORK"/ferry/src*.bin
sync; NJ=$(js_upload "$NODE_EP"); rm -f "$WORK"/node/*
kill "$FERRY_PID" "$NODE_PID"; wait "$FERRY_PID" "$NODE_PID" 2>/dev/null || true
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
DD_S=$(median "${DDS[@]}"); FC=$(median "${FCS[@]}"); NC=$(median "${NCS[@]}"); ND=$(median "${NDS[@]}")

# 16 concurrent uploads into ferryd; peak RSS from VmHWM.
start "$FERRYD" "$WORK/ferry" --listen 127.0.0.1:0 --public-uploads --log-level warn
for i in $(seq 16); do curl_upload "$ENDPOINT/files/" "c$i.bin" > /dev/null & done; wait_for=$(jobs -p | grep -v "^$SRV_PID$" || true)
for p in $wait_for; do wait "$p"; done
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$SRV_PID/status")
OK=$(ls "$WORK/ferry"/c*.bin | wc -l)
stop

rate() { python3 -c "print(f'{$BYTES/1048576/$1:.0f}')"; }
echo "size: $SIZE_MIB MiB on $(df --output=source "$WORK" | tail -1)"
echo "rounds: $ROUNDS (medians; seconds dd ${DDS[*]} / ferryd ${FCS[*]} / @tus/server ${NCS[*]}, synced ${NDS[*]})"
echo "disk  dd bs=1M conv=fdatasync      : $(rate "$DD_S") MB/s"
echo "ferryd        (curl PATCH)          : $(rate "$FC") MB/s  = $(python3 -c "print(f'{$DD_S/$FC:.2f}')")x disk"
echo "@tus/server   (curl PATCH)          : $(rate "$NC") MB/s acknowledged, $(rate "$ND") MB/s once fsynced"
echo "ferryd        (tus-js-client)       : $(rate "$FJ") MB/s"
echo "@tus/server   (tus-js-client)       : $(rate "$NJ") MB/s"
echo "ferryd/@tus/server (curl)           : $(python3 -c "print(f'{$NC/$FC:.2f}')")x acknowledged, $(python3 -c "print(f'{$ND/$FC:.2f}')")x durable"
echo "ferryd peak RSS, 16 x $SIZE_MIB MiB uploads: $((HWM / 1024)) MiB ($OK/16 published)"
