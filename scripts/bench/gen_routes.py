#!/usr/bin/env python3
"""Generate a meshgate policy directory with N MeshHTTPRoute rules for benchmarks.

    scripts/bench/gen_routes.py --rules 10000 --out /tmp/pol --port 19113 \
        --backend 127.0.0.1:19100

Writes (Universal form, deterministic for the same arguments):
  gateway.yaml        MeshGateway `bench-gateway` (one HTTP listener on --port) and its
                      BUILTIN gateway Dataplane
  dataplanes.yaml     Dataplanes for the benchmark backend `bench-backend` and a handful of
                      filler services, all at --backend (one nginx serves them all)
  routes-NNNN.yaml    MeshHTTPRoutes, --rules-per-route rules each, --routes-per-file
                      routes per file
  policies.yaml       with --with-policies: a MeshRetry, a MeshTimeout and a MeshRateLimit
                      (never firing) that apply to every route
  observability.yaml  with --with-observability LOG_PATH: a MeshAccessLog (Json to LOG_PATH)
                      and a MeshTrace sampling 1 % to an OTLP/HTTP endpoint on the backend
                      (which answers 200 to anything)
  health.yaml         with --with-health: a MeshHealthCheck (1 s), a MeshCircuitBreaker
                      (Kuma's default limits and a 5-failure outlier detector) and a
                      MeshLoadBalancingStrategy (RingHash on the Host header) on every backend

The N rules are N-1 filler rules plus the one rule the benchmark request matches:
  GET /bench/target  Host: bench.example.com  ->  bench-backend
declared LAST (last rule of the last route in the last file), so an implementation that
scans rules in declaration order pays for every rule. Filler rules mix Exact, PathPrefix
and RegularExpression paths, methods, header matches (Exact, Present, RegularExpression,
Prefix, Absent) and to[] entries with several hostnames. About three quarters of them
land in the bench.example.com virtual host (generic, `*.example.com` and
`bench.example.com` entries); the rest belong to other hosts. No filler rule matches the
benchmark request, and there is no catch-all, so a path nobody declared answers 404
(scripts/bench.sh relies on that to detect when a newly written route is served).

Only the Python standard library is used; YAML is written by hand.
"""

import argparse
import ipaddress
import json
import os
import re
import sys

GATEWAY = "bench-gateway"
TARGET_SERVICE = "bench-backend"
TARGET_HOST = "bench.example.com"
TARGET_PATH = "/bench/target"
FILLER_SERVICES = 8

