#!/usr/bin/env bash
# The project's test command (README, CI via .ci/run). Runs:
#   setup        scripts/setup.sh (missing apt packages, cargo-deny)
#   fmt          cargo fmt --check
#   deny         scripts/build/deny.sh (advisories, licences, duplicates, sources)
#   clippy       cargo clippy --all-targets -D warnings
#   build        cargo build --release with the PGO profile (scripts/build/release_flags.sh),
#                in the background from the start: its link-time optimisation is one long
#                single-threaded step the other steps overlap
#   cargo test   unit tests, in-process semantics tests and black-box tests (tests/), built
#                in the dev profile into target/ci (quick to link; the release binary is for
#                the steps below)
#   pingora      scripts/build/pingora-patch.sh check (vendor/ = Pingora + vendor/pingora.patch)
#   smoke, upgrade, systemd-unit, install, dockerfile
#                scripts/ops/*: curl checks of conf/policies, zero-downtime upgrade and reload
#                under load, the systemd unit, the installer, the Dockerfile
#   acceptance   python3 ../shared/acceptance/run.py on the release binary, in parallel shards
#                (the scenarios mostly wait on timers), if ../shared/acceptance/run.py exists
# Every step runs even when an earlier one failed (one run shows every problem), except that
# steps needing the release binary are skipped when its build failed. Ends with one line per
# step and `N passed, M failed`; exits non-zero when any step failed.
#
# Environment:
#   SKIP_SETUP=1          skip setup
#   ACCEPTANCE_ARGS="..." arguments for the acceptance runner instead of the default (every
#                         scenario of the kinds built so far), e.g. "--filter seed"
#   ACCEPTANCE_SHARDS=N   parallel acceptance runners (default 4)
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
    step setup scripts/setup.sh || true
fi

# The release build, in the background. Only it gets the PGO flags: RUSTFLAGS are part of
# every crate's fingerprint, and the dev-profile build below must not be rebuilt for them.
echo
echo "==== build (background, log: $LOGS/build.log): cargo build --release"
build_started=$SECONDS
(
    # shellcheck source=build/release_flags.sh
    source scripts/build/release_flags.sh
    cargo build --release
) >"$LOGS/build.log" 2>&1 &
build_pid=$!

# rustfmt and clippy are rustup components (rust-toolchain.toml asks for both).
if cargo fmt --version >/dev/null 2>&1; then
    step fmt cargo fmt --all -- --check || true
else
    skip fmt "rustfmt not installed: rustup component add rustfmt"
fi
step deny scripts/build/deny.sh || true
# The dev-profile steps build into their own directory, so they never wait for the release
# build's lock on target/.
export CARGO_TARGET_DIR="$ROOT/target/ci"
if cargo clippy --version >/dev/null 2>&1; then
    step clippy cargo clippy --all-targets -- -D warnings || true
else
    skip clippy "clippy not installed: rustup component add clippy"
fi
step "cargo test" cargo test || true
unset CARGO_TARGET_DIR

echo
echo "==== build: waiting for the release build"
built=0
if wait "$build_pid"; then
    built=1
    tail -2 "$LOGS/build.log"
    record "build ($((SECONDS - build_started)) s, in the background)" PASS
else
    tail -40 "$LOGS/build.log"
    record "build (see $LOGS/build.log)" FAIL
fi

step pingora scripts/build/pingora-patch.sh check || true

if [[ "$built" -eq 1 ]]; then
    step smoke scripts/ops/smoke.sh || true
    step upgrade scripts/ops/upgrade_test.sh || true
    step systemd-unit scripts/ops/check_systemd_unit.sh || true
    install_root="$(mktemp -d)"
    step install scripts/ops/install.sh --root "$install_root" --bin "$ROOT/target/release/meshgate" --no-start || true
    rm -rf "$install_root"
    step dockerfile scripts/ops/check_dockerfile.sh || true

    ACCEPTANCE="$ROOT/../shared/acceptance/run.py"
    # The policy scenarios are marked pending in the suite; every kind they cover is applied,
    # so all of them run.
    DEFAULT_ACCEPTANCE_ARGS="--pending"
    if [[ -f "$ACCEPTANCE" ]]; then
        # shellcheck disable=SC2086 # the arguments are a list of words on purpose
        step acceptance scripts/ops/acceptance.sh "$ACCEPTANCE" "$ROOT/target/release/meshgate" \
            "${ACCEPTANCE_SHARDS:-4}" ${ACCEPTANCE_ARGS:-$DEFAULT_ACCEPTANCE_ARGS} || true
    else
        skip acceptance "no ../shared/acceptance/run.py beside the clone"
    fi
else
    for s in smoke upgrade systemd-unit install dockerfile acceptance; do
        skip "$s" "release build failed"
    done
fi

echo
echo "==== summary ($((SECONDS - started)) s)"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
