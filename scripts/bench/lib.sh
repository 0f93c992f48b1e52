# Shared by the small benchmark scripts (protocols.sh, idle_conns.sh, shared_limit.sh):
# sourced, not run.

# A scratch directory $RUN and a PIDS list, everything in PIDS killed and $RUN removed on exit.
bench_scratch() {
    RUN=$(mktemp -d)
    PIDS=()
    mkdir -p "$RUN/tmp"
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}

# gateway_policies HTTP_PORT BACKEND_PORT [HTTPS_PORT CERT KEY]: the YAML of a MeshGateway
# `edge` with an HTTP listener (and an HTTPS one terminating TLS with CERT/KEY), one
# catch-all MeshHTTPRoute to service `backend`, and the Dataplane of that backend on
# 127.0.0.1:BACKEND_PORT.
gateway_policies() {
    echo "type: MeshGateway"
    echo "mesh: default"
    echo "name: edge"
    echo "selectors:"
    echo "- match: {kuma.io/service: edge}"
    echo "conf:"
    echo "  listeners:"
    echo "  - {port: $1, protocol: HTTP}"
    if [[ -n ${3:-} ]]; then
        echo "  - port: $3"
        echo "    protocol: HTTPS"
        echo "    tls:"
        echo "      mode: TERMINATE"
        echo "      certificates:"
        echo "      - inlineString: |"
        sed 's/^/          /' "$4" "$5"
    fi
    cat <<YAML
---
type: MeshHTTPRoute
mesh: default
name: all
spec:
  targetRef: {kind: MeshGateway, name: edge}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      default:
        backendRefs: [{kind: MeshService, name: backend}]
---
type: Dataplane
mesh: default
name: backend
networking:
  address: 127.0.0.1
  inbound:
  - port: $2
    tags: {kuma.io/service: backend, kuma.io/protocol: http}
YAML
}

# test_certificate DIR: a self-signed ECDSA P-256 leaf for bench.test and 127.0.0.1 in
# DIR/cert.pem and DIR/key.pem.
test_certificate() {
    openssl req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}
