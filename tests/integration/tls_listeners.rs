//! HTTPS and TLS listeners (issue 3; spec ../shared/spec/kuma-gateway-semantics.md §3.3, §3.7,
//! §7.3): real TLS handshakes with SNI (curl and a rustls client), certificates from the
//! policy files, HTTP/2 over ALPN, and certificate changes picked up without a restart.

use crate::support::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// curl over HTTPS with SNI `sni` resolved to the listener; returns (exit code, status,
/// headers+body text). `extra` adds curl flags.
fn curl_https(port: u16, sni: &str, host: &str, ca: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--http1.1"])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{sni}:{port}:127.0.0.1")])
        .args(["-H", &format!("Host: {host}")])
        .args(extra)
        .arg(format!("https://{sni}:{port}/"))
        .output()
        .expect("curl must be installed (scripts/setup.sh)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn header_line<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
        .map(|l| l[name.len() + 1..].trim())
}

fn https_gateway(a_cert: &str, b_cert: &str) -> String {
    format!(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: HTTPS\n    hostname: a.test\n    tags:\n      name: a\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n  - port: @LPORT:1@\n    protocol: HTTPS\n    hostname: b.test\n    tags:\n      name: b\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n",
        inline_string(a_cert).trim_end(),
        inline_string(b_cert).trim_end()
    )
}

fn route_by_tag(name: &str, tag: &str, service: &str) -> String {
    format!(
        "type: MeshHTTPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n    tags:\n      name: {tag}\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: {service}\n"
    )
}

// §3.7 + §3.5 step 5: SNI picks the listener (certificate and route table); Host must match that
// listener too; HSTS is sent; an unknown SNI fails the handshake.
#[test]
fn https_sni_selects_certificate_and_routes_and_host_must_match() {
    let certs = tempdir("certs");
    let (a_crt, a_pem) = make_cert(&certs, "a.test", "ec");
    let (b_crt, b_pem) = make_cert(&certs, "b.test", "ec");
    let _a = EchoHttp::start("svc-a");
    let _b = EchoHttp::start("svc-b");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", https_gateway(&a_pem, &b_pem)),
            (
                "routes.yaml",
                format!(
                    "{}---\n{}",
                    route_by_tag("ra", "a", "svc-a"),
                    route_by_tag("rb", "b", "svc-b")
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["svc-a", "svc-b"])),
        ],
        &[],
    );
    let port = gw.lport(1);
    let (code, resp) = curl_https(port, "a.test", "a.test", &a_crt, &[]);
    assert_eq!(code, 0, "curl a.test: {resp}");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(header_line(&resp, "x-backend"), Some("svc-a"));
    assert_eq!(
        header_line(&resp, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(header_line(&resp, "server"), Some("Kuma Gateway"));

    // b.test's certificate verifies against b's CA only: SNI chose the certificate.
    let (code, resp) = curl_https(port, "b.test", "b.test", &b_crt, &[]);
    assert_eq!(code, 0, "curl b.test: {resp}");
    assert_eq!(header_line(&resp, "x-backend"), Some("svc-b"));
    let (code, _) = curl_https(port, "b.test", "b.test", &a_crt, &[]);
    assert_ne!(code, 0, "b.test must not be served a.test's certificate");

    // SNI b.test, Host a.test: b's route table has no a.test virtual host.
    let (code, resp) = curl_https(port, "b.test", "a.test", &b_crt, &[]);
    assert_eq!(code, 0);
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    // Unknown SNI: no certificate, the handshake is refused (curl exit 35).
    let (code, _) = curl_https(port, "c.test", "c.test", &a_crt, &[]);
    assert_eq!(code, 35, "unknown SNI must fail the TLS handshake");
}

// §3.7: ALPN offers h2 and http/1.1; HTTP/2 downstream is served.
#[test]
fn https_serves_http2_over_alpn() {
    let certs = tempdir("certs-h2");
    let (a_crt, a_pem) = make_cert(&certs, "a.test", "ec");
    let (_, b_pem) = make_cert(&certs, "b.test", "ec");
    let _a = EchoHttp::start("svc-a");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", https_gateway(&a_pem, &b_pem)),
            ("routes.yaml", route_by_tag("ra", "a", "svc-a")),
            ("dataplanes.yaml", dataplanes(&["svc-a"])),
        ],
        &[],
    );
    let (code, resp) = curl_https(gw.lport(1), "a.test", "a.test", &a_crt, &["--http2"]);
    // (--http2 after --http1.1: the last protocol flag wins)
    assert_eq!(code, 0, "{resp}");
    assert!(
        resp.starts_with("HTTP/2 200"),
        "expected an HTTP/2 response: {resp}"
    );
    assert_eq!(header_line(&resp, "x-backend"), Some("svc-a"));
}

