#!/usr/bin/env bash
# The Pingora crates meshgate carries patched (vendor/README.md says what and why).
#
#   scripts/build/pingora-patch.sh diff    write vendor/pingora.patch: vendor/ against the
#                                          published crates
#   scripts/build/pingora-patch.sh check   fail unless vendor/ is exactly the published crates
#                                          with vendor/pingora.patch applied, and the unit
#                                          tests of the patch's own modules pass
#
# The published crates come from static.crates.io (checksums from Cargo.lock's registry
# entries are not available for patched crates, so the download is compared by the
# patch applying cleanly and the result matching vendor/ byte for byte).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION=0.9.1
CRATES=(pingora-core pingora-proxy)
# Modules the patch adds that need nothing but std (their unit tests run in `check`).
SELF_CONTAINED=(pingora-core/src/connectors/idle_pool.rs)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pristine() { # pristine DIR: the published crates, unpacked as vendor/ names them
    mkdir -p "$1"
    for c in "${CRATES[@]}"; do
        curl -sSfL "https://static.crates.io/crates/$c/$c-$VERSION.crate" -o "$work/$c.crate"
        tar -xzf "$work/$c.crate" -C "$1"
        mv "$1/$c-$VERSION" "$1/$c"
        rm -f "$1/$c/.cargo-ok"
    done
}

case "${1:-check}" in
diff)
    pristine "$work/a"
    # Every file named relative to vendor/ (a/ published, b/ patched), without timestamps.
    (cd "$work/a" && for c in "${CRATES[@]}"; do
        diff -ruN "$c" "$ROOT/vendor/$c" || true
    done) | sed -E "s#^(\+\+\+ )$ROOT/vendor/([^\t]*).*#\1b/\2#; s#^(--- )([^\t]*).*#\1a/\2#; s#^diff -ruN ([^ ]*) $ROOT/vendor/(.*)#diff -ruN a/\1 b/\2#" >"$ROOT/vendor/pingora.patch"
    echo "vendor/pingora.patch: $(grep -c '^+++ ' "$ROOT/vendor/pingora.patch") files changed"
    ;;
check)
    pristine "$work/b"
    (cd "$work/b" && patch -s -p1 <"$ROOT/vendor/pingora.patch")
    for c in "${CRATES[@]}"; do
        if ! diff -r "$work/b/$c" "$ROOT/vendor/$c" >/dev/null; then
            echo "vendor/$c differs from pingora $VERSION + vendor/pingora.patch:" >&2
            diff -r "$work/b/$c" "$ROOT/vendor/$c" | head -20 >&2
            exit 1
        fi
    done
    echo "vendor/: pingora $VERSION + vendor/pingora.patch, exactly"
    # The patch's self-contained modules carry unit tests; the vendored crates' own test
    # suites need dev-dependencies meshgate does not lock, so these are built on their own.
    for module in "${SELF_CONTAINED[@]}"; do
        rustc --edition 2021 --test -A dead_code "$ROOT/vendor/$module" -o "$work/unit-test"
        "$work/unit-test" -q
    done
    ;;
*)
    echo "usage: $0 diff|check" >&2
    exit 2
    ;;
esac
