# meshgate container image: Kuma built-in gateway on Pingora.
#
#   docker build -t meshgate .
#   docker run --rm -p 8080-8082:8080-8082 -p 9000:9000 -p 9901:9901 \
#       -v "$PWD/conf/policies:/etc/meshgate/policies:ro" meshgate
#
# Policies: mount a directory of MeshGateway/MeshHTTPRoute/MeshTCPRoute/Dataplane YAML at
# /etc/meshgate/policies (read-only is fine). Changes to the mounted files are hot-reloaded;
# no container restart needed. Default policies baked into the image: conf/policies (the demo).
# Admin: /ready (used by HEALTHCHECK), /config, /metrics on :9901.
# Every command run here is also run in CI outside Docker (scripts/ops/check_dockerfile.sh
# checks the structure; CI runs the same `cargo build --release --locked`).

# --- build ---------------------------------------------------------------------------
FROM rust:1-bookworm AS build
# cmake: pingora-core enables flate2/zlib-ng, whose libz-ng-sys build runs cmake. protoc:
# etcd-client generates its gRPC code at build time (libprotobuf-dev: the well-known
# types its .proto files import).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# rust-toolchain.toml: the pinned toolchain (rustup installs it on the first cargo command).
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# build.rs: the commit and PGO facts `meshgate --version` prints (no .git here: "unknown").
COPY build.rs ./
COPY src ./src
# Pingora's crates as meshgate carries them patched ([patch.crates-io] in Cargo.toml).
COPY vendor ./vendor
# Cargo.toml declares [[bench]] routing and the two benchmark [[example]]s: cargo refuses
# the manifest without their files.
COPY benches ./benches
COPY examples ./examples
# The profile the release build is optimised with (profile-guided optimisation; written by
# scripts/build/pgo.sh): the same flags as scripts/build/release_flags.sh gives every local build.
COPY pgo ./pgo
RUN RUSTFLAGS="-Cprofile-use=/src/pgo/meshgate.profdata -Cllvm-args=-no-pgo-warn-mismatch" \
    cargo build --release --locked \
    && install -m 0755 target/release/meshgate /usr/local/bin/meshgate

# --- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: upstream TLS verification; curl: the HEALTHCHECK probe.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin meshgate
COPY --from=build /usr/local/bin/meshgate /usr/local/bin/meshgate
COPY conf/policies /etc/meshgate/policies
COPY conf/pingora.yaml /etc/meshgate/pingora.yaml
# Validate the baked-in policies at build time: a broken image never ships.
RUN /usr/local/bin/meshgate --policies /etc/meshgate/policies --check

# Non-root. The demo ports are above 1024; to listen on 80/443 run with
# --cap-add NET_BIND_SERVICE (or map host 80 -> container 8080).
USER meshgate
# The documented mount point for policies.
VOLUME ["/etc/meshgate/policies"]
# Demo listeners (HTTP 8080-8082, HTTPS 8443, TCP 9000) and the admin port.
EXPOSE 8080 8081 8082 8443 9000 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9901/ready"]
ENV RUST_LOG=info
# Foreground (no -d): the container runtime supervises it. SIGTERM = graceful stop:
# give `docker stop` a timeout above grace_period_seconds + 5 s (e.g. --time 20).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/meshgate", "--policies", "/etc/meshgate/policies", "-c", "/etc/meshgate/pingora.yaml"]
CMD ["--bind", "0.0.0.0", "--admin", "0.0.0.0:9901", "--access-log", "stdout"]