// §1.1: an RSA and an ECDSA pair on one listener; the client gets one it can verify.
#[test]
fn https_listener_with_rsa_and_ecdsa_certificates() {
    let certs = tempdir("certs-dual");
    let (rsa_crt, rsa_pem) = make_cert(&certs, "a.test", "rsa");
    let (ec_crt, ec_pem) = make_cert(&certs, "a.test", "ec");
    let _a = EchoHttp::start("svc-a");
    let gw_yaml = format!(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: HTTPS\n    tags:\n      name: a\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n      - {}\n",
        inline_string(&rsa_pem).trim_end(),
        inline_string(&ec_pem).trim_end()
    );
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gw_yaml),
            ("routes.yaml", route_by_tag("ra", "a", "svc-a")),
            ("dataplanes.yaml", dataplanes(&["svc-a"])),
        ],
        &[],
    );
    let port = gw.lport(1);
    // Restricting the client to one signature family forces the matching certificate.
    let (code, resp) = curl_https(
        port,
        "a.test",
        "a.test",
        &rsa_crt,
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ],
    );
    assert_eq!(code, 0, "RSA client: {resp}");
    let (code, resp) = curl_https(
        port,
        "a.test",
        "a.test",
        &ec_crt,
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    );
    assert_eq!(code, 0, "ECDSA client: {resp}");
}

// Issue 3 item 4: a changed certificate is served to new connections without a restart.
#[test]
fn certificate_change_is_served_to_new_connections() {
    let certs = tempdir("certs-swap");
    let (old_crt, old_pem) = make_cert(&certs, "a.test", "ec");
    let (new_crt, new_pem) = make_cert(&certs, "a.test", "rsa");
    let (_, b_pem) = make_cert(&certs, "b.test", "ec");
    let _a = EchoHttp::start("svc-a");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", https_gateway(&old_pem, &b_pem)),
            ("routes.yaml", route_by_tag("ra", "a", "svc-a")),
            ("dataplanes.yaml", dataplanes(&["svc-a"])),
        ],
        &[],
    );
    let port = gw.lport(1);
    assert_eq!(curl_https(port, "a.test", "a.test", &old_crt, &[]).0, 0);
    let g0 = generation(&gw);
    gw.dir
        .write_atomic("gateway.yaml", &https_gateway(&new_pem, &b_pem));
    wait_generation(&gw, g0 + 1);
    let (code, resp) = curl_https(port, "a.test", "a.test", &new_crt, &[]);
    assert_eq!(code, 0, "new certificate not served: {resp}");
    assert_ne!(curl_https(port, "a.test", "a.test", &old_crt, &[]).0, 0);
}

// A certificate that does not parse is a validation error naming the field, never a crash.
#[test]
fn bad_certificate_is_rejected_by_check_and_live() {
    let certs = tempdir("certs-bad");
    let (a_crt, a_pem) = make_cert(&certs, "a.test", "ec");
    let (_, b_pem) = make_cert(&certs, "b.test", "ec");
    let _a = EchoHttp::start("svc-a");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", https_gateway(&a_pem, &b_pem)),
            ("routes.yaml", route_by_tag("ra", "a", "svc-a")),
            ("dataplanes.yaml", dataplanes(&["svc-a"])),
        ],
        &[],
    );
    let broken = a_pem.replace("PRIVATE KEY", "NOTHING");
    gw.dir
        .write_atomic("gateway.yaml", &https_gateway(&broken, &b_pem));
    let err = wait_last_error(&gw);
    assert!(
        err.contains("conf.listeners[0].tls.certificates[0]"),
        "{err}"
    );
    // The old certificate and routes keep serving.
    let (code, resp) = curl_https(gw.lport(1), "a.test", "a.test", &a_crt, &[]);
    assert_eq!(code, 0, "{resp}");
    assert_eq!(header_line(&resp, "x-backend"), Some("svc-a"));
}

/// TLS listeners on port 1 (t.test TERMINATE, *.pass.test PASSTHROUGH) and an HTTPS listener
/// on port 2 with `inner_pem`.
fn tls_gateway(term_pem: &str, inner_pem: &str) -> String {
    format!(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: TLS\n    hostname: t.test\n    tags:\n      name: term\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n  - port: @LPORT:1@\n    protocol: TLS\n    hostname: \"*.pass.test\"\n    tags:\n      name: pass\n    tls:\n      mode: PASSTHROUGH\n  - port: @LPORT:2@\n    protocol: HTTPS\n    tags:\n      name: inner\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {}\n",
        inline_string(term_pem).trim_end(),
        inline_string(inner_pem).trim_end()
    )
}

