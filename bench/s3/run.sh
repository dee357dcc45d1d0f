#!/usr/bin/env bash
# ferryd on S3 against peers measured in the same run, on moto's S3 server started here on
# 127.0.0.1 (the same server the tests use). Prints ratios; interleaved rounds, medians.
#   get    1 GiB GET with curl: through ferryd-on-S3 vs straight from the S3 endpoint (a
#          presigned URL, the same curl), ratio ferryd/direct (goal >= 0.9); with the CPU seconds
#          per GiB of moto and ferryd (user + system from /proc/PID/stat), steadier than MiB/s;
#          and a second peer, nginx relaying the same presigned GET (proxy_pass, one process,
#          1 MiB proxy buffers, no temporary files): what a relay costs on this machine
#   put    1 GiB upload: `ferry put` and `ferry put -x 4` into ferryd-on-S3 vs `rclone copy` of
#          the same file into the same bucket (its defaults: 5 MiB parts, 4 at once), ratio
#          rclone-time/ferry-time (goal >= 0.9); the first round reads the upload back
#   rss    ferryd peak RSS (VmHWM of a fresh ferryd) during 16 concurrent uploads (64 MiB each)
#          and 64 concurrent range downloads (1 MiB each) at once (goal <= 128 MiB)
#   scale  aggregate download throughput of 1, 2 and 3 ferryd on the bucket under the same
#          load (12 clients, each GETting a 64 MiB object 4 times, round robin over instances),
#          and of the same load straight from moto (the ceiling); with what bounds it: moto's
#          CPU and cores, ferryd's CPU per GiB relayed, the machine's busy cores
# Usage: [ROUNDS=3] [ONLY=get,put,rss,scale] bench/s3/run.sh
#   FERRYD=path / FERRY=path measure other builds (an A/B of two commits); FERRYD_ARGS adds flags.
# moto keeps objects in temporary files and reads a whole object for every (ranged) GET, so the
# range downloads use a 64 MiB object, and moto (one Python process) is the ceiling of every
# figure here; on the shared 2-core VM wall-clock figures swing: read them with the load.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-get,put,rss,scale}
TOKEN=bench-token
want() { [[ ",$ONLY," == *",$1,"* ]]; }

command -v moto_server >/dev/null || python3 -m pip install -q -r tests/interop/requirements.txt
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install -q boto3
if [ -z "${FERRYD:-}" ] || [ -z "${FERRY:-}" ]; then
  cargo build --release -q -p ferryd -p ferry
fi
FERRYD=${FERRYD:-target/release/ferryd}
FERRY=${FERRY:-target/release/ferry}

