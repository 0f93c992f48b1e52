//! A backend whose behaviour a test switches while traffic flows: answer, fail with 503,
//! hang (accept and never answer), or be down (port closed, connections reset) and come back
//! on the same port. Its health endpoint (`/healthz`) and its other paths are switched
//! apart, so a test can fail only the health check, only the traffic, or both.

use super::http1::{read_body, read_request_head};
use super::{bind_unique, register_backend};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Answer = 0,
    Fail503 = 1,
    /// Read the request, never answer (until the mode changes or 30 s pass).
    Hang = 2,
    /// Answer after 200 ms.
    Slow = 3,
}

struct Shared {
    name: String,
    health: AtomicU8,
    traffic: AtomicU8,
    /// Bumped on every `down()`: connections of an older epoch close at once.
    epoch: AtomicUsize,
    served: AtomicUsize,
    checks: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
}

pub struct Flaky {
    pub name: String,
    pub port: u16,
    shared: Arc<Shared>,
    accepting: Option<Arc<AtomicBool>>,
}

fn mode(v: u8) -> Mode {
    match v {
        1 => Mode::Fail503,
        2 => Mode::Hang,
        3 => Mode::Slow,
        _ => Mode::Answer,
    }
}

impl Flaky {
    pub fn start(name: &str) -> Flaky {
        let listener = bind_unique();
        let port = listener.local_addr().expect("addr").port();
        register_backend(name, port);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            health: AtomicU8::new(0),
            traffic: AtomicU8::new(0),
            epoch: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            checks: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
        });
        let mut f = Flaky {
            name: name.to_string(),
            port,
            shared,
            accepting: None,
        };
        f.serve(listener);
        f
    }

    fn serve(&mut self, listener: TcpListener) {
        let accepting = Arc::new(AtomicBool::new(true));
        let (shared, on) = (self.shared.clone(), accepting.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if !on.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    shared.open.lock().unwrap().push(c);
                }
                let s = shared.clone();
                thread::spawn(move || serve_connection(conn, &s));
            }
        });
        self.accepting = Some(accepting);
    }

    pub fn set_health(&self, m: Mode) {
        self.shared.health.store(m as u8, Ordering::SeqCst);
    }

    pub fn set_traffic(&self, m: Mode) {
        self.shared.traffic.store(m as u8, Ordering::SeqCst);
    }

    /// Requests answered 200 on other paths than `/healthz`.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// Health checks received.
    pub fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::SeqCst)
    }

    /// Closes the port and resets every open connection: a process that died.
    pub fn down(&mut self) {
        if let Some(on) = self.accepting.take() {
            on.store(false, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // The accept loop ends on its next connection; make sure the port is closed.
        thread::sleep(Duration::from_millis(50));
    }

    /// Listens on the same port again: the process came back.
    pub fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => return self.serve(l),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("rebind {}: {e}", self.port),
            }
        }
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.down();
    }
}

fn serve_connection(conn: TcpStream, s: &Shared) {
    let epoch = s.epoch.load(Ordering::SeqCst);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let Ok(Some(req)) = read_request_head(&mut reader) else {
            return;
        };
        if read_body(&mut reader, &req, false).is_err() {
            return;
        }
        let check = req.target_or_status.starts_with("/healthz");
        let m = if check {
            s.checks.fetch_add(1, Ordering::SeqCst);
            mode(s.health.load(Ordering::SeqCst))
        } else {
            mode(s.traffic.load(Ordering::SeqCst))
        };
        if m == Mode::Hang {
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until
                && s.epoch.load(Ordering::SeqCst) == epoch
                && mode(if check {
                    s.health.load(Ordering::SeqCst)
                } else {
                    s.traffic.load(Ordering::SeqCst)
                }) == Mode::Hang
            {
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        if s.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if m == Mode::Slow {
            thread::sleep(Duration::from_millis(200));
        }
        let status = if m == Mode::Fail503 {
            "503 Failing"
        } else {
            "200 OK"
        };
        if !check && m != Mode::Fail503 {
            s.served.fetch_add(1, Ordering::SeqCst);
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nx-backend: {}\r\ncontent-length: 2\r\n\r\nok",
            s.name
        );
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}
