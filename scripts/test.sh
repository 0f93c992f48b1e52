#!/usr/bin/env bash
# The project's test command (README, CI via .ci/run). Runs, in order:
#   1. scripts/setup.sh                                  (installs missing apt packages)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --release --all-targets -- -D warnings
#   4. cargo build --release                             (with the PGO profile: scripts/lib/release_flags.sh)
#   5. cargo test --release                              (unit tests + black-box tests in tests/)
#   6. scripts/smoke.sh                                  (curl checks of conf/policies)
#   7. operations: scripts/upgrade_test.sh (zero-downtime upgrade + reload under load),
#      python3 scripts/hostile_test.py (hostile HTTP/1.x battery), scripts/check_systemd_unit.sh,
#      scripts/install.sh --root TMP, scripts/check_dockerfile.sh
#   8. python3 ../shared/acceptance/run.py --bin target/release/meshgate
#                                                        (if ../shared/acceptance/run.py exists)
# Every step runs even when an earlier one failed (one run shows every problem), except that
# steps needing the binary are skipped when the build failed. Ends with one line per step and
# `N passed, M failed` (steps); exits non-zero when any step failed.
#
# Environment:
#   SKIP_SETUP=1          skip step 1
#   ACCEPTANCE_ARGS="..." extra arguments for the acceptance runner (e.g. "--filter seed")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The release build's flags (the PGO profile) for every cargo command below alike: clippy,
# build and test then share one set of compiled dependencies.
# shellcheck source=lib/release_flags.sh
source scripts/lib/release_flags.sh

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

if [[ "${SKIP_SETUP:-}" == 1 ]]; then
    skip setup "SKIP_SETUP=1"
else
    step setup scripts/setup.sh || true
fi

# rustfmt and clippy are rustup components, not apt packages; a toolchain without them is
# reported, not silently passed.
if cargo fmt --version >/dev/null 2>&1; then
    step fmt cargo fmt --all -- --check || true
else
    skip fmt "rustfmt not installed: rustup component add rustfmt"
fi
if cargo clippy --version >/dev/null 2>&1; then
    step clippy cargo clippy --release --all-targets -- -D warnings || true
else
    skip clippy "clippy not installed: rustup component add clippy"
fi

built=0
if step build cargo build --release; then
    built=1
fi

if [[ "$built" -eq 1 ]]; then
    step "cargo test" cargo test --release || true

    if [[ -x scripts/smoke.sh ]]; then
        step smoke scripts/smoke.sh || true
    else
        skip smoke "scripts/smoke.sh not present"
    fi

    step upgrade scripts/upgrade_test.sh || true
    step hostile python3 scripts/hostile_test.py "$ROOT/target/release/meshgate" || true
    step systemd-unit scripts/check_systemd_unit.sh || true
    install_root="$(mktemp -d)"
    step install scripts/install.sh --root "$install_root" --bin "$ROOT/target/release/meshgate" --no-start || true
    rm -rf "$install_root"
    step dockerfile scripts/check_dockerfile.sh || true

    ACCEPTANCE="$ROOT/../shared/acceptance/run.py"
    if [[ -f "$ACCEPTANCE" ]]; then
        # shellcheck disable=SC2086 # ACCEPTANCE_ARGS is a list of words on purpose
        step acceptance python3 "$ACCEPTANCE" --bin "$ROOT/target/release/meshgate" ${ACCEPTANCE_ARGS:-} || true
    else
        skip acceptance "no ../shared/acceptance/run.py beside the clone"
    fi
else
    skip "cargo test" "build failed"
    skip smoke "build failed"
    skip operations "build failed"
    skip acceptance "build failed"
fi

echo
echo "==== summary"
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
