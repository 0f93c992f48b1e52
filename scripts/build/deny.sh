#!/usr/bin/env bash
# cargo deny: advisories, licences, duplicate versions and sources (deny.toml).
#
# The RustSec advisory database is a git repository on GitHub. Where GitHub cannot be
# reached (CI here opens only the package registries), advisories are checked against a local
# copy when one exists: MESHGATE_ADVISORY_DB=<clone of rustsec/advisory-db>, or cargo deny's
# own cache ($CARGO_HOME/advisory-dbs). Without either, the other three checks run and the
# advisories check is reported as not run, with the reason; it is never reported as passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
command -v cargo-deny >/dev/null 2>&1 || {
    echo "deny.sh: cargo-deny is not installed (scripts/setup.sh installs it)" >&2
    exit 1
}
# cargo deny reads the metadata of every package in Cargo.lock, other platforms' included
# (macOS and Windows crates behind cfg), which a build on this one never downloads.
cargo fetch --locked >/dev/null
cache="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if [[ -n ${MESHGATE_ADVISORY_DB:-} ]]; then
    # cargo deny keeps its database under a name derived from the database URL.
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    ln -s "$(cd "$MESHGATE_ADVISORY_DB" && pwd)" "$work/advisory-db-3157b0e258782691"
    sed "s|^\[advisories\]|[advisories]\ndb-path = \"$work\"|" deny.toml >"$work/deny.toml"
    exec cargo deny --offline --config "$work/deny.toml" check
fi
if compgen -G "$cache/advisory-db-*" >/dev/null || timeout 60 cargo deny fetch db >/dev/null 2>&1; then
    exec cargo deny --offline check
fi
echo "deny.sh: the RustSec advisory database cannot be fetched (no route to GitHub) and no" \
    "local copy is set (MESHGATE_ADVISORY_DB): advisories NOT checked; licences, bans, sources:"
exec cargo deny --offline check licenses bans sources
