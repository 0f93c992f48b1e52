#!/usr/bin/env bash
# Structural lint of the Dockerfile, so CI notices when it rots (no Docker engine runs here):
#   two stages (rust:1-bookworm builder with cmake, debian:bookworm-slim runtime),
#   COPY sources exist and are not excluded by .dockerignore, non-root USER,
#   HEALTHCHECK on /ready with a tool the image installs, EXPOSE of the demo + admin ports,
#   ENTRYPOINT/CMD bind 0.0.0.0 and the admin on 0.0.0.0:9901, policies at
#   /etc/meshgate/policies; Cargo.lock consistent with Cargo.toml (the build uses --locked);
#   and, when target/release/meshgate exists, the image's own commands (`--check` of the
#   baked-in policies, the ENTRYPOINT+CMD flags) run outside Docker too.
# Prints one line per check and `N passed, M failed`; exits non-zero on failure.
# Usage: scripts/ops/check_dockerfile.sh [--bin PATH] [DOCKERFILE]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/target/release/meshgate"
if [[ "${1:-}" == --bin ]]; then
    BIN="$2"
    shift 2
fi
DF="${1:-$ROOT/Dockerfile}"
[[ -f "$DF" ]] || { echo "no Dockerfile at $DF" >&2; exit 2; }

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; }
check() {
    local what="$1"; shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

# Logical lines: join backslash continuations, drop comments and blank lines.
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' "$DF" | grep -Ev '^[[:space:]]*(#|$)' >"$T/lines"
# The final stage: everything after the last FROM.
awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$T/lines" >"$T/final"
awk '/^FROM /{n++} n==1' "$T/lines" >"$T/build"
has() { grep -Eq -- "$1" "$2"; }

froms="$(grep -c '^FROM ' "$T/lines" || true)"
check "two stages (FROM twice, got $froms)" test "$froms" -eq 2
check "builder is rust:1-bookworm, named" has '^FROM rust:1-bookworm AS [a-z]+' "$T/build"
check "builder installs cmake (libz-ng-sys)" has '^RUN .*apt-get install .*cmake' "$T/build"
check "builder runs cargo build --release" has '^RUN .*cargo build --release' "$T/build"
# The image's binary is optimised like CI's and the benchmark's (scripts/build/release_flags.sh).
check "builder copies the PGO profile" has '^COPY pgo ' "$T/build"
# [patch.crates-io] paths (the vendored Pingora crates) must be in the builder's context.
while read -r patched; do
    check "builder copies patched crate $patched" has "^COPY (.* )?${patched%%/*} " "$T/build"
done < <(sed -n '/^\[patch.crates-io\]/,/^\[/s/.*path = "\([^"]*\)".*/\1/p' "$ROOT/Cargo.toml")
check "builder builds with the PGO profile" has '^RUN .*-Cprofile-use=/src/pgo/meshgate.profdata.* cargo build --release' "$T/build"
check "runtime is debian:bookworm-slim" has '^FROM debian:bookworm-slim' "$T/final"
check "runtime copies the binary from the builder" has '^COPY --from=[a-z]+ .*meshgate' "$T/final"
check "runtime installs ca-certificates" has '^RUN .*apt-get install .*ca-certificates' "$T/final"
user="$(sed -n 's/^USER[[:space:]]\+//p' "$T/final" | tail -n1)"
if [[ -n "$user" && "$user" != root && "$user" != 0 && "$user" != 0:* && "$user" != root:* ]]; then
    ok "runs as non-root USER $user"
else
    bad "runs as non-root USER (got '${user:-none}')"
fi
hc="$(grep '^HEALTHCHECK' "$T/final" || true)"
if [[ "$hc" == *"/ready"* ]]; then ok "HEALTHCHECK probes /ready"; else bad "HEALTHCHECK probes /ready (got '${hc:-none}')"; fi
if [[ "$hc" == *curl* ]]; then
    check "HEALTHCHECK tool (curl) is installed in the runtime stage" has '^RUN .*apt-get install .*curl' "$T/final"
elif [[ "$hc" == *wget* ]]; then
    check "HEALTHCHECK tool (wget) is installed in the runtime stage" has '^RUN .*apt-get install .*wget' "$T/final"
else
    ok "HEALTHCHECK uses no extra tool"
fi
exposed=" $(sed -n 's/^EXPOSE[[:space:]]\+//p' "$T/final" | tr '\n' ' ') "
missing=""
for p in 8080 8081 8082 9000 9901; do [[ "$exposed" == *" $p "* ]] || missing="$missing $p"; done
if [[ -z "$missing" ]]; then ok "EXPOSE demo ports and 9901 (${exposed# })"; else bad "EXPOSE missing:$missing"; fi

# ENTRYPOINT + CMD (exec form) as one argument list.
python3 - "$T/final" >"$T/argv" <<'PY'
import json, sys
ep, cmd = [], []
for line in open(sys.argv[1]):
    if line.startswith("ENTRYPOINT "):
        ep = json.loads(line[len("ENTRYPOINT "):])
    elif line.startswith("CMD "):
        cmd = json.loads(line[len("CMD "):])
print("\n".join(ep + cmd))
PY
argv="$(tr '\n' ' ' <"$T/argv")"
check "ENTRYPOINT runs /usr/local/bin/meshgate" bash -c "[[ '$argv' == /usr/local/bin/meshgate* ]]"
check "listeners bound on 0.0.0.0 (--bind 0.0.0.0)" bash -c "[[ '$argv' == *'--bind 0.0.0.0'* ]]"
check "admin on 0.0.0.0:9901" bash -c "[[ '$argv' == *'--admin 0.0.0.0:9901'* ]]"
check "policies at /etc/meshgate/policies" bash -c "[[ '$argv' == *'--policies /etc/meshgate/policies'* ]]"
check "no daemon flag in a container (-d)" bash -c "[[ ' $argv ' != *' -d '* ]]"
check "policies mount point documented (VOLUME /etc/meshgate/policies)" has '^VOLUME .*/etc/meshgate/policies' "$T/final"

# COPY sources exist and survive .dockerignore.
while read -r src; do
    if [[ ! -e "$ROOT/$src" ]]; then
        bad "COPY source $src exists"
        continue
    fi
    excluded=""
    if [[ -f "$ROOT/.dockerignore" ]]; then
        while read -r pat; do
            [[ -z "$pat" || "$pat" == \#* ]] && continue
            pat="${pat%/}"
            if [[ "$src" == "$pat" || "$src" == "$pat"/* ]]; then excluded="$pat"; fi
        done <"$ROOT/.dockerignore"
    fi
    if [[ -n "$excluded" ]]; then bad "COPY source $src not excluded by .dockerignore ($excluded)"; else ok "COPY source $src exists"; fi
done < <(grep -E '^COPY ' "$T/lines" | grep -v -- '--from=' | awk '{for (i = 2; i < NF; i++) print $i}')

# Offline first (CI has fetched the crates for its build); online only if the cache lacks them.
lock_ok() {
    cargo tree --locked --offline --prefix none --manifest-path "$ROOT/Cargo.toml" ||
        cargo tree --locked --prefix none --manifest-path "$ROOT/Cargo.toml"
}
if command -v cargo >/dev/null 2>&1; then
    check "Cargo.lock matches Cargo.toml (cargo build --locked works)" lock_ok
else
    echo "SKIP  cargo not installed: Cargo.lock consistency"
fi

# The builder's context holds only what its COPY lines bring: cargo must accept the manifest
# there (a declared [[bench]]/[[example]] whose file is not copied breaks `cargo build`).
# Asking for a bin that does not exist stops cargo right after loading the manifest.
ctx="$T/ctx"
mkdir -p "$ctx"
while read -r src; do
    [[ -e "$ROOT/$src" ]] && mkdir -p "$ctx/$(dirname "$src")" && cp -R "$ROOT/$src" "$ctx/$src"
done < <(grep -E '^COPY ' "$T/build" | grep -v -- '--from=' | awk '{for (i = 2; i < NF; i++) print $i}')
if command -v cargo >/dev/null 2>&1 && [[ -f "$ctx/Cargo.toml" ]]; then
    out="$(
        cd "$ctx" || exit 0
        CARGO_TARGET_DIR="$T/target" timeout 120 cargo build --release --offline --locked \
            --bin __no_such_bin__ 2>&1 || true
    )"
    if grep -q "no bin target named" <<<"$out"; then
        ok "builder context (COPY sources only) has every target Cargo.toml declares"
    elif grep -Eq "can't find|failed to parse manifest|failed to load manifest|failed to read|failed to load source" <<<"$out"; then
        bad "builder context (COPY sources only) has every target Cargo.toml declares: $(grep -E "can't find|failed" <<<"$out" | head -n2)"
    else
        echo "SKIP  could not load the builder context's manifest offline: $(tail -n1 <<<"$out")"
    fi
fi

# The image's own commands, outside Docker, with the repo's paths.
if [[ -x "$BIN" && -d "$ROOT/conf/policies" ]]; then
    check "image build step: meshgate --check on conf/policies" "$BIN" --policies "$ROOT/conf/policies" --check
    mapfile -t args < <(sed -e "s#^/etc/meshgate/policies\$#$ROOT/conf/policies#" \
        -e "s#^/etc/meshgate/pingora.yaml\$#$ROOT/conf/pingora.yaml#" "$T/argv" | tail -n +2)
    check "ENTRYPOINT+CMD flags are accepted (run with --check)" "$BIN" "${args[@]}" --check
else
    echo "SKIP  no $BIN or conf/policies yet: image commands not run"
fi

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