_PLAIN = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value):
    """A YAML scalar: plain when unambiguous, else a JSON string (valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.isdigit():
        return text
    return json.dumps(text)


def emit(node, indent=0):
    """Block-style YAML lines for nested dicts/lists of scalars."""
    pad = " " * indent
    lines = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.extend(emit(value, indent + 2))
            elif isinstance(value, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(value, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {scalar(value)}")
    else:
        for item in node:
            if isinstance(item, (dict, list)) and item:
                sub = emit(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return lines


def document(obj):
    return "\n".join(emit(obj)) + "\n"


def filler_rule(i):
    """Rule i of the filler (0-based): six shapes, none matching the bench request."""
    service = f"bench-svc-{i % FILLER_SERVICES}"
    shape = i % 6
    if shape == 0:
        match = {"path": {"type": "Exact", "value": f"/exact/r{i:06d}/items"}}
    elif shape == 1:
        match = {"path": {"type": "PathPrefix", "value": f"/api/v{i % 3 + 1}/r{i:06d}"}}
    elif shape == 2:
        match = {"path": {"type": "RegularExpression", "value": f"/re/r{i:06d}/[0-9]+(/[a-z]+)?"}}
    elif shape == 3:
        match = {
            "path": {"type": "PathPrefix", "value": f"/tenant/r{i:06d}"},
            "headers": [{"type": "Exact", "name": "x-tenant", "value": f"t{i % 97}"}],
        }
    elif shape == 4:
        match = {
            "path": {"type": "Exact", "value": f"/orders/r{i:06d}"},
            "method": "POST",
            "headers": [
                {"type": "Present", "name": "x-request-id"},
                {"type": "RegularExpression", "name": "x-version", "value": "v[0-9]+"},
            ],
        }
    else:
        match = {
            "path": {"type": "RegularExpression", "value": f"/v[0-9]+/r{i:06d}/.*"},
            "method": "GET",
            "headers": [
                {"type": "Prefix", "name": "user-agent", "value": "bench"},
                {"type": "Absent", "name": "x-debug"},
            ],
        }
    return {
        "matches": [match],
        "default": {"backendRefs": [{"kind": "MeshService", "name": service}]},
    }


def target_rule():
    return {
        "matches": [{"path": {"type": "Exact", "value": TARGET_PATH}, "method": "GET"}],
        "default": {"backendRefs": [{"kind": "MeshService", "name": TARGET_SERVICE}]},
    }


def hostnames_for(route_index):
    """to[].hostnames of a filler route: generic, bench host, wildcard, other hosts."""
    kind = route_index % 4
    if kind == 0:
        return None
    if kind == 1:
        return [TARGET_HOST, "www.example.com"]
    if kind == 2:
        return ["*.example.com"]
    return [f"app-{route_index}.example.org", f"api-{route_index}.example.org"]


def to_entry(rules, hostnames):
    entry = {"targetRef": {"kind": "Mesh"}}
    if hostnames:
        entry["hostnames"] = hostnames
    entry["rules"] = rules
    return entry


def http_route(name, to):
    return {
        "type": "MeshHTTPRoute",
        "mesh": "default",
        "name": name,
        "spec": {"targetRef": {"kind": "MeshGateway", "name": GATEWAY}, "to": to},
    }


def routes(total, per_route):
    """Yield MeshHTTPRoute documents holding total rules, the bench target last."""
    filler = total - 1
    count = max(1, -(-total // per_route))
    width = max(4, len(str(count - 1)))
    for r in range(count):
        start, stop = r * per_route, min((r + 1) * per_route, filler)
        to = []
        if start < stop:
            to.append(to_entry([filler_rule(i) for i in range(start, stop)], hostnames_for(r)))
        if r == count - 1:
            to.append(to_entry([target_rule()], [TARGET_HOST]))
        yield http_route(f"bench-route-{r:0{width}d}", to)


def gateway_docs(port):
    return [
        {
            "type": "MeshGateway",
            "mesh": "default",
            "name": GATEWAY,
            "selectors": [{"match": {"kuma.io/service": GATEWAY}}],
            "conf": {"listeners": [{"port": port, "protocol": "HTTP", "tags": {"port": f"http-{port}"}}]},
        },
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"{GATEWAY}-1",
            "networking": {
                "address": "127.0.0.1",
                "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": GATEWAY}},
            },
        },
    ]


def dataplane(service, address, port):
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"{service}-1",
        "networking": {
            "address": address,
            "inbound": [{"port": port, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}],
        },
    }


def write(path, docs):
    # Write-then-rename so a running gateway never sees half a file.
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("---\n".join(document(d) for d in docs))
    os.replace(tmp, path)


def parse_backend(text):
    host, sep, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
        port_num = int(port)
    except ValueError:
        port_num = 0
    if not sep or not 0 < port_num < 65536:
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host, port_num


# What a realistic mesh puts on every gateway route: Kuma's default retries, a timeout and a
# rate limit high enough never to fire (the cost measured is the policies', not refusals').
POLICIES = [
    """type: MeshRetry
name: bench-retry
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      http: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}
""",
    """type: MeshTimeout
name: bench-timeout
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: bench-gateway}
  to:
  - targetRef: {kind: Mesh}
    default:
      connectionTimeout: 3s
      http: {requestTimeout: 20s, streamIdleTimeout: 10s}
""",
    """type: MeshRateLimit
name: bench-rate-limit
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      local:
        http:
          requestRate: {num: 4000000000, interval: 1s}
""",
]

HEALTH = [
    """type: MeshHealthCheck
name: bench-health
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      interval: 1s
      timeout: 1s
      unhealthyThreshold: 3
      healthyThreshold: 1
      http: {path: /}
""",
    """type: MeshCircuitBreaker
name: bench-circuit-breaker
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      connectionLimits: {maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3}
      outlierDetection:
        interval: 10s
        baseEjectionTime: 30s
        detectors:
          totalFailures: {consecutive: 5}
""",
    """type: MeshLoadBalancingStrategy
name: bench-ring-hash
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      loadBalancer:
        type: RingHash
        ringHash:
          hashPolicies:
          - type: Header
            header: {name: host}
""",
]


def observability_docs(log_path, address, port):
    return [
        f"""type: MeshAccessLog
