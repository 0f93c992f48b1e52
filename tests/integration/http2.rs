//! HTTP/2 towards clients and gRPC end to end (spec ../shared/spec/kuma-gateway-semantics.md
//! and Kuma's gateway listener settings): HTTP/2 with prior knowledge (h2c) and HTTP/1.1 on
//! one plain-text port, ALPN h2 on HTTPS, and real gRPC clients and servers (Python
//! `grpcio`, tests/integration/support/grpc_peer.py) through both: unary and streaming calls, statuses
//! and trailers carried through, large messages, client deadlines, and meshgate's own answers
//! to gRPC requests as trailers-only gRPC responses with Envoy's statuses.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A gRPC server (`grpc_peer.py server`) registered as backend `name`.
struct GrpcServer {
    child: Child,
}

impl GrpcServer {
    fn start(name: &str) -> GrpcServer {
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(peer_script())
            .args(["server", &port.to_string(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with grpcio (scripts/setup.sh installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready", "grpc server did not start");
        register_backend_port(name, port);
        GrpcServer { child }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/grpc_peer.py")
}

/// Runs `grpc_peer.py client` against `target` and returns its JSON line.
fn grpc(target: &str, case: &str, tls: Option<(&Path, &str)>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(peer_script()).args(["client", target, case]);
    if let Some((ca, authority)) = tls {
        cmd.arg("--ca").arg(ca).args(["--authority", authority]);
    }
    let out = cmd.output().expect("python3 grpc client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "grpc client {case}: {e}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn grpc_dataplane(service: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: dp-{service}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: @PORT:{service}@\n    tags:\n      kuma.io/service: {service}\n      kuma.io/protocol: grpc\n"
    )
}

/// An HTTP listener (1) and an HTTPS listener (2) for `g.test`, both routing every path to
/// gRPC service `g`, but `/empty.Service/` to `none` (no endpoints).
fn files(cert_bundle: &str) -> Vec<(&'static str, String)> {
    let gateway = format!(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: HTTP\n  - port: @LPORT:2@\n    protocol: HTTPS\n    hostname: g.test\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n",
        inline_string(cert_bundle).trim_end()
    );
    let route = "type: MeshHTTPRoute\nmesh: default\nname: grpc-route\nspec:\n  targetRef: {kind: MeshGateway, name: edge-gateway}\n  to:\n  - targetRef: {kind: Mesh}\n    rules:\n    - matches: [{path: {type: PathPrefix, value: /meshgate.test.Echo}}]\n      default: {backendRefs: [{kind: MeshService, name: g}]}\n    - matches: [{path: {type: PathPrefix, value: /empty.Service}}]\n      default: {backendRefs: [{kind: MeshService, name: none}]}\n".to_string();
    let none = "type: Dataplane\nmesh: default\nname: dp-none\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 1\n    tags:\n      kuma.io/service: none\n      kuma.io/protocol: grpc\n    health: {ready: false}\n";
    vec![
        ("gateway.yaml", gateway),
        ("route.yaml", route),
        (
            "dataplanes.yaml",
            format!("{}---\n{none}", grpc_dataplane("g")),
        ),
    ]
}

struct Setup {
    _server: GrpcServer,
    gw: Gateway,
    ca: std::path::PathBuf,
    _certs: TempDir,
}

fn setup() -> Setup {
    let certs = tempdir("grpc-certs");
    let (ca, bundle) = make_cert(&certs, "g.test", "ec");
    let server = GrpcServer::start("g");
    let gw = Gateway::start(&files(&bundle), &[]);
    Setup {
        _server: server,
        gw,
        ca,
        _certs: certs,
    }
}

// gRPC with an insecure channel to an HTTP listener (h2c, prior knowledge) and a TLS
// channel to an HTTPS listener (ALPN h2): every call shape, statuses, trailers, big messages.
#[test]
fn grpc_calls_pass_through_h2c_and_https_listeners() {
    let Setup { gw, ca, .. } = &setup();
    let plain = format!("127.0.0.1:{}", gw.lport(1));
    let tls = format!("127.0.0.1:{}", gw.lport(2));
    for (target, creds) in [
        (plain.as_str(), None),
        (tls.as_str(), Some((ca.as_path(), "g.test"))),
    ] {
        let unary = grpc(target, "unary", creds);
        assert_eq!(unary["code"], "OK", "{unary}");
        assert_eq!(unary["response"], "g:hello");
        assert_eq!(
            unary["trailers"]["x-backend"], "g",
            "trailers carried: {unary}"
        );
        let ss = grpc(target, "server_stream", creds);
        assert_eq!(ss["responses"].as_array().map(Vec::len), Some(5), "{ss}");
        let cs = grpc(target, "client_stream", creds);
        assert_eq!(cs["response"], "g:abc", "{cs}");
        let bidi = grpc(target, "bidi", creds);
        assert_eq!(
            bidi["responses"],
            serde_json::json!(["g:x", "g:y"]),
            "{bidi}"
        );
        let err = grpc(target, "error", creds);
        assert_eq!(err["code"], "NOT_FOUND", "{err}");
        assert_eq!(err["details"], "no such thing: thing");
        let large = grpc(target, "large", creds);
        assert_eq!(large["length"], 6 << 20, "{large}");
    }
}

// A client deadline (grpc-timeout) is the client's: it ends the call at its deadline and the
// gateway cancels the upstream stream; Kuma's gateway does not enforce grpc-timeout itself.
#[test]
fn a_client_deadline_ends_the_call_in_time() {
    let Setup { gw, .. } = &setup();
    let r = grpc(&format!("127.0.0.1:{}", gw.lport(1)), "deadline", None);
    assert_eq!(r["code"], "DEADLINE_EXCEEDED", "{r}");
    assert!(r["elapsed"].as_f64().unwrap_or(9.0) < 1.5, "{r}");
}

// meshgate's own answers to gRPC requests are trailers-only gRPC responses with Envoy's
// statuses: no route → UNIMPLEMENTED (404), no healthy endpoint → UNAVAILABLE (503).
#[test]
fn local_answers_to_grpc_requests_are_grpc_statuses() {
    let Setup { gw, .. } = &setup();
    let target = format!("127.0.0.1:{}", gw.lport(1));
    let missing = grpc(&target, "missing_method", None);
    assert_eq!(missing["code"], "UNIMPLEMENTED", "{missing}");
    // /empty.Service/ routes to a service without ready endpoints.
    let out = Command::new("curl")
        .args(["-s", "-i", "--http2-prior-knowledge", "-X", "POST"])
        .args(["-H", "content-type: application/grpc", "--data-binary", ""])
        .arg(format!(
            "http://127.0.0.1:{}/empty.Service/Call",
            gw.lport(1)
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 200"), "{text}");
    assert!(text.contains("grpc-status: 14"), "{text}");
    assert!(text.contains("grpc-message: no healthy upstream"), "{text}");
}

// One plain-text port speaks HTTP/1.1 and HTTP/2 with prior knowledge (decided by the
// preface); `Upgrade: h2c` is not taken up (Envoy does not either): the request is served
// over HTTP/1.1.
#[test]
fn h2c_and_http1_share_a_port_and_upgrade_h2c_stays_http1() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let url = format!("http://127.0.0.1:{}/x", gw.lport(1));
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(curl(&["--http2-prior-knowledge"]), "2 200");
    assert_eq!(curl(&["--http1.1"]), "1.1 200");
    assert_eq!(
        curl(&["--http2"]),
        "1.1 200",
        "an h2c upgrade offer is served over HTTP/1.1"
    );
    // h2load: many streams on one connection, all answered.
    let out = Command::new("h2load")
        .args(["-n", "200", "-c", "1", "-m", "20"])
        .arg(&url)
        .output()
        .expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("200 succeeded"), "{text}");
    assert!(text.contains("status codes: 200 2xx"), "{text}");
}

fn h2_peer(port: u16, case: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/support/h2_peer.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&port.to_string(), case])
        .output()
        .expect("python3 with h2 (scripts/setup.sh installs it)");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "h2_peer {case}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// Kuma's listener settings: 100 concurrent streams, a 64 KiB stream window, a 1 MiB
// connection window.
#[test]
fn http2_settings_are_kumas() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let s = h2_peer(gw.lport(1), "settings");
    assert_eq!(s["max_concurrent_streams"], 100, "{s}");
    assert_eq!(s["initial_window_size"], 65536, "{s}");
    assert_eq!(s["connection_window"], 1 << 20, "{s}");
}

// Rapid reset (CVE-2023-44487): a client that opens and resets streams as fast as it can is
// cut off with GOAWAY ENHANCE_YOUR_CALM long before its 2,000th stream, and the backend sees
// a fraction of them; a PING flood is answered at the reader's pace and the gateway keeps
// serving.
#[test]
fn http2_abuse_is_cut_off_and_other_clients_are_served() {
    let a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let r = h2_peer(gw.lport(1), "rapid_reset");
    assert_eq!(r["goaway"], "ENHANCE_YOUR_CALM", "{r}");
    assert!(
        r["sent"].as_u64().unwrap_or(2000) < 2000,
        "cut off early: {r}"
    );
    assert!(
        a.count() < 200,
        "the backend saw {} of the reset streams",
        a.count()
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("meshgate_http2_connections_cut_total{reason=\"ENHANCE_YOUR_CALM\"} 1"),
        "the cut-off is counted: {m}"
    );
    let p = h2_peer(gw.lport(1), "ping_flood");
    assert_eq!(p["sent"], true, "{p}");
    gw.assert_routed(1, "/after", "a.test", "a");
}

// A CONTINUATION flood (a header block that never ends) is cut off with GOAWAY
// ENHANCE_YOUR_CALM long before its 5,000th frame and counted; a SETTINGS flood does not
// take the gateway down or grow it without bound; other clients are served all along.
#[test]
fn continuation_and_settings_floods_are_contained() {
    let a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let rss = |gw: &Gateway| {
        let m = gw.admin_get("/metrics").text();
        m.lines()
            .find(|l| l.starts_with("process_resident_memory_bytes "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = rss(&gw);
    let r = h2_peer(gw.lport(1), "continuation_flood");
    assert!(
        r["goaway"] == "ENHANCE_YOUR_CALM" || r["closed"] == true,
        "{r}"
    );
    // The peer floods until the gateway ends the connection, up to 100,000 frames.
    assert!(
        r["sent"].as_u64().unwrap_or(u64::MAX) < 100_000,
        "cut off before the flood ended: {r}"
    );
    assert_eq!(
        a.count(),
        0,
        "the endless header block never reached the backend"
    );
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("meshgate_http2_connections_cut_total{reason=\"ENHANCE_YOUR_CALM\"} 1"),
        "{m}"
    );
    let s = h2_peer(gw.lport(1), "settings_flood");
    assert!(s["sent"].as_u64().unwrap_or(0) > 0, "{s}");
    gw.assert_routed(1, "/after", "a.test", "a");
    let after = rss(&gw);
    assert!(before > 0.0, "RSS is exported");
    assert!(
        after - before < 64.0 * 1024.0 * 1024.0,
        "RSS grew {} MiB",
        (after - before) / 1048576.0
    );
}

// CONNECT is not routed on Kuma's gateway listeners (Envoy has no CONNECT route there):
// refused on its own stream, the connection's next stream served.
#[test]
fn http2_connect_is_refused_on_its_stream() {
    let a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let r = h2_peer(gw.lport(1), "connect");
    let refused = r["connect"].as_str().unwrap_or_default();
    assert!(
        refused == "reset" || refused.starts_with('4'),
        "CONNECT refused: {r}"
    );
    assert_eq!(r["normal"], "200", "{r}");
    assert_eq!(a.count(), 1, "only the normal request reached the backend");
}

// A header list over 64 KiB is answered 431 on its own stream and the connection's next
// stream is served (Envoy answers the one stream, too); a header block far beyond it
// (over 256 KiB) ends the connection with GOAWAY, the abuse cut-off of `h2`, counted.
#[test]
fn an_oversized_header_list_is_refused_on_its_stream() {
    let a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let r = h2_peer(gw.lport(1), "oversized_100");
    assert_eq!(r["big"], "431", "{r}");
    assert_eq!(r["small"], "200", "{r}");
    assert!(r["goaway"].is_null(), "{r}");
    assert_eq!(a.count(), 1, "only the normal stream reached the backend");
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("meshgate_http_requests_rejected_total")
                && l.contains("header_too_large")
                && l.ends_with(" 1")),
        "{m}"
    );
    let r = h2_peer(gw.lport(1), "oversized_1024");
    // GOAWAY (`h2` counts the CONTINUATION frames first: ENHANCE_YOUR_CALM), or a reset the
    // client saw first when it was cut off while still sending.
    assert!(
        r["goaway"] == "ENHANCE_YOUR_CALM" || r["closed"] == true,
        "{r}"
    );
    assert!(r["small"].is_null(), "{r}");
    assert_eq!(a.count(), 1);
    let m = gw.admin_get("/metrics").text();
    assert!(
        m.contains("meshgate_http2_connections_cut_total{reason=\"ENHANCE_YOUR_CALM\"} 1"),
        "{m}"
    );
    gw.assert_routed(1, "/after", "a.test", "a");
}

// A client that stops reading (its stream window stays at zero) cannot hold a stream open:
// Kuma's stream idle timeout (here 1 s) ends it.
#[test]
fn a_stalled_reader_is_ended_by_the_stream_idle_timeout() {
    let _a = EchoHttp::start("a");
    let gw = Gateway::start(&catch_all_files_with_1s_stream_idle("route", "a"), &[]);
    let r = h2_peer(gw.lport(1), "zero_window");
    assert!(r["ended_by"].is_string() || r["closed"] == true, "{r}");
    let after = r["after_s"].as_f64().unwrap_or(99.0);
    assert!(
        (0.8..4.0).contains(&after),
        "ended after the 1 s idle timeout: {r}"
    );
}
