//! What an operator reads off meshgate: `--version`, the admin endpoint's Envoy-style
//! conveniences (`/server_info`, `/config_dump`, `/stats/prometheus`, `POST
//! /healthcheck/fail`), per-backend upstream latency and process metrics, and JSON logs.

use crate::support::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn version_names_the_commit_pingora_and_pgo() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("meshgate "), "{text}");
    assert!(text.contains("commit "), "{text}");
    assert!(text.contains("pingora 0.9.1"), "{text}");
    assert!(text.contains("pgo: "), "{text}");
}

#[test]
fn server_info_aliases_and_metrics() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    gw.assert_routed(1, "/m", "a.test", "a");
    let info: Value = serde_json::from_slice(&gw.admin_get("/server_info").body).expect("json");
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["pingora"], "0.9.1");
    assert!(info["uptime_seconds"].is_u64(), "{info}");
    assert_eq!(gw.admin_get("/config_dump").status, 200);
    let metrics = gw.admin_get("/stats/prometheus").text();
    let count = metrics
        .lines()
        .find(|l| l.starts_with("meshgate_upstream_request_duration_seconds_count{backend=\"a\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(count, Some(1.0), "the upstream histogram moved:\n{metrics}");
    for name in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
    ] {
        let v = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(v > 0.0 || name.starts_with("process_cpu"), "{name}{v}");
    }
}

// A preStop hook's POST /healthcheck/fail: /ready turns 503 and responses ask clients to
// close, while requests are still served.
#[test]
fn healthcheck_fail_starts_draining() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    assert_eq!(gw.admin_get("/ready").status, 200);
    let r = send(gw.admin_port(), "POST", "/healthcheck/fail", "", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(gw.admin_get("/ready").status, 503);
    let resp = gw.assert_routed(1, "/still", "a.test", "a");
    assert_eq!(resp.header("connection"), Some("close"));
    let info: Value = serde_json::from_slice(&gw.admin_get("/server_info").body).expect("json");
    assert_eq!(info["state"], "DRAINING");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let _a = EchoHttp::start("a");
    let gw = Gateway::start(&catch_all_files("route", "a"), &["--log-format", "json"]);
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("policies loaded"))
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    let v: Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(v["level"], "INFO");
    assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
}