fn tcp_route_by_tag(name: &str, tag: &str, service: &str) -> String {
    format!(
        "type: MeshTCPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n    tags:\n      name: {tag}\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - default:\n        backendRefs:\n        - kind: MeshService\n          name: {service}\n"
    )
}

/// A TLS client connection with SNI `sni`, trusting `ca`.
fn tls_connect(
    port: u16,
    sni: &str,
    ca: &Path,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(s)
}

// §7.3: TERMINATE decrypts and proxies plaintext to the route's backend; PASSTHROUGH forwards the
// raw TLS bytes chosen by SNI (here to the gateway's own HTTPS listener, whose certificate the
// client then sees end to end); an unknown SNI is refused.
#[test]
fn tls_listener_terminate_and_passthrough_by_sni() {
    let certs = tempdir("certs-tls");
    let (crt, pem) = make_cert(&certs, "t.test", "ec");
    let (pass_crt, pass_pem) = make_cert(&certs, "pass.test", "ec");
    let _tcp = EchoTcp::start("tcp-echo");
    let _web = EchoHttp::start("web");
    let dir = PolicyDir::new(&[]);
    let inner_port = dir.lport(2);
    dir.write_atomic("gateway.yaml", &tls_gateway(&pem, &pass_pem));
    dir.write_atomic(
        "routes.yaml",
        &format!(
            "{}---\n{}---\n{}",
            tcp_route_by_tag("term", "term", "tcp-echo"),
            tcp_route_by_tag("pass", "pass", "inner-https"),
            route_by_tag("web", "inner", "web")
        ),
    );
    dir.write_atomic(
        "dataplanes.yaml",
        &format!(
            "{}---\n{}",
            dataplanes(&["tcp-echo", "web"]),
            dataplane("inner-1", "inner-https", &inner_port.to_string())
        ),
    );
    let gw = Gateway::start_dir(dir, &[]);

    // TERMINATE: the TCP backend greets in plaintext through the TLS session.
    let mut s = tls_connect(gw.lport(1), "t.test", &crt).expect("terminate handshake");
    let mut greeting = String::new();
    BufReader::new(&mut s).read_line(&mut greeting).unwrap();
    assert_eq!(greeting.trim(), "tcp-echo");
    s.write_all(b"hello\n").unwrap();
    let mut echo = [0u8; 6];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello\n");

    // PASSTHROUGH: the client's TLS session ends at the inner HTTPS listener, whose certificate
    // is pass.test's; an HTTP request through it is routed there.
    let mut s = tls_connect(gw.lport(1), "x.pass.test", &pass_crt).expect("passthrough handshake");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x.pass.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("x-backend: web"),
        "{body}"
    );

    // No listener for this SNI: the connection is closed during the handshake.
    assert!(tls_connect(gw.lport(1), "other.test", &crt).is_err());
}

fn generation(gw: &Gateway) -> u64 {
    admin_get(gw.admin_port(), "/config").unwrap().echo()["generation"]
        .as_u64()
        .unwrap()
}

fn wait_generation(gw: &Gateway, at_least: u64) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while Instant::now() < deadline {
        if generation(gw) >= at_least {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("generation did not reach {at_least}\n{}", gw.log_tail());
}

fn wait_last_error(gw: &Gateway) -> String {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while Instant::now() < deadline {
        let cfg = admin_get(gw.admin_port(), "/config").unwrap().echo();
        if let Some(e) = cfg["last_error"].as_str() {
            return e.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no last_error\n{}", gw.log_tail());
}

// Each HTTPS listener hostname's certificate expiry is a metric (the test certificates are
// valid for two days).
#[test]
fn certificate_expiry_is_a_metric_per_listener_hostname() {
    let certs = tempdir("certs-expiry");
    let (_a_crt, a_pem) = make_cert(&certs, "a.test", "ec");
    let (_b_crt, b_pem) = make_cert(&certs, "b.test", "rsa");
    let _a = EchoHttp::start("svc-a");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", https_gateway(&a_pem, &b_pem)),
            ("routes.yaml", route_by_tag("ra", "a", "svc-a")),
            ("dataplanes.yaml", dataplanes(&["svc-a"])),
        ],
        &[],
    );
    let metrics = gw.admin_get("/metrics").text();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for host in ["a.test", "b.test"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("meshgate_certificate_expiry_timestamp_seconds{")
                    && l.contains(&format!("hostname=\"{host}\""))
            })
            .unwrap_or_else(|| panic!("no expiry for {host}:\n{metrics}"));
        let at: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        let days = (at - now) / 86_400.0;
        assert!((1.9..2.1).contains(&days), "{host}: expires in {days} days");
    }
}