BENCH_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BENCH_DIR" ] || BENCH_DIR=/tmp
WORK=$(mktemp -d "$BENCH_DIR/ferry-bench-s3.XXXXXX")
PIDS=()
cleanup() {
  set +e   # a ferryd stopped already must not turn a finished run into exit 1
  rm -rf "$WORK"   # first: moto's files and the sources live here (in memory with /dev/shm)
  for p in "${PIDS[@]}" "${MOTO_PID:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# moto's temporary files go to TMPDIR: keep them off the page-cache-starved disk too.
mkdir -p "$WORK/moto-tmp"
# The interpreter itself, not a pyenv shim, so that $! is moto's process and cleanup stops it.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
TMPDIR="$WORK/moto-tmp" "$PYTHON" -m moto.server -H 127.0.0.1 -p 0 > "$WORK/moto.log" 2>&1 & MOTO_PID=$!
for _ in $(seq 300); do grep -q 'Running on http://127.0.0.1:' "$WORK/moto.log" && break; sleep 0.1; done
MOTO=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/moto.log" | head -n1)
[ -n "$MOTO" ] || { cat "$WORK/moto.log" >&2; echo "moto_server did not start" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
BUCKET=ferry-bench
curl -sf -X PUT "$MOTO/$BUCKET" > /dev/null
# rclone's S3 backend at its defaults (5 MiB parts, 4 at once), configured from the environment.
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$MOTO \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=testing RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=testing \
  RCLONE_CONFIG_MOTO_REGION=us-east-1 RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true \
  RCLONE_CONFIG_MOTO_NO_HEAD=true  # its HEAD ?versionId=null after an upload gets moto's 400
# rclone's AWS SDK refuses a custom CA bundle on its transport (the endpoint is plain HTTP).
rclone() { env -u AWS_CA_BUNDLE rclone "$@"; }

if want get || want put; then  # 1 GiB only where it is measured
  head -c 1G /dev/urandom > "$WORK/big.bin"
  rclone copy "$WORK/big.bin" "moto:$BUCKET/www/"
fi
head -c 64M /dev/urandom > "$WORK/mid.bin"
rclone copy "$WORK/mid.bin" "moto:$BUCKET/www/"

start_ferryd() { # start_ferryd NAME [FLAGS...]: sets URL_<NAME>, PID_<NAME>
  local name=$1; shift
  # shellcheck disable=SC2086 # FERRYD_ARGS is a list of flags
  "$FERRYD" --store "s3://$BUCKET/www" --s3-endpoint "$MOTO" --listen 127.0.0.1:0 --log-level warn \
    "$@" ${FERRYD_ARGS:-} > "$WORK/$name.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do grep -q 'http://' "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
  grep -q 'http://' "$WORK/$name.out" || { cat "$WORK/$name.out" >&2; echo "ferryd did not start" >&2; exit 1; }
  printf -v "URL_$name" '%s' "$(grep -o 'http://[^ /]*' "$WORK/$name.out" | head -1)"
  printf -v "PID_$name" '%s' "$pid"
}
stop_ferryd() { local pid="PID_$1"; kill "${!pid}"; wait "${!pid}" 2>/dev/null || true; }

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
calc() { python3 -c "print(f'{$1:$2}')"; }
med2() { calc "$(median "$@")" .2f; }
now() { date +%s.%N; }
mibs() { python3 -c "import sys; print(' '.join(f'{float(x) / 2**20:.0f}' for x in sys.argv[1:]))" "$@"; }
# CPU time, the load-insensitive figure beside each wall-clock one: a process's user and system
# ticks (all its threads, finished ones too), and the whole machine's busy and total ticks.
HZ=$(getconf CLK_TCK)
CORES=$(nproc)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_cpu() { awk '{print $15}' "/proc/$1/stat"; }
machine() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# presign KEY: a presigned GET URL of KEY straight from moto (no ferryd), for the same clients.
presign() {
  python3 - "$MOTO" "$BUCKET" "$1" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
print(s3.generate_presigned_url("get_object", Params={"Bucket": sys.argv[2], "Key": sys.argv[3]}, ExpiresIn=36000))
PY
}
echo "bench/s3/run.sh at $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD); $FERRYD built $(date -u -r "$FERRYD" +%FT%TZ)"

if want get; then
  start_ferryd get
  DIRECT=$(presign www/big.bin)
  # nginx as the relay peer: the presigned URL's path and query through proxy_pass, with the
  # Host header moto's (it is signed). One process (master_process off), so it stops with PIDS.
  # shellcheck source=bench/serve/lib.sh
  . bench/serve/lib.sh   # nginx_conf, free_port
  NGINX_PORT=$(free_port)
  nginx_conf "worker_processes 1; master_process off;" "  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass $MOTO; proxy_set_header Host ${MOTO#http://}; proxy_http_version 1.1;
      proxy_buffers 8 1m; proxy_buffer_size 64k; proxy_max_temp_file_size 0;
      proxy_temp_path $WORK/nginx/proxy;
    }
  }"
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" > "$WORK/nginx.out" 2>&1 & PIDS+=($!)
  RELAY="http://127.0.0.1:$NGINX_PORT/${DIRECT#http://*/}"
  for _ in $(seq 100); do curl -sf -o /dev/null -r 0-0 "$RELAY" && break; sleep 0.1; done
  # speed URL: one curl run: "bytes/s, moto's ticks, ferryd's ticks, ferryd's system ticks";
  # fails unless exactly 1 GiB arrived.
  speed() {
    local s n m0 f0 k0
    m0=$(cpu "$MOTO_PID"); f0=$(cpu "$PID_get"); k0=$(sys_cpu "$PID_get")
    read -r s n < <(curl -sf -o /dev/null -w '%{speed_download} %{size_download}\n' "$1")
    [ "$n" = 1073741824 ] || { echo "$1 served $n bytes, not 1 GiB" >&2; exit 1; }
    echo "$s $(($(cpu "$MOTO_PID") - m0)) $(($(cpu "$PID_get") - f0)) $(($(sys_cpu "$PID_get") - k0))"
  }
  curl -sf "$URL_get/big.bin" | cmp - "$WORK/big.bin"
  curl -sf "$RELAY" | cmp - "$WORK/big.bin"
  ds=(); fs=(); ns=(); dm=(); fm=(); ff=(); fk=()
  for _ in $(seq "$ROUNDS"); do
    r=$(speed "$DIRECT") || exit 1
    read -r s m _ _ <<< "$r"; ds+=("$s"); dm+=("$m")
    r=$(speed "$URL_get/big.bin") || exit 1
    read -r s m f k <<< "$r"; fs+=("$s"); fm+=("$m"); ff+=("$f"); fk+=("$k")
    r=$(speed "$RELAY") || exit 1
    read -r s _ _ _ <<< "$r"; ns+=("$s")
  done
  D=$(median "${ds[@]}"); F=$(median "${fs[@]}"); N=$(median "${ns[@]}")
  echo "get: 1 GiB with curl (median of $ROUNDS): direct $(calc "$D/2**20" .0f) MiB/s, via ferryd $(calc "$F/2**20" .0f) MiB/s, ratio ferryd/direct = $(calc "$F/$D" .2f) (goal >= 0.9); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "     relay peer: via nginx proxy_pass $(calc "$N/2**20" .0f) MiB/s, ratio nginx/direct = $(calc "$N/$D" .2f), ferryd/nginx = $(calc "$F/$N" .2f)"
  echo "     CPU s per GiB (median): moto $(calc "$(median "${dm[@]}")/$HZ" .2f) direct, $(calc "$(median "${fm[@]}")/$HZ" .2f) behind ferryd; ferryd $(calc "$(median "${ff[@]}")/$HZ" .2f), of it in the kernel $(calc "$(median "${fk[@]}")/$HZ" .2f) (the relay's two loopback sockets)"
  echo "     MiB/s direct $(mibs "${ds[@]}") | via ferryd $(mibs "${fs[@]}") | via nginx $(mibs "${ns[@]}"); ticks ($HZ/s): moto direct ${dm[*]} | moto behind ferryd ${fm[*]} | ferryd ${ff[*]} (kernel ${fk[*]})"
  stop_ferryd get
