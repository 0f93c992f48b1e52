#!/usr/bin/env bash
# meshgate against nginx over every protocol a gateway listener speaks, side by side: both
# proxies pinned to PROXY_CPU at the same time, one load generator each on LOAD_CPU, so the
# machine's noise hits both alike and the ratio is what each does with the same CPU.
#
#   scripts/bench/protocols.sh                  # release binary, 3 rounds of 5 s per case
#   ROUNDS=5 SECONDS_RUN=10 scripts/bench/protocols.sh
#   CASES="https h2" scripts/bench/protocols.sh
#
# Cases (nginx configured alike: one worker, upstream keep-alive, the same ECDSA P-256
# certificate, TLS 1.3):
#   http1       HTTP/1.1 keep-alive, wrk -c32
#   https       HTTPS/1.1 keep-alive (TLS terminated), wrk -c32
#   handshake   HTTPS with `Connection: close`: one full TLS 1.3 handshake per request, wrk -c32
#   h2          HTTP/2 over TLS (ALPN h2), h2load -c8 -m16
#   h2c         HTTP/2 with prior knowledge on the plain-text port, h2load -c8 -m16
#   gzip        HTTP/1.1 keep-alive asking for gzip of a 4 KiB text body: meshgate compressing
#               (Kuma's gateway compressor) against meshgate with --compression off, both
#               meshgate; the ratio is what compression costs per request
# Prints requests/s per proxy and round, and the median ratio per case. Everything listens on
# 127.0.0.1 and is stopped on exit. Not part of `cargo test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MESHGATE_BIN:-$ROOT/target/release/meshgate}
ROUNDS=${ROUNDS:-3}
SECONDS_RUN=${SECONDS_RUN:-5}
CASES=${CASES:-http1 https handshake h2 h2c gzip}
# Below the ephemeral range (32768-60999 here), as the handshake case opens thousands of
# connections.
BASE=${PORT_BASE:-24300}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
[[ -x $BIN ]] || { echo "protocols.sh: no meshgate binary at $BIN" >&2; exit 1; }
for tool in nginx wrk h2load openssl taskset; do
    command -v $tool >/dev/null || { echo "protocols.sh: $tool is needed (scripts/setup.sh)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || true

# shellcheck source=lib.sh
source "$ROOT/scripts/bench/lib.sh"
bench_scratch

BACKEND=$BASE
NG_HTTP=$((BASE + 1)) NG_HTTPS=$((BASE + 2)) NG_H2C=$((BASE + 3))
MG_HTTP=$((BASE + 11)) MG_HTTPS=$((BASE + 12)) MG_ADMIN=$((BASE + 13))
MZ_HTTP=$((BASE + 21)) MZ_ADMIN=$((BASE + 23))

test_certificate "$RUN"

# The backend: nginx answering every request itself (4 KiB of text for /text).
head -c 4096 /dev/zero | tr '\0' 'a' >"$RUN/text.txt"
cat >"$RUN/backend.conf" <<CONF
worker_processes 1; pid $RUN/backend.pid; error_log $RUN/backend.err warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;
fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
keepalive_requests 100000000; keepalive_timeout 300s; types { text/plain txt; }
server { listen 127.0.0.1:$BACKEND;
  location = /text { default_type text/plain; alias $RUN/text.txt; }
  location / { return 200 "ok\n"; } } }
CONF
taskset -c "$LOAD_CPU" nginx -p "$RUN" -e "$RUN/backend.err" -c "$RUN/backend.conf" -g 'daemon off;' &
PIDS+=("$!")

