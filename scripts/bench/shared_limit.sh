#!/usr/bin/env bash
# What a fleet-wide rate limit costs per request: the same gateway with a MeshRateLimit
# counted per instance and counted in Redis (`meshgate.io/rate-limit-scope: fleet`,
# `--rate-limit-store`), limits high enough never to refuse, measured with wrk in alternating
# rounds (side by side on the same machine). Prints requests/s and p50/p99 latency per round.
#
#   scripts/bench/shared_limit.sh                 # release binary, 3 rounds of 5 s
#   ROUNDS=5 SECONDS_RUN=10 CONNECTIONS=32 scripts/bench/shared_limit.sh
#
# Everything listens on 127.0.0.1 and is stopped on exit. Not part of `cargo test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MESHGATE_BIN:-$ROOT/target/release/meshgate}
ROUNDS=${ROUNDS:-3}
SECONDS_RUN=${SECONDS_RUN:-5}
CONNECTIONS=${CONNECTIONS:-16}
# Below the ephemeral range (32768-60999 here), so no client socket holds a port it needs.
BASE=${PORT_BASE:-24100}
[[ -x $BIN ]] || { echo "shared_limit.sh: no meshgate binary at $BIN" >&2; exit 1; }
for tool in nginx wrk redis-server; do
    command -v $tool >/dev/null || { echo "shared_limit.sh: $tool is needed" >&2; exit 1; }
done

# shellcheck source=lib.sh
source "$ROOT/scripts/bench/lib.sh"
bench_scratch

cat >"$RUN/nginx.conf" <<CONF
worker_processes 1; pid $RUN/nginx.pid; error_log $RUN/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp;
fastcgi_temp_path $RUN/tmp; uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
keepalive_requests 100000000;
server { listen 127.0.0.1:$BASE; location / { return 200 "ok\n"; } } }
CONF
nginx -p "$RUN" -e "$RUN/nginx.err" -c "$RUN/nginx.conf" -g 'daemon off;' &
PIDS+=("$!")
redis-server --port $((BASE + 1)) --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
PIDS+=("$!")

for scope in instance fleet; do
    port=$((BASE + 10)); admin=$((BASE + 20))
    [[ $scope == fleet ]] && { port=$((BASE + 11)); admin=$((BASE + 21)); }
    mkdir -p "$RUN/$scope"
    {
        gateway_policies $port $BASE
        cat <<YAML
---
type: MeshRateLimit
mesh: default
name: limit
labels: {meshgate.io/rate-limit-scope: $scope}
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
  - targetRef: {kind: Mesh}
    default:
      local:
        http:
          requestRate: {num: 1000000000, interval: 1s}
YAML
    } >"$RUN/$scope/policies.yaml"
    "$BIN" --policies "$RUN/$scope" --bind 127.0.0.1 --admin 127.0.0.1:$admin \
        --rate-limit-store redis://127.0.0.1:$((BASE + 1)) >"$RUN/$scope.log" 2>&1 &
    PIDS+=("$!")
done
for admin in $((BASE + 20)) $((BASE + 21)); do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.1; done
done
sleep 1.5 # the store connects within a second of start
curl -fs "http://127.0.0.1:$((BASE + 21))/metrics" | grep -q '^meshgate_rate_limit_store_up 1' ||
    { echo "shared_limit.sh: the fleet gateway is not connected to Redis" >&2; exit 1; }

run() { # scope port
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency "http://127.0.0.1:$2/" |
        awk -v s="$1" '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
            END {printf "%-8s %10s req/s  p50 %8s  p99 %8s\n", s, r, p50, p99}'
}
echo "scope    requests/s        latency (wrk -c$CONNECTIONS, ${SECONDS_RUN}s rounds, alternating)"
for ((i = 0; i < ROUNDS; i++)); do
    run instance $((BASE + 10))
    run fleet $((BASE + 11))
done
curl -fs "http://127.0.0.1:$((BASE + 21))/metrics" | grep -E '^meshgate_rate_limit_store_(up|fallbacks_total) ' || true
