//! Routing over the wire: what only a real meshgate between real clients and backends shows.
//! The routing semantics themselves (listeners, hostnames, precedence, matching, merging) are
//! tested in process in `routing.rs`; these tests check that the proxy applies them to real
//! requests: method and body reach the backend, an unrouted request reaches none, a refused
//! header never leaves the gateway, chunked bodies arrive whole.

use crate::support::*;

// Seed example 1 (spec §4.1, §5.3 default): PathPrefix / on a listener selected by tags sends every
// path to demo-app; path, query, method, body and Host reach the backend unchanged.
#[test]
fn seed_1_pathprefix_root_sends_everything_to_demo_app() {
    let _app = EchoHttp::start("demo-app");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
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
                        protocol: HTTP
                        tags:
                          port: http-8080
                    "#,
                ),
            ),
            (
                "route.yaml",
                tagged_prefix_route("demo-app-route", "port: http-8080\n", "/", "demo-app"),
            ),
            ("dataplanes.yaml", dataplanes(&["demo-app"])),
            ("gateway-dataplane.yaml", gateway_dataplane()),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "127.0.0.1", "demo-app");
    let r = gw.assert_routed(1, "/some/deep/path?x=1&y=2", "127.0.0.1", "demo-app");
    assert_eq!(r.seen_path(), "/some/deep/path?x=1&y=2");
    let r = gw.send(1, "POST", "/submit", "127.0.0.1", &[], b"hello");
    assert_eq!(backend_of(&r).as_deref(), Some("demo-app"));
    assert_eq!(r.echo()["method"], "POST");
    assert_eq!(r.echo()["body_len"], 5);
    let r = gw.assert_routed(1, "/", "anything.example", "demo-app");
    assert_eq!(r.seen_host(), "anything.example");
}

// Spec §4.8 / §3.9: no route matching -> 404, also on a gateway whose listener has no route at all.
#[test]
fn no_matching_route_answers_404_and_no_backend_is_contacted() {
    let v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
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
                        protocol: HTTP
                        tags:
                          port: one
                      - port: @LPORT:2@
                        protocol: HTTP
                        tags:
                          port: two
                    "#,
                ),
            ),
            (
                "route.yaml",
                tagged_prefix_route("route", "port: one\n", "/only", "v1"),
            ),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    let r = gw.assert_status(1, "/nothing", "a.test", 404);
    assert_eq!(backend_of(&r), None);
    let r = gw.assert_status(2, "/only", "a.test", 404);
    assert_eq!(backend_of(&r), None);
    assert_eq!(v1.count(), 0, "no backend may see an unrouted request");
}

// Spec §3.8 / Appendix A ([code/envoy]): a request header name containing `_` is rejected with 400
// and never reaches a backend; `--allow-underscore-headers` (team brief) lets it through.
#[test]
fn header_name_with_underscore_is_rejected_with_400() {
    let v1 = EchoHttp::start("v1");
    let files = catch_all_files("route", "v1");
    let gw = Gateway::start(&files, &[]);
    gw.assert_status_with(
        1,
        "GET",
        "/",
        "a.test",
        &[("x_forwarded_user", "admin")],
        400,
    );
    assert_eq!(v1.count(), 0, "the request reached the backend");
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("x-ok", "1")], "v1");
    drop(gw);

    let gw = Gateway::start(&files, &["--allow-underscore-headers"]);
    let r = gw.assert_routed_with(1, "GET", "/", "a.test", &[("x_custom", "1")], "v1");
    assert_eq!(r.seen_header("x_custom"), vec!["1"]);
}

// Chunked uploads are framed by Pingora's reader alone: the backend gets every byte however the
// body is cut into reads, and the keep-alive connection goes on with the request after it, sent
// later or pipelined in the same write.
#[test]
fn chunked_uploads_arrive_whole_and_the_connection_goes_on() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("route", "v1");
    // ~300 KiB in chunks of 1 to ~9,000 bytes, some with extensions, then a trailer.
    let mut body = Vec::new();
    let mut data_len = 0;
    for i in 0..70usize {
        let size = 1 + (i * 7919) % 9000;
        let ext = if i % 3 == 0 { ";i=\"x\"" } else { "" };
        body.extend_from_slice(format!("{size:X}{ext}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size));
        body.extend_from_slice(b"\r\n");
        data_len += size;
    }
    body.extend_from_slice(b"0\r\nx-checksum: 1\r\n\r\n");
    let head: &[u8] =
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let upload = [head, &body].concat();

    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    for cut in [1000, 4093] {
        let pieces: Vec<&[u8]> = upload.chunks(cut).collect();
        let r = conn
            .send_in_pieces(&pieces, "POST")
            .expect("upload answered");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echo()["body_len"], data_len, "cut every {cut} bytes");
        let next = conn
            .send("GET", "/after", "a.test", &[], b"")
            .expect("next request");
        assert_eq!(next.status, 200);
        assert_eq!(next.echo()["path"], "/after");
    }
    let pipelined = [
        &upload[..],
        b"GET /pipelined HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ]
    .concat();
    let r = conn
        .send_in_pieces(&[&pipelined], "POST")
        .expect("upload answered");
    assert_eq!(r.echo()["body_len"], data_len);
    let next = conn.receive("GET").expect("pipelined request answered");
    assert_eq!(next.echo()["path"], "/pipelined");
}
