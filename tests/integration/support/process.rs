//! A real `meshgate` process on a policy directory, and the assertions tests make through it.

use super::client::{admin_get, backend_of, try_send, Response};
use super::policy::PolicyDir;
use super::{BIN, READY_TIMEOUT, RELOAD_TIMEOUT};
use meshgate::testkit::{catch_all_route, dataplanes, gateway_one_http, http_route, policy};
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running `meshgate --policies DIR --bind 127.0.0.1 --admin 127.0.0.1:PORT` process.
pub struct Gateway {
    pub dir: PolicyDir,
    child: Option<Child>,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

/// A gateway with the one-listener MeshGateway (`gateway_one_http`), one MeshHTTPRoute
/// `route` holding `rules_yaml`, and Dataplanes for `services`: the shape most routing
/// tests need.
pub fn single_route_gateway(rules_yaml: &str, services: &[&str]) -> Gateway {
    Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            ("route.yaml", http_route("route", rules_yaml)),
            ("dataplanes.yaml", dataplanes(services)),
        ],
        &[],
    )
}

/// A gateway with the one-listener MeshGateway and a catch-all MeshHTTPRoute `route` to the
/// legacy MeshService `service` (one Dataplane).
pub fn catch_all_gateway(route: &str, service: &str) -> Gateway {
    Gateway::start(&catch_all_files(route, service), &[])
}

/// The policy files of [`catch_all_gateway`], for a gateway started with more files or flags.
pub fn catch_all_files(route: &str, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route(route, service)),
        ("dataplanes.yaml", dataplanes(&[service])),
    ]
}

/// [`catch_all_files`] plus a MeshTimeout that gives the gateway's listeners a 1 s stream idle
/// timeout (`from`, `http.streamIdleTimeout`): for tests of stalled streams.
pub fn catch_all_files_with_1s_stream_idle(
    route: &str,
    service: &str,
) -> Vec<(&'static str, String)> {
    let mut files = catch_all_files(route, service);
    files.push((
        "timeout.yaml",
        policy(
            "MeshTimeout",
            "idle",
            "targetRef: {kind: Mesh}\nfrom:\n- targetRef: {kind: Mesh}\n  default: {http: {streamIdleTimeout: 1s}}\n",
        ),
    ));
    files
}

impl Gateway {
    /// Writes the files, starts meshgate and waits for `/ready` == 200 (panics with the log
    /// otherwise).
    pub fn start(files: &[(&str, String)], extra_args: &[&str]) -> Gateway {
        Gateway::start_dir(PolicyDir::new(files), extra_args)
    }

    pub fn start_dir(dir: PolicyDir, extra_args: &[&str]) -> Gateway {
        Gateway::start_dir_env(dir, extra_args, &[])
    }

    /// As [`Gateway::start`], with environment variables set for meshgate.
    pub fn start_env(
        files: &[(&str, String)],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start_dir_env(PolicyDir::new(files), extra_args, env)
    }

    fn start_dir_env(dir: PolicyDir, extra_args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let policies = dir.path.display().to_string();
        let mut gw = Gateway::spawn_env(dir, &policies, "127.0.0.1", extra_args, env);
        if let Err(why) = gw.wait_ready(READY_TIMEOUT) {
            panic!(
                "meshgate did not become ready: {why}\n--- gateway log ---\n{}",
                gw.log()
            );
        }
        gw
    }

    /// Starts meshgate without waiting for readiness (start-failure tests).
    pub fn spawn(dir: PolicyDir, extra_args: &[&str]) -> Gateway {
        let policies = dir.path.display().to_string();
        Gateway::spawn_from(dir, &policies, "127.0.0.1", extra_args)
    }

    /// Starts meshgate on another policy source (`--policies SOURCE`, e.g. an etcd prefix)
    /// with listeners on `bind`; `dir` still gives the admin port, the listener ports and
    /// the log's place. Does not wait for readiness.
    pub fn spawn_from(dir: PolicyDir, source: &str, bind: &str, extra_args: &[&str]) -> Gateway {
        Gateway::spawn_env(dir, source, bind, extra_args, &[])
    }