name: bench-access-log
mesh: default
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: Mesh}}
    default:
      backends:
      - type: File
        file:
          path: {log_path}
          format:
            type: Json
            json:
            - {{key: start, value: "%START_TIME%"}}
            - {{key: method, value: "%REQ(:METHOD)%"}}
            - {{key: path, value: "%REQ(:PATH)%"}}
            - {{key: status, value: "%RESPONSE_CODE%"}}
            - {{key: upstream, value: "%UPSTREAM_HOST%"}}
            - {{key: duration, value: "%DURATION%"}}
""",
        f"""type: MeshOpenTelemetryBackend
name: bench-otel
mesh: default
labels: {{collector: bench}}
spec:
  endpoint: {{address: {address}, port: {port}}}
  protocol: http
""",
        """type: MeshTrace
name: bench-trace
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
    - type: OpenTelemetry
      openTelemetry:
        backendRef: {kind: MeshOpenTelemetryBackend, labels: {collector: bench}}
    sampling: {overall: 1, random: 1, client: 1}
""",
    ]


def positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", type=positive, required=True, help="total MeshHTTPRoute rules (N)")
    p.add_argument("--out", required=True, help="policy directory to (re)create the files in")
    p.add_argument("--port", type=positive, required=True, help="gateway HTTP listener port")
    p.add_argument("--backend", type=parse_backend, required=True, help="backend IP:PORT")
    p.add_argument("--rules-per-route", type=positive, default=100)
    p.add_argument("--routes-per-file", type=positive, default=10)
    p.add_argument("--with-policies", action="store_true",
                   help="add a MeshRetry, a MeshTimeout and a MeshRateLimit (a limit that never "
                        "fires) applying to every route")
    p.add_argument("--with-observability", metavar="LOG_PATH",
                   help="add a Json MeshAccessLog to LOG_PATH and a 1 %% MeshTrace exporting to the backend")
    p.add_argument("--with-health", action="store_true",
                   help="add a MeshHealthCheck, a MeshCircuitBreaker and a RingHash "
                        "MeshLoadBalancingStrategy applying to every backend")
    args = p.parse_args(argv)
    if args.port > 65535:
        p.error("--port must be at most 65535")

    os.makedirs(args.out, exist_ok=True)
    # Only files this script wrote before are removed: a reused directory stays exact.
    for name in os.listdir(args.out):
        if re.fullmatch(r"routes-\d+\.yaml", name):
            os.remove(os.path.join(args.out, name))

    address, port = args.backend
    write(os.path.join(args.out, "gateway.yaml"), gateway_docs(args.port))
    services = [TARGET_SERVICE] + [f"bench-svc-{i}" for i in range(FILLER_SERVICES)]
    write(os.path.join(args.out, "dataplanes.yaml"), [dataplane(s, address, port) for s in services])

    policy_file = os.path.join(args.out, "policies.yaml")
    if args.with_policies:
        with open(policy_file + ".tmp", "w", encoding="utf-8") as f:
            f.write("---\n".join(POLICIES))
        os.replace(policy_file + ".tmp", policy_file)
    elif os.path.exists(policy_file):
        os.remove(policy_file)
    obs_file = os.path.join(args.out, "observability.yaml")
    if args.with_observability:
        docs = observability_docs(args.with_observability, address, port)
        with open(obs_file + ".tmp", "w", encoding="utf-8") as f:
            f.write("---\n".join(docs))
        os.replace(obs_file + ".tmp", obs_file)
    elif os.path.exists(obs_file):
        os.remove(obs_file)
    health_file = os.path.join(args.out, "health.yaml")
    if args.with_health:
        with open(health_file + ".tmp", "w", encoding="utf-8") as f:
            f.write("---\n".join(HEALTH))
        os.replace(health_file + ".tmp", health_file)
    elif os.path.exists(health_file):
        os.remove(health_file)

    batch, file_index, route_count = [], 0, 0
    for doc in routes(args.rules, args.rules_per_route):
        batch.append(doc)
        route_count += 1
        if len(batch) == args.routes_per_file:
            write(os.path.join(args.out, f"routes-{file_index:04d}.yaml"), batch)
            batch, file_index = [], file_index + 1
    if batch:
        write(os.path.join(args.out, f"routes-{file_index:04d}.yaml"), batch)
        file_index += 1
    print(f"{args.out}: {args.rules} rules in {route_count} MeshHTTPRoutes, {file_index} route files",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