fi

if want put; then
  start_ferryd put --single-instance --upload-token "$TOKEN"
  # PUT_MIB (default 1024) sizes the file; a smaller one for quick iterations.
  PUT_MIB=${PUT_MIB:-1024}
  SRC="$WORK/big.bin"
  if [ "$PUT_MIB" != 1024 ]; then SRC="$WORK/put.bin"; head -c "${PUT_MIB}M" "$WORK/big.bin" > "$SRC"; fi
  # After a ferry put, ferryd reads the published file back for its content index: wait until
  # ferryd's CPU stands still, so that work is counted in its CPU and not in the next run's time.
  settle() { local a b; a=$(cpu "$PID_put"); while sleep 0.5; b=$(cpu "$PID_put"); [ "$a" != "$b" ]; do a=$b; done; }
  # Each round: rclone, ferry put (one stream), ferry put -x 4 (concatenation), interleaved.
  # Each run prints "seconds moto-ticks ferryd-ticks" (ferryd's include the content index's work after
  # the put: `ferry put`'s upload is indexed during its publish, hashed as it arrived; `-x 4`'s final
  # upload is read back and hashed in the background, which settle waits for).
  rs=(); f1=(); f4=()
  put_once() { # put_once ROUND FLAGS...: `ferry put FLAGS` of SRC
    local dir=$1; shift
    local t0 t1 m0 f0
    m0=$(cpu "$MOTO_PID"); f0=$(cpu "$PID_put")
    t0=$(now)
    FERRY_DATA_DIR="$WORK/data-$dir" "$FERRY" put -q "$@" --token "$TOKEN" --metadata "dir=$dir" \
      "$SRC" "$URL_put/files/" > /dev/null 2>> "$WORK/put.err" || { cat "$WORK/put.err" >&2; return 1; }
    t1=$(now)
    settle
    echo "$(calc "$t1-$t0" .3f) $(($(cpu "$MOTO_PID") - m0)) $(($(cpu "$PID_put") - f0))"
    if [ "$i" = 1 ]; then curl -sf "$URL_put/$dir/$(basename "$SRC")" | cmp - "$SRC" >&2 || return 1; fi
    rclone purge "moto:$BUCKET/www/$dir" 2> /dev/null
  }
  for i in $(seq "$ROUNDS"); do
    m0=$(cpu "$MOTO_PID"); t0=$(now); rclone copy "$SRC" "moto:$BUCKET/rclone-$i/"; t1=$(now)
    rs+=("$(calc "$t1-$t0" .3f) $(($(cpu "$MOTO_PID") - m0)) 0")
    rclone purge "moto:$BUCKET/rclone-$i"
    f1+=("$(put_once "x1-$i")") || exit 1
    f4+=("$(put_once "x4-$i" -x 4)") || exit 1
  done
  col() { local n=$1; shift; for r in "$@"; do echo "$r" | cut -d' ' -f"$n"; done; }
  R=$(median $(col 1 "${rs[@]}")); F1=$(median $(col 1 "${f1[@]}")); F4=$(median $(col 1 "${f4[@]}"))
  per_gib() { calc "$(median $(col "$1" "${@:2}"))/$HZ*1024/$PUT_MIB" .2f; }
  echo "put: $PUT_MIB MiB (median of $ROUNDS): rclone copy $(calc "$R" .2f) s ($(calc "$PUT_MIB/$R" .0f) MiB/s); ferry put $(calc "$F1" .2f) s ($(calc "$PUT_MIB/$F1" .0f) MiB/s), ratio rclone/ferry = $(calc "$R/$F1" .2f); ferry put -x 4 $(calc "$F4" .2f) s ($(calc "$PUT_MIB/$F4" .0f) MiB/s), ratio $(calc "$R/$F4" .2f) (goal >= 0.9); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "     CPU s per GiB (median): moto $(per_gib 2 "${rs[@]}") under rclone, $(per_gib 2 "${f1[@]}") under ferry put, $(per_gib 2 "${f4[@]}") under -x 4; ferryd $(per_gib 3 "${f1[@]}") (ferry put), $(per_gib 3 "${f4[@]}") (-x 4), with the content index (-x 4: its read-back)"
  echo "     runs (s, moto ticks, ferryd ticks): rclone ${rs[*]// /\/} | ferry put ${f1[*]// /\/} | ferry put -x 4 ${f4[*]// /\/}"
  [ -s "$WORK/put.err" ] && { echo "     ferry put said:"; sed 's/^/       /' "$WORK/put.err"; }
  stop_ferryd put
