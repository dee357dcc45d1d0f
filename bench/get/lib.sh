# Shared by run.sh and mirrors.sh: tools, test files, and nginx on loopback.
#   need COMMAND DEBIAN_PACKAGE      installs the package when COMMAND is missing
#   make_file NAME MiB               $WORK/www/NAME of random bytes, kept between runs
#   start_nginx SERVERS URL...       nginx (2 workers, sendfile, keep-alive without a cap) with
#                                    the server blocks SERVERS; sets NGINX (stopped at exit, its
#                                    workers with it: SIGTERM, then wait for the master) and
#                                    waits until every URL answers a HEAD
# Callers set WORK first.

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y -qq "$2" >/dev/null; }; }

make_file() {
    [ -f "$WORK/www/$1" ] && [ "$(stat -c %s "$WORK/www/$1")" -eq $(($2 << 20)) ] && return
    echo "generating $1 ($2 MiB)"
    head -c $(($2 << 20)) /dev/urandom >"$WORK/www/$1"
    chmod 644 "$WORK/www/$1"
}

start_nginx() {
    local servers=$1 url
    shift
    cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path $WORK/logs;
    proxy_temp_path $WORK/logs;
    fastcgi_temp_path $WORK/logs;
    uwsgi_temp_path $WORK/logs;
    scgi_temp_path $WORK/logs;
$servers}
CONF
    nginx -c "$WORK/nginx.conf" -p "$WORK" &
    NGINX=$!
    trap 'kill $NGINX 2>/dev/null || true; wait $NGINX 2>/dev/null || true' EXIT
    for url in "$@"; do
        for _ in $(seq 50); do curl -fsI "$url" >/dev/null 2>&1 && break; sleep 0.1; done
        curl -fsI "$url" >/dev/null 2>&1 || { echo "nginx does not answer $url (see $WORK/logs/error.log)" >&2; exit 1; }
    done
}
