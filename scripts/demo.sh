#!/usr/bin/env bash
# The newcomer's first command: builds meshgate and runs it on the demo configuration
# (conf/policies, see conf/README.md) together with the three demo echo backends.
#
# Usage: scripts/demo.sh
#   MESHGATE_BIND=0.0.0.0 scripts/demo.sh   to listen on every interface (default 127.0.0.1)
#   SKIP_SETUP=1 scripts/demo.sh            to skip the apt check (scripts/setup.sh)
#
# meshgate runs in the foreground with its log on this terminal; Ctrl-C stops everything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BIND="${MESHGATE_BIND:-127.0.0.1}"
ADMIN="127.0.0.1:9901"
BACKENDS=(demo-app:18080 example-v1:18081 example-v2:18082)
# Ports of the demo: listeners (conf/policies/gateway.yaml), backends, admin.
PORTS=(8080 8081 8082 9000 18080 18081 18082 9901)

if [[ "${SKIP_SETUP:-}" != 1 ]]; then
    scripts/setup.sh
fi
# shellcheck source=build/release_flags.sh
source scripts/build/release_flags.sh # the PGO profile, as CI and the benchmark build it
cargo build --release

# A second demo (or anything else) on these ports would make the curls below lie.
busy=()
for port in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        busy+=("$port")
    fi
done
if [[ ${#busy[@]} -gt 0 ]]; then
    echo "demo.sh: ports already in use: ${busy[*]} (another demo running?). Stop it first." >&2
    exit 1
fi

PIDS=()
cleanup() {
    # Only our own processes, by PID: first politely, then for good.
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for spec in "${BACKENDS[@]}"; do
    python3 scripts/lib/echo.py "${spec%%:*}" "${spec##*:}" &
    PIDS+=("$!")
done

target/release/meshgate --policies conf/policies --bind "$BIND" --admin "$ADMIN" &
MG_PID=$!
PIDS+=("$MG_PID")

# Wait (bounded) until meshgate serves, so the commands printed below work right away.
ready=0
for _ in $(seq 1 100); do
    if ! kill -0 "$MG_PID" 2>/dev/null; then
        echo "demo.sh: meshgate exited during startup (see its log above)" >&2
        exit 1
    fi
    if curl -fsS -o /dev/null "http://$ADMIN/ready" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.2
done
if [[ "$ready" -ne 1 ]]; then
    echo "demo.sh: meshgate not ready after 20 s (see its log above)" >&2
    exit 1
fi
# The backends too (a python3 start can take a second), so the first curl is not a 503.
for spec in "${BACKENDS[@]}"; do
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/${spec##*:}") 2>/dev/null && break
        sleep 0.2
    done
done

cat <<EOF

meshgate is serving conf/policies (Ctrl-C stops it and the demo backends). Try:

  curl -i localhost:8080/some/path                        # -> demo-app (PathPrefix /)
  curl -i -H 'Host: bar.example.com' localhost:8081/      # -> demo-app (*.example.com listener)
  curl -i -H 'Host: foo.example.com' localhost:8081/      # -> 404 (foo listener has no route)
  curl -i -H 'Host: dev.example.com' localhost:8082/      # -> example-v2 (to[].hostnames)
  curl -i -H 'Host: www.example.com' localhost:8082/      # -> example-v1 (generic to[])
  curl -s localhost:9000/ -o /dev/null -D - | grep x-backend   # TCP route: example-v1 90 %, example-v2 10 %
  curl -s localhost:9901/config                           # active snapshot (generation, last_error)
  curl -s localhost:9901/metrics | grep '^meshgate_'

Edit a file under conf/policies and watch it apply (generation +1 in /config).

EOF

wait "$MG_PID"
