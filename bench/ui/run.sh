#!/usr/bin/env bash
# ferryd's browser page, measured in one run on this machine (issue 10 point 9). Prints:
#   1. the HTML listing of a 100,000-entry directory: ferryd vs nginx autoindex, median time of
#      ROUNDS curl runs each, and the ratio nginx/ferryd (goal >= 1.0)
#   2. time until that listing's page is interactive in headless chromium (filter box ready)
#   3. SHA-256 speed of the page's hashing worker (hash-wasm in a Web Worker), MB/s over
#      HASH_MIB MiB held in memory
# Usage: bench/ui/run.sh   (ROUNDS=7, HASH_MIB=512). Needs nginx, curl, chromium, node and
# tests/interop's node_modules (scripts/test installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-7}
HASH_MIB=${HASH_MIB:-512}
cargo build --release -q -p ferryd
FERRYD=target/release/ferryd

WORK=$(mktemp -d /tmp/ferry-bench-ui.XXXXXX)
cleanup() { kill "${NGINX_PID:-}" "${FERRYD_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www/big" "$WORK/nginx"
python3 - "$WORK/www/big" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(100_000):
    with open(os.path.join(d, f"file-{i:06d}.txt"), "wb") as f:
        f.write(b"x" * (i % 4096))
PY
chmod -R a+rX "$WORK"   # nginx workers run as nobody

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NPORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$NPORT; root $WORK/www; autoindex on; }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & NGINX_PID=$!
EXTRA=()
$FERRYD --help | grep -q -- '--no-index' && EXTRA+=(--no-index)
$FERRYD "$WORK/www" --listen 127.0.0.1:0 --public-uploads --state-dir "$WORK/state" \
  --log-level warn "${EXTRA[@]}" > "$WORK/ferryd.out" & FERRYD_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/ferryd.out" 2>/dev/null && break; sleep 0.1; done
FURL=$(grep -o 'http://[^ ]*' "$WORK/ferryd.out" | tail -1 | sed 's:/$::')
NURL="http://127.0.0.1:$NPORT"
for _ in $(seq 100); do curl -sf -o /dev/null "$NURL/" && break; sleep 0.1; done

median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
fetch() { curl -sf -o /dev/null -w '%{time_total}\n' "$1/big/"; }
f=(); n=()
for _ in $(seq "$ROUNDS"); do f+=("$(fetch "$FURL")"); n+=("$(fetch "$NURL")"); done
FT=$(median "${f[@]}"); NT=$(median "${n[@]}")
FB=$(curl -sf "$FURL/big/" | wc -c); NB=$(curl -sf "$NURL/big/" | wc -c)
echo "listing 100000 entries: ferryd ${FT}s (${FB} B), nginx autoindex ${NT}s (${NB} B), nginx/ferryd $(python3 -c "print(round($NT/$FT, 2))")"
node bench/ui/page.mjs "$FURL/big/" "$HASH_MIB"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
