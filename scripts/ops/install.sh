#!/usr/bin/env bash
# Installs meshgate as a systemd service:
#   ROOT/usr/local/bin/meshgate                  the built binary (atomic replace)
#   ROOT/etc/systemd/system/meshgate.service     conf/systemd/meshgate.service
#   ROOT/etc/meshgate/pingora.yaml               conf/systemd/pingora.yaml (kept if edited)
#   ROOT/etc/meshgate/policies/                  conf/policies copied only if empty
#   ROOT/usr/local/share/doc/meshgate/operations.md
# then validates the unit (`systemd-analyze verify`) and the policies (`--check`),
# and, only when installing into / on a machine booted with systemd, runs
# `systemctl daemon-reload` and enables + starts the service (or reloads it =
# zero-downtime upgrade to the new binary when it is already running).
# Safe to run again (idempotent).
#
# Usage: scripts/ops/install.sh [--root DIR] [--bin PATH] [--policies DIR] [--no-start]
#   --root DIR      install below DIR instead of / (DESTDIR style; never touches
#                   systemctl). Also taken from $DESTDIR.
#   --bin PATH      binary to install (default target/release/meshgate)
#   --policies DIR  initial policies when /etc/meshgate/policies is empty
#                   (default conf/policies)
#   --no-start      install and daemon-reload, but do not enable/start/reload
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT="${DESTDIR:-/}"
BIN="$SRC/target/release/meshgate"
POLICIES_SRC="$SRC/conf/policies"
START=1

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    --bin) BIN="$2"; shift 2 ;;
    --bin=*) BIN="${1#*=}"; shift ;;
    --policies) POLICIES_SRC="$2"; shift 2 ;;
    --policies=*) POLICIES_SRC="${1#*=}"; shift ;;
    --no-start) START=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[[ -x "$BIN" ]] || die "no executable at $BIN (run: cargo build --release)"
ROOT="${ROOT%/}"
DEST_BIN="$ROOT/usr/local/bin/meshgate"
DEST_UNIT="$ROOT/etc/systemd/system/meshgate.service"
ETC="$ROOT/etc/meshgate"
DOC="$ROOT/usr/local/share/doc/meshgate"

# Files are world-readable: the service runs as a transient DynamicUser that
# has no fixed uid to give ownership to. Keep secrets (TLS keys in policies)
# out of reach with directory permissions if the host has other users.
umask 022

# Install a file only if its content changed; report what happened.
put() { # put SRC DEST MODE
    local src="$1" dest="$2" mode="$3"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
        log "unchanged  $dest"
        return
    fi
    mkdir -p "$(dirname "$dest")"
    # Copy next to the target, then rename: a running meshgate keeps its old
    # inode (no "text file busy"), and nobody sees a half-written file.
    local tmp
    tmp="$(mktemp "$dest.XXXXXX")"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dest"
    log "installed  $dest"
}

# --- files ----------------------------------------------------------------------
put "$BIN" "$DEST_BIN" 0755
put "$SRC/conf/systemd/meshgate.service" "$DEST_UNIT" 0644
if [[ -f "$SRC/docs/operations.md" ]]; then
    put "$SRC/docs/operations.md" "$DOC/operations.md" 0644
fi

mkdir -p "$ETC/policies"
# pingora.yaml belongs to the administrator once installed: never overwrite an
# edited one, leave the shipped version next to it for comparison.
if [[ ! -f "$ETC/pingora.yaml" ]]; then
    put "$SRC/conf/systemd/pingora.yaml" "$ETC/pingora.yaml" 0644
elif cmp -s "$SRC/conf/systemd/pingora.yaml" "$ETC/pingora.yaml"; then
    log "unchanged  $ETC/pingora.yaml"
else
    put "$SRC/conf/systemd/pingora.yaml" "$ETC/pingora.yaml.dist" 0644
    log "kept       $ETC/pingora.yaml (edited; shipped version is pingora.yaml.dist)"
fi

# Policies are the operator's: seed them only into an empty directory.
if [[ -n "$(ls -A "$ETC/policies")" ]]; then
    log "kept       $ETC/policies (not empty)"
elif [[ -d "$POLICIES_SRC" ]]; then
    cp -R "$POLICIES_SRC/." "$ETC/policies/"
    chmod -R u=rwX,go=rX "$ETC/policies"
    log "seeded     $ETC/policies from $POLICIES_SRC"
else
    log "warning: $ETC/policies is empty and $POLICIES_SRC does not exist; ExecStartPre --check will refuse to start"
fi

# --- validation --------------------------------------------------------------------
# verify checks every Exec* path on the live filesystem, so point the unit at the
# binary we just installed (identical when ROOT is /).
if command -v systemd-analyze >/dev/null 2>&1; then
    vdir="$(mktemp -d)"
    trap 'rm -rf "$vdir"' EXIT
    sed "s#/usr/local/bin/meshgate#$DEST_BIN#g" "$DEST_UNIT" >"$vdir/meshgate.service"
    if ! out="$(cd "$vdir" && systemd-analyze verify "$vdir/meshgate.service" 2>&1)"; then
        die "systemd-analyze verify failed:"$'\n'"$out"
    fi
    if [[ -z "$out" ]]; then
        log "verified   meshgate.service (systemd-analyze verify)"
    else
        log "systemd-analyze verify warnings:"$'\n'"$out"
    fi
else
    log "skipped    systemd-analyze verify (systemd not installed)"
fi

if [[ -n "$(ls -A "$ETC/policies")" ]]; then
    if ! "$DEST_BIN" --policies "$ETC/policies" --check; then
        die "policies in $ETC/policies are invalid (see above); not starting or reloading"
    fi
    log "validated  $ETC/policies (meshgate --check)"
fi

# --- systemd ---------------------------------------------------------------------
if [[ -n "$ROOT" ]]; then
    log "installed into $ROOT: not touching systemctl"
    exit 0
fi
# /run/systemd/system exists only when systemd is the running init (sd_booted()).
if [[ ! -d /run/systemd/system ]]; then
    log "systemd is not PID 1 here (container/CI): skipped daemon-reload, enable and start"
    log "on a systemd host run: systemctl daemon-reload && systemctl enable --now meshgate"
    exit 0
fi
systemctl daemon-reload
log "systemctl daemon-reload done"
if [[ "$START" -eq 0 ]]; then
    log "--no-start: run 'systemctl enable --now meshgate' when ready"
elif systemctl is-active --quiet meshgate; then
    # Running already: swap to the new binary without dropping connections.
    systemctl reload meshgate
    log "meshgate was running: reloaded (zero-downtime upgrade to the installed binary)"
else
    systemctl enable --now meshgate
    log "meshgate enabled and started"
fi
systemctl --no-pager --lines=0 status meshgate || true
