#!/usr/bin/env bash
# CPU per request against nginx at several loads: meshgate with 10,000 rules and nginx, each
# alone on PROXY_CPU, wrk and the backend on LOAD_CPU, with 4, 8 and 32 client connections.
#
#   scripts/bench/load_points.sh                        # release binary, 3 rounds of 6 s
#   CONNS_LIST="8 32" ROUNDS=5 scripts/bench/load_points.sh
#   FLOOR=1 scripts/bench/load_points.sh                # also the tokio floor (below)
#
# Why several loads: much of a proxy's system CPU per request is waking its peers (a `send` on
# loopback wakes the reader, on the sender's time) and sleeping and waking itself, and a
# wake-up costs more when the CPU woken is idle. So one figure at one load mixes the proxy's
# own cost with how idle it and its load generator are: with 32 connections nginx keeps the
# load CPU ~98 % busy and meshgate, slower, leaves it ~18 % idle, which is most of meshgate's
# extra ~1 µs of system CPU per request (both make the same system calls and TCP segments per
# request: strace, nstat; BENCHMARKS.md). The idle share of LOAD_CPU is printed beside each
# figure for that reason.
#
# Prints, per connection count, the median requests/s, user + system CPU µs per request and
# LOAD_CPU's idle share of each proxy, and meshgate ÷ nginx. Runs alternate (nginx, meshgate,
# nginx, ...) and are never side by side: a neighbour would change the idle share being
# measured. Everything listens on 127.0.0.1 and is stopped on exit. Not part of `cargo test`.
#
# FLOOR=1 adds a third proxy to the alternation: examples/tokio_floor.rs, the least an HTTP/1.1
# keep-alive proxy on tokio can do per request (it forwards the bytes of each head untouched,
# one upstream connection per client connection; `cargo build --release --example
# tokio_floor`). Its ratio to nginx bounds what any gateway on tokio, Pingora's included, can
# reach on this machine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MESHGATE_BIN:-$ROOT/target/release/meshgate}
ROUNDS=${ROUNDS:-3}
SECONDS_RUN=${SECONDS_RUN:-6}
CONNS_LIST=${CONNS_LIST:-4 8 32}
RULES=${RULES:-10000}
BASE=${PORT_BASE:-24400}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
FLOOR=${FLOOR:-0}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/target/release/examples/tokio_floor}
[[ -x $BIN ]] || { echo "load_points.sh: no meshgate binary at $BIN" >&2; exit 1; }
[[ $FLOOR == 0 || -x $FLOOR_BIN ]] || {
    echo "load_points.sh: FLOOR=1 needs $FLOOR_BIN (cargo build --release --example tokio_floor)" >&2
    exit 1
}
for tool in nginx wrk taskset curl python3; do
    command -v $tool >/dev/null || { echo "load_points.sh: $tool is needed (scripts/setup.sh)" >&2; exit 1; }
done

# shellcheck source=lib.sh
source "$ROOT/scripts/bench/lib.sh"
bench_scratch

BACKEND=$BASE NG=$((BASE + 1)) MG=$((BASE + 2)) MG_ADMIN=$((BASE + 3)) FL=$((BASE + 4))
HOST=bench.example.com REQ_PATH=/bench/target

# The backend and nginx as the gateway, from the templates scripts/bench.sh uses.
render() { # TEMPLATE OUT
    sed -e "s|@RUN_DIR@|$RUN|g" -e "s|@BACKEND_PORT@|$BACKEND|g" -e "s|@PROXY_PORT@|$NG|g" \
        -e "s|@NAME@|mg|g" "$ROOT/scripts/bench/$1" >"$RUN/$2"
}
mkdir -p "$RUN"/{backend,proxy}-tmp/{body,proxy,fastcgi,uwsgi,scgi}
render backend.nginx.conf.in backend.conf
render proxy.nginx.conf.in proxy.conf
render meshgate.pingora.yaml.in mg.yaml
taskset -c "$LOAD_CPU" nginx -p "$RUN" -e "$RUN/backend.err" -c "$RUN/backend.conf" -g 'daemon off;' &
PIDS+=("$!")
taskset -c "$PROXY_CPU" nginx -p "$RUN" -e "$RUN/proxy.err" -c "$RUN/proxy.conf" -g 'daemon off;' &
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")

python3 "$ROOT/scripts/bench/gen_routes.py" --rules "$RULES" --out "$RUN/policies" --port "$MG" \
    --backend "127.0.0.1:$BACKEND" >/dev/null 2>&1
taskset -c "$PROXY_CPU" "$BIN" --policies "$RUN/policies" --bind 127.0.0.1 \
    --admin "127.0.0.1:$MG_ADMIN" -c "$RUN/mg.yaml" >"$RUN/mg.log" 2>&1 &
