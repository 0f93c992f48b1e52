//! MeshTrace on real traffic (spec ../shared/spec/kuma-policies.md §12) with a real OTLP/HTTP
//! receiver in the test: SERVER spans with the gateway's service name, W3C `traceparent`
//! continued and forwarded, tags from literals and headers, sampling, and `x-request-id`
//! generated when a request has none (Envoy's default).

use crate::support::http1::{read_body, read_request_head};
use crate::support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (service name, trace id hex, kind, attributes) of one received span.
type SpanView = (String, String, i32, Vec<(String, String)>);

/// An OTLP/HTTP receiver: every `POST /v1/traces` body, decoded.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::serve(crate::support::bind_unique(), None)
    }

    /// A receiver speaking HTTPS on `listener` with `tls`.
    fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (g, tls) = (g.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        answer_exports(rustls::StreamOwned::new(session, conn), &g)
                    }
                    None => answer_exports(conn, &g),
                });
            }
        });
        Receiver { port, got }
    }

    /// Every span received, waiting up to `limit` for at least `n`.
    fn spans(&self, n: usize, limit: Duration) -> Vec<SpanView> {
        let deadline = Instant::now() + limit;
        loop {
            let out = span_views(&self.got.lock().unwrap());
            if out.len() >= n || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads export requests from one connection, keeps each decoded body, answers 200.
fn answer_exports<S: Read + Write>(conn: S, got: &Mutex<Vec<ExportTraceServiceRequest>>) {
    let mut r = BufReader::new(conn);
    while let Ok(Some(head)) = read_request_head(&mut r) {
        let Ok(body) = read_body(&mut r, &head, false) else {
            return;
        };
        if let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice()) {
            got.lock().unwrap().push(req);
        }
        let answered = r.get_mut().write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
        if answered.and_then(|_| r.get_mut().flush()).is_err() {
            return;
        }
    }
}

/// The spans of some export requests, flattened.
fn span_views(requests: &[ExportTraceServiceRequest]) -> Vec<SpanView> {
    let mut out = Vec::new();
    for req in requests {
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let attrs = s
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.key.clone(),
                                a.value
                                    .as_ref()
                                    .map(|v| format!("{:?}", v.value))
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    let trace: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    out.push((service.clone(), trace, s.kind, attrs));
                }
            }
        }
    }
    out
}

fn files(otel_port: u16, sampling: &str) -> Vec<(&'static str, String)> {
    files_to(otel_port, "http", sampling)
}

/// A MeshOpenTelemetryBackend at `127.0.0.1:otel_port` over `protocol` and a MeshTrace
/// sending the gateway's spans there.
fn files_to(otel_port: u16, protocol: &str, sampling: &str) -> Vec<(&'static str, String)> {
    let mut f = catch_all_files("route", "a");
    f.push((
        "otel.yaml",
        format!("type: MeshOpenTelemetryBackend\nname: otel\nmesh: default\nlabels:\n  collector: main\nspec:\n  endpoint:\n    address: 127.0.0.1\n    port: {otel_port}\n  protocol: {protocol}\n"),
    ));
    f.push((
        "trace.yaml",
        policy(
            "MeshTrace",
            "trace",
            &format!("targetRef: {{kind: MeshGateway, name: edge-gateway}}\ndefault:\n  backends:\n  - type: OpenTelemetry\n    openTelemetry:\n      backendRef: {{kind: MeshOpenTelemetryBackend, labels: {{collector: main}}}}\n  tags:\n  - name: team\n    literal: edge\n  - name: tenant\n    header: {{name: x-tenant, default: none}}\n{sampling}"),
        ),
    ));
    f
}

// A traced request: the backend gets a traceparent of the same trace naming the gateway's
// span, the receiver a SERVER span with the gateway's service, the route, status and tags.
#[test]
fn spans_reach_the_collector_and_the_trace_is_continued() {
    let otel = Receiver::start();
    let a = EchoHttp::start("a");
    let gw = Gateway::start(&files(otel.port, ""), &[]);
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = gw.send(
        1,
        "GET",
        "/traced",
        "a.test",
        &[
            ("traceparent", incoming),
            ("x-tenant", "acme"),
            ("x-test-id", "t1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = a.find("t1").expect("backend got it");
    let tp = seen.header("traceparent").expect("traceparent forwarded");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent: {tp}"
    );
    let spans = otel.spans(1, Duration::from_secs(10));
    let (service, trace, kind, attrs) = spans.first().cloned().expect("a span");
    assert!(service.contains("edge-gateway"), "{service}");
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(kind, 2, "SERVER");
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(get("team").contains("edge"), "{attrs:?}");
    assert!(get("tenant").contains("acme"), "{attrs:?}");
    assert!(get("http.route").contains("route"), "{attrs:?}");
    assert!(
        get("http.response.status_code").contains("200"),
        "{attrs:?}"
    );
}

// Spec §12: OTLP/HTTP to a collector on port 443 is HTTPS. The collector's certificate is
// checked against the system's roots, here the test CA given through SSL_CERT_FILE. Port 443
// needs root (or CAP_NET_BIND_SERVICE), which the test command has.
#[test]
fn spans_reach_an_otlp_http_collector_over_https_on_port_443() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempdir("otlp-https");
    let ca = TestCa::new(&dir);
    let leaf = ca.leaf("collector", "IP:127.0.0.1");
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&leaf.cert)
        .expect("certificate")
        .map(|c| c.expect("certificate"))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    let listener = TcpListener::bind("127.0.0.1:443")
        .expect("binding 127.0.0.1:443 needs root or CAP_NET_BIND_SERVICE");
    let otel = Receiver::serve(listener, Some(Arc::new(config)));
    let a = EchoHttp::start("a");
    let ca_file = ca.cert.display().to_string();
    let gw = Gateway::start_env(
        &files_to(443, "http", ""),
        &[],
        &[("SSL_CERT_FILE", &ca_file)],
    );
    let r = gw.send(1, "GET", "/secure", "a.test", &[("x-test-id", "s1")], b"");
    assert_eq!(r.status, 200);
    assert!(a.find("s1").is_some(), "the backend got the request");
    let spans = otel.spans(1, Duration::from_secs(10));
    let (service, _, kind, _) = spans
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no span over HTTPS\n--- gateway log ---\n{}", gw.log_tail()));
    assert!(service.contains("edge-gateway"), "{service}");
    assert_eq!(kind, 2, "SERVER");
}

