//! MeshAccessLog on real traffic (spec ../shared/spec/kuma-policies.md §11): lines written
//! to files and to a real TCP collector, outbound (`to`) and inbound (`from`) lines, TCP
//! listener connections, and log files reopened for logrotate (`POST /reopen_logs`,
//! SIGUSR1). The formats' placeholders are unit-tested beside the code; the acceptance
//! scenarios `pol-al-*` check Kuma's default format and Json.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn access_log(spec: &str) -> (&'static str, String) {
    ("log.yaml", policy("MeshAccessLog", "log", spec))
}

// `to` and `from` on a gateway (`:authority` of an HTTP/1 request is its Host): two lines per request, OUTBOUND (source: the gateway's
// service, destination `*`) and INBOUND (source `unknown`, destination: the gateway).
#[test]
fn outbound_and_inbound_lines_per_request() {
    let dir = tempdir("al");
    let out = dir.join("out.log");
    let inb = dir.join("in.log");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    let fmt = "{type: Plain, plain: '%KUMA_TRAFFIC_DIRECTION% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(:PATH)% %RESPONSE_CODE% %ROUTE_NAME% %UPSTREAM_CLUSTER%'}";
    files.push(access_log(&format!(
        "targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}, format: {fmt}}}}}]}}\nfrom:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}, format: {fmt}}}}}]}}\n",
        out.display(),
        inb.display()
    )));
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/x?q=1", "a.test", "a");
    let o = wait_lines(&out, 1);
    let i = wait_lines(&inb, 1);
    assert_eq!(
        o,
        vec!["OUTBOUND edge-gateway->* GET a.test/x?q=1 200 route a"],
        "{o:?}"
    );
    assert_eq!(
        i,
        vec!["INBOUND unknown->edge-gateway GET a.test/x?q=1 200 route a"],
        "{i:?}"
    );
}

// A Tcp backend: one line per request to a real TCP collector, in Json, keys in order.
#[test]
fn lines_reach_a_tcp_collector() {
    let collector = crate::support::bind_unique();
    let addr = collector.local_addr().expect("addr");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push(access_log(&format!(
        "targetRef: {{kind: MeshGateway, name: edge-gateway}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: Tcp, tcp: {{address: '{addr}', format: {{type: Json, json: [{{key: z, value: '%RESPONSE_CODE%'}}, {{key: a, value: '%REQ(X-MISSING)%'}}]}}}}}}]}}\n"
    )));
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/tcp-log", "a.test", "a");
    let (conn, _) = collector.accept().expect("the gateway connects");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).expect("a line");
    assert_eq!(line, "{\"z\":\"200\",\"a\":null}\n");
}

// logrotate: after the file is moved away, `POST /reopen_logs` (or SIGUSR1) makes the next
// line go to a new file at the configured path.
#[test]
fn log_files_are_reopened_on_request() {
    let dir = tempdir("al-rotate");
    let path = dir.join("access.log");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push(access_log(&format!(
        "targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}, format: {{type: Plain, plain: '%REQ(:PATH)%'}}}}}}]}}\n",
        path.display()
    )));
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/one", "a.test", "a");
    assert_eq!(wait_lines(&path, 1), vec!["/one"]);
    std::fs::rename(&path, dir.join("access.log.1")).expect("rotate");
    let r = send(gw.admin_port(), "POST", "/reopen_logs", "", &[], b"");
    assert_eq!(r.status, 200);
    gw.assert_routed(1, "/two", "a.test", "a");
    assert_eq!(wait_lines(&path, 1), vec!["/two"]);
    std::fs::rename(&path, dir.join("access.log.2")).expect("rotate");
    gw.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    gw.assert_routed(1, "/three", "a.test", "a");
    assert_eq!(wait_lines(&path, 1), vec!["/three"]);
}

