//! MeshAccessLog on real traffic (spec ../shared/spec/kuma-policies.md §11): lines written
//! to files and to a real TCP collector, outbound (`to`) and inbound (`from`) lines, TCP
//! listener connections, and log files reopened for logrotate (`POST /reopen_logs`,
//! SIGUSR1). The formats' placeholders are unit-tested beside the code; the acceptance
//! scenarios `pol-al-*` check Kuma's default format and Json.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

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

// `to` and `from` on a gateway: two lines per request, OUTBOUND (source: the gateway's
// service, destination `*`) and INBOUND (source `unknown`, destination: the gateway).
#[test]
fn outbound_and_inbound_lines_per_request() {
    let dir = tempdir("al");
    let out = dir.join("out.log");
    let inb = dir.join("in.log");
    let _a = EchoHttp::start("a");
    let mut files = catch_all_files("route", "a");
    let fmt = "{type: Plain, plain: '%KUMA_TRAFFIC_DIRECTION% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %ROUTE_NAME% %UPSTREAM_CLUSTER%'}";
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
        vec!["OUTBOUND edge-gateway->* GET /x?q=1 200 route a"],
        "{o:?}"
    );
    assert_eq!(
        i,
        vec!["INBOUND unknown->edge-gateway GET /x?q=1 200 route a"],
        "{i:?}"
    );
}

// A Tcp backend: one line per request to a real TCP collector, in Json, keys in order.
#[test]
fn lines_reach_a_tcp_collector() {
    let collector = support::bind_unique();
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
