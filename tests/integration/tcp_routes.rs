//! MeshTCPRoute on TCP listeners (spec: ../shared/spec/kuma-gateway-semantics.md section 7; the
//! seed's example 4). TLS listeners and HTTPS (issue 3) are not covered here yet.

use std::collections::HashMap;

use crate::support::*;

fn tcp_gateway() -> String {
    dedent(
        r#"
        type: MeshGateway
        mesh: default
        name: edge-gateway
        selectors:
        - match:
            kuma.io/service: edge-gateway
        conf:
          listeners:
          - port: @LPORT:1@
            protocol: TCP
            tags:
              port: tcp-9000
          - port: @LPORT:2@
            protocol: HTTP
            tags:
              port: http
        "#,
    )
}

fn tcp_route(refs: &str) -> String {
    format!(
        "type: MeshTCPRoute\nmesh: default\nname: tcp-route\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n    tags:\n      port: tcp-9000\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - default:\n        backendRefs:\n{}",
        indent(&dedent(refs), 8)
    )
}

// Seed example 4 / spec §7.2: MeshTCPRoute on a TCP listener splits connections by weight (90/10
// over 300 connections, +/-7 points).
#[test]
fn seed_4_tcp_route_splits_connections_by_weight() {
    let _v1 = EchoTcp::start("example-v1");
    let _v2 = EchoTcp::start("example-v2");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", tcp_gateway()),
            (
                "route.yaml",
                tcp_route(
                    r#"
                    - kind: MeshService
                      name: example-v1
                      weight: 90
                    - kind: MeshService
                      name: example-v2
                      weight: 10
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["example-v1", "example-v2"])),
        ],
        &[],
    );
    let n = 300;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let who = tcp_greeting(gw.lport(1)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        *counts.entry(who).or_default() += 1;
    }
    let s1 = *counts.get("example-v1").unwrap_or(&0) as f64 / n as f64;
    assert!((s1 - 0.9).abs() <= 0.07, "expected ~90/10, got {counts:?}");
}

// Spec §7.1: MeshTCPRoute binds only TCP/TLS listeners; an HTTP listener on the same gateway is
// untouched by it (no HTTP route -> 404).
#[test]
fn tcp_route_does_not_attach_to_http_listeners() {
    let _v1 = EchoTcp::start("example-v1");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", tcp_gateway()),
            (
                "route.yaml",
                tcp_route("- kind: MeshService\n  name: example-v1\n")
                    .replace("    tags:\n      port: tcp-9000\n", ""),
            ),
            ("dataplanes.yaml", dataplanes(&["example-v1"])),
        ],
        &[],
    );
    assert_eq!(tcp_greeting(gw.lport(1)).as_deref(), Ok("example-v1"));
    gw.assert_status(2, "/", "a.test", 404);
}