// A TCP listener logs one line per connection in Kuma's default TCP format.
#[test]
fn tcp_connections_are_logged_in_kumas_format() {
    let dir = tempdir("al-tcp");
    let path = dir.join("tcp.log");
    let _t = EchoTcp::start("t");
    let gateway = "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: @LPORT:1@\n    protocol: TCP\n".to_string();
    let route = "type: MeshTCPRoute\nmesh: default\nname: tcp-route\nspec:\n  targetRef: {kind: MeshGateway, name: edge-gateway}\n  to:\n  - targetRef: {kind: Mesh}\n    rules:\n    - default: {backendRefs: [{kind: MeshService, name: t}]}\n".to_string();
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway),
            ("route.yaml", route),
            ("dataplanes.yaml", dataplanes(&["t"])),
            access_log(&format!(
                "targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}}}}}]}}\n",
                path.display()
            )),
        ],
        &[],
    );
    let greeting = tcp_greeting(gw.lport(1)).expect("greeting");
    assert!(!greeting.is_empty());
    let lines = wait_lines(&path, 1);
    let line = lines.first().cloned().unwrap_or_default();
    let re = regex::Regex::new(
        r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] - default 127\.0\.0\.1\(edge-gateway\)->127\.0\.0\.1:\d+\(\*\) took \d+ms, sent \d+ bytes, received: \d+ bytes$",
    )
    .expect("regex");
    assert!(re.is_match(&line), "{line}");
}

// %PROTOCOL% as Envoy spells it ("HTTP/1.1", "HTTP/2"), over one plain-text port.
#[test]
fn protocol_is_logged_as_envoy_spells_it() {
    let dir = tempdir("al-proto");
    let out = dir.join("proto.log");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push(access_log(&format!(
        "targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}, format: {{type: Plain, plain: '%PROTOCOL% %RESPONSE_CODE%'}}}}}}]}}\n",
        out.display()
    )));
    let gw = Gateway::start(&files, &[]);
    let url = format!("http://127.0.0.1:{}/p", gw.lport(1));
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let status = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", version, &url])
            .status()
            .expect("curl");
        assert!(status.success());
    }
    assert_eq!(wait_lines(&out, 2), vec!["HTTP/1.1 200", "HTTP/2 200"]);
}

// Lines are written in batches; the ones still queued when the process is told to stop
// reach the file before it exits.
#[test]
fn queued_lines_are_written_before_exit() {
    let dir = tempdir("al-exit");
    let out = dir.join("exit.log");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push(access_log(&format!(
        "targetRef: {{kind: Mesh}}\nto:\n- targetRef: {{kind: Mesh}}\n  default: {{backends: [{{type: File, file: {{path: {}, format: {{type: Plain, plain: '%REQ(:PATH)%'}}}}}}]}}\n",
        out.display()
    )));
    let mut gw = Gateway::start(&files, &[]);
    for i in 0..20 {
        gw.assert_routed(1, &format!("/n{i}"), "a.test", "a");
    }
    // SIGINT: Pingora's fast shutdown, no grace period.
    gw.signal(libc::SIGINT);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", gw.log());
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    let want: Vec<String> = (0..20).map(|i| format!("/n{i}")).collect();
    assert_eq!(lines.lines().collect::<Vec<_>>(), want);
}

