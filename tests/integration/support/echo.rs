//! Backends that record what they receive: an HTTP/1.1 echo backend and a TCP greeter.

use super::http1::{read_body, read_request_head};
use super::{bind_unique, register_backend, REQUEST_TIMEOUT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as an echo backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The raw request-target, including the query string.
    pub target: String,
    pub host: Option<String>,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
    /// The request-target without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn to_json(&self, backend: &str) -> Value {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.headers {
            headers.entry(k.clone()).or_default().push(v.clone());
        }
        serde_json::json!({
            "backend": backend,
            "method": self.method,
            "path": self.target,
            "host": self.host,
            "headers": headers,
            "body_len": self.body.len(),
        })
    }
}

/// HTTP/1.1 echo backend: answers 200 with `x-backend: NAME` and a JSON description of the
/// request; keeps connections alive; records every request. Understands:
/// * `x-echo-delay-ms: N` - wait N ms before answering;
/// * `x-echo-set-header: name:value[,name:value...]` - add those response headers;
/// * `x-echo-status: N` (with `x-echo-fail-first: K`) - answer N instead of 200 to the first
///   K requests carrying the same `x-test-id` (all of them without `x-echo-fail-first`);
///   `x-echo-status: reset` closes the connection without an answer instead;
/// * `x-echo-trickle-ms: N` - send the body one byte every N ms;
/// * `Upgrade: websocket` - answers 101 and then echoes every byte it receives.
pub struct EchoHttp {
    pub name: String,
    pub port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl EchoHttp {
    pub fn start(name: &str) -> EchoHttp {
        let listener = bind_unique();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (n, l, s, c) = (
            name.to_string(),
            log.clone(),
            stop.clone(),
            connections.clone(),
        );
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, l) = (n.clone(), l.clone());
                thread::spawn(move || {
                    let _ = serve_echo_connection(conn, &n, &l, &FAILURES);
                });
            }
        });
        register_backend(name, port);
        EchoHttp {
            name: name.to_string(),
            port,
            log,
            stop,
            connections,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The request carrying header `x-test-id: id`, if received.
    pub fn find(&self, id: &str) -> Option<Seen> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.header_all("x-test-id").iter().any(|v| v == id))
            .cloned()
    }

    /// Waits (bounded) until a request with `x-test-id: id` arrives (for mirrored copies,
    /// which are sent fire-and-forget and may arrive after the client's response).
    pub fn wait_for(&self, id: &str, timeout: Duration) -> Option<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.find(id) {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EchoHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // unblock accept()
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Failures answered per `x-test-id` (for `x-echo-fail-first`), across all echo backends of
/// the test process: a retry to another endpoint counts against the same test id.
static FAILURES: std::sync::LazyLock<Mutex<std::collections::HashMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether this request must fail (`x-echo-status`, `x-echo-fail-first`), and how.
fn planned_failure(
    seen: &Seen,
    failures: &Mutex<std::collections::HashMap<String, usize>>,
) -> Option<String> {
    let status = seen.header("x-echo-status")?;
    let Some(first) = seen
        .header("x-echo-fail-first")
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return Some(status);
    };
    let id = seen.header("x-test-id").unwrap_or_default();
    let mut counts = failures.lock().unwrap();
    let n = counts.entry(id).or_default();
    if *n < first {
        *n += 1;
        Some(status)
    } else {
        None
    }
}

fn serve_echo_connection(
    conn: TcpStream,
    name: &str,
    log: &Mutex<Vec<Seen>>,
    failures: &Mutex<std::collections::HashMap<String, usize>>,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let Some(req) = read_request_head(&mut reader)? else {
            return Ok(());
        };
        let method = req.method_or_version.clone();
        if req.has_token("expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &req, false)?;
        let seen = Seen {
            method: method.clone(),
            target: req.target_or_status.clone(),
            host: req.header("host").map(str::to_string),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body,
        };
        log.lock().unwrap().push(seen.clone());

        if let Some(ms) = seen
            .header("x-echo-delay-ms")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            thread::sleep(Duration::from_millis(ms.min(60_000)));
        }

        if let Some(status) = planned_failure(&seen, failures) {
            if status.trim() == "reset" {
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            let head = format!(
                "HTTP/1.1 {} Planned\r\nx-backend: {name}\r\ncontent-length: 0\r\n\r\n",
                status.trim()
            );
            writer.write_all(head.as_bytes())?;
            writer.flush()?;
            continue;
        }

        if req.has_token("upgrade", "websocket") {
            let key = seen.header("sec-websocket-key").unwrap_or_default();
            let accept = websocket_accept(&key);
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\nx-backend: {name}\r\n\r\n"
            );
            writer.write_all(head.as_bytes())?;
            writer.flush()?;
            // From here on the connection is a byte pipe: echo everything back.
            let mut buf = [0u8; 16384];
            // bytes already buffered by the reader
            let pending = reader.buffer().to_vec();
            if !pending.is_empty() {
                writer.write_all(&pending)?;
                reader.consume(pending.len());
            }
            loop {
                let n = reader.get_mut().read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                writer.write_all(&buf[..n])?;
            }
        }

        let payload = serde_json::to_vec(&seen.to_json(name)).unwrap();
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-backend: {name}\r\nserver: echo-backend\r\ncontent-length: {}\r\n",
            payload.len()
        );
        for v in seen.header_all("x-echo-set-header") {
            for part in v.split(',') {
                if let Some((k, val)) = part.split_once(':') {
                    head.push_str(&format!("{}: {}\r\n", k.trim(), val.trim()));
                }
            }
        }
        let close = req.has_token("connection", "close")
            || (req.minor_version == 0 && !req.has_token("connection", "keep-alive"));
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        let trickle = seen
            .header("x-echo-trickle-ms")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if method != "HEAD" {
            match trickle {
                Some(ms) => {
                    for byte in &payload {
                        writer.write_all(std::slice::from_ref(byte))?;
                        writer.flush()?;
                        thread::sleep(Duration::from_millis(ms));
                    }
                }
                None => writer.write_all(&payload)?,
            }
        }
        writer.flush()?;
        if close {
            let _ = writer.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)).
pub fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// TCP backend: sends `NAME\n` on connect, then echoes every byte; counts connections.
pub struct EchoTcp {
    pub name: String,
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl EchoTcp {
    pub fn start(name: &str) -> EchoTcp {
        let listener = bind_unique();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, c, s) = (name.to_string(), connections.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let greeting = format!("{n}\n");
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
                    if conn.write_all(greeting.as_bytes()).is_err() {
                        return;
                    }
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        register_backend(name, port);
        EchoTcp {
            name: name.to_string(),
            port,
            connections,
            stop,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for EchoTcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Connects to `port`, reads the greeting line, sends a probe and checks it is echoed.
/// Returns the greeting (the backend's name) or an error description.
pub fn tcp_greeting(port: u16) -> Result<String, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("greeting: {e}"))?;
    if !line.ends_with('\n') {
        return Err(format!(
            "connection closed before a greeting (got {line:?})"
        ));
    }
    let probe = b"ping-meshgate\n";
    writer.write_all(probe).map_err(|e| format!("send: {e}"))?;
    let mut echo = vec![0u8; probe.len()];
    reader
        .read_exact(&mut echo)
        .map_err(|e| format!("echo: {e}"))?;
    if echo != probe {
        return Err(format!(
            "echo mismatch: {:?}",
            String::from_utf8_lossy(&echo)
        ));
    }
    Ok(line.trim().to_string())
}
