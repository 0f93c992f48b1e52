//! Kuma policies on real traffic (spec: ../shared/spec/kuma-policies.md): a real meshgate
//! between a real client and echo backends that fail, stall or trickle on demand. What is
//! observed here only shows on the wire: attempts counted at the backend, bodies replayed,
//! 429s under a real rate and their refill, deadlines over a whole response, an upload longer
//! than the idle timeout, throttled bodies, the counters `/metrics` exposes and what
//! `/config` shows. The in-process tests of matching and merging are in `policies.rs`; the
//! acceptance scenarios (`pol-*`) cover the rest of each policy's behaviour.

use crate::support::http1::read_response_head;
use crate::support::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A gateway with a catch-all route to `a` (`endpoints` endpoints: a, a-2, ...) and `extra`
/// policy files.
fn gateway(extra: &[(&'static str, String)]) -> Gateway {
    let mut files = catch_all_files("route", "a");
    files.extend(extra.iter().cloned());
    Gateway::start(&files, &[])
}

fn retry(spec_default: &str) -> (&'static str, String) {
    (
        "retry.yaml",
        policy(
            "MeshRetry",
            "retry",
            &format!("targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default:\n{spec_default}"),
        ),
    )
}

// §5.2: a 503 is retried under Kuma's default conditions, each attempt carrying the whole
// request body again; the retries are counted by route and reason.
#[test]
fn a_gateway_error_is_retried_with_the_body_replayed() {
    let a = EchoHttp::start("a");
    let gw = gateway(&[retry("    http:\n      numRetries: 3\n")]);
    let body = vec![b'x'; 20_000];
    let resp = gw.send(
        1,
        "POST",
        "/upload",
        "a.test",
        &[
            ("x-test-id", "replay"),
            ("x-echo-status", "503"),
            ("x-echo-fail-first", "2"),
        ],
        &body,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let attempts: Vec<Seen> = a
        .requests()
        .into_iter()
        .filter(|s| s.header("x-test-id").as_deref() == Some("replay"))
        .collect();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|s| s.body == body),
        "every attempt got the body"
    );
    assert_eq!(
        gw.metric("meshgate_upstream_retries_total{reason=\"status_5xx\",route=\"route\"}"),
        2.0
    );
    assert_eq!(
        gw.metric_when(
            "meshgate_retried_requests_total{outcome=\"success\",route=\"route\"}",
            1.0,
            Duration::from_secs(2)
        ),
        1.0
    );
}

// §3.5: without a MeshRetry a backend's 503 reaches the client after one attempt.
#[test]
fn without_a_mesh_retry_a_backend_error_is_not_retried() {
    let a = EchoHttp::start("a");
    let gw = gateway(&[]);
    let resp = gw.send(
        1,
        "GET",
        "/",
        "a.test",
        &[
            ("x-test-id", "once"),
            ("x-echo-status", "503"),
            ("x-echo-fail-first", "1"),
        ],
        b"",
    );
    assert_eq!(resp.status, 503);
    assert_eq!(a.count(), 1);
}

// §5.2: when the retries run out the client gets the last attempt's answer.
#[test]
fn exhausted_retries_return_the_last_answer() {
    let a = EchoHttp::start("a");
    let gw = gateway(&[retry(
        "    http:\n      numRetries: 2\n      retryOn: [\"5xx\"]\n",
    )]);
    let resp = gw.send(
        1,
        "GET",
        "/",
        "a.test",
        &[("x-test-id", "always"), ("x-echo-status", "500")],
        b"",
    );
    assert_eq!(resp.status, 500);
    assert_eq!(a.count(), 3, "1 attempt + 2 retries");
}

fn timeouts(spec: &str) -> (&'static str, String) {
    ("timeout.yaml", policy("MeshTimeout", "timeouts", spec))
}

// §4.2: the route's requestTimeout bounds the whole response, not each read: a backend that
// keeps trickling bytes is cut off when it passes (Pingora's per-read timeout alone never
// fires on it).
#[test]
fn the_request_timeout_bounds_a_trickling_response() {
    let _a = EchoHttp::start("a");
    let gw = gateway(&[timeouts(
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n      requestTimeout: 1s\n",
    )]);
    let started = Instant::now();
    let resp = try_send(
        gw.lport(1),
        "GET",
        "/",
        "a.test",
        &[("x-echo-trickle-ms", "20")],
        b"",
    );
    let took = started.elapsed();
    assert!(resp.is_err(), "the response must be cut short: {resp:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
}

// §4.1: the stream idle timeout counts silence in both directions: an upload that keeps
// flowing for longer than it is not a timeout, even though the backend says nothing until
// the body is complete.
#[test]
fn an_upload_longer_than_the_idle_timeout_is_not_a_timeout() {
    let a = EchoHttp::start("a");
    let gw = gateway(&[timeouts(
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n      streamIdleTimeout: 1s\n",
    )]);
    let stream = TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let pieces = 8;
    write!(
        w,
        "POST /slow-upload HTTP/1.1\r\nHost: a.test\r\nx-test-id: upload\r\ncontent-length: {pieces}\r\n\r\n"
    )
    .expect("head");
    for _ in 0..pieces {
        std::thread::sleep(Duration::from_millis(400));
        w.write_all(b"u").expect("body");
    }
    let mut r = BufReader::new(stream);
    let head = read_response_head(&mut r).expect("an answer");
    assert_eq!(
        head.target_or_status, "200",
        "3.2 s of upload, 1 s idle timeout"
    );
    let seen = a.find("upload").expect("the backend got it");
    assert_eq!(seen.body, b"uuuuuuuu");
}

// §9.1: past `num` requests in an interval the client gets 429 `local_rate_limited` with the
// `onRateLimit` headers, and the backend sees nothing; the bucket is full again in the next
// interval.
#[test]
fn a_rate_limit_refuses_then_refills() {
    let a = EchoHttp::start("a");
    let gw = gateway(&[(
        "rl.yaml",
        policy(
            "MeshRateLimit",
            "rl",
            "targetRef: {kind: MeshGateway, name: edge-gateway}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      http:\n        requestRate: {num: 3, interval: 1s}\n        onRateLimit:\n          headers:\n            set: [{name: x-limited, value: 'yes'}]\n",
        ),
    )]);
    // Ten quick requests span at most two fill periods: some are refused.
    let answers: Vec<Response> = (0..10).map(|_| gw.get(1, "/", "a.test")).collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let refused = answers
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no 429 in 10 requests at 3/s"));
    assert!((3..=6).contains(&ok), "{ok} allowed");
    assert_eq!(refused.text(), "local_rate_limited");
    assert_eq!(refused.header("x-limited"), Some("yes"));
    assert_eq!(a.count(), ok, "refused requests never reach the backend");
    // The last refusal was in an exhausted period; a full period later the bucket is full.
    std::thread::sleep(Duration::from_millis(1050));
    assert_eq!(
        gw.get(1, "/", "a.test").status,
        200,
        "the next period starts full"
    );
    assert!(gw.metric("meshgate_rate_limited_total{listener=") >= 4.0);
}

// §10.1: an injected delay holds the request before the backend sees it; an abort answers
// `fault filter abort`; a bandwidth limit paces the body.
#[test]
fn faults_delay_abort_and_throttle() {
    let _a = EchoHttp::start("a");
    let delay = policy(
        "MeshFaultInjection",
        "delay",
        "targetRef: {kind: MeshGateway, name: edge-gateway}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n    - delay: {value: 600ms, percentage: 100}\n      responseBandwidth: {limit: 8kbps, percentage: 100}\n",
    );
    let gw = gateway(&[("fi.yaml", delay)]);
    let started = Instant::now();
    let resp = gw.get(1, "/", "a.test");
    let took = started.elapsed();
    assert_eq!(resp.status, 200);
    // The JSON body at 8 kbit/s (1 byte per ms), on top of the 0.6 s delay; 80 % of it, as
    // the last chunk's pause may overlap the client's read.
    let body_ms = resp.body.len() as u64;
    let paced = Duration::from_millis(600 + body_ms * 8 / 10);
    assert!(took >= paced, "{took:?} for {} bytes", resp.body.len());

    let abort = policy(
        "MeshFaultInjection",
        "abort",
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n    - abort: {httpStatus: 418, percentage: 100}\n",
    );
    let gw = gateway(&[("fi.yaml", abort)]);
    let resp = gw.get(1, "/", "a.test");
    assert_eq!(resp.status, 418);
    assert_eq!(resp.text(), "fault filter abort");
}

// Issue 16: `/config` shows for each port and route which policies apply and what they
// merged into.
#[test]
fn config_shows_the_policies_of_ports_and_routes() {
    let _a = EchoHttp::start("a");
    let gw = gateway(&[
        retry("    http:\n      numRetries: 4\n"),
        timeouts(
            "targetRef: {kind: Mesh}\nrules:\n- default:\n    http:\n      streamIdleTimeout: 2s\n",
        ),
    ]);
    let config = gw.config();
    let port = &config["snapshot"]["ports"][0];
    let applied = port["policies"]["applied"].to_string();
    assert!(
        applied.contains("MeshRetry/retry") && applied.contains("MeshTimeout/timeouts"),
        "{port}"
    );
    assert_eq!(
        port["policies"]["listener_timeouts"]["stream_idle"],
        "2000ms"
    );
    let route = &port["route_policies"][0];
    assert_eq!(route["retry"]["num_retries"], 4, "{route}");
    assert_eq!(route["routes"], 1);
}

// §4.1 on an upgraded stream: the route timeout ends with the 101 (the tunnel outlives it),
// while its idle timeout keeps running, reset by traffic either way, and ends a silent one.
#[test]
fn a_websocket_outlives_the_route_timeout_and_idles_out() {
    let _ws = EchoHttp::start("a");
    let gw = gateway(&[timeouts(
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n      requestTimeout: 1s\n      streamIdleTimeout: 1500ms\n",
    )]);
    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    let r = conn
        .send(
            "GET",
            "/chat",
            "a.test",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
            b"",
        )
        .expect("upgrade request");
    assert_eq!(r.status, 101);
    let frame = [
        0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    // 3 s of traffic, a message every 0.5 s: three times the route timeout.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        conn.write_raw(&frame).expect("write frame");
        assert_eq!(conn.read_raw(frame.len()).expect("echoed"), frame);
    }
    let closed = conn.wait_closed(Duration::from_secs(5));
    assert!(
        closed.is_some_and(|d| d >= Duration::from_millis(1200)),
        "a silent tunnel is closed after the idle timeout: {closed:?}"
    );
}
