#!/usr/bin/env bash
# What active health checks cost: meshgate checking ENDPOINTS endpoints (default 1,000) every
# second (MeshHealthCheck, HTTP GET /) against nginx listening on as many ports, side by side
# with the same gateway without the check, both idle otherwise. Prints the CPU each used over
# SECONDS (% of one core) and the checks nginx answered.
#
#   scripts/bench/health_cpu.sh                    # release binary, 1,000 endpoints, 30 s
#   ENDPOINTS=200 SECONDS_RUN=10 scripts/bench/health_cpu.sh
#
# Everything listens on 127.0.0.1 and is stopped on exit. Not part of `cargo test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MESHGATE_BIN:-$ROOT/target/release/meshgate}
ENDPOINTS=${ENDPOINTS:-1000}
SECONDS_RUN=${SECONDS_RUN:-30}
PORT_BASE=${PORT_BASE:-42000}
[[ -x $BIN ]] || { echo "health_cpu.sh: no meshgate binary at $BIN" >&2; exit 1; }
command -v nginx >/dev/null || { echo "health_cpu.sh: nginx is needed" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

RUN=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT

# nginx: one server on ENDPOINTS ports, answering 200; stub_status counts the checks.
mkdir -p "$RUN/tmp"
{
    echo "worker_processes 1; pid $RUN/nginx.pid; error_log $RUN/nginx.err warn;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;"
    echo "fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;"
    echo "keepalive_requests 100000000; keepalive_timeout 300s;"
    echo "server {"
    for ((i = 0; i < ENDPOINTS; i++)); do echo "listen 127.0.0.1:$((PORT_BASE + i));"; done
    echo "listen 127.0.0.1:$((PORT_BASE + ENDPOINTS));"
    echo "location = /__status { stub_status; }"
    echo "location / { return 200 \"ok\\n\"; } } }"
} >"$RUN/nginx.conf"
nginx -p "$RUN" -e "$RUN/nginx.err" -c "$RUN/nginx.conf" -g 'daemon off;' &
PIDS+=("$!")

# Two policy directories: the same gateway and endpoints, with and without the check.
python3 - "$RUN" "$ENDPOINTS" "$PORT_BASE" <<'PY'
import os, sys
run, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, listen in (("with", base + n + 10), ("without", base + n + 11)):
    d = os.path.join(run, name)
    os.makedirs(d)
    open(os.path.join(d, "gateway.yaml"), "w").write(f"""type: MeshGateway
mesh: default
name: hc-gateway
selectors:
- match: {{kuma.io/service: hc-gateway}}
conf:
  listeners:
  - {{port: {listen}, protocol: HTTP}}
---
type: MeshHTTPRoute
name: hc-route
mesh: default
spec:
  targetRef: {{kind: MeshGateway, name: hc-gateway}}
  to:
  - targetRef: {{kind: Mesh}}
    rules:
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      default: {{backendRefs: [{{kind: MeshService, name: hc-target}}]}}
""")
    dps = [f"""type: Dataplane
mesh: default
name: dp-{i}
networking:
  address: 127.0.0.1
  inbound:
  - port: {base + i}
    tags: {{kuma.io/service: hc-target, kuma.io/protocol: http}}
""" for i in range(n)]
    open(os.path.join(d, "dataplanes.yaml"), "w").write("---\n".join(dps))
    if name == "with":
        open(os.path.join(d, "health.yaml"), "w").write("""type: MeshHealthCheck
name: hc
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {interval: 1s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 1, http: {path: /}}
""")
PY

declare -A PID ADMIN=([with]=$((PORT_BASE + ENDPOINTS + 20)) [without]=$((PORT_BASE + ENDPOINTS + 21)))
for name in with without; do
    "$BIN" --policies "$RUN/$name" --bind 127.0.0.1 --admin "127.0.0.1:${ADMIN[$name]}" \
        --access-log off >"$RUN/$name.log" 2>&1 &
    PID[$name]=$!
    PIDS+=("$!")
done
for name in with without; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:${ADMIN[$name]}/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
done
sleep 3 # the first round of checks (initial jitter 0) and connection set-up

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status() { curl -fs "http://127.0.0.1:$((PORT_BASE + ENDPOINTS))/__status" | awk 'NR==3 {print $3}'; }
declare -A T0
for name in with without; do T0[$name]=$(ticks "${PID[$name]}"); done
R0=$(status)
sleep "$SECONDS_RUN"
R1=$(status)
ACC=$(curl -fs "http://127.0.0.1:$((PORT_BASE + ENDPOINTS))/__status" | awk 'NR==3 {print $1}')
HZ=$(getconf CLK_TCK)
echo "| gateway | endpoints | CPU over ${SECONDS_RUN} s (% of one core) |"
echo "|---|---|---|"
for name in with without; do
    t1=$(ticks "${PID[$name]}")
    pct=$(python3 -c "print(f'{($t1 - ${T0[$name]}) / $HZ / $SECONDS_RUN * 100:.2f}')")
    echo "| $name health check | $ENDPOINTS | $pct |"
done
echo
echo "checks answered by nginx: $((R1 - R0)) in ${SECONDS_RUN} s ($(((R1 - R0) / SECONDS_RUN))/s), connections accepted in all: $ACC"
unhealthy=$(curl -fs "http://127.0.0.1:${ADMIN[with]}/config" | grep -o '"health":"unhealthy"' | wc -l || true)
echo "endpoints marked unhealthy: $unhealthy"
