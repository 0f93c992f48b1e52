#!/usr/bin/env bash
# Regenerates pgo/meshgate.profdata, the profile the release build is optimised with
# (scripts/build/release_flags.sh; BENCHMARKS.md, "Profile-guided optimisation").
#
#   scripts/build/pgo.sh          # ~13 min on 2 cores: instrumented build, 30 s of load, merge
#
# 1. builds an instrumented meshgate (-Cprofile-generate) in target/pgo-gen, with meshgate's
#    release profile and no profile of its own (a rerun on unchanged sources reuses it);
# 2. runs it as scripts/bench.sh's 10,000-rule peer: wrk load on the request path;
# 3. merges what it wrote with rustup's llvm-profdata (component llvm-tools, added if
#    missing), --sparse: a function the workload never ran keeps no record and is optimised
#    exactly as without a profile, instead of being treated as cold.
#
# The workload is the request path under load, and nothing else: that is what was measured
# (BENCHMARKS.md). The build must resolve the same dependency features as the builds that
# use the profile, or symbol names differ and the profile matches nothing (Cargo.toml asks
# for the dev-dependencies' features for that reason).
#
# Rerun it after changes to the request path; a profile older than the code still builds
# (changed functions simply have no data). Not part of CI: the committed profile is used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
log() { printf '[pgo] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

OUT=$ROOT/pgo/meshgate.profdata
GEN_DIR=$ROOT/target/pgo-gen
# Fixed, so a rerun on unchanged sources reuses the instrumented build (RUSTFLAGS unchanged).
RAW=$GEN_DIR/profraw
rm -rf "$RAW"
mkdir -p "$RAW"

sysroot=$(rustc --print sysroot)
profdata() { compgen -G "$sysroot/lib/rustlib/*/bin/llvm-profdata" | head -1; }
if [[ -z $(profdata) ]]; then
    log "rustup component add llvm-tools (llvm-profdata matching rustc's LLVM)"
    rustup component add llvm-tools
fi
PROFDATA=$(profdata)
[[ -x $PROFDATA ]] || die "no llvm-profdata under $sysroot"

log "instrumented build in $GEN_DIR"
CARGO_TARGET_DIR=$GEN_DIR RUSTFLAGS="-Cprofile-generate=$GEN_DIR/profraw-default" \
    cargo build --release --bin meshgate
BIN=$GEN_DIR/release/meshgate

# The request path under load: the benchmark's peer with 10,000 generated rules. Each
# instrumented process writes its profile when it exits (bench.sh stops it with SIGINT).
log "workload: scripts/bench.sh, 10,000 rules"
LLVM_PROFILE_FILE="$RAW/meshgate-%p.profraw" MESHGATE_BIN=$BIN RESULTS_DIR=$RAW/bench \
    SKIP_BUILD=1 PEERS=mg10000 PAIRS="" ROUNDS=2 DURATION=10 RELOADS=0 \
    scripts/bench.sh >"$RAW/bench.log" 2>&1 || die "bench.sh failed: $(tail -5 "$RAW/bench.log")"

shopt -s nullglob
raw=("$RAW"/*.profraw)
((${#raw[@]} >= 1)) || die "the workload left no profile in $RAW"
mkdir -p "$(dirname "$OUT")"
"$PROFDATA" merge --sparse -o "$OUT.new" "${raw[@]}"
mv "$OUT.new" "$OUT"
log "wrote $OUT ($(stat -c %s "$OUT") bytes from ${#raw[@]} processes)"