// Kuma's default form: an inline `endpoint: host:port` is OTLP over gRPC (Envoy's
// OpenTelemetry tracer), here to a real grpcio server.
#[test]
fn spans_reach_an_otlp_grpc_collector() {
    let collector = crate::support::otlp_grpc::GrpcReceiver::start();
    let _a = EchoHttp::start("a");
    let mut f = catch_all_files("route", "a");
    f.push((
        "trace.yaml",
        policy(
            "MeshTrace",
            "trace",
            &format!("targetRef: {{kind: Mesh}}\ndefault:\n  backends:\n  - type: OpenTelemetry\n    openTelemetry:\n      endpoint: 127.0.0.1:{}\n", collector.port),
        ),
    ));
    let gw = Gateway::start(&f, &[]);
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = gw.send(
        1,
        "GET",
        "/grpc-traced",
        "a.test",
        &[("traceparent", incoming)],
        b"",
    );
    assert_eq!(r.status, 200);
    let bodies = collector.calls(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        1,
        Duration::from_secs(15),
    );
    let requests: Vec<ExportTraceServiceRequest> = bodies
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).expect("an OTLP trace export"))
        .collect();
    let spans = span_views(&requests);
    let (service, trace, kind, attrs) = spans.first().cloned().expect("a span over gRPC");
    assert!(service.contains("edge-gateway"), "{service}");
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(kind, 2, "SERVER");
    assert!(
        attrs
            .iter()
            .any(|(k, v)| k == "url.path" && v.contains("/grpc-traced")),
        "{attrs:?}"
    );
}

// A request with B3 headers (no traceparent) continues its Zipkin trace: the span has its
// trace id, the backend gets B3 headers naming the gateway's span (and the incoming span as
// parent) and a W3C traceparent of the same trace; a W3C tracestate reaches the backend.
#[test]
fn b3_contexts_are_continued_and_tracestate_is_kept() {
    let otel = Receiver::start();
    let a = EchoHttp::start("a");
    let gw = Gateway::start(&files(otel.port, ""), &[]);
    let r = gw.send(
        1,
        "GET",
        "/b3",
        "a.test",
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
            ("x-test-id", "b3"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = a.find("b3").expect("backend got it");
    assert_eq!(
        seen.header("x-b3-traceid").as_deref(),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_eq!(
        seen.header("x-b3-parentspanid").as_deref(),
        Some("a2fb4a1d1a96d312")
    );
    let own = seen.header("x-b3-spanid").expect("the gateway's span id");
    assert_ne!(own, "a2fb4a1d1a96d312");
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-463ac35c9f6413ad48485a3953bb6124-{own}-01"))
    );
    let spans = otel.spans(1, Duration::from_secs(10));
    assert!(
        spans
            .iter()
            .any(|(_, trace, _, _)| trace == "463ac35c9f6413ad48485a3953bb6124"),
        "{spans:?}"
    );
    gw.send(
        1,
        "GET",
        "/w3c",
        "a.test",
        &[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-test-id", "ts"),
        ],
        b"",
    );
    let seen = a.find("ts").expect("backend got it");
    assert_eq!(
        seen.header("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    assert!(
        seen.header("x-b3-traceid").is_none(),
        "no B3 unless the request used it"
    );
}

// `overall: 0` traces nothing; every request still gets an x-request-id when it has none,
// and keeps its own when it has one.
#[test]
fn sampling_off_exports_nothing_and_request_ids_are_generated() {
    let otel = Receiver::start();
    let a = EchoHttp::start("a");
    let gw = Gateway::start(&files(otel.port, "  sampling: {overall: 0}\n"), &[]);
    gw.send(1, "GET", "/x", "a.test", &[("x-test-id", "n1")], b"");
    gw.send(
        1,
        "GET",
        "/x",
        "a.test",
        &[("x-test-id", "n2"), ("x-request-id", "mine")],
        b"",
    );
    let generated = a
        .find("n1")
        .and_then(|s| s.header("x-request-id"))
        .expect("generated");
    let re =
        regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .expect("re");
    assert!(re.is_match(&generated), "{generated}");
    assert_eq!(
        a.find("n2")
            .and_then(|s| s.header("x-request-id"))
            .as_deref(),
        Some("mine")
    );
    assert!(
        a.find("n1").and_then(|s| s.header("traceparent")).is_none(),
        "not sampled: not traced"
    );
    assert!(otel.spans(1, Duration::from_secs(3)).is_empty());
}
