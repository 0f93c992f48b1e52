#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks for building and testing meshgate.
#
# Usage: scripts/setup.sh [--skip-cargo-tools | --cargo-tools-only] [PACKAGE...]
#   no arguments: the full list below; with arguments: only those apt packages.
#   --skip-cargo-tools: everything but the cargo tools; --cargo-tools-only: only them
#   (scripts/test.sh builds them while the tests run: they take minutes of both cores).
#
# Idempotent: packages already installed are skipped; `apt-get update` runs once, and only
# when something is missing. Uses sudo only when not root. Talks to nothing but apt.
# The Rust toolchain itself (cargo, rustfmt, clippy) is expected to be present: it does not
# come from apt, and CI images ship it.
set -euo pipefail

# Why each package is needed:
#   build-essential, pkg-config, cmake  C toolchain for crates with native code; Pingora needs cmake
#   ca-certificates                     HTTPS to crates.io
#   curl                                README/demo commands, scripts/ops/smoke.sh
#   openssl                             test certificates (HTTPS/TLS scenarios)
#   python3                             demo backends, acceptance runner, script helpers
#   nginx-light, haproxy, wrk,          benchmarks against reference proxies (scripts/bench.sh)
#   nghttp2-client (h2load)
#   systemd (systemd-analyze)           scripts/ops/check_systemd_unit.sh
#   procps (ps, pgrep -P), lsof         process and socket checks in scripts
#   iproute2 (ss)                       upstream socket keep-alive check in tests/integration/backends.rs
#   chromium                            the admin page tested in a real browser (tests/integration/admin_page.rs)
#   protobuf-compiler (protoc),         etcd-client's gRPC code is generated at build time; its
#   libprotobuf-dev                     .proto files import Google's well-known types (descriptor.proto)
#   etcd-server, etcd-client            a real etcd for the fleet tests (tests/integration/fleet.rs)
#   redis-server                        a real Redis for shared rate limits (tests/integration/fleet.rs)
DEFAULT_PACKAGES=(
    build-essential pkg-config cmake ca-certificates
    curl openssl python3
    nginx-light haproxy wrk nghttp2-client
    systemd procps lsof iproute2 chromium
    protobuf-compiler libprotobuf-dev etcd-server etcd-client redis-server
)

# Cargo tools the test command runs (from crates.io; built once, ~3 min on 2 cores). Only
# with the full list: `setup.sh PACKAGE...` installs just those packages.
cargo_tools() {
    if [[ $FULL == 1 && $CARGO_TOOLS == 1 ]] && ! command -v cargo-deny >/dev/null 2>&1; then
        echo "setup.sh: installing cargo-deny"
        cargo install --locked --quiet cargo-deny
    fi
}

# Python client packages the tests drive real protocols with (from PyPI, for whichever
# python3 is first on PATH): grpcio (gRPC clients and servers), h2 (raw HTTP/2 frames for the
# abuse cases), websockets (a real WebSocket client and server).
PYTHON_PACKAGES=(grpcio h2 websockets)
python_packages() {
    [[ $FULL == 1 ]] || return 0
    python3 -c "import grpc, h2, websockets" 2>/dev/null && return 0
    echo "setup.sh: installing Python packages: ${PYTHON_PACKAGES[*]}"
    python3 -m pip install --quiet "${PYTHON_PACKAGES[@]}" 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages "${PYTHON_PACKAGES[@]}"
}

CARGO_TOOLS=1
case "${1:-}" in
--skip-cargo-tools)
    CARGO_TOOLS=0
    shift
    ;;
--cargo-tools-only)
    FULL=1
    cargo_tools
    exit 0
    ;;
esac

FULL=1
if [[ $# -gt 0 ]]; then
    FULL=0
    wanted=("$@")
else
    wanted=("${DEFAULT_PACKAGES[@]}")
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: not a Debian-like system (no dpkg/apt-get); install these yourself: ${wanted[*]}" >&2
    exit 0
fi

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${wanted[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup.sh: all ${#wanted[@]} packages already installed"
    cargo_tools
    python_packages
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup.sh: missing packages (${missing[*]}) and not root without sudo; install them as root" >&2
        exit 1
    fi
    SUDO=(sudo)
fi

echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq

# A package that no longer exists in this release (nginx-light was dropped after Debian 12)
# is replaced by its successor instead of failing the whole install.
to_install=()
for pkg in "${missing[@]}"; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then
        to_install+=("$pkg")
    elif [[ "$pkg" == nginx-light ]] && apt-cache show nginx >/dev/null 2>&1; then
        installed nginx || to_install+=(nginx)
    else
        echo "setup.sh: warning: package $pkg is not available from apt here; skipped" >&2
    fi
done

if [[ ${#to_install[@]} -gt 0 ]]; then
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${to_install[@]}"
fi

cargo_tools
python_packages
echo "setup.sh: done"
