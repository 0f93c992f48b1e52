#!/usr/bin/env bash
# Zero-downtime tests under load (issue 4 item 2):
#
#  upgrade  While keep-alive clients (and some connection-per-request clients) send
#           requests, start a new meshgate with -u, wait for its upgrade socket, SIGQUIT
#           the old one, keep loading until the old process has exited. Asserts:
#           0 failed requests, 0 refused/failed connections (no client retries: the
#           load client never retries, it only reconnects after `Connection: close`),
#           the old process exited 0 within CLOSE_TIMEOUT (5 s) + grace + shutdown
#           timeout (+2 s margin), and the new process serves.
#  reload   While loading, rewrite the route file 20 times (temp file + rename, each
#           rewrite moves / to the other backend); waits for /config.generation to
#           advance once per rewrite. Asserts: 0 failed requests, generation advanced
#           exactly 20, last_error null, and both backends answered under load.
#  unit     The systemd unit's own command lines (conf/systemd/meshgate.service, paths
#           mapped to this test's temp dir; systemd itself is not needed): ExecStartPre,
#           ExecStart (-d), then under load ExecReload (--check, -d -u, kill -QUIT
#           $MAINPID). Asserts: a broken policy or a failing new binary fails the reload
#           and leaves the old daemon serving; the real reload has 0 failed requests, the
#           pid file names the new daemon, the old one exits; SIGTERM (systemctl stop)
#           ends the daemon within grace + shutdown timeout.
#
# Usage: scripts/ops/upgrade_test.sh [--bin PATH] [--only upgrade|reload|unit] [--rounds N] [-v]
# Bounded: every wait has a deadline; the whole run takes well under 2 minutes.
# Needs python3 only (stdlib helpers in scripts/lib). Cleans up its processes by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/scripts/lib"
BIN="$ROOT/target/release/meshgate"
ONLY=""
ROUNDS=1
VERBOSE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    -v | --verbose) VERBOSE=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "upgrade_test.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x "$BIN" ]] || { echo "upgrade_test.sh: no meshgate binary at $BIN (cargo build --release)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "upgrade_test.sh: python3 is required" >&2; exit 2; }

# Short timings keep the test bounded; CLOSE_TIMEOUT is Pingora's hard-coded 5 s.
GRACE=3
SHUTDOWN=2
CLOSE_TIMEOUT=5
LOAD_THREADS=16
CLOSE_THREADS=4
RELOADS=20

