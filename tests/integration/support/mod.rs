//! Black-box test harness for meshgate, one module per job: real echo backends on loopback
//! ([`echo`]), a real `meshgate` process ([`process`]) on a temporary policy directory
//! ([`policy`]), and an HTTP/1.1 client ([`client`]) reading messages with `httparse`
//! ([`http1`]). Policy YAML comes from the crate's test kit (`meshgate::testkit`).
//!
//! Nothing here mocks the proxy path. Every helper talks to real sockets and real processes.
//!
//! Placeholders in policy text (filled when a file is written):
//! * `@LPORT:n@`   - the n-th listener port of this policy directory (a free port picked once per n);
//! * `@PORT:name@` - the port of the backend `name` started *on the current test thread*
//!   (`EchoHttp::start` / `EchoTcp::start` register themselves in a thread-local table, so tests
//!   running in parallel can all use the names `v1`, `v2`, ... without clashing);
//! * `@ADMIN_PORT@` - the admin port of the gateway using this directory.
//!
//! `Gateway` kills its process on drop (SIGTERM, then SIGKILL after 5 s) and deletes the temp dir.

// Each test file uses a part of this module.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod client;
pub mod echo;
pub mod flaky;
pub mod http1;
pub mod otlp_grpc;
pub mod policy;
pub mod process;

pub use certs::*;
pub use client::*;
pub use echo::*;
pub use flaky::*;
pub use meshgate::testkit::fixtures::*;
pub use policy::*;
pub use process::*;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a request may take before the client gives up (a hang is a failure, not a wait).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Gateway::start` waits for `GET /ready` == 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long reload helpers wait for a change to be applied: the contract says 1 s; the slack
/// only keeps a loaded CI machine from failing a correct gateway (this is not a speed test).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

// ------------------------------------------------------------------------------------ ports

pub(crate) fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that was free a moment ago (bind 127.0.0.1:0, then drop). Never the same port twice in
/// one test process, so parallel tests do not hand each other the same port.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        drop(l);
        if handed_out_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free port");
}

/// A listener on a fresh 127.0.0.1 port that no other test in this process was handed.
///
/// A plain `bind(127.0.0.1:0)` may be given a port `free_port` just handed to a gateway that has
/// not bound it yet; the gateway's requests would then reach this test's server (seen in CI:
/// a redirect test's backend counted a request it never caused). Ports already handed out are
/// held until a fresh one comes up, so the kernel does not offer them again.
pub fn bind_unique() -> TcpListener {
    let mut rejected = Vec::new();
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if handed_out_ports().lock().unwrap().insert(port) {
            return l;
        }
        rejected.push(l);
    }
    panic!("could not find a port no other test was handed");
}

/// Starts backend `name` on a fresh port and hands each connection it accepts to `serve`, on a
/// thread of its own; returns the port. For backends whose wire behaviour a test writes itself.
pub fn raw_backend<F>(name: &str, serve: F) -> u16
where
    F: Fn(std::net::TcpStream) + Send + Sync + 'static,
{
    let listener = bind_unique();
    let port = listener.local_addr().expect("addr").port();
    register_backend_port(name, port);
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(conn));
        }
    });
    port
}

// ------------------------------------------------------------------------------------ backend registry

thread_local! {
    static BACKENDS: RefCell<HashMap<String, u16>> = RefCell::new(HashMap::new());
}

pub(crate) fn register_backend(name: &str, port: u16) {
    register_backend_port(name, port)
}

/// Names `port` as backend `name` for `@PORT:name@` (servers not started by this harness).
pub fn register_backend_port(name: &str, port: u16) {
    BACKENDS.with(|b| b.borrow_mut().insert(name.to_string(), port));
}

pub(crate) fn backend_port(name: &str) -> Option<u16> {
    BACKENDS.with(|b| b.borrow().get(name).copied())
}