fi

if want rss; then
  start_ferryd rss --single-instance --upload-token "$TOKEN"
  pids=()
  for i in $(seq 16); do
    FERRY_DATA_DIR="$WORK/rss-data-$i" "$FERRY" put -q --token "$TOKEN" --metadata "dir=rss-$i" \
      "$WORK/mid.bin" "$URL_rss/files/" > /dev/null & pids+=($!)
  done
  for i in $(seq 0 63); do
    a=$((i * 1048576)); b=$((a + 1048575))
    curl -sf -o /dev/null -r "$a-$b" "$URL_rss/mid.bin" & pids+=($!)
  done
  t0=$(now); wait "${pids[@]}"; t1=$(now)
  HWM=$(awk '/VmHWM/ {print $2}' "/proc/$PID_rss/status")
  echo "rss: ferryd peak RSS with 16 concurrent 64 MiB uploads and 64 concurrent 1 MiB range downloads: $((HWM / 1024)) MiB (goal <= 128 MiB), $(calc "$t1-$t0" .1f) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in $(seq 16); do curl -sf "$URL_rss/rss-$i/mid.bin" | cmp - "$WORK/mid.bin"; done
  stop_ferryd rss
  # `rclone purge` ignores filters (it removed all of www/, and scale's mid.bin with it);
  # `delete` honours them.
  rclone delete "moto:$BUCKET/www" --include 'rss-*/**'
