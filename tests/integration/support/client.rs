//! The test client: HTTP/1.1 requests over real sockets, one per connection or several on a
//! keep-alive connection, and raw bytes for hostile input.

use super::http1::{read_body, read_response_head};
use super::REQUEST_TIMEOUT;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
    let head = read_response_head(r)?;
    let status: u16 = head
        .target_or_status
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad status"))?;
    let body = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(r, &head, true)?
    };
    Ok(Response {
        status,
        headers: head.headers,
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
    try_send_to("127.0.0.1", port, method, path, host, headers, body)
}

/// [`try_send`] to a listener bound on another loopback address (`--bind 127.0.0.2`).
pub fn try_send_to(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let stream = TcpStream::connect((ip, port))?;
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
        Conn::open_to("127.0.0.1", port)
    }

    /// A connection to a listener bound on another loopback address.
    pub fn open_to(ip: &str, port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect((ip, port))?;
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
