//! Black-box test harness for meshgate: real echo backends on loopback, a real `meshgate`
//! process on a temporary policy directory, and a tiny HTTP/1.1 client.
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

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a request may take before the client gives up (a hang is a failure, not a wait).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Gateway::start` waits for `GET /ready` == 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long reload helpers wait for a change to be applied: the contract says 1 s; the slack
/// only keeps a loaded CI machine from failing a correct gateway (this is not a speed test).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

// ------------------------------------------------------------------------------------ ports

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
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

// ------------------------------------------------------------------------------------ backend registry

thread_local! {
    static BACKENDS: RefCell<HashMap<String, u16>> = RefCell::new(HashMap::new());
}

fn register_backend(name: &str, port: u16) {
    BACKENDS.with(|b| b.borrow_mut().insert(name.to_string(), port));
}

fn backend_port(name: &str) -> Option<u16> {
    BACKENDS.with(|b| b.borrow().get(name).copied())
}

// ------------------------------------------------------------------------------------ text helpers

/// Removes the common leading indentation of all non-empty lines and a leading newline, so YAML
/// can be written indented inside Rust raw strings.
pub fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        if line.len() >= indent {
            out.push_str(&line[indent..]);
        } else {
            out.push_str(line.trim_start());
        }
        out.push('\n');
    }
    out
}

/// Indents every non-empty line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A MeshGateway `edge-gateway` with one plain HTTP listener on `@LPORT:1@` (no hostname, tags
/// `listener: http`).
pub fn gateway_one_http() -> String {
    dedent(
        r#"
        type: MeshGateway
        mesh: default
        name: edge-gateway
        selectors:
        - match:
            kuma.io/service: edge-gateway
        conf:
          listeners:
          - port: @LPORT:1@
            protocol: HTTP
            tags:
              listener: http
        "#,
    )
}

/// A MeshHTTPRoute `name` targeting `edge-gateway` with one generic `to[]` entry whose `rules`
/// are `rules_yaml` (written at column 0, starting with `- matches:`).
pub fn http_route(name: &str, rules_yaml: &str) -> String {
    http_route_for_hosts(name, &[], rules_yaml)
}

/// [`http_route`] whose `to[]` entry lists `hostnames` (none: the generic group).
pub fn http_route_for_hosts(name: &str, hostnames: &[&str], rules_yaml: &str) -> String {
    let hostnames = match hostnames {
        [] => String::new(),
        hosts => format!("    hostnames: [{}]\n", hosts.join(", ")),
    };
    format!(
        "type: MeshHTTPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n{hostnames}    rules:\n{}",
        indent(&dedent(rules_yaml), 4)
    )
}

/// The rule sending PathPrefix `/` to the legacy MeshService `service`.
pub fn catch_all_rule(service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: /\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n"
    )
}

/// A MeshHTTPRoute `name` sending PathPrefix `/` to the legacy MeshService `service`.
pub fn catch_all_route(name: &str, service: &str) -> String {
    http_route(name, &catch_all_rule(service))
}

/// One backend Dataplane (`dp-NAME`) per backend name, inbound on `@PORT:NAME@`, tagged
/// `kuma.io/service: NAME`, `kuma.io/protocol: http`.
pub fn dataplanes(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| dataplane(&format!("dp-{n}"), n, &format!("@PORT:{n}@")))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A backend Dataplane named `dp_name` with one inbound `port` for service `service`.
pub fn dataplane(dp_name: &str, service: &str, port: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {dp_name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {service}\n      kuma.io/protocol: http\n"
    )
}

/// The builtin gateway Dataplane of `edge-gateway` (what Kuma would run the gateway as).
pub fn gateway_dataplane() -> String {
    dedent(
        r#"
        type: Dataplane
        mesh: default
        name: edge-gateway-1
        networking:
          address: 127.0.0.1
          gateway:
            type: BUILTIN
            tags:
              kuma.io/service: edge-gateway
        "#,
    )
}

// ------------------------------------------------------------------------------------ HTTP parsing

/// Header lines as (name, value), in arrival order.
type Headers = Vec<(String, String)>;

/// Reads one CRLF-terminated header block (request or status line plus headers). `Ok(None)` on a
/// clean EOF before any byte.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
    let mut first = String::new();
    loop {
        first.clear();
        let n = r.read_line(&mut first)?;
        if n == 0 {
            return Ok(None);
        }
        // tolerate stray empty lines between messages
        if !first.trim().is_empty() {
            break;
        }
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside headers",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF in chunk size",
            ));
        }
        let size_txt = line
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_txt, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // trailers until the empty line
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let mut chunk = vec![0u8; size];
        r.read_exact(&mut chunk)?;
        body.extend_from_slice(&chunk);
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}

/// Body of a message whose head was already read; `None` length means "until EOF".
fn read_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
    until_eof_allowed: bool,
) -> io::Result<Vec<u8>> {
    if has_token(headers, "transfer-encoding", "chunked") {
        return read_chunked(r);
    }
    if let Some(len) = header_value(headers, "content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof_allowed {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

// ------------------------------------------------------------------------------------ HTTP echo backend

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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo backend");
        let port = listener.local_addr().unwrap().port();
        handed_out_ports().lock().unwrap().insert(port);
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
                    let _ = serve_echo_connection(conn, &n, &l);
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

fn serve_echo_connection(conn: TcpStream, name: &str, log: &Mutex<Vec<Seen>>) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let Some((line, headers)) = read_head(&mut reader)? else {
            return Ok(());
        };
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();
        if has_token(&headers, "expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut reader, &headers, false)?;
        let seen = Seen {
            method: method.clone(),
            target,
            host: header_value(&headers, "host").map(str::to_string),
            headers: headers
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

        if has_token(&headers, "upgrade", "websocket") {
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
        let close = has_token(&headers, "connection", "close")
            || (version == "HTTP/1.0" && !has_token(&headers, "connection", "keep-alive"));
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        if method != "HEAD" {
            writer.write_all(&payload)?;
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
    let digest = sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64_encode(&digest)
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

// ------------------------------------------------------------------------------------ TCP echo backend

/// TCP backend: sends `NAME\n` on connect, then echoes every byte; counts connections.
pub struct EchoTcp {
    pub name: String,
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl EchoTcp {
    pub fn start(name: &str) -> EchoTcp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp backend");
        let port = listener.local_addr().unwrap().port();
        handed_out_ports().lock().unwrap().insert(port);
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

// ------------------------------------------------------------------------------------ HTTP client

/// A response as the client saw it.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a response header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
    /// All values of a response header, one entry per header line.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The echo backend's JSON description of the request it received.
    pub fn echo(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not the echo backend's JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
    /// Request-target (path + query) the backend saw.
    pub fn seen_path(&self) -> String {
        self.echo()["path"].as_str().unwrap_or("").to_string()
    }
    /// Host header the backend saw.
    pub fn seen_host(&self) -> String {
        self.echo()["host"].as_str().unwrap_or("").to_string()
    }
    /// All values of request header `name` the backend saw (comma-joined lines split apart).
    pub fn seen_header(&self, name: &str) -> Vec<String> {
        let v = self.echo();
        let mut out = Vec::new();
        if let Some(list) = v["headers"][name.to_ascii_lowercase()].as_array() {
            for item in list {
                for part in item.as_str().unwrap_or("").split(',') {
                    out.push(part.trim().to_string());
                }
            }
        }
        out
    }
}

/// Name of the backend that answered (`x-backend` response header), if any.
pub fn backend_of(resp: &Response) -> Option<String> {
    resp.header("x-backend").map(str::to_string)
}

fn write_request(
    w: &mut impl Write,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !host.is_empty() {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let has_len = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    if !has_len && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    w.write_all(&bytes)?;
    w.flush()
}

fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<Response> {
    let (line, headers) = read_head(r)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        )
    })?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad status {line:?}"))
        })?;
    let body = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(r, &headers, true)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`). `host` empty = no Host
