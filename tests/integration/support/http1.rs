//! Reading HTTP/1.x messages for the test client and the echo backends, with `httparse` (the
//! parser Pingora uses): a head is read line by line until `httparse` calls it complete, a
//! body by `Content-Length`, chunks (sizes read by `httparse::parse_chunk_size`) or to EOF.

use std::io::{self, BufRead};

/// A message head: the start line's parts and the header fields in arrival order.
pub struct Head {
    /// Request: method. Response: `HTTP/1.x`.
    pub method_or_version: String,
    /// Request: target. Response: status code.
    pub target_or_status: String,
    /// Request: 0 or 1 for HTTP/1.0 or 1.1. Response: the same.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn pairs(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

/// Reads lines until they make a complete head. `Ok(None)` on a clean end of stream before a
/// message starts (empty lines before a message are skipped, RFC 9112 §2.2).
fn read_head_bytes<R: BufRead>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    loop {
        let start = buf.len();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream inside a head",
                )),
            };
        }
        if start == 0 && buf.trim_ascii().is_empty() {
            buf.clear();
            continue;
        }
        if buf[start..].trim_ascii().is_empty() {
            return Ok(Some(buf)); // the empty line ending the head
        }
    }
}

/// The next request head, `Ok(None)` when the peer closed between requests.
pub fn read_request_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    let Some(bytes) = read_head_bytes(r)? else {
        return Ok(None);
    };
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(&bytes) {
        Ok(httparse::Status::Complete(_)) => Ok(Some(Head {
            method_or_version: req.method.unwrap_or_default().to_string(),
            target_or_status: req.path.unwrap_or_default().to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: pairs(req.headers),
        })),
        Ok(httparse::Status::Partial) => Err(invalid("incomplete request head")),
        Err(e) => Err(invalid(format!("request head: {e}"))),
    }
}

/// The next response head.
pub fn read_response_head<R: BufRead>(r: &mut R) -> io::Result<Head> {
    let bytes = read_head_bytes(r)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        )
    })?;
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(&bytes) {
        Ok(httparse::Status::Complete(_)) => Ok(Head {
            method_or_version: format!("HTTP/1.{}", resp.version.unwrap_or(1)),
            target_or_status: resp.code.unwrap_or_default().to_string(),
            minor_version: resp.version.unwrap_or(1),
            headers: pairs(resp.headers),
        }),
        Ok(httparse::Status::Partial) => Err(invalid("incomplete response head")),
        Err(e) => Err(invalid(format!("response head: {e}"))),
    }
}

/// The body after `head`: chunked, by `Content-Length`, or (when `to_eof`) until the peer
/// closes; otherwise empty.
pub fn read_body<R: BufRead>(r: &mut R, head: &Head, to_eof: bool) -> io::Result<Vec<u8>> {
    if head.has_token("transfer-encoding", "chunked") {
        return read_chunked(r);
    }
    if let Some(len) = head.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of stream in a chunk size",
            ));
        }
        let size = match httparse::parse_chunk_size(&line) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => return Err(invalid("bad chunk size")),
        };
        if size == 0 {
            // Trailer fields until the empty line.
            loop {
                let mut t = Vec::new();
                if r.read_until(b'\n', &mut t)? == 0 || t.trim_ascii().is_empty() {
                    return Ok(body);
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
        let mut chunk = vec![0u8; size];
        r.read_exact(&mut chunk)?;
        body.extend_from_slice(&chunk);
        let mut crlf = Vec::new();
        r.read_until(b'\n', &mut crlf)?;
    }
}
