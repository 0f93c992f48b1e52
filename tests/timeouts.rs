//! Upstream timeouts (spec ../shared/spec/kuma-gateway-semantics.md §8.1): Kuma's gateway
//! answers 504 `stream timeout` when a backend stays silent for 5 s, and MeshTimeout's
//! `http.requestTimeout` shortens that per route (504 `upstream request timeout`).

mod common;

use common::*;

// §8.1: every gateway route has a 5 s stream-idle timeout even without a MeshTimeout.
#[test]
fn silent_backend_gets_504_stream_timeout_by_default() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("r", "v1");
    let ok = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "1000")], b"");
    assert_eq!(ok.status, 200);
    let slow = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "7000")], b"");
    assert_eq!(slow.status, 504);
    assert!(slow.text().contains("stream timeout"), "{}", slow.text());
}

// §8.1: a MeshTimeout targeting the gateway sets the route's request timeout.
#[test]
fn mesh_timeout_request_timeout_applies_to_gateway_routes() {
    let _v1 = EchoHttp::start("v1");
    let timeout = dedent(
        r#"
        type: MeshTimeout
        mesh: default
        name: gw-timeout
        spec:
          targetRef:
            kind: MeshGateway
            name: edge-gateway
          to:
          - targetRef:
              kind: Mesh
            default:
              http:
                requestTimeout: 1s
        "#,
    );
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            ("route.yaml", catch_all_route("r", "v1")),
            ("timeout.yaml", timeout),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    let slow = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "2500")], b"");
    assert_eq!(slow.status, 504);
    assert!(
        slow.text().contains("upstream request timeout"),
        "{}",
        slow.text()
    );
    let fast = gw.send(1, "GET", "/", "a.test", &[("x-echo-delay-ms", "200")], b"");
    assert_eq!(fast.status, 200);
}