// The OpenTelemetry backend: one OTLP log record per request over gRPC to a real grpcio
// server, with the policy's body (an AnyValue kvlist) and attributes substituted and the
// gateway's service as `service.name`; a backend without `body` sends Kuma's default line.
#[test]
fn records_reach_an_otlp_grpc_collector() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;
    let collector = crate::support::otlp_grpc::GrpcReceiver::start();
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push(access_log(&format!(
        "targetRef: {{kind: Mesh}}
to:
- targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: OpenTelemetry
      openTelemetry:
        endpoint: 127.0.0.1:{port}
        body:
          kvlistValue:
            values:
            - key: mesh
              value: {{stringValue: '%KUMA_MESH%'}}
            - key: request
              value: {{stringValue: '%REQ(:METHOD)% %REQ(:PATH)%'}}
            - key: sampled
              value: {{boolValue: true}}
        attributes:
        - {{key: status, value: '%RESPONSE_CODE%'}}
        - {{key: route, value: '%ROUTE_NAME%'}}
from:
- targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: OpenTelemetry
      openTelemetry: {{endpoint: '127.0.0.1:{port}'}}
",
        port = collector.port
    )));
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/otel?x=1", "a.test", "a");
    let method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    let deadline = Instant::now() + Duration::from_secs(15);
    let records = loop {
        let records: Vec<_> = collector
            .calls(method, 1, Duration::from_secs(1))
            .iter()
            .map(|b| ExportLogsServiceRequest::decode(b.as_slice()).expect("an OTLP logs export"))
            .flat_map(|req| req.resource_logs)
            .flat_map(|rl| {
                let service = rl
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.clone())
                    .and_then(|v| v.value);
                rl.scope_logs
                    .into_iter()
                    .flat_map(|sl| sl.log_records)
                    .map(move |r| (service.clone(), r))
            })
            .collect();
        if records.len() >= 2 || Instant::now() > deadline {
            break records;
        }
    };
    assert_eq!(records.len(), 2, "one record per direction: {records:?}");
    let text = |v: &Option<Value>| match v {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    for (service, _) in &records {
        assert_eq!(text(service), "edge-gateway");
    }
    // The outbound record: the policy's body and attributes.
    let (_, out) = records
        .iter()
        .find(|(_, r)| {
            matches!(
                r.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(Value::KvlistValue(_))
            )
        })
        .expect("the record with the kvlist body");
    let Some(Value::KvlistValue(kv)) = out.body.as_ref().and_then(|b| b.value.clone()) else {
        unreachable!()
    };
    let get = |k: &str| {
        kv.values
            .iter()
            .find(|e| e.key == k)
            .and_then(|e| e.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(text(&get("mesh")), "default");
    assert_eq!(text(&get("request")), "GET /otel?x=1");
    assert_eq!(get("sampled"), Some(Value::BoolValue(true)));
    let attr = |k: &str| {
        out.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    assert_eq!(text(&attr("status")), "200");
    assert_eq!(text(&attr("route")), "route");
    assert!(out.time_unix_nano > 0);
    // The inbound record: no body given, so Kuma's default HTTP line.
    let (_, inbound) = records
        .iter()
        .find(|(_, r)| {
            matches!(
                r.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(Value::StringValue(_))
            )
        })
        .expect("the record with the default line");
    let line = text(&inbound.body.as_ref().and_then(|b| b.value.clone()));
    assert!(
        line.contains("default \"GET /otel?x=1 HTTP/1.1\" 200"),
        "{line}"
    );
    assert!(line.contains("\"unknown\" \"edge-gateway\""), "{line}");
}

// Through a MeshOpenTelemetryBackend with `protocol: http`: records are POSTed as OTLP/HTTP
// protobuf to `<path>/v1/logs`.
#[test]
fn records_reach_an_otlp_http_collector_through_a_backend_ref() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let listener = crate::support::bind_unique();
    let port = listener.local_addr().expect("addr").port();
    // (request-target, body) of every POST received.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().expect("clone");
                let mut r = BufReader::new(conn);
                while let Ok(Some(head)) = crate::support::http1::read_request_head(&mut r) {
                    let Ok(body) = crate::support::http1::read_body(&mut r, &head, false) else {
                        return;
                    };
                    g.lock()
                        .unwrap()
                        .push((head.target_or_status.clone(), body));
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    files.push((
        "otel.yaml",
        format!("type: MeshOpenTelemetryBackend\nname: otel\nmesh: default\nlabels:\n  collector: logs\nspec:\n  endpoint: {{address: 127.0.0.1, port: {port}, path: /otlp}}\n  protocol: http\n"),
    ));
    files.push(access_log(
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    backends:\n    - type: OpenTelemetry\n      openTelemetry:\n        backendRef: {kind: MeshOpenTelemetryBackend, labels: {collector: logs}}\n        body: '%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%'\n",
    ));
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/over-http", "a.test", "a");
    let deadline = Instant::now() + Duration::from_secs(15);
    let (path, body) = loop {
        if let Some(first) = got.lock().unwrap().first().cloned() {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "no OTLP/HTTP logs export arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(path, "/otlp/v1/logs");
    let req = ExportLogsServiceRequest::decode(body.as_slice()).expect("OTLP logs protobuf");
    let record = &req.resource_logs[0].scope_logs[0].log_records[0];
    let body = format!("{:?}", record.body);
    assert!(body.contains("GET /over-http 200"), "{body}");
}
