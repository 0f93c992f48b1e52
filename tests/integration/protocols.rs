//! Protocol behaviour a client sees on the wire (spec kuma-gateway-semantics §3.8): response
//! compression as Kuma's gateway does it (gzip by `Accept-Encoding`, Envoy's defaults,
//! streamed), HTTP/1.0 served or refused with Envoy's 426, and WebSocket through HTTP and
//! HTTPS listeners with a real client and server (Python `websockets`).

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A raw HTTP/1.1 exchange: the response head (lower-cased) and the body bytes.
fn get_raw(port: u16, head: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    (head, all[split + 4..].to_vec())
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

// Envoy's compressor with Kuma's settings: a JSON answer is gzipped for a client that asks,
// with `Vary`; not for one that does not (`Vary` still), not when it has an ETag; curl
// decodes what it gets back to the backend's bytes.
#[test]
fn responses_are_gzipped_as_kumas_gateway_does() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let url = format!("http://127.0.0.1:{}/c", gw.lport(1));
    let gz = curl(&["-H", "accept-encoding: gzip", &url]);
    assert!(gz.contains("content-encoding: gzip"), "{gz}");
    assert!(gz.contains("vary: accept-encoding"), "{gz}");
    assert!(!gz.contains("content-length"), "{gz}");
    let plain = curl(&[&url]);
    assert!(!plain.contains("content-encoding"), "{plain}");
    assert!(plain.contains("vary: accept-encoding"), "{plain}");
    let etag = curl(&[
        "-H",
        "accept-encoding: gzip",
        "-H",
        "x-echo-set-header: etag:\"v1\"",
        &url,
    ]);
    assert!(
        !etag.contains("content-encoding"),
        "an ETag turns it off: {etag}"
    );
    let decoded = Command::new("curl")
        .args(["-s", "--compressed", &url])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&decoded.stdout).expect("decoded JSON");
    assert_eq!(body["path"], "/c");
}

// Compression streams: a body the backend sends slowly is compressed chunk by chunk, so the
// client has bytes long before the backend finishes.
#[test]
fn compression_streams_a_slow_body() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let mut s = TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let start = Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: a.test\r\naccept-encoding: gzip\r\nx-echo-trickle-ms: 10\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("head");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).expect("first body byte");
    let first_at = start.elapsed();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("rest");
    let all_at = start.elapsed();
    assert!(
        first_at * 3 < all_at,
        "first compressed bytes at {first_at:?}, the whole body at {all_at:?}"
    );
}

// `--compression off` compresses nothing.
#[test]
fn compression_can_be_turned_off() {
    let _a = EchoHttp::start("a");
    let gw = Gateway::start(&catch_all_files("route", "a"), &["--compression", "off"]);
    let url = format!("http://127.0.0.1:{}/c", gw.lport(1));
    let r = curl(&["-H", "accept-encoding: gzip", &url]);
    assert!(
        !r.contains("content-encoding") && !r.contains("vary"),
        "{r}"
    );
}

// HTTP/1.0 is served by default (a deliberate difference); `--http10 reject` answers it
// 426 as Kuma's gateway (Envoy) does.
#[test]
fn http10_is_served_or_refused_with_426() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let (head, _) = get_raw(gw.lport(1), "GET /old HTTP/1.0\r\nhost: a.test\r\n\r\n");
    assert!(
        head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    let strict = Gateway::start(&catch_all_files("route", "a"), &["--http10", "reject"]);
    let (head, _) = get_raw(strict.lport(1), "GET /old HTTP/1.0\r\nhost: a.test\r\n\r\n");
    assert!(head.contains(" 426 "), "{head}");
    let (head, _) = get_raw(
        strict.lport(1),
        "GET /new HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

/// A WebSocket echo server (`ws_peer.py server`) registered as backend `name`.
struct WsServer(Child);

impl WsServer {
    fn start(name: &str) -> WsServer {
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(script())
            .args(["server", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with websockets (scripts/setup.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        register_backend_port(name, port);
        WsServer(child)
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/ws_peer.py")
}

fn ws_client(url: &str, tls: Option<(&Path, &str)>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(script()).args(["client", url]);
    if let Some((ca, sni)) = tls {
        cmd.arg(ca).arg(sni);
    }
    let out = cmd.output().expect("ws client");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ws client: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// WebSocket through an HTTP and an HTTPS listener, real client and server: text, binary,
// ping/pong and a clean close all pass.
#[test]
fn websocket_passes_through_http_and_https_listeners() {
    let certs = tempdir("ws-certs");
    let (ca, bundle) = make_cert(&certs, "w.test", "ec");
    let _ws = WsServer::start("ws");
    let gateway = format!(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: HTTP\n  - port: @LPORT:2@\n    protocol: HTTPS\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n",
        inline_string(&bundle).trim_end()
    );
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway),
            ("route.yaml", catch_all_route("route", "ws")),
            ("dataplanes.yaml", dataplanes(&["ws"])),
        ],
        &[],
    );
    for (url, tls) in [
        (format!("ws://127.0.0.1:{}/chat", gw.lport(1)), None),
        (
            format!("wss://127.0.0.1:{}/chat", gw.lport(2)),
            Some((ca.as_path(), "w.test")),
        ),
    ] {
        let r = ws_client(&url, tls);
        assert_eq!(r["text"], "hello", "{url}: {r}");
        assert_eq!(r["binary_ok"], true, "{url}: {r}");
        assert_eq!(r["pong"], true, "{url}: {r}");
        assert_eq!(r["close_code"], 1000, "{url}: {r}");
    }
}
