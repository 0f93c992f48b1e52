//! The admin page (`GET /` on the admin port) in a real browser: headless Chromium loads it
//! against a running meshgate whose backend has one healthy and one failing endpoint, and
//! the DOM it builds must show the listener, the route, the backend and each endpoint's
//! health. A screenshot is kept at target/admin-page.png for a person to look at.

use crate::support::*;
use std::process::Command;

fn chromium(args: &[&str], url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args([
            "--no-first-run",
            "--virtual-time-budget=4000",
            "--window-size=1280,1400",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_admin_page_shows_routes_backends_and_health() {
    let _a1 = Flaky::start("a-1");
    let a2 = Flaky::start("a-2");
    a2.set_health(Mode::Fail503);
    let mut files = vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("shop-route", "a")),
        (
            "dataplanes.yaml",
            [1, 2]
                .iter()
                .map(|i| dataplane(&format!("dp-a-{i}"), "a", &format!("@PORT:a-{i}@")))
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
    ];
    files.push((
        "health.yaml",
        policy(
            "MeshHealthCheck",
            "health",
            "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default: {interval: 200ms, timeout: 200ms, unhealthyThreshold: 1, healthyThreshold: 1, http: {path: /healthz}}\n",
        ),
    ));
    let gw = Gateway::start(&files, &[]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let url = format!("http://127.0.0.1:{}/", gw.admin_port());
    let dom = chromium(&["--dump-dom"], &url);
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the page's script ran:\n{dom}"
    );
    assert!(dom.contains("shop-route"), "the route is listed:\n{dom}");
    assert!(
        dom.contains(&format!("port {}", gw.lport(1))),
        "the listener:\n{dom}"
    );
    assert!(
        dom.contains("MeshHealthCheck/health"),
        "the policy applied to the port is named:\n{dom}"
    );
    let healthy = format!("127.0.0.1:{} · healthy", _a1.port);
    let unhealthy = format!("127.0.0.1:{} · unhealthy", a2.port);
    assert!(dom.contains(&healthy), "{healthy} in:\n{dom}");
    assert!(dom.contains(&unhealthy), "{unhealthy} in:\n{dom}");
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-page.png");
    let _ = chromium(&[&format!("--screenshot={}", shot.display())], &url);
    assert!(shot.exists(), "screenshot written");
}

// The search box's endpoint: the proxy's own lookup says which route answers.
#[test]
fn route_lookup_answers_like_the_proxy() {
    let _a = EchoHttp::start("a");
    let gw = catch_all_gateway("route", "a");
    let port = gw.lport(1);
    let r = gw.admin_get(&format!("/route?port={port}&host=a.test&path=%2Fanything"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["answer"], "routed", "{v}");
    assert_eq!(v["route"], "route");
    assert_eq!(v["action"]["forward"][0][0], "a");
    let none = gw.admin_get("/route?port=1&host=a.test&path=/");
    let v: serde_json::Value = serde_json::from_slice(&none.body).expect("json");
    assert!(
        v["answer"]
            .as_str()
            .unwrap_or("")
            .starts_with("no listener"),
        "{v}"
    );
}
