//! Listeners that follow the policy files without a restart, and TCP listener behaviour
//! (issue 3 items 1 and 4; spec ../shared/spec/kuma-gateway-semantics.md §3.2, §7.2).

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gateway_with(listeners: &[(u32, &str)]) -> String {
    let mut out = String::from(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n",
    );
    for (n, protocol) in listeners {
        out.push_str(&format!(
            "  - port: @LPORT:{n}@\n    protocol: {protocol}\n    tags:\n      listener: l{n}\n"
        ));
    }
    out
}

fn tcp_route(service: &str) -> String {
    format!(
        "type: MeshTCPRoute\nmesh: default\nname: tcp\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - default:\n        backendRefs:\n        - kind: MeshService\n          name: {service}\n"
    )
}

fn generation(gw: &Gateway) -> u64 {
    admin_get(gw.admin_port(), "/config").unwrap().echo()["generation"]
        .as_u64()
        .unwrap()
}

/// Applies a new gateway file and waits until the change is served.
fn apply(gw: &Gateway, rel: &str, text: &str) {
    let g0 = generation(gw);
    gw.dir.write_atomic(rel, text);
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while generation(gw) <= g0 {
        assert!(
            Instant::now() < deadline,
            "change not applied\n{}",
            gw.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` for up to 1 s (the contract: a listener change takes effect within 1 s).
fn within_a_second(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 1 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

// Issue 3 item 4: a listener added to the MeshGateway starts accepting, a removed one stops, a
// changed one switches protocol — in the same process, while a connection on another listener
// stays up.
#[test]
fn listeners_are_added_removed_and_changed_without_restart() {
    let _web = EchoHttp::start("web");
    let _tcp = EchoTcp::start("tcp-echo");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_with(&[(1, "HTTP")])),
            ("route.yaml", catch_all_route("web-route", "web")),
            ("dataplanes.yaml", dataplanes(&["web", "tcp-echo"])),
        ],
        &[],
    );
    let pid = gw.pid();
    gw.assert_routed(1, "/", "a.test", "web");
    let mut kept = Conn::open(gw.lport(1)).unwrap();
    assert_eq!(
        kept.send("GET", "/", "a.test", &[], b"").unwrap().status,
        200
    );

    // Add listener 2.
    assert!(refused(gw.lport(2)));
    apply(
        &gw,
        "gateway.yaml",
        &gateway_with(&[(1, "HTTP"), (2, "HTTP")]),
    );
    within_a_second("listener 2 accepting", || !refused(gw.lport(2)));
    gw.assert_routed(2, "/x", "a.test", "web");
    // The established connection on listener 1 was not disturbed.
    assert_eq!(
        kept.send("GET", "/", "a.test", &[], b"").unwrap().status,
        200
    );

    // Remove listener 1: new connections are refused; listener 2 keeps serving.
    apply(&gw, "gateway.yaml", &gateway_with(&[(2, "HTTP")]));
    within_a_second("listener 1 closed", || refused(gw.lport(1)));
    gw.assert_routed(2, "/", "a.test", "web");

    // Change listener 2 from HTTP to TCP: it now proxies bytes to the MeshTCPRoute backend.
    gw.dir.write_atomic("tcp.yaml", &tcp_route("tcp-echo"));
    apply(&gw, "gateway.yaml", &gateway_with(&[(2, "TCP")]));
    within_a_second("listener 2 speaking TCP", || {
        tcp_greeting(gw.lport(2)).as_deref() == Ok("tcp-echo")
    });
    assert_eq!(gw.pid(), pid, "no restart");
}

// Issue 3 item 4: a port that cannot be bound is reported in /config and keeps /ready at 503;
// the gateway keeps serving its other ports and binds the port once it is free.
#[test]
fn unbindable_port_is_reported_and_retried() {
    let _web = EchoHttp::start("web");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_with(&[(1, "HTTP")])),
            ("route.yaml", catch_all_route("web-route", "web")),
            ("dataplanes.yaml", dataplanes(&["web"])),
        ],
        &[],
    );
    let busy_port = gw.lport(2);
    let holder = TcpListener::bind(("127.0.0.1", busy_port)).expect("hold the port");
    apply(
        &gw,
        "gateway.yaml",
        &gateway_with(&[(1, "HTTP"), (2, "HTTP")]),
    );
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let ready = admin_get(gw.admin_port(), "/ready").unwrap();
        let cfg = admin_get(gw.admin_port(), "/config").unwrap().echo();
        let err = cfg["listeners"]["errors"][busy_port.to_string()]
            .as_str()
            .map(str::to_string);
        if let (503, Some(err)) = (ready.status, err) {
            assert!(err.contains("bind"), "error names the cause: {err}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bind failure not reported: {cfg}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.assert_routed(1, "/", "a.test", "web");
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_get(gw.admin_port(), "/ready").unwrap().status != 200 {
        assert!(
            Instant::now() < deadline,
            "port not bound after it was freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.assert_routed(2, "/", "a.test", "web");
}

// §7.2: a TCP listener without a route accepts the connection and closes it.
#[test]
fn tcp_listener_without_route_closes_the_connection() {
    let gw = Gateway::start(&[("gateway.yaml", gateway_with(&[(1, "TCP")]))], &[]);
    let mut s = TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("accepted");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
}

// Issue 3 item 1: a backend that cannot be reached closes the client connection; the gateway
// keeps running.
#[test]
fn tcp_connect_failure_closes_the_connection() {
    let dead_port = free_port();
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_with(&[(1, "TCP")])),
            ("tcp.yaml", tcp_route("dead")),
            (
                "dp.yaml",
                dataplane("dead-1", "dead", &dead_port.to_string()),
            ),
        ],
        &[],
    );
    for _ in 0..3 {
        let mut s = TcpStream::connect(("127.0.0.1", gw.lport(1))).expect("accepted");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
    assert_eq!(admin_get(gw.admin_port(), "/ready").unwrap().status, 200);
    let metrics = admin_get(gw.admin_port(), "/metrics").unwrap().text();
    assert!(
        metrics.contains("meshgate_upstream_connect_failures_total{backend=\"dead\"}"),
        "connect failures are counted"
    );
}

// Issue 3 item 1: half-close passes through — the client's FIN reaches the backend, and the
// backend's remaining answer still reaches the client.
#[test]
fn tcp_half_close_is_passed_through() {
    let _tcp = EchoTcp::start("tcp-echo");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_with(&[(1, "TCP")])),
            ("tcp.yaml", tcp_route("tcp-echo")),
            ("dp.yaml", dataplanes(&["tcp-echo"])),
        ],
        &[],
    );
    let mut s = TcpStream::connect(("127.0.0.1", gw.lport(1))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "tcp-echo\nlast words");
}

/// One HTTP listener routing everything to the `web` backend.
fn web_behind_one_http_listener() -> PolicyDir {
    PolicyDir::new(&[
        ("gateway.yaml", gateway_with(&[(1, "HTTP")])),
        ("route.yaml", catch_all_route("web-route", "web")),
        ("dataplanes.yaml", dataplanes(&["web"])),
    ])
}

// Issue 3 item 4 + issue 4 item 2: a listener added at run time is handed to the new process
// by a graceful upgrade (`-u` + SIGQUIT), so it keeps answering after the old process exits.
#[test]
fn runtime_added_listener_survives_graceful_upgrade() {
    let _web = EchoHttp::start("web");
    let dir = web_behind_one_http_listener();
    let sock = dir.root.join("upgrade.sock");
    let conf = dir.root.join("pingora.yaml");
    std::fs::write(
        &conf,
        format!(
            "version: 1\nupgrade_sock: {}\npid_file: {}\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n",
            sock.display(),
            dir.root.join("meshgate.pid").display()
        ),
    )
    .unwrap();
    let conf_arg = conf.display().to_string();
    let mut old = Gateway::start_dir(dir, &["-c", &conf_arg]);
    apply(
        &old,
        "gateway.yaml",
        &gateway_with(&[(1, "HTTP"), (2, "HTTP")]),
    );
    within_a_second("listener 2 accepting", || !refused(old.lport(2)));
    old.assert_routed(2, "/", "a.test", "web");

    let log = std::fs::File::create(old.dir.root.join("new.log")).unwrap();
    let mut new = Command::new(BIN)
        .arg("--policies")
        .arg(&old.dir.path)
        .args(["--bind", "127.0.0.1", "--admin"])
        .arg(format!("127.0.0.1:{}", old.admin_port()))
        .args(["-c", &conf_arg, "-u"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "new process never opened the upgrade socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-QUIT", &old.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        old.wait_exit(Duration::from_secs(20)).is_some(),
        "old process did not exit\n{}",
        old.log_tail()
    );
    // Only the new process is left: both listeners, including the one added at run time.
    old.assert_routed(1, "/", "a.test", "web");
    old.assert_routed(2, "/", "a.test", "web");
    assert_eq!(admin_get(old.admin_port(), "/ready").unwrap().status, 200);
    let _ = new.kill();
    let _ = new.wait();
}

/// CPU ticks (user + system) of each of meshgate's listener worker threads (named after the
/// `meshgate-listeners` service, cut to 15 bytes by the kernel).
fn listener_worker_ticks(pid: u32) -> Vec<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task list");
    let mut ticks = Vec::new();
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("meshgate-listen") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        ticks.push(field(14).unwrap_or(0) + field(15).unwrap_or(0));
    }
    ticks
}

// Pingora's `threads: 2` (one single-threaded scheduler per worker, `work_stealing: false`):
// the connections meshgate accepts itself are spread over both of the listener service's
// workers, as Pingora's own listeners spread theirs, not all served by the thread that
// accepts them.
#[test]
fn accepted_connections_are_served_on_every_listener_worker_thread() {
    let _web = EchoHttp::start("web");
    let dir = web_behind_one_http_listener();
    let conf = dir.root.join("pingora.yaml");
    std::fs::write(&conf, "version: 1\nthreads: 2\nwork_stealing: false\n").unwrap();
    let conf_arg = conf.display().to_string();
    let gw = Gateway::start_dir(dir, &["-c", &conf_arg]);
    let port = gw.lport(1);
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(port).expect("connect");
                for n in 0..150 {
                    let r = conn.send("GET", "/", "a.test", &[], b"").expect("request");
                    assert_eq!(r.status, 200, "client {i}, request {n}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let ticks = listener_worker_ticks(gw.pid());
    assert_eq!(ticks.len(), 2, "listener worker threads: {ticks:?}");
    let total: u64 = ticks.iter().sum();
    assert!(
        total >= 20,
        "too little CPU to compare the threads: {ticks:?}"
    );
    // 16 connections placed at random: each worker serves several of them.
    assert!(
        ticks.iter().all(|t| *t * 8 >= total),
        "one worker served (nearly) everything: {ticks:?} CPU ticks"
    );
}
