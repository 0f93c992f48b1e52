#!/usr/bin/env bash
# curl smoke tests of the demo configuration (conf/policies, see README):
# starts the three echo backends and meshgate on conf/policies, then curls every example
# route, host and listener, the TCP listener, and the admin endpoints; checks status codes,
# the answering backend (x-backend) and `server: Kuma Gateway`.
# Prints one line per check and `N passed, M failed`; exits non-zero on any failure.
# Cleans up its own processes by PID.
#
# Usage: scripts/ops/smoke.sh [--bin PATH] [--policies DIR] [--admin-port N]
#   --admin-port  admin port to use (default 19901, not the default 9901, so a meshgate
#                 someone runs by hand does not collide)
# Needs: curl (installed via scripts/setup.sh or apt-get if missing), python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/target/release/meshgate"
POLICIES="$ROOT/conf/policies"
ADMIN_PORT=19901
while [[ $# -gt 0 ]]; do
    case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --policies) POLICIES="$2"; shift 2 ;;
    --admin-port) ADMIN_PORT="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "smoke.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

[[ -x "$BIN" ]] || { echo "smoke.sh: no meshgate binary at $BIN (cargo build --release)" >&2; exit 2; }
[[ -d "$POLICIES" ]] || { echo "smoke.sh: no policy directory $POLICIES" >&2; exit 2; }
if ! command -v curl >/dev/null 2>&1; then
    # A fresh CI machine has no curl: scripts/setup.sh installs tools; apt-get as fallback.
    if [[ -x "$ROOT/scripts/setup.sh" ]]; then "$ROOT/scripts/setup.sh" curl >&2 || true; fi
    if ! command -v curl >/dev/null 2>&1; then
        SUDO=""
        [[ "$(id -u)" -eq 0 ]] || SUDO="sudo"
        $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl >&2
    fi
fi

# The demo layout (README): listeners 8080-8082 HTTP, 9000 TCP; backends on 18080-18082.
DEMO_PORTS=(8080 8081 8082 9000 18080 18081 18082)
if ! busy="$(python3 "$ROOT/scripts/lib/mgtest.py" ports-free "${DEMO_PORTS[@]}" "$ADMIN_PORT")"; then
    echo "smoke.sh: demo ports busy ($busy): stop whatever uses them (a running demo?) first" >&2
    exit 2
fi

T="$(mktemp -d -t meshgate-smoke.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ECHO="$ROOT/scripts/lib/echo.py"
for spec in demo-app:18080 example-v1:18081 example-v2:18082; do
    python3 "$ECHO" "${spec%%:*}" "${spec##*:}" >"$T/${spec%%:*}.log" 2>&1 &
    PIDS+=("$!")
done

ADMIN="http://127.0.0.1:$ADMIN_PORT"
"$BIN" --policies "$POLICIES" --bind 127.0.0.1 --admin "127.0.0.1:$ADMIN_PORT" >"$T/meshgate.log" 2>&1 &
MG_PID=$!
PIDS+=("$MG_PID")
if ! python3 "$ROOT/scripts/lib/mgtest.py" wait-http "$ADMIN/ready" 200 20; then
    echo "smoke.sh: meshgate did not become ready; its log:" >&2
    tail -n 40 "$T/meshgate.log" >&2
    exit 1
fi
for port in 18080 18081 18082; do # backends up too
    python3 "$ROOT/scripts/lib/mgtest.py" wait-http "http://127.0.0.1:$port/" 200 10
done

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; }

# expect NAME STATUS BACKEND(-|name) URL [curl args...]
# One request; checks status, the x-backend header (- = none expected) and server: Kuma Gateway.
expect() {
    local name="$1" want_status="$2" want_backend="$3" url="$4"
    shift 4
    local status backend server
    status="$(curl -sS -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 5 "$@" "$url" 2>"$T/curl.err")" || status="curl-error:$(tr -d '\n' <"$T/curl.err")"
    backend="$(tr -d '\r' <"$T/headers" 2>/dev/null | sed -n 's/^[Xx]-[Bb]ackend: *//p' | tail -n1)"
    server="$(tr -d '\r' <"$T/headers" 2>/dev/null | sed -n 's/^[Ss]erver: *//p' | tail -n1)"
    local got="status $status, backend ${backend:--}, server ${server:--}"
    if [[ "$status" == "$want_status" && "${backend:--}" == "$want_backend" && "$server" == "Kuma Gateway" ]]; then
        ok "$name ($got)"
    else
        bad "$name: want status $want_status backend $want_backend server Kuma Gateway; got $got"
    fi
}
# body_has NAME JSON_FIELD VALUE: the echo backend's view of the last request
body_has() {
    local v
    v="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' "$T/body" "$2" 2>/dev/null || echo '?')"
    if [[ "$v" == "$3" ]]; then ok "$1 (backend saw $2=$v)"; else bad "$1: backend saw $2=$v, want $3"; fi
}

