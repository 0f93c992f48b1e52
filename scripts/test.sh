#!/usr/bin/env bash
# The project's test command (README, CI via .ci/run). Runs:
#   setup        scripts/setup.sh (missing apt and Python packages; cargo-deny comes later)
#   fmt          cargo fmt --check
#   clippy       cargo clippy --all-targets -D warnings
#   build        cargo test --no-run: meshgate and the tests in the dev profile, into
#                target/ci
#   cargo test   unit tests, then tests/integration (one binary: in-process semantics tests
#                and black-box tests against real meshgate processes) with more threads than
#                cores, because those tests mostly wait on timers and sockets
#   pingora      scripts/build/pingora-patch.sh check (vendor/ = Pingora + vendor/pingora.patch;
#                the unit tests of the modules the patch adds)
#   smoke, upgrade, systemd-unit, install, dockerfile
#                scripts/ops/*: curl checks of conf/policies, zero-downtime upgrade and reload
#                under load, the systemd unit, the installer, the Dockerfile
#   acceptance   python3 ../shared/acceptance/run.py, in parallel shards (the scenarios mostly
#                wait on timers), if ../shared/acceptance/run.py exists
#   deny         scripts/build/deny.sh (advisories, licences, duplicates, sources); cargo-deny
#                is built at low priority while the tests run, when it is missing
# The ops steps and the acceptance scenarios run the dev-profile binary the tests ran: the
# same code as the release build, with overflow checks and debug assertions on. The release
# build (fat LTO, PGO) costs ~15 CPU-minutes, two thirds of what CI spends; RELEASE=1 builds
# it in the background from the start and runs those steps on it instead.
# Every step runs even when an earlier one failed (one run shows every problem), except that
# steps needing the binary are skipped when its build failed. Ends with one line per step and
# `N passed, M failed`; exits non-zero when any step failed.
#
# Environment:
#   SKIP_SETUP=1          skip setup
#   RELEASE=1             ops and acceptance steps on the release build (see above)
#   TEST_THREADS=N        test threads for cargo test (default 12: 190 tests finish in ~90 s
#                         on two cores, ~520 s one binary per file at two threads)
#   ACCEPTANCE_ARGS="..." arguments for the acceptance runner instead of the default (every
#                         scenario of the kinds built so far), e.g. "--filter seed"
#   ACCEPTANCE_SHARDS=N   parallel acceptance runners (default 8)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"

results=()
passed=0
failed=0
skipped=0

record() { # record NAME STATUS
    results+=("$(printf '%-5s %s' "$2" "$1")")
    case "$2" in
    PASS) passed=$((passed + 1)) ;;
    FAIL) failed=$((failed + 1)) ;;
    *) skipped=$((skipped + 1)) ;;
    esac
}

step() { # step NAME COMMAND...: runs the command, records PASS/FAIL, never aborts the script
    local name="$1"
    shift
    echo
    echo "==== $name: $*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    if [[ "$rc" -eq 0 ]]; then
        record "$name ($((SECONDS - start)) s)" PASS
    else
        record "$name (exit $rc, $((SECONDS - start)) s)" FAIL
    fi
    return "$rc"
}

skip() { # skip NAME WHY
    echo
    echo "==== $1: skipped ($2)"
    record "$1 ($2)" SKIP
}

started=$SECONDS
if [[ "${SKIP_SETUP:-}" == 1 ]]; then
    skip setup "SKIP_SETUP=1"
else
    step setup scripts/setup.sh --skip-cargo-tools || true
fi

if [[ "${RELEASE:-}" == 1 ]]; then
    # Only the release build gets the PGO flags: RUSTFLAGS are part of every crate's
    # fingerprint, and the dev-profile build below must not be rebuilt for them.
    echo
    echo "==== release build (background, log: $LOGS/build.log): cargo build --release"
    release_started=$SECONDS
    (
        # shellcheck source=build/release_flags.sh
        source scripts/build/release_flags.sh
        cargo build --release
    ) >"$LOGS/build.log" 2>&1 &
    release_pid=$!
fi

# rustfmt and clippy are rustup components (rust-toolchain.toml asks for both).
if cargo fmt --version >/dev/null 2>&1; then
    step fmt cargo fmt --all -- --check || true
else
    skip fmt "rustfmt not installed: rustup component add rustfmt"
fi
# The dev-profile steps build into their own directory, so they never wait for the release
# build's lock on target/.
export CARGO_TARGET_DIR="$ROOT/target/ci"
if cargo clippy --version >/dev/null 2>&1; then
    step clippy cargo clippy --all-targets -- -D warnings || true
else
    skip clippy "clippy not installed: rustup component add clippy"
fi
built=0
step build cargo test --no-run && built=1 || true

# cargo-deny, when missing, is built now: the tests below leave the cores mostly idle.
tools_log="$LOGS/cargo-tools.log"
nice -n 19 scripts/setup.sh --cargo-tools-only >"$tools_log" 2>&1 &
tools_pid=$!

if [[ "$built" -eq 1 ]]; then
    step "cargo test" cargo test -- --test-threads "${TEST_THREADS:-12}" || true
else
    skip "cargo test" "build failed"
fi
unset CARGO_TARGET_DIR
BIN="$ROOT/target/ci/debug/meshgate"

if [[ "${RELEASE:-}" == 1 ]]; then
    echo
    echo "==== release build: waiting"
    built=0
    if wait "$release_pid"; then
        built=1
        tail -2 "$LOGS/build.log"
        record "release build ($((SECONDS - release_started)) s, in the background)" PASS
    else
        tail -40 "$LOGS/build.log"
        record "release build (see $LOGS/build.log)" FAIL
    fi
    BIN="$ROOT/target/release/meshgate"
fi

step pingora scripts/build/pingora-patch.sh check || true

if [[ "$built" -eq 1 ]]; then
    step smoke scripts/ops/smoke.sh --bin "$BIN" || true
    step upgrade scripts/ops/upgrade_test.sh --bin "$BIN" || true
    step systemd-unit scripts/ops/check_systemd_unit.sh || true
    install_root="$(mktemp -d)"
    step install scripts/ops/install.sh --root "$install_root" --bin "$BIN" --no-start || true
    rm -rf "$install_root"
    step dockerfile scripts/ops/check_dockerfile.sh --bin "$BIN" || true

    ACCEPTANCE="$ROOT/../shared/acceptance/run.py"
    # The policy scenarios are marked pending in the suite; every kind they cover is applied,
    # so all of them run.
    DEFAULT_ACCEPTANCE_ARGS="--pending"
    if [[ -f "$ACCEPTANCE" ]]; then
        # shellcheck disable=SC2086 # the arguments are a list of words on purpose
        step acceptance scripts/ops/acceptance.sh "$ACCEPTANCE" "$BIN" \
            "${ACCEPTANCE_SHARDS:-8}" ${ACCEPTANCE_ARGS:-$DEFAULT_ACCEPTANCE_ARGS} || true
    else
        skip acceptance "no ../shared/acceptance/run.py beside the clone"
    fi
else
    for s in smoke upgrade systemd-unit install dockerfile acceptance; do
        skip "$s" "no meshgate binary"
    done
fi

echo
echo "==== deny: waiting for cargo-deny (log: $tools_log)"
if wait "$tools_pid"; then
    step deny scripts/build/deny.sh || true
else
    tail -20 "$tools_log"
    record "deny (cargo-deny could not be installed, see $tools_log)" FAIL
fi

echo
echo "==== summary ($((SECONDS - started)) s)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
