# Shared by cpu.sh, instr.sh and syscalls.sh: one server with one worker on $WORK/www.
#   nginx_conf PROCESSES SERVERS          $WORK/nginx/nginx.conf (also run.sh's)
#   make_work NAME                        sets WORK (see below)
#   start_one BINARY|nginx [WRAPPER...]   sets SERVER_PID and URL
# WORKERS=N (default 1) runs N workers (nginx: a master and N worker processes).
# BINARY is a ferryd build, run with --workers 1 and the flags in FERRYD_ARGS;
# `nginx` runs nginx as one process (master_process off: the process serving is the one
# started, so its CPU, system calls and instructions are counted the same way as ferryd's),
# sendfile and tcp_nopush on as in run.sh, no access log, no open_file_cache (its default).
# WRAPPER (valgrind, ...) is put in front of the server's command line.

# make_work NAME: a fresh $WORK (removed at exit, after the server and any STRACE_PID are
# stopped) holding www/big.bin (64 MiB) and ranges.lua (wrk: 4 KiB GETs at random offsets).
make_work() {
  WORK=$(mktemp -d "/tmp/ferry-bench-$1.XXXXXX")
  trap 'kill "${STRACE_PID:-}" "${SERVER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  mkdir -p "$WORK/www"
  head -c 64M /dev/urandom > "$WORK/www/big.bin"
  cat > "$WORK/ranges.lua" <<'LUA'
math.randomseed(os.time())
request = function()
  local off = math.random(0, 16383) * 4096
  return wrk.format("GET", "/big.bin", { Range = "bytes=" .. off .. "-" .. (off + 4095) })
end
LUA
}

# nginx_conf PROCESSES SERVERS: $WORK/nginx/nginx.conf with the process lines PROCESSES and
# the server blocks SERVERS: sendfile and tcp_nopush on, no access log, and keep-alive without
# a cap (h2load sends every request of a run on 16 connections: nginx closes a connection after
# keepalive_requests, default 1000, HTTP/2 included since 1.19.7; ferryd never does).
nginx_conf() {
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
$1
daemon off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
$2
}
CONF
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_one() {
  local what=$1
  shift
  chmod 755 "$WORK" "$WORK/www"
  if [ "$what" = nginx ]; then
    local port
    port=$(free_port)
    mkdir -p "$WORK/nginx"
    nginx_conf "worker_processes ${WORKERS:-1};
master_process $([ "${WORKERS:-1}" = 1 ] && echo off || echo on);" \
      "  server { listen 127.0.0.1:$port; root $WORK/www; }"
    rm -f "$WORK/server.out" "$WORK/server.err"   # a previous server's lines are not this one's
    "$@" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" > "$WORK/server.out" 2>&1 &
    SERVER_PID=$!
    URL="http://127.0.0.1:$port"
    for _ in $(seq 1200); do curl -sf -o /dev/null -r 0-0 "$URL/big.bin" 2>/dev/null && break; sleep 0.1; done
  else
    rm -f "$WORK/server.out" "$WORK/server.err"
    # shellcheck disable=SC2086 # FERRYD_ARGS is a list of flags
    "$@" "$what" "$WORK/www" --listen 127.0.0.1:0 --workers "${WORKERS:-1}" --log-level warn ${FERRYD_ARGS:-} \
      > "$WORK/server.out" 2> "$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1200); do grep -q listening "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
    URL=$(grep -o 'listening on http://[^ ]*' "$WORK/server.out" | sed 's:^listening on ::; s:/$::')
  fi
  curl -sf -r 0-4095 -o /dev/null "$URL/big.bin" || { echo "$what did not start: $(cat "$WORK"/server.*)" >&2; exit 1; }
}

# CPU time (ns) of every thread of the server and of its child processes (nginx's workers).
server_cpu_ns() {
  local p
  for p in "$SERVER_PID" $(pgrep -P "$SERVER_PID"); do cat /proc/"$p"/task/*/schedstat; done 2>/dev/null | awk '{s += $1} END {print s}'
}

# User and kernel clock ticks of the same threads: "UTIME STIME".
server_ticks() {
  local p
  for p in "$SERVER_PID" $(pgrep -P "$SERVER_PID"); do cat /proc/"$p"/task/*/stat; done 2>/dev/null |
    sed 's/.*) //' | awk '{u += $12; s += $13} END {print u, s}'
}