# nginx as the gateway: plain HTTP/1.1, HTTPS with h2, and h2c with prior knowledge.
cat >"$RUN/proxy.conf" <<CONF
worker_processes 1; pid $RUN/proxy.pid; error_log $RUN/proxy.err warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;
fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
keepalive_requests 100000000; keepalive_timeout 300s;
upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; keepalive_requests 100000000; }
server {
  listen 127.0.0.1:$NG_HTTP; listen 127.0.0.1:$NG_HTTPS ssl http2; listen 127.0.0.1:$NG_H2C http2;
  ssl_certificate $RUN/cert.pem; ssl_certificate_key $RUN/key.pem; ssl_protocols TLSv1.3;
  location / { proxy_pass http://backend; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_set_header Host \$host; } } }
CONF
taskset -c "$PROXY_CPU" nginx -p "$RUN" -e "$RUN/proxy.err" -c "$RUN/proxy.conf" -g 'daemon off;' &
PIDS+=("$!")

# meshgate alike: one HTTP listener (HTTP/1.1 and h2c) and one HTTPS listener (TLS 1.3
# offered first, ALPN h2 and http/1.1); a second meshgate with --compression off.
mkdir -p "$RUN/mg" "$RUN/mz"
gateway_policies $MG_HTTP $BACKEND $MG_HTTPS "$RUN/cert.pem" "$RUN/key.pem" >"$RUN/mg/policies.yaml"
gateway_policies $MZ_HTTP $BACKEND >"$RUN/mz/policies.yaml"
taskset -c "$PROXY_CPU" "$BIN" --policies "$RUN/mg" --bind 127.0.0.1 --admin 127.0.0.1:$MG_ADMIN \
    >"$RUN/mg.log" 2>&1 &
PIDS+=("$!")
taskset -c "$PROXY_CPU" "$BIN" --policies "$RUN/mz" --bind 127.0.0.1 --admin 127.0.0.1:$MZ_ADMIN \
    --compression off >"$RUN/mz.log" 2>&1 &
PIDS+=("$!")
for admin in $MG_ADMIN $MZ_ADMIN; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.1; done
done
for url in "http://127.0.0.1:$NG_HTTP/" "https://127.0.0.1:$NG_HTTPS/" "http://127.0.0.1:$MG_HTTP/" \
    "https://127.0.0.1:$MG_HTTPS/" "http://127.0.0.1:$MZ_HTTP/"; do
    for _ in $(seq 50); do curl -fsk -o /dev/null "$url" && continue 2; sleep 0.1; done
    echo "protocols.sh: $url does not answer" >&2
    tail -n 20 "$RUN"/*.log "$RUN"/*.err >&2
    exit 1
done

# One load run: prints requests/s.
load() { # case url
    local out
    case $1 in
    http1 | https)
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"${SECONDS_RUN}s" "$2")
        awk '/Requests\/sec/ {print $2}' <<<"$out" ;;
    handshake)
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"${SECONDS_RUN}s" -H 'Connection: close' "$2")
        awk '/Requests\/sec/ {print $2}' <<<"$out" ;;
    gzip)
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"${SECONDS_RUN}s" -H 'Accept-Encoding: gzip' "$2")
        awk '/Requests\/sec/ {print $2}' <<<"$out" ;;
    h2 | h2c)
        out=$(taskset -c "$LOAD_CPU" h2load -t1 -c8 -m16 -D"$SECONDS_RUN" "$2" 2>/dev/null)
        awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out" ;;
    esac
}

urls() { # case -> "A-name A-url B-name B-url"
    case $1 in
    http1) echo "nginx http://127.0.0.1:$NG_HTTP/ meshgate http://127.0.0.1:$MG_HTTP/" ;;
    https | handshake) echo "nginx https://127.0.0.1:$NG_HTTPS/ meshgate https://127.0.0.1:$MG_HTTPS/" ;;
    h2) echo "nginx https://127.0.0.1:$NG_HTTPS/ meshgate https://127.0.0.1:$MG_HTTPS/" ;;
    h2c) echo "nginx http://127.0.0.1:$NG_H2C/ meshgate http://127.0.0.1:$MG_HTTP/" ;;
    gzip) echo "meshgate-gzip http://127.0.0.1:$MG_HTTP/text meshgate-plain http://127.0.0.1:$MZ_HTTP/text" ;;
    esac
}

# The gzip case must really compress on one side and not on the other.
enc() { curl -fs -o /dev/null -w '%header{content-encoding}' -H 'Accept-Encoding: gzip' "$1"; }
[[ $(enc "http://127.0.0.1:$MG_HTTP/text") == *gzip* ]] || { echo "protocols.sh: meshgate did not gzip /text" >&2; exit 1; }
[[ $(enc "http://127.0.0.1:$MZ_HTTP/text") != *gzip* ]] || { echo "protocols.sh: --compression off still gzips" >&2; exit 1; }

echo "case       round  A                     B                     B/A   (side by side on CPU $PROXY_CPU, ${SECONDS_RUN}s)"
for c in $CASES; do
    read -r an au bn bu <<<"$(urls "$c")"
    ratios=()
    for ((i = 1; i <= ROUNDS; i++)); do
        load "$c" "$au" >"$RUN/a.out" &
        la=$!
        load "$c" "$bu" >"$RUN/b.out" &
        lb=$!
        wait $la $lb
        a=$(cat "$RUN/a.out") b=$(cat "$RUN/b.out")
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')
        ratios+=("$r")
        printf '%-10s %-6s %-13s %7.0f  %-13s %7.0f  %s\n' "$c" "$i" "$an" "$a" "$bn" "$b" "$r"
    done
    printf '%-10s median %s/%s = %s\n' "$c" "$bn" "$an" \
        "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
done