echo "== 8080: demo-app-route (PathPrefix / -> demo-app)"
expect "8080 GET /" 200 demo-app "http://127.0.0.1:8080/"
expect "8080 GET /some/deep/path?x=1&y=2" 200 demo-app "http://127.0.0.1:8080/some/deep/path?x=1&y=2"
body_has "8080 path and query forwarded unchanged" path "/some/deep/path?x=1&y=2"
expect "8080 POST /submit" 200 demo-app "http://127.0.0.1:8080/submit" -X POST --data hello
body_has "8080 POST forwarded as POST" method POST
expect "8080 any Host" 200 demo-app "http://127.0.0.1:8080/" -H "Host: anything.example"
body_has "8080 Host forwarded" host anything.example

echo "== 8081: foo.example.com (no routes) and *.example.com (wild-route -> demo-app)"
expect "8081 bar.example.com -> demo-app" 200 demo-app "http://127.0.0.1:8081/" -H "Host: bar.example.com"
expect "8081 baz.example.com:8081 (port ignored) -> demo-app" 200 demo-app "http://127.0.0.1:8081/x" -H "Host: baz.example.com:8081"
expect "8081 foo.example.com -> 404 (more specific listener, no route)" 404 - "http://127.0.0.1:8081/" -H "Host: foo.example.com"
expect "8081 example.org -> 404 (no listener hostname)" 404 - "http://127.0.0.1:8081/" -H "Host: example.org"

echo "== 8082: example-route (generic -> example-v1, dev.example.com -> example-v2)"
expect "8082 any host -> example-v1" 200 example-v1 "http://127.0.0.1:8082/" -H "Host: www.example.com"
expect "8082 dev.example.com -> example-v2" 200 example-v2 "http://127.0.0.1:8082/" -H "Host: dev.example.com"
expect "8082 dev.example.com deep path -> example-v2" 200 example-v2 "http://127.0.0.1:8082/a/b" -H "Host: dev.example.com"

echo "== 9000: tcp-route (example-v1 weight 90, example-v2 weight 10)"
v1=0
v2=0
other=0
for _ in $(seq 1 40); do
    b="$(curl -s -o /dev/null -D - --max-time 5 http://127.0.0.1:9000/ 2>/dev/null | tr -d '\r' | sed -n 's/^[Xx]-[Bb]ackend: *//p')" || b=""
    case "$b" in
    example-v1) v1=$((v1 + 1)) ;;
    example-v2) v2=$((v2 + 1)) ;;
    *) other=$((other + 1)) ;;
    esac
done
# 40 connections at 90/10: v1 > v2 fails with negligible probability.
if [[ "$other" -eq 0 && "$v1" -gt "$v2" ]]; then
    ok "9000 TCP: 40 connections answered by example-v1 ($v1) / example-v2 ($v2)"
else
    bad "9000 TCP: example-v1 $v1, example-v2 $v2, failed/other $other (want all answered, v1 > v2)"
fi

if grep -Rqs -- 'port: 8443' "$POLICIES"; then
    echo "== 8443: HTTPS listener"
    code="$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 https://127.0.0.1:8443/ 2>/dev/null)" || code=000
    if [[ "$code" =~ ^[2-4][0-9][0-9]$ ]]; then ok "8443 TLS handshake and HTTP answer ($code)"; else bad "8443 HTTPS: got $code"; fi
fi

echo "== admin 127.0.0.1:$ADMIN_PORT"
code="$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/ready")" || code=000
if [[ "$code" == 200 ]]; then ok "/ready 200"; else bad "/ready: $code"; fi
if curl -sf "$ADMIN/config" -o "$T/config" &&
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if isinstance(c.get("generation"), int) and c["generation"] >= 1 and c.get("last_error") is None else 1)' "$T/config"; then
    ok "/config: generation $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' "$T/config"), last_error null"
else
    bad "/config: want JSON with integer generation >= 1 and last_error null; got $(head -c 200 "$T/config" 2>/dev/null)"
fi
if curl -sf "$ADMIN/metrics" -o "$T/metrics" -D "$T/mh"; then
    missing=""
    for m in meshgate_http_requests_total meshgate_config_generation meshgate_build_info; do
        grep -q "^$m" "$T/metrics" || missing="$missing $m"
    done
    if [[ -z "$missing" ]] && grep -qi '^content-type: text/plain' "$T/mh"; then
        ok "/metrics: Prometheus text with meshgate_http_requests_total, _config_generation, _build_info"
    else
        bad "/metrics: missing:${missing:- none}; content-type: $(grep -i '^content-type' "$T/mh" | tr -d '\r')"
    fi
else
    bad "/metrics: request failed"
fi
if kill -0 "$MG_PID" 2>/dev/null; then ok "meshgate still running"; else bad "meshgate exited"; fi

if [[ "$failed" -ne 0 ]]; then
    echo "---- meshgate log (last 20 lines)"
    tail -n 20 "$T/meshgate.log"
fi
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