    fn spawn_env(
        dir: PolicyDir,
        source: &str,
        bind: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let log_path = dir.root.join(format!("gateway-{}.log", dir.admin_port()));
        let log = fs::File::create(&log_path).expect("create gateway log");
        let child = Command::new(BIN)
            .arg("--policies")
            .arg(source)
            .arg("--bind")
            .arg(bind)
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", dir.admin_port()))
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Gateway {
            dir,
            child: Some(child),
            log_path,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.exit = child.try_wait().ok().flatten();
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = "no answer".to_string();
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit() {
                return Err(format!("meshgate exited ({s}) before /ready"));
            }
            match admin_get(self.dir.admin_port(), "/ready") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("GET /ready -> {}", r.status),
                Err(e) => last = format!("GET /ready: {e}"),
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready within {timeout:?} ({last})"))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the gateway log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn lport(&self, n: u32) -> u16 {
        self.dir.lport(n)
    }

    pub fn admin_port(&self) -> u16 {
        self.dir.admin_port()
    }

    /// A request to listener `n`.
    pub fn send(
        &self,
        listener: u32,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let port = self.lport(listener);
        try_send(port, method, path, host, headers, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} (Host {host}) on listener {listener} (port {port}) failed: {e}\n--- gateway log tail ---\n{}",
                self.log_tail()
            )
        })
    }

    /// GET `path` with `Host: host` on listener `n`.
    pub fn get(&self, listener: u32, path: &str, host: &str) -> Response {
        self.send(listener, "GET", path, host, &[], b"")
    }

    /// Asserts that GET `path` with `host` on `listener` is answered 200 by `backend`; returns
    /// the response for further checks.
    #[track_caller]
    pub fn assert_routed(&self, listener: u32, path: &str, host: &str, backend: &str) -> Response {
        self.assert_routed_with(listener, "GET", path, host, &[], backend)
    }

    #[track_caller]
    pub fn assert_routed_with(
        &self,
        listener: u32,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        backend: &str,
    ) -> Response {
        let r = self.send(listener, method, path, host, headers, b"");
        assert!(
            r.status == 200 && backend_of(&r).as_deref() == Some(backend),
            "{method} {path} Host {host} {headers:?}: expected 200 from {backend}, got {} from {:?} (body {:?})",
            r.status,
            backend_of(&r),
            r.text()
        );
        r
    }

    /// Asserts the status of GET `path` with `host` on `listener`.
    #[track_caller]
    pub fn assert_status(&self, listener: u32, path: &str, host: &str, status: u16) -> Response {
        self.assert_status_with(listener, "GET", path, host, &[], status)
    }

    #[track_caller]
    pub fn assert_status_with(
        &self,
        listener: u32,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        status: u16,
    ) -> Response {
        let r = self.send(listener, method, path, host, headers, b"");
        assert_eq!(
            r.status,
            status,
            "{method} {path} Host {host} {headers:?}: expected status {status}, got {} from {:?} (body {:?})",
            r.status,
            backend_of(&r),
            r.text()
        );
        r
    }

    pub fn admin_get(&self, path: &str) -> Response {
        admin_get(self.admin_port(), path).unwrap_or_else(|e| {
            panic!(
                "admin GET {path} failed: {e}\n--- gateway log tail ---\n{}",
                self.log_tail()
            )
        })
    }

    /// The value of the first `/metrics` sample whose line starts with `line_start` (0 when
    /// there is none).
    pub fn metric(&self, line_start: &str) -> f64 {
        let text = self.admin_get("/metrics").text();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The metric once it reads `want`, or what it reads after `timeout`: a request's
    /// counters are recorded in its logging phase, after the client has the response.
    pub fn metric_when(&self, line_start: &str, want: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(line_start);
            if value == want || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /config` as JSON.
    pub fn config(&self) -> Value {
        let r = self.admin_get("/config");
        assert_eq!(r.status, 200, "GET /config -> {}", r.status);
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("GET /config is not JSON ({e}): {:?}", r.text()))
    }

    pub fn generation(&self) -> i64 {
        let c = self.config();
        c["generation"]
            .as_i64()
            .unwrap_or_else(|| panic!("/config has no integer generation: {c}"))
    }

    pub fn last_error(&self) -> Option<String> {
        match &self.config()["last_error"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Polls `/config` until `generation > n`; returns the new generation, or `None` on timeout.
    pub fn wait_generation_above(&self, n: i64, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let g = self.generation();
            if g > n {
                return Some(g);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like `wait_generation_above`, panicking with context on timeout.
    #[track_caller]
    pub fn expect_generation_above(&self, n: i64) -> i64 {
        self.wait_generation_above(n, RELOAD_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "change not applied within {RELOAD_TIMEOUT:?}: generation stayed {n}, last_error {:?}\n--- gateway log tail ---\n{}",
                self.last_error(),
                self.log_tail()
            )
        })
    }

    /// Polls `/config` until `last_error` is non-null; returns it, or `None` on timeout.
    pub fn wait_last_error(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.last_error() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the gateway process.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0);
        // SAFETY: plain kill(2) on the PID of our own child process.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: plain kill(2) on the PID of our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- meshgate log ({}) ---\n{}",
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Counts answers per backend over `n` GET requests (non-200 answers panic).
pub fn distribution(
    gw: &Gateway,
    listener: u32,
    path: &str,
    host: &str,
    n: usize,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let r = gw.get(listener, path, host);
        assert_eq!(
            r.status,
            200,
            "request {i} of {n}: status {} body {:?}",
            r.status,
            r.text()
        );
        *counts
            .entry(backend_of(&r).unwrap_or_else(|| "<none>".into()))
            .or_insert(0) += 1;
    }
    counts
}
