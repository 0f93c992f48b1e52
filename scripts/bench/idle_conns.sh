#!/usr/bin/env bash
# Memory per idle keep-alive connection: meshgate against nginx (one worker), each holding N
# client connections that made one request and then stay open, over HTTP/1.1 and over HTTPS
# (TLS 1.3, the same ECDSA P-256 certificate). RSS of the process serving the connections
# (nginx: its worker) is read before the clients connect and after they are all idle.
#
#   scripts/bench/idle_conns.sh                 # release binary, N = 5000 and 19000
#   COUNTS="2000" scripts/bench/idle_conns.sh
#
# The fd limit is raised to the hard limit (`ulimit -Hn`); each process holds at most that
# many sockets, so N stays a little under it (20,000 on the machine this was written on).
#
# Everything listens on 127.0.0.1 and is stopped on exit. Not part of `cargo test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MESHGATE_BIN:-$ROOT/target/release/meshgate}
COUNTS=${COUNTS:-5000 19000}
# Below the ephemeral range (32768-60999 here): thousands of client sockets must not take
# a port a proxy is about to listen on.
BASE=${PORT_BASE:-24500}
[[ -x $BIN ]] || { echo "idle_conns.sh: no meshgate binary at $BIN" >&2; exit 1; }
command -v nginx >/dev/null || { echo "idle_conns.sh: nginx is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

# shellcheck source=lib.sh
source "$ROOT/scripts/bench/lib.sh"
bench_scratch

BACKEND=$BASE NG_HTTP=$((BASE + 1)) NG_HTTPS=$((BASE + 2))
MG_HTTP=$((BASE + 11)) MG_HTTPS=$((BASE + 12)) MG_ADMIN=$((BASE + 13))

test_certificate "$RUN"
# The backend (its own nginx, up the whole run) and nginx as the gateway under test.
cat >"$RUN/backend.conf" <<CONF
worker_processes 1; pid $RUN/backend.pid; error_log $RUN/backend.err warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;
fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
keepalive_requests 100000000; keepalive_timeout 600s;
server { listen 127.0.0.1:$BACKEND; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$RUN" -e "$RUN/backend.err" -c "$RUN/backend.conf" -g 'daemon off;' &
PIDS+=("$!")
cat >"$RUN/nginx.conf" <<CONF
worker_processes 1; pid $RUN/nginx.pid; error_log $RUN/nginx.err warn;
events { worker_connections 19500; }
http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;
fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
keepalive_requests 100000000; keepalive_timeout 600s;
upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; }
server {
  listen 127.0.0.1:$NG_HTTP backlog=4096; listen 127.0.0.1:$NG_HTTPS ssl backlog=4096;
  ssl_certificate $RUN/cert.pem; ssl_certificate_key $RUN/key.pem; ssl_protocols TLSv1.3;
  location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF

mkdir -p "$RUN/mg"
gateway_policies $MG_HTTP $BACKEND $MG_HTTPS "$RUN/cert.pem" "$RUN/key.pem" >"$RUN/mg/policies.yaml"

# Each measurement gets fresh processes: memory freed by an earlier run's connections stays
# in the allocator and would hide the next run's growth.
SERVER_PID="" MEASURED_PID=""
start() { # nginx|meshgate
    if [[ $1 == nginx ]]; then
        nginx -p "$RUN" -e "$RUN/nginx.err" -c "$RUN/nginx.conf" -g 'daemon off;' &
        SERVER_PID=$!
        for _ in $(seq 100); do curl -fs "http://127.0.0.1:$NG_HTTP/" >/dev/null && break; sleep 0.1; done
        MEASURED_PID=$(pgrep -P "$SERVER_PID" | head -1)
    else
        "$BIN" --policies "$RUN/mg" --bind 127.0.0.1 --admin 127.0.0.1:$MG_ADMIN --idle-timeout 600 \
            >"$RUN/mg.log" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 100); do curl -fs "http://127.0.0.1:$MG_ADMIN/ready" >/dev/null && break; sleep 0.1; done
        MEASURED_PID=$SERVER_PID
    fi
    PIDS+=("$SERVER_PID")
}
stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    sleep 0.5
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# The client: N connections, one request each, then idle until told to go.
cat >"$RUN/client.py" <<'PY'
# N connections (spread over processes of at most 8,000 sockets each), one request each,
# then idle until stdin closes; prints how many are held.
import asyncio, os, ssl, sys
port, n, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls"
ctx = None
if tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    w.write(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    await w.drain()
    data = b""
    while not data.endswith(b"ok\n"):
        chunk = await r.read(4096)
        if not chunk:
            raise RuntimeError("closed")
        data += chunk
    conns.append((r, w))
async def hold(k, report, until):
    conns = []
    for i in range(0, k, 250):
        await asyncio.gather(*(one(conns) for _ in range(min(250, k - i))))
    os.write(report, f"{len(conns)}\n".encode())
    await asyncio.get_running_loop().run_in_executor(None, os.read, until, 1)
report_r, report_w = os.pipe()
until_r, until_w = os.pipe()
children = []
left = n
while left > 0:
    k = min(8000, left)
    left -= k
    pid = os.fork()
    if pid == 0:
        os.close(report_r); os.close(until_w)
        asyncio.run(hold(k, report_w, until_r))
        os._exit(0)
    children.append(pid)
os.close(report_w); os.close(until_r)
held = 0
with os.fdopen(report_r) as reports:
    for _ in children:
        held += int(reports.readline())
print(held, flush=True)
sys.stdin.read()
os.close(until_w)
for pid in children:
    os.waitpid(pid, 0)
PY

measure() { # name port tls n
    local before after held
    start "$1"
    set -- "$1" "$MEASURED_PID" "$2" "$3" "$4"
    # Warm up: the first connections' one-off allocations are not per-connection cost.
    python3 "$RUN/client.py" "$3" 50 "$4" </dev/null >/dev/null 2>&1 || true
    sleep 1
    before=$(rss_kib "$2")
    coproc CLIENT { python3 "$RUN/client.py" "$3" "$5" "$4"; }
    read -r held <&"${CLIENT[0]}"
    sleep 2
    after=$(rss_kib "$2")
    exec {CLIENT[1]}>&-
    wait "$CLIENT_PID" 2>/dev/null || true
    awk -v n="$1" -v t="$4" -v c="$held" -v b="$before" -v a="$after" \
        'BEGIN { printf "%-9s %-5s %6d conns  RSS %7.1f -> %7.1f MiB  %5.1f KiB/conn\n", n, t, c, b/1024, a/1024, (a-b)/c }'
    stop
}

echo "proxy     kind   idle keep-alive connections after one request each"
for n in $COUNTS; do
    for kind in plain tls; do
        ng_port=$NG_HTTP mg_port=$MG_HTTP
        [[ $kind == tls ]] && { ng_port=$NG_HTTPS; mg_port=$MG_HTTPS; }
        measure nginx "$ng_port" "$kind" "$n"
        measure meshgate "$mg_port" "$kind" "$n"
    done
done