fi

if want scale; then
  # The same load (12 clients, each GETting the 64 MiB object 4 times; 3 GiB a round) straight
  # from moto on presigned URLs (no ferryd: the ceiling), then round robin over 1, 2 and 3
  # ferryd. Beside MiB/s, what bounds it: moto's CPU (one Python process, about one core at
  # most under its GIL), the ferryds' CPU per GiB relayed (all instances), and how many of the
  # machine's cores were busy during the round.
  MID=$(presign www/mid.bin)
  load_round() { # load_round URL...: 12 clients x 4 GETs, round robin over the URLs; prints seconds
    local pids=() t0 t1 c p
    t0=$(now)
    for c in $(seq 0 11); do
      ( for k in 0 1 2 3; do
          i=$(((c + k) % $# + 1))
          curl -sf -o /dev/null "${!i}" || exit 1
        done ) & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { echo "scale: a client's GET failed" >&2; return 1; }; done
    t1=$(now)
    calc "$t1-$t0" .3f
  }
  measure() { # measure LABEL "FERRYD PIDS" URL...: one line of figures over ROUNDS rounds
    local label=$1 fps=$2; shift 2
    local tput=() mcpu=() mcore=() fcpu=() busy=() m0 f0 b0 a0 b1 a1 secs m f p
    for _ in $(seq "$ROUNDS"); do
      m0=$(cpu "$MOTO_PID"); f0=0; for p in $fps; do f0=$((f0 + $(cpu "$p"))); done
      read -r b0 a0 < <(machine)
      secs=$(load_round "$@") || exit 1
      read -r b1 a1 < <(machine)
      m=$(($(cpu "$MOTO_PID") - m0)); f=-$f0; for p in $fps; do f=$((f + $(cpu "$p"))); done
      tput+=("$(calc "3072/$secs" .0f)")
      mcpu+=("$(calc "$m/$HZ/3" .2f)"); mcore+=("$(calc "$m/$HZ/$secs" .2f)")
      fcpu+=("$(calc "$f/$HZ/3" .2f)")
      busy+=("$(calc "($b1-$b0)/($a1-$a0)*$CORES" .2f)")
    done
    T=$(median "${tput[@]}")
    printf 'scale: %-17s %5.0f MiB/s [%s]%s; moto %s s CPU/GiB, %s cores; ferryd %s s CPU/GiB; machine %s of %s cores busy; load %s\n' \
      "$label" "$T" "${tput[*]}" "$( [ -n "${DIRECT_T:-}" ] && echo ", $(calc "$T/$DIRECT_T" .2f) of direct")" \
      "$(med2 "${mcpu[@]}")" "$(med2 "${mcore[@]}")" "$(med2 "${fcpu[@]}")" "$(med2 "${busy[@]}")" "$CORES" \
      "$(cut -d' ' -f1-3 /proc/loadavg)"
  }
  echo "scale: 12 clients x 4 GETs of 64 MiB at once (median of $ROUNDS rounds; CPU per GiB sent)"
  curl -sf -o /dev/null "$MID" || { echo "scale: moto does not serve www/mid.bin" >&2; exit 1; }
  measure "direct from moto" "" "$MID"
  DIRECT_T=$T
  urls=(); fps=""
  for n in 1 2 3; do
    start_ferryd "s$n"
    u="URL_s$n"; urls+=("${!u}/mid.bin"); p="PID_s$n"; fps="$fps ${!p}"
    curl -sf -o /dev/null "${!u}/mid.bin"
    measure "$n ferryd" "$fps" "${urls[@]}"
  done
fi