/// header. Errors are returned, not panicked, so load loops can count them.
pub fn try_send(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut w = stream.try_clone()?;
    write_request(&mut w, method, path, host, headers, body, true)?;
    let mut r = BufReader::new(stream);
    read_response(&mut r, method)
}

/// Like `try_send`, panicking with a clear message on an I/O error.
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_send(port, method, path, host, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} (Host {host}) on port {port} failed: {e}"))
}

/// Sends raw bytes, then reads whatever comes back until EOF or `timeout` (hostile input).
pub fn send_raw(port: u16, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// A keep-alive client connection: several requests on one TCP connection.
pub struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(Conn {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        write_request(&mut self.writer, method, path, host, headers, body, false)?;
        read_response(&mut self.reader, method)
    }

    /// Writes a raw request in `pieces`, a millisecond apart so the gateway reads them
    /// separately, and reads one response.
    pub fn send_in_pieces(&mut self, pieces: &[&[u8]], method: &str) -> io::Result<Response> {
        for piece in pieces {
            self.writer.write_all(piece)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        self.receive(method)
    }

    /// Reads the next response (of a request written earlier, e.g. pipelined).
    pub fn receive(&mut self, method: &str) -> io::Result<Response> {
        read_response(&mut self.reader, method)
    }

    /// After a 101 answer: write raw bytes on the upgraded connection.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Waits up to `limit` for the gateway to close the connection (end of stream or reset);
    /// how long that took, `None` if it is still open.
    pub fn wait_closed(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut buf = [0u8; 512];
        let stream = self.reader.get_ref().try_clone().ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .ok()?;
        while start.elapsed() < limit {
            match self.reader.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
        None
    }

    /// After a 101 answer: read exactly `n` raw bytes.
    pub fn read_raw(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.reader.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// Admin GET on `port` (status, body).
pub fn admin_get(port: u16, path: &str) -> io::Result<Response> {
    try_send(port, "GET", path, &format!("127.0.0.1:{port}"), &[], b"")
}

// ------------------------------------------------------------------------------------ policy directory

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A temporary directory `ROOT` with the policy directory `ROOT/policies` in it (the gateway's
/// log and scratch files live in `ROOT`, outside the watched tree). Removed on drop.
pub struct PolicyDir {
    pub root: PathBuf,
    pub path: PathBuf,
    lports: Mutex<BTreeMap<String, u16>>,
    admin_port: u16,
    configmap_generation: AtomicU64,
}

impl PolicyDir {
    pub fn new(files: &[(&str, String)]) -> PolicyDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root = std::env::temp_dir().join(format!(
            "meshgate-test-{}-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        let path = root.join("policies");
        fs::create_dir_all(&path).expect("create temp policy dir");
        let dir = PolicyDir {
            root,
            path,
            lports: Mutex::new(BTreeMap::new()),
            admin_port: free_port(),
            configmap_generation: AtomicU64::new(0),
        };
        for (rel, text) in files {
            dir.write_atomic(rel, text);
        }
        dir
    }

    /// The n-th listener port (allocated on first use).
    pub fn lport(&self, n: u32) -> u16 {
        *self
            .lports
            .lock()
            .unwrap()
            .entry(n.to_string())
            .or_insert_with(free_port)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Fills `@LPORT:n@`, `@PORT:name@` and `@ADMIN_PORT@`.
    pub fn subst(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('@') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('@') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let token = &after[..end];
            let replacement = if let Some(n) = token.strip_prefix("LPORT:") {
                Some(
                    self.lport(n.parse().unwrap_or_else(|_| panic!("bad @LPORT:{n}@")))
                        .to_string(),
                )
            } else if let Some(name) = token.strip_prefix("PORT:") {
                Some(
                    backend_port(name)
                        .unwrap_or_else(|| {
                            panic!("@PORT:{name}@: no backend {name:?} started on this test thread")
                        })
                        .to_string(),
                )
            } else if token == "ADMIN_PORT" {
                Some(self.admin_port.to_string())
            } else {
                None
            };
            match replacement {
                Some(r) => {
                    out.push_str(&r);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push('@');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Editor pattern "write a temp file, rename it over the target" (atomic). The temp file is
    /// written *outside* the policy tree, so the gateway never sees it.
    pub fn write_atomic(&self, rel: &str, text: &str) {
        let target = self.file(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            UNIQUE.fetch_add(1, Ordering::SeqCst),
            rel.replace('/', "_")
        ));
        fs::write(&tmp, self.subst(text)).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }

    /// Editor pattern "temp file beside the target, then rename" (vim/emacs style `.swp`, `~`).
    /// The temp name does not end in .yaml/.yml, so the gateway must ignore it.
    pub fn write_via_sibling_temp(&self, rel: &str, text: &str) {
        let target = self.file(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let tmp = target.with_file_name(format!(
            ".{}.swp",
            target.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&tmp, self.subst(text)).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }

    /// Editor pattern "truncate, then write" on the same inode (what `>` in a shell and many
    /// editors do): open with O_TRUNC, write the content in two parts.
    pub fn write_in_place(&self, rel: &str, text: &str) {
        let text = self.subst(text);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(self.file(rel))
            .unwrap();
        let (a, b) = text.as_bytes().split_at(text.len() / 2);
        f.write_all(a).unwrap();
        f.flush().unwrap();
        f.write_all(b).unwrap();
        f.sync_all().unwrap();
    }

    /// Truncates a file to zero bytes (leaving it empty).
    pub fn truncate(&self, rel: &str) {
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.file(rel))
            .unwrap();
    }

    /// Appends text to a file in place.
    pub fn append(&self, rel: &str, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.file(rel))
            .unwrap();
        f.write_all(self.subst(text).as_bytes()).unwrap();
        f.sync_all().unwrap();
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.file(rel)).unwrap();
    }

    /// Writes `files` the way the kubelet updates a mounted ConfigMap (AtomicWriter): the data
    /// lives in a hidden timestamped directory `..TS/`, `..data` is a symlink to it, and every key
    /// is a symlink `KEY -> ..data/KEY`. An update writes a new `..TS2/`, points a temporary
    /// symlink `..data_tmp` at it, renames `..data_tmp` over `..data` (one atomic step) and
    /// deletes the old directory. The first call creates the layout.
    pub fn write_configmap(&self, files: &[(&str, String)]) {
        let g = self.configmap_generation.fetch_add(1, Ordering::SeqCst);
        let ts = format!("..2026_01_01_00_00_00.{:09}", g + 1);
        let ts_dir = self.path.join(&ts);
        fs::create_dir_all(&ts_dir).unwrap();
        for (rel, text) in files {
            fs::write(ts_dir.join(rel), self.subst(text)).unwrap();
        }
        let data = self.path.join("..data");
        let old = fs::read_link(&data).ok();
        let tmp = self.path.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        fs::rename(&tmp, &data).unwrap();
        for (rel, _) in files {
            let link = self.path.join(rel);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(rel), &link).unwrap();
            }
        }
        if let Some(old) = old {
            let _ = fs::remove_dir_all(self.path.join(old));
        }
    }

    /// Runs `meshgate --policies DIR --check ARGS`; returns (exit code, stdout + stderr).
    pub fn check(&self, extra_args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .arg("--policies")
            .arg(&self.path)
            .arg("--check")
            .args(extra_args)
            .stdin(Stdio::null())
            .output()
            .expect("run meshgate --check");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ------------------------------------------------------------------------------------ gateway process

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

impl Gateway {
    /// Writes the files, starts meshgate and waits for `/ready` == 200 (panics with the log
    /// otherwise).
    pub fn start(files: &[(&str, String)], extra_args: &[&str]) -> Gateway {
        Gateway::start_dir(PolicyDir::new(files), extra_args)
    }

    pub fn start_dir(dir: PolicyDir, extra_args: &[&str]) -> Gateway {
        let mut gw = Gateway::spawn(dir, extra_args);
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
        let log_path = dir.root.join("gateway.log");
        let log = fs::File::create(&log_path).expect("create gateway log");
        let child = Command::new(BIN)
            .arg("--policies")
            .arg(&dir.path)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", dir.admin_port()))
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
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

    fn stop(&mut self) {
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
