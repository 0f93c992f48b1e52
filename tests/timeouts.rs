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

// Kuma's connection idle timeout (`--idle-timeout`, 300 s by default): a keep-alive connection
// waiting for its next request is closed once that long has passed since its last response.
// Each request starts the wait afresh, and a response slower than the timeout is not cut.
#[test]
fn idle_timeout_closes_a_waiting_keep_alive_connection_only() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            ("route.yaml", catch_all_route("r", "v1")),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &["--idle-timeout", "1"],
    );
    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    // 1.8 s on one connection, never 1 s without a request.
    for i in 0..3 {
        let r = conn.send("GET", "/", "a.test", &[], b"");
        assert_eq!(r.map(|r| r.status).ok(), Some(200), "request {i}");
        std::thread::sleep(std::time::Duration::from_millis(600));
    }
    let slow = conn.send("GET", "/", "a.test", &[("x-echo-delay-ms", "1500")], b"");
    assert_eq!(slow.map(|r| r.status).ok(), Some(200), "slow request");
    let closed = conn
        .wait_closed(std::time::Duration::from_secs(5))
        .expect("an idle connection is closed after the idle timeout");
    assert!(
        closed >= std::time::Duration::from_millis(800),
        "closed {closed:?} after the response, before the 1 s idle timeout"
    );
    assert!(
        closed <= std::time::Duration::from_millis(2500),
        "closed only {closed:?} after the response"
    );
}