MG_PID=$!
PIDS+=("$MG_PID")
if [[ $FLOOR != 0 ]]; then
    taskset -c "$PROXY_CPU" "$FLOOR_BIN" --listen "127.0.0.1:$FL" --upstream "127.0.0.1:$BACKEND" \
        >"$RUN/floor.log" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
fi

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:$1$REQ_PATH") == 200 ]]; }
all_ready() { ready "$NG" && ready "$MG" && { [[ $FLOOR == 0 ]] || ready "$FL"; }; }
for ((i = 0; i < 600; i++)); do
    all_ready && break
    kill -0 "$MG_PID" 2>/dev/null || { echo "load_points.sh: meshgate exited: $(tail -3 "$RUN/mg.log")" >&2; exit 1; }
    sleep 0.2
done
all_ready || { echo "load_points.sh: the proxies did not answer 200" >&2; exit 1; }
# nginx's CPU is its worker's (the master only waits).
NG_WORKER=$(tr -d ' ' <"/proc/$NGINX_MASTER/task/$NGINX_MASTER/children")

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }   # user, system (all threads)
load_idle() { awk -v c="cpu$LOAD_CPU" '$1 == c {print $5 + $6}' /proc/stat; } # idle + iowait

# run NAME PID PORT CONNS ROUND: one measured run, a row in $RUN/rows.tsv
run() {
    local u0 s0 u1 s1 i0 i1 out n
    taskset -c "$LOAD_CPU" wrk -t1 -c"$4" -d1s -H "Host: $HOST" "http://127.0.0.1:$3$REQ_PATH" >/dev/null
    read -r u0 s0 < <(ticks "$2")
    i0=$(load_idle)
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$4" -d"${SECONDS_RUN}s" -H "Host: $HOST" "http://127.0.0.1:$3$REQ_PATH")
    i1=$(load_idle)
    read -r u1 s1 < <(ticks "$2")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    # A run with failed requests measures failing, not proxying.
    grep -Eq 'Non-2xx|Socket errors' <<<"$out" && { echo "load_points.sh: $1 failed requests: $out" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$4" "$5" "$n" "$((u1 - u0))" "$((s1 - s0))" "$((i1 - i0))" >>"$RUN/rows.tsv"
}

for conns in $CONNS_LIST; do
    for ((round = 1; round <= ROUNDS; round++)); do
        run nginx "$NG_WORKER" "$NG" "$conns" "$round"
        run meshgate "$MG_PID" "$MG" "$conns" "$round"
        [[ $FLOOR == 0 ]] || run floor "$FLOOR_PID" "$FL" "$conns" "$round"
    done
done

python3 - "$RUN/rows.tsv" "$SECONDS_RUN" "$(getconf CLK_TCK)" "$RULES" <<'PY'
import collections, statistics, sys
rows, secs, tck, rules = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = collections.defaultdict(list)  # (conns, proxy) -> [(rps, user_us, sys_us, idle_pct)]
rounds = collections.defaultdict(dict)  # (conns, round) -> proxy -> total µs
for line in open(rows):
    proxy, conns, rnd, n, u, s, idle = line.split("\t")
    n, u, s, idle = int(n), int(u), int(s), int(idle)
    user_us, sys_us = u * 1e6 / tck / n, s * 1e6 / tck / n
    runs[(int(conns), proxy)].append((n / secs, user_us, sys_us, 100 * idle / (secs * tck)))
    rounds[(int(conns), rnd)][proxy] = (n / secs, user_us + sys_us)
med = statistics.median
proxies = [p for p in ("nginx", "meshgate", "floor") if any(k[1] == p for k in runs)]
print(f"meshgate ({rules} rules), nginx{' and the tokio floor' if 'floor' in proxies else ''},"
      " each alone; medians of the rounds")
print(f"{'conns':>5}  {'proxy':<8} {'req/s':>8} {'user+sys µs/req':>16} {'load CPU idle':>13}")
for conns in sorted({c for c, _ in runs}):
    for proxy in proxies:
        r = runs[(conns, proxy)]
        u, s = med([x[1] for x in r]), med([x[2] for x in r])
        print(f"{conns:>5}  {proxy:<8} {med([x[0] for x in r]):>8.0f} {u:>7.2f} + {s:<6.2f} {med([x[3] for x in r]):>12.1f}%")
    rounds_here = [v for (c, _), v in rounds.items() if c == conns and len(v) == len(proxies)]
    for proxy in proxies[1:]:
        rps = [r[proxy][0] / r["nginx"][0] for r in rounds_here]
        cpu = [r[proxy][1] / r["nginx"][1] for r in rounds_here]
        print(f"{conns:>5}  {proxy} ÷ nginx: req/s {med(rps):.2f} ({min(rps):.2f}-{max(rps):.2f}),"
              f" CPU per request {med(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})")
PY