T="$(mktemp -d -t meshgate-upgrade.XXXXXX)"
chmod 0700 "$T" # private: the upgrade socket lives here (never a shared /tmp path)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.3
    # A meshgate inside its grace period ignores SIGTERM: make sure it goes.
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; }
say() { printf '..    %s\n' "$*"; }
mg() { python3 "$LIB/mgtest.py" "$@"; }
show_logs() {
    local f
    for f in "$T"/*.log; do
        [[ -f "$f" ]] || continue
        echo "---- $(basename "$f") (last 30 lines)"
        tail -n 30 "$f"
    done
}

read -r LPORT ADMIN BPORT_A BPORT_B < <(mg free-ports 4)

# --- echo backends ------------------------------------------------------------
ECHO="$LIB/echo.py"
python3 "$ECHO" echo-a "$BPORT_A" >"$T/echo-a.log" 2>&1 &
PIDS+=("$!")
python3 "$ECHO" echo-b "$BPORT_B" >"$T/echo-b.log" 2>&1 &
PIDS+=("$!")

# --- policies -----------------------------------------------------------------
P="$T/policies"
mkdir -p "$P"
cat >"$P/gateway.yaml" <<YAML
type: MeshGateway
mesh: default
name: edge-gateway
selectors:
- match:
    kuma.io/service: edge-gateway
conf:
  listeners:
  - port: $LPORT
    protocol: HTTP
    tags:
      port: http-load
---
type: Dataplane
mesh: default
name: edge-gateway-1
networking:
  address: 127.0.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge-gateway
YAML
cat >"$P/dataplanes.yaml" <<YAML
type: Dataplane
mesh: default
name: echo-a-1
networking:
  address: 127.0.0.1
  inbound:
  - port: $BPORT_A
    tags:
      kuma.io/service: echo-a
      kuma.io/protocol: http
---
type: Dataplane
mesh: default
name: echo-b-1
networking:
  address: 127.0.0.1
  inbound:
  - port: $BPORT_B
    tags:
      kuma.io/service: echo-b
      kuma.io/protocol: http
YAML
# write_route N BACKEND: the route file, rewritten atomically (temp + rename) so the
# watcher never sees a half-written file. N makes every version distinct.
write_route() {
    cat >"$P/.route.yaml.tmp" <<YAML
# version $1
type: MeshHTTPRoute
name: load-route
mesh: default
spec:
  targetRef:
    kind: MeshGateway
    name: edge-gateway
  to:
  - targetRef:
      kind: Mesh
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /
      default:
        backendRefs:
        - kind: MeshService
          name: $2
    - matches:
      - path:
          type: PathPrefix
          value: /version-$1
      default:
        backendRefs:
        - kind: MeshService
          name: $2
YAML
    mv -f "$P/.route.yaml.tmp" "$P/route.yaml"
}
write_route 0 echo-a

cat >"$T/pingora.yaml" <<YAML
version: 1
threads: 2
work_stealing: false
pid_file: $T/meshgate.pid
upgrade_sock: $T/upgrade.sock
grace_period_seconds: $GRACE
graceful_shutdown_timeout_seconds: $SHUTDOWN
upstream_keepalive_pool_size: 256
YAML

if ! "$BIN" --policies "$P" --check >"$T/check.log" 2>&1; then
    bad "test policies pass --check"
    cat "$T/check.log"
    exit 1
fi

# start_meshgate NAME [-u]: foreground process (the container form of an upgrade).
start_meshgate() {
    local name="$1"; shift
    RUST_LOG="${RUST_LOG:-info}" "$BIN" --policies "$P" --bind 127.0.0.1 --admin "127.0.0.1:$ADMIN" \
        -c "$T/pingora.yaml" "$@" >"$T/$name.log" 2>&1 &
    MG_PID=$!
    PIDS+=("$MG_PID")
}

# run_load NAME SECONDS [extra loadgen args]: background load, summary in $T/NAME.json.
run_load() {
    local name="$1" secs="$2"; shift 2
    rm -f "$T/stop" "$T/load-ready"
    python3 "$LIB/loadgen.py" --port "$LPORT" --threads "$LOAD_THREADS" --close-threads "$CLOSE_THREADS" \
        --duration "$secs" --stop-file "$T/stop" --ready-file "$T/load-ready" "$@" \
        >"$T/$name.json" 2>"$T/$name.err" &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
    mg wait-path "$T/load-ready" 10 || true
}
stop_load() { # stop_load NAME -> prints the summary
    touch "$T/stop"
    wait "$LOAD_PID" || true
    [[ "$VERBOSE" -eq 1 ]] && cat "$T/$1.json"
    return 0
}
# alive PID: running and not a zombie (our own children stay zombies until reaped;
# /proc instead of ps, which a slim CI image may lack).
alive() { [[ -r "/proc/$1/stat" ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
assert_load() { # assert_load NAME LABEL
    local f="$T/$1.json" req okc fl rf ce rc
    if [[ ! -s "$f" ]]; then
        bad "$2: load client produced no summary"
        cat "$T/$1.err" 2>/dev/null || true
        return
    fi
    req="$(field "$f" requests)"; okc="$(field "$f" ok)"; fl="$(field "$f" failed)"
    rf="$(field "$f" refused)"; ce="$(field "$f" connect_errors)"; rc="$(field "$f" reconnects)"
    say "$2: $req requests, $okc ok, $fl failed, $rf refused, $ce connect errors, $rc reconnects after Connection: close"
    if [[ "$okc" -gt 0 && "$fl" -eq 0 ]]; then ok "$2: 0 failed requests ($okc ok)"; else bad "$2: $fl failed requests"; fi
    if [[ "$rf" -eq 0 && "$ce" -eq 0 ]]; then ok "$2: 0 refused connections"; else bad "$2: $rf refused, $ce connect errors"; fi
    if [[ "$fl" -ne 0 || "$rf" -ne 0 || "$ce" -ne 0 ]]; then
        python3 -c 'import json,sys; [print("      " + e) for e in json.load(open(sys.argv[1]))["errors"][:8]]' "$f"
    fi
}

# --- start ------------------------------------------------------------------------
start_meshgate old
CUR_PID=$MG_PID
if ! mg wait-http "http://127.0.0.1:$ADMIN/ready" 200 20; then
    bad "meshgate became ready"
    show_logs
    exit 1
fi
if [[ "$(mg get "http://127.0.0.1:$LPORT/")" == "200 echo-a" ]]; then
    ok "meshgate routes / to echo-a before the test"
else
    bad "meshgate routes / to echo-a before the test (got: $(mg get "http://127.0.0.1:$LPORT/"))"
    show_logs
    exit 1
fi

# --- upgrade under load -------------------------------------------------------------
if [[ -z "$ONLY" || "$ONLY" == upgrade ]]; then
    for round in $(seq 1 "$ROUNDS"); do
        label="upgrade $round"
        run_load "upgrade$round" 60 --expect-backend echo-a
        sleep 1.5
        rm -f "$T/upgrade.sock"
        start_meshgate "new$round" -u
        NEW_PID=$MG_PID
        # The new process binds the upgrade socket during its bootstrap, then waits
        # up to ~6 s for the old one to connect.
        if ! mg wait-path "$T/upgrade.sock" 10; then
            bad "$label: new process created its upgrade socket"
            stop_load "upgrade$round"
            show_logs
            exit 1
        fi
        t_quit=$(date +%s.%N)
        kill -QUIT "$CUR_PID"
        # Old lives ~ CLOSE_TIMEOUT + grace (+ <= shutdown timeout) after SIGQUIT.
        limit=$((CLOSE_TIMEOUT + GRACE + SHUTDOWN + 2))
        deadline=$((SECONDS + limit + 5))
        while alive "$CUR_PID" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        t_exit=$(date +%s.%N)
        old_status=0
        if alive "$CUR_PID"; then
            old_status=alive
        else
            wait "$CUR_PID" || old_status=$?
        fi
        took=$(python3 -c "print(round($t_exit - $t_quit, 1))")
        sleep 1 # keep loading on the new process alone
        stop_load "upgrade$round"
        assert_load "upgrade$round" "$label"
        if [[ "$old_status" == alive ]]; then
            bad "$label: old process still alive ${took}s after SIGQUIT (limit ${limit}s)"
        elif python3 -c "import sys; sys.exit(0 if $took <= $limit else 1)"; then
            ok "$label: old process exited ${took}s after SIGQUIT (limit ${CLOSE_TIMEOUT}+${GRACE}+${SHUTDOWN}+2 = ${limit}s)"
        else
            bad "$label: old process exited ${took}s after SIGQUIT, limit ${limit}s"
        fi
        if [[ "$old_status" == 0 ]]; then ok "$label: old process exit status 0"; else bad "$label: old process exit status $old_status"; fi
        if alive "$NEW_PID" && [[ "$(mg get "http://127.0.0.1:$LPORT/")" == "200 echo-a" ]] &&
            mg wait-http "http://127.0.0.1:$ADMIN/ready" 200 2; then
            ok "$label: new process (pid $NEW_PID) serves traffic and /ready"
        else
            bad "$label: new process (pid $NEW_PID) serves traffic and /ready"
            show_logs
            exit 1
        fi
        CUR_PID=$NEW_PID
    done
fi

# --- reload under load -----------------------------------------------------------------
if [[ -z "$ONLY" || "$ONLY" == reload ]]; then
    CONFIG="http://127.0.0.1:$ADMIN/config"
    gen0="$(mg json "$CONFIG" generation)"
    run_load reload 60
    backend=echo-a
    applied=0
    for i in $(seq 1 "$RELOADS"); do
        if [[ "$backend" == echo-a ]]; then backend=echo-b; else backend=echo-a; fi
        write_route "$i" "$backend"
        # One apply per rewrite: wait for it before the next one (the watcher
        # debounces, so faster rewrites would legitimately merge).
        if mg wait-json "$CONFIG" generation "$((gen0 + i))" 5; then
            applied=$((applied + 1))
        else
            break
        fi
        sleep 0.2
    done
    sleep 0.5
    stop_load reload
    gen1="$(mg json "$CONFIG" generation)"
    last_error="$(mg json "$CONFIG" last_error)"
    assert_load reload "reload under load"
    if [[ "$applied" -eq "$RELOADS" && "$gen1" -eq "$((gen0 + RELOADS))" ]]; then
        ok "reload: generation advanced $RELOADS times ($gen0 -> $gen1)"
    else
        bad "reload: generation advanced $((gen1 - gen0)) times, $applied rewrites applied in time (want $RELOADS)"
    fi
    if [[ "$last_error" == None ]]; then ok "reload: last_error is null"; else bad "reload: last_error = $last_error"; fi
    backends="$(field "$T/reload.json" backends)"
    if [[ "$backends" == *echo-a* && "$backends" == *echo-b* ]]; then
        ok "reload: both backends answered under load ($backends)"
    else
        bad "reload: rewrites took effect under load (backends seen: $backends)"
    fi
    if alive "$CUR_PID"; then ok "reload: same process kept serving (no restart)"; else bad "reload: process died"; fi
fi

# --- the unit's Exec lines, daemonized ------------------------------------------------------
UNIT="$ROOT/conf/systemd/meshgate.service"
if [[ -z "$ONLY" || "$ONLY" == unit ]] && [[ -f "$UNIT" ]]; then
    # Free the ports: the foreground process stops (SIGINT = fast stop).
    if alive "$CUR_PID"; then
        kill -INT "$CUR_PID"
        wait "$CUR_PID" 2>/dev/null || true
    fi
    {
        cat "$T/pingora.yaml"
        echo "daemon_wait_for_ready: true"
        echo "daemon_ready_timeout_seconds: 20"
    } >"$T/pingora-d.yaml"
    # unit_line KEY N [BINARY]: the N-th (0-based) KEY= line of the unit, with the installed
    # paths mapped to this test's and systemd's specifiers resolved ($$ -> $, $MAINPID).
    unit_line() {
        local bin="${3:-$BIN}"
        grep -E "^$1=" "$UNIT" | sed -n "$(($2 + 1))p" | cut -d= -f2- |
            sed -e "s#/usr/local/bin/meshgate#$bin#g" -e "s#/etc/meshgate/policies#$P#g" \
                -e "s#/etc/meshgate/pingora.yaml#$T/pingora-d.yaml#g" \
                -e "s#\\\$MESHGATE_ARGS#--bind 127.0.0.1 --admin 127.0.0.1:$ADMIN#g" \
                -e "s#\\\$MAINPID#${MAINPID:-MAINPID-unset}#g" -e 's#\$\$#$#g'
    }
    run_unit_line() { # run_unit_line LABEL KEY N [BINARY] -> exit status of the line
        local cmd
        cmd="$(unit_line "$2" "$3" "${4:-}")"
        [[ "$VERBOSE" -eq 1 ]] && say "$1: $cmd"
        timeout 30 bash -c "$cmd" >>"$T/unit.log" 2>&1
    }
    daemon_pid() { tr -dc '0-9' <"$T/meshgate.pid" 2>/dev/null; }

    if run_unit_line ExecStartPre ExecStartPre 0; then ok "unit: ExecStartPre (--check) passes"; else bad "unit: ExecStartPre (--check) passes"; fi
    if run_unit_line ExecStart ExecStart 0 && MAINPID="$(daemon_pid)" && [[ -n "$MAINPID" ]] && alive "$MAINPID" &&
        mg wait-http "http://127.0.0.1:$ADMIN/ready" 200 10; then
        PIDS+=("$MAINPID")
        ok "unit: ExecStart (-d) returns once ready; pid file names live daemon $MAINPID"
    else
        bad "unit: ExecStart (-d) returns once ready with a pid file"
        show_logs
        echo "$passed passed, $failed failed"
        exit 1
    fi

    # A broken policy set: ExecReload's first line must fail, so nothing else runs.
    printf 'type: MeshHTTPRoute\nname: broken\nmesh: default\nspec: {to: 17}\n' >"$P/.broken.tmp"
    mv "$P/.broken.tmp" "$P/zz-broken.yaml"
    if ! run_unit_line "ExecReload[0]" ExecReload 0 && alive "$MAINPID" &&
        [[ "$(mg get "http://127.0.0.1:$LPORT/")" == 200* ]]; then
        ok "unit: reload with an invalid policy fails at --check; old daemon keeps serving"
    else
        bad "unit: reload with an invalid policy fails at --check; old daemon keeps serving"
    fi
    rm -f "$P/zz-broken.yaml"
    # A new binary that cannot start: ExecReload's second line must fail (no SIGQUIT follows).
    if ! run_unit_line "ExecReload[1] with /bin/false" ExecReload 1 /bin/false && alive "$MAINPID" &&
        [[ "$(mg get "http://127.0.0.1:$LPORT/")" == 200* ]]; then
        ok "unit: reload with a failing new binary fails before SIGQUIT; old daemon keeps serving"
    else
        bad "unit: reload with a failing new binary fails before SIGQUIT; old daemon keeps serving"
    fi
    [[ "$(daemon_pid)" == "$MAINPID" ]] || printf '%s\n' "$MAINPID" >"$T/meshgate.pid" # systemd would still track it

    sleep 1 # let the watcher settle after the broken file came and went
    run_load unit 60
    sleep 1
    OLD_MAIN=$MAINPID
    rel_ok=1
    for i in 0 1 2; do
        if ! run_unit_line "ExecReload[$i]" ExecReload "$i"; then
            rel_ok=0
            bad "unit: ExecReload line $((i + 1)) succeeded"
            break
        fi
    done
    t_quit=$SECONDS
    NEW_MAIN="$(daemon_pid)"
    [[ -n "$NEW_MAIN" ]] && PIDS+=("$NEW_MAIN")
    if [[ "$rel_ok" -eq 1 ]]; then ok "unit: ExecReload lines (--check, -d -u, kill -QUIT \$MAINPID) all succeeded"; fi
    limit=$((CLOSE_TIMEOUT + GRACE + SHUTDOWN + 2))
    while alive "$OLD_MAIN" && ((SECONDS < t_quit + limit + 3)); do sleep 0.1; done
    sleep 1
    stop_load unit
    assert_load unit "unit reload under load"
    if ! alive "$OLD_MAIN"; then ok "unit: old daemon $OLD_MAIN exited after the reload"; else bad "unit: old daemon $OLD_MAIN still alive ${limit}s after SIGQUIT"; fi
    if [[ -n "$NEW_MAIN" && "$NEW_MAIN" != "$OLD_MAIN" ]] && alive "$NEW_MAIN" &&
        [[ "$(mg get "http://127.0.0.1:$LPORT/")" == 200* ]]; then
        ok "unit: pid file names the new daemon $NEW_MAIN (what systemd adopts), which serves"
    else
        bad "unit: pid file names a new, serving daemon (pid file: ${NEW_MAIN:-none}, old $OLD_MAIN)"
    fi
    # systemctl stop: KillSignal=SIGTERM, must end within grace + shutdown (TimeoutStopSec margin).
    if [[ -n "$NEW_MAIN" ]] && alive "$NEW_MAIN"; then
        kill -TERM "$NEW_MAIN"
        t_term=$SECONDS
        while alive "$NEW_MAIN" && ((SECONDS < t_term + GRACE + SHUTDOWN + 5)); do sleep 0.1; done
        if ! alive "$NEW_MAIN"; then
            ok "unit: SIGTERM stopped the daemon in $((SECONDS - t_term))s (grace $GRACE + shutdown $SHUTDOWN)"
        else
            bad "unit: daemon still alive $((GRACE + SHUTDOWN + 5))s after SIGTERM"
        fi
    fi
fi

[[ "$failed" -eq 0 ]] || show_logs
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
