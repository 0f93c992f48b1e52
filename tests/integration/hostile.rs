//! Hostile HTTP/1.x requests against a real meshgate over raw sockets (operations.md §2.2,
//! §2.4, §2.6): a table of cases, each sent on a fresh connection, checked for
//! * the response status(es) (or the close / deadline behaviour for the timing cases),
//! * that no backend saw a request it must not see: nothing at all for requests that must be
//!   refused, never the `admin` backend (only routed for Host admin.internal), never a path
//!   with a dot-segment, an encoded dot-segment or a smuggled request line,
//! * that the gateway still answers a normal request afterwards,
//!
//! and at the end that every refusal was counted in `meshgate_http_requests_rejected_total`.
//! All cases share one gateway (`--header-timeout 2 --idle-timeout 3`), so the table runs in
//! one test and reports every failing case, not just the first.
//!
//! Routing: Host anything, PathPrefix /public -> backend "public"; Host admin.internal,
//! PathPrefix /admin -> backend "admin"; everything else -> 404.

use crate::support::http1::{read_body, read_response_head};
use crate::support::*;
use std::io::{BufReader, Cursor, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const H: &str = "public.example";
/// Marker in smuggled request lines: must never reach a backend.
const SMUGGLE: &str = "SMUGGLED";
const HEADER_TIMEOUT: f64 = 2.0;
const IDLE_TIMEOUT: f64 = 3.0;
/// Allowed lateness of a deadline.
const MARGIN: f64 = 1.5;

fn smuggled() -> Vec<u8> {
    format!("GET /admin/{SMUGGLE} HTTP/1.1\r\nHost: admin.internal\r\n\r\n").into_bytes()
}

/// A raw request: `line`, `Host` (unless `None`), `headers` (raw lines), a blank line, `body`.
fn req_with(line: &[u8], host: Option<&[u8]>, headers: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut out = line.to_vec();
    out.extend_from_slice(b"\r\n");
    if let Some(h) = host {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn req(line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let headers: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
    req_with(line.as_bytes(), Some(H.as_bytes()), &headers, body)
}

fn req_host(line: &str, host: &str) -> Vec<u8> {
    req_with(line.as_bytes(), Some(host.as_bytes()), &[], b"")
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[derive(Default)]
struct Case {
    name: &'static str,
    data: Vec<u8>,
    /// Acceptable statuses of the first response.
    expect: &'static [u16],
    /// Responses expected (pipelining); 0 means 1.
    n: usize,
    /// The backend that may see the request (`None`: none may).
    backend: Option<&'static str>,
    /// The exact path the backend must see (normalisation cases).
    path: Option<&'static str>,
    /// Paths (as the backend saw them) of the responses, in order (`None`: not checked).
    order: &'static [Option<&'static str>],
    /// Acceptable statuses of the second response.
    second: &'static [u16],
    /// Closing without any response is acceptable.
    close_ok: bool,
    /// The connection must be closed after the responses.
    close: bool,
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn cases() -> Vec<Case> {
    let s = smuggled();
    let mut c = vec![
        // framing and smuggling (Pingora's parser + RFC 9112 §6)
        Case {
            name: "cl-te-conflict",
            data: req(
                "POST /public/clte HTTP/1.1",
                &["Content-Length: 5", "Transfer-Encoding: chunked"],
                &cat(&[b"0\r\n\r\n", &s]),
            ),
            expect: &[400, 200],
            backend: Some("public"),
            close: true,
            ..Default::default()
        },
        Case {
            name: "te-cl-conflict",
            data: req(
                "POST /public/tecl HTTP/1.1",
                &["Transfer-Encoding: chunked", "Content-Length: 4"],
                &cat(&[
                    format!("{:x}\r\n", s.len()).as_bytes(),
                    &s,
                    b"\r\n0\r\n\r\n",
                ]),
            ),
            expect: &[400, 200],
            backend: Some("public"),
            close: true,
            ..Default::default()
        },
        Case {
            name: "te-double",
            data: req(
                "POST /public/tete HTTP/1.1",
                &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
                &cat(&[b"0\r\n\r\n", &s]),
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "te-unknown",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Transfer-Encoding: xchunked"],
                b"0\r\n\r\n",
            ),
            expect: &[400, 501],
            ..Default::default()
        },
        Case {
            name: "te-not-last",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Transfer-Encoding: chunked, identity"],
                b"0\r\n\r\n",
            ),
            expect: &[400, 501],
            ..Default::default()
        },
        Case {
            name: "te-space-before-colon",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Transfer-Encoding : chunked", "Content-Length: 5"],
                &cat(&[b"0\r\n\r\n", &s]),
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "te-vtab",
            data: req_with(
                b"POST /public/x HTTP/1.1",
                Some(H.as_bytes()),
                &[b"Transfer-Encoding:\x0bchunked", b"Content-Length: 5"],
                &cat(&[b"0\r\n\r\n", &s]),
            ),
            expect: &[400, 501],
            ..Default::default()
        },
        Case {
            name: "te-http10",
            data: req(
                "POST /public/x HTTP/1.0",
                &["Transfer-Encoding: chunked"],
                b"0\r\n\r\n",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "cl-duplicate-differing",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Content-Length: 5", "Content-Length: 6"],
                b"hello!",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "cl-list-differing",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Content-Length: 5, 6"],
                b"hello!",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "cl-plus",
            data: req("POST /public/x HTTP/1.1", &["Content-Length: +5"], b"hello"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "cl-negative",
            data: req("POST /public/x HTTP/1.1", &["Content-Length: -1"], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "cl-hex",
            data: req(
                "POST /public/x HTTP/1.1",
                &["Content-Length: 0x5"],
                b"hello",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "get-body-smuggle",
            data: req(
                "GET /public/getbody HTTP/1.1",
                &[&format!("Content-Length: {}", s.len())],
                &s,
            ),
            expect: &[200, 400],
            backend: Some("public"),
            ..Default::default()
        },
        Case {
            name: "chunk-size-invalid",
            data: req(
                "POST /public/badchunk HTTP/1.1",
                &["Transfer-Encoding: chunked"],
                &cat(&[b"zz\r\nhello\r\n0\r\n\r\n", &s]),
            ),
            expect: &[400, 502],
            backend: Some("public"),
            close_ok: true,
            close: true,
            ..Default::default()
        },
        Case {
            name: "chunk-size-overflow",
            data: req(
                "POST /public/bigchunk HTTP/1.1",
                &["Transfer-Encoding: chunked"],
                &cat(&[b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", &s]),
            ),
            expect: &[400, 502],
            backend: Some("public"),
            close_ok: true,
            close: true,
            ..Default::default()
        },
        Case {
            name: "chunk-missing-crlf",
            data: req(
                "POST /public/chunkcrlf HTTP/1.1",
                &["Transfer-Encoding: chunked"],
                &cat(&[b"5\r\nhelloXX0\r\n\r\n", &s]),
            ),
            expect: &[400, 502],
            backend: Some("public"),
            close_ok: true,
            close: true,
            ..Default::default()
        },
        // header syntax
        Case {
            name: "obs-fold",
            data: req("GET /public/x HTTP/1.1", &["X-Folded: a", " b"], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-no-colon",
            data: req("GET /public/x HTTP/1.1", &["NoColonHere"], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-name-space",
            data: req("GET /public/x HTTP/1.1", &["X Bad: 1"], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-value-nul",
            data: req_with(
                b"GET /public/x HTTP/1.1",
                Some(H.as_bytes()),
                &[b"X-Nul: a\x00b"],
                b"",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-value-bare-cr",
            data: req_with(
                b"GET /public/x HTTP/1.1",
                Some(H.as_bytes()),
                &[b"X-Cr: a\rb"],
                b"",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-name-nul",
            data: req_with(
                b"GET /public/x HTTP/1.1",
                Some(H.as_bytes()),
                &[b"X-\x00Nul: 1"],
                b"",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "header-underscore",
            data: req("GET /public/x HTTP/1.1", &["X_Forwarded_For: 1.2.3.4"], b""),
            expect: &[400],
            ..Default::default()
        },
    ];
    // size caps (431 like Envoy; Pingora alone allows ~1 MiB and 256 fields)
    let big = format!("X-Big: {}", "a".repeat(70 * 1024));
    let h80: Vec<String> = (0..80)
        .map(|i| format!("X-H{i}: {}", "b".repeat(1024)))
        .collect();
    let f120: Vec<String> = (0..120).map(|i| format!("X-F{i}: v")).collect();
    let f1000: Vec<String> = (0..1000).map(|i| format!("X-F{i}: v")).collect();
    let c90: Vec<String> = (0..90)
        .map(|i| format!("X-C{i}: {}", "c".repeat(440)))
        .collect();
    c.extend([
        Case {
            name: "head-one-70k-header",
            data: req("GET /public/x HTTP/1.1", &[&big], b""),
            expect: &[431],
            ..Default::default()
        },
        Case {
            name: "head-80x1k",
            data: req("GET /public/x HTTP/1.1", &refs(&h80), b""),
            expect: &[431],
            ..Default::default()
        },
        Case {
            name: "head-120-fields",
            data: req("GET /public/x HTTP/1.1", &refs(&f120), b""),
            expect: &[431],
            ..Default::default()
        },
        Case {
            name: "head-1000-fields",
            data: req("GET /public/x HTTP/1.1", &refs(&f1000), b""),
            expect: &[431],
            ..Default::default()
        },
        Case {
            name: "target-70k",
            data: req(
                &format!("GET /public/{} HTTP/1.1", "p".repeat(70 * 1024)),
                &[],
                b"",
            ),
            expect: &[400, 414, 431],
            ..Default::default()
        },
        Case {
            name: "control-90-fields",
            data: req("GET /public/ok90 HTTP/1.1", &refs(&c90), b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/ok90"),
            ..Default::default()
        },
        // Host
        Case {
            name: "host-missing-11",
            data: req_with(b"GET /public/x HTTP/1.1", None, &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-duplicate",
            data: req("GET /public/x HTTP/1.1", &["Host: admin.internal"], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-space",
            data: req_host("GET /public/x HTTP/1.1", "exa mple.com"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-slash",
            data: req_host("GET /public/x HTTP/1.1", "a/b"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-userinfo",
            data: req_host("GET /public/x HTTP/1.1", "u@admin.internal"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-bad-port",
            data: req_host("GET /public/x HTTP/1.1", "example.com:abc"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-unclosed-ipv6",
            data: req_host("GET /public/x HTTP/1.1", "[::1"),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "host-ctl",
            data: req_with(b"GET /public/x HTTP/1.1", Some(b"a\x01b"), &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "control-http10-no-host",
            data: req_with(b"GET /public/h10 HTTP/1.0", None, &[], b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/h10"),
            ..Default::default()
        },
        Case {
            name: "control-host-port",
            data: req_host("GET /public/port HTTP/1.1", &format!("{H}:8080")),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/port"),
            ..Default::default()
        },
        // request-target bytes (Pingora percent-escapes and forwards them)
        Case {
            name: "target-nul",
            data: req_with(b"GET /public/a\x00b HTTP/1.1", Some(H.as_bytes()), &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "target-space",
            data: req("GET /public/a b HTTP/1.1", &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "target-ctl",
            data: req_with(b"GET /public/a\x01b HTTP/1.1", Some(H.as_bytes()), &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "target-del",
            data: req_with(b"GET /public/a\x7fb HTTP/1.1", Some(H.as_bytes()), &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "target-quote-angle",
            data: req("GET /public/<script>\"x HTTP/1.1", &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "target-fragment",
            data: req("GET /public/a#frag HTTP/1.1", &[], b""),
            expect: &[400, 200],
            backend: Some("public"),
            path: Some("/public/a"),
            ..Default::default()
        },
        Case {
            name: "version-bad",
            data: req("GET /public/x HTTP/9.9", &[], b""),
            expect: &[400, 505],
            close_ok: true,
            ..Default::default()
        },
        Case {
            name: "h2-preface",
            data: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            expect: &[400, 505],
            close_ok: true,
            ..Default::default()
        },
        Case {
            name: "connect",
            data: req_host("CONNECT admin.internal:443 HTTP/1.1", "admin.internal:443"),
            expect: &[405],
            ..Default::default()
        },
        // absolute-form
        Case {
            name: "absolute-host-mismatch",
            data: req("GET http://admin.internal/admin/x HTTP/1.1", &[], b""),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "absolute-host-mismatch-2",
            data: req_host(
                "GET http://public.example/admin/x HTTP/1.1",
                "admin.internal",
            ),
            expect: &[400],
            ..Default::default()
        },
        Case {
            name: "absolute-userinfo",
            data: req("GET http://u@public.example/public/x HTTP/1.1", &[], b""),
            expect: &[400],
            ..Default::default()
        },
        // path normalisation before routing (Kuma: normalize_path + merge_slashes +
        // UNESCAPE_AND_REDIRECT for %2F/%5C). The backend must see the normalised path.
        Case {
            name: "dot-segment-escape",
            data: req("GET /public/../admin/x HTTP/1.1", &[], b""),
            expect: &[404, 400],
            ..Default::default()
        },
        Case {
            name: "dot-segment-escape-admin-host",
            data: req_host("GET /public/../admin/x HTTP/1.1", "admin.internal"),
            expect: &[200, 400],
            backend: Some("admin"),
            path: Some("/admin/x"),
            ..Default::default()
        },
        Case {
            name: "encoded-dot-segment",
            data: req("GET /public/%2e%2e/admin/x HTTP/1.1", &[], b""),
            expect: &[404, 400],
            ..Default::default()
        },
        Case {
            name: "encoded-dot-segment-upper",
            data: req("GET /public/%2E%2E/%2E%2E/etc/passwd HTTP/1.1", &[], b""),
            expect: &[404, 400],
            ..Default::default()
        },
        Case {
            name: "dot-segment-inside",
            data: req("GET /public/a/../b HTTP/1.1", &[], b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/b"),
            ..Default::default()
        },
        Case {
            name: "dot-segment-single",
            data: req("GET /public/./c HTTP/1.1", &[], b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/c"),
            ..Default::default()
        },
        Case {
            name: "dot-segment-above-root",
            data: req("GET /../public/d HTTP/1.1", &[], b""),
            expect: &[200, 400],
            backend: Some("public"),
            path: Some("/public/d"),
            ..Default::default()
        },
        Case {
            name: "merge-slashes",
            data: req("GET /public//e///f HTTP/1.1", &[], b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/e/f"),
            ..Default::default()
        },
        Case {
            name: "double-slash-prefix",
            data: req("GET //public/g HTTP/1.1", &[], b""),
            expect: &[200],
            backend: Some("public"),
            path: Some("/public/g"),
            ..Default::default()
        },
        Case {
            name: "encoded-slash",
            data: req("GET /public%2Fh HTTP/1.1", &[], b""),
            expect: &[301, 302, 303, 307, 308, 400, 404],
            ..Default::default()
        },
        Case {
            name: "encoded-slash-traversal",
            data: req("GET /public/..%2Fadmin/x HTTP/1.1", &[], b""),
            expect: &[301, 302, 303, 307, 308, 400, 404],
            ..Default::default()
        },
        Case {
            name: "encoded-backslash-traversal",
            data: req("GET /public/..%5Cadmin/x HTTP/1.1", &[], b""),
            expect: &[301, 302, 303, 307, 308, 400, 404],
            ..Default::default()
        },
        Case {
            name: "prefix-segment-boundary",
            data: req("GET /publicity HTTP/1.1", &[], b""),
            expect: &[404],
            ..Default::default()
        },
    ]);
    // pipelining (RFC 9112 §9.3.2: responses in request order)
    let chunked_upload = |path: &str| {
        req(
            &format!("POST {path} HTTP/1.1"),
            &["Transfer-Encoding: chunked"],
            b"5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        )
    };
    c.extend([
        Case {
            name: "pipelined-3",
            data: cat(&[
                &req("GET /public/p1 HTTP/1.1", &[], b""),
                &req("GET /public/p2 HTTP/1.1", &[], b""),
                &req("GET /public/p3 HTTP/1.1", &[], b""),
            ]),
            expect: &[200],
            n: 3,
            backend: Some("public"),
            order: &[Some("/public/p1"), Some("/public/p2"), Some("/public/p3")],
            ..Default::default()
        },
        Case {
            name: "pipelined-after-404",
            data: cat(&[
                &req("GET /nowhere HTTP/1.1", &[], b""),
                &req("GET /public/p4 HTTP/1.1", &[], b""),
            ]),
            expect: &[404],
            n: 2,
            backend: Some("public"),
            order: &[None, Some("/public/p4")],
            ..Default::default()
        },
        Case {
            name: "pipelined-bad-second",
            data: cat(&[
                &req("GET /public/p5 HTTP/1.1", &[], b""),
                &req("GET /public/p6 HTTP/1.1", &["X Bad: 1"], b""),
            ]),
            expect: &[200],
            n: 2,
            backend: Some("public"),
            order: &[Some("/public/p5"), None],
            second: &[400],
            close: true,
            ..Default::default()
        },
        Case {
            name: "pipelined-after-chunked",
            data: cat(&[
                &chunked_upload("/public/c1"),
                &req("GET /public/c2 HTTP/1.1", &[], b""),
            ]),
            expect: &[200],
            n: 2,
            backend: Some("public"),
            order: &[Some("/public/c1"), Some("/public/c2")],
            ..Default::default()
        },
        Case {
            name: "pipelined-bad-after-chunked",
            data: cat(&[
                &chunked_upload("/public/c3"),
                &req("GET /public/c4 HTTP/1.1", &["X_Bad: 1"], b""),
            ]),
            expect: &[200],
            n: 2,
            backend: Some("public"),
            order: &[Some("/public/c3"), None],
            second: &[400],
            close: true,
            ..Default::default()
        },
    ]);
    c
}

/// One response: status, header fields, body.
type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// Responses read from one connection.
#[derive(Default)]
struct Exchange {
    responses: Vec<RawResponse>,
    /// The peer closed (end of stream or reset).
    closed: bool,
}

impl Exchange {
    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.0).collect()
    }
}

/// The complete responses in `buf`; a close-delimited last one only once `closed`.
fn parse_responses(buf: &[u8], closed: bool) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut cursor = BufReader::new(Cursor::new(buf));
    loop {
        let Ok(head) = read_response_head(&mut cursor) else {
            return out;
        };
        let status: u16 = head.target_or_status.parse().unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            continue; // interim response
        }
        let delimited = head.header("content-length").is_some()
            || head.has_token("transfer-encoding", "chunked")
            || matches!(status, 204 | 304);
        if !delimited && !closed {
            return out; // a close-delimited body is complete only once the peer closed
        }
        let body = if matches!(status, 204 | 304) {
            Vec::new()
        } else {
            match read_body(&mut cursor, &head, true) {
                Ok(b) => b,
                Err(_) => return out,
            }
        };
        out.push((status, head.headers, body));
    }
}

/// Sends `data` on a new connection (from another thread, so an early answer is read while
/// we still write) and reads until `expect_n` responses arrived and `linger` passed, the peer
/// closed, or 3 s.
fn exchange(port: u16, data: &[u8], expect_n: usize, linger: Duration) -> Exchange {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Exchange::default();
    };
    let _ = s.set_nodelay(true);
    let mut writer = s.try_clone().expect("clone socket");
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&data); // the gateway may close early on a refusal
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut closed = false;
    let mut got_all_at = None;
    let mut chunk = [0u8; 65536];
    while Instant::now() < deadline && got_all_at.is_none_or(|t: Instant| t.elapsed() < linger) {
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if got_all_at.is_none() && parse_responses(&buf, false).len() >= expect_n {
                    got_all_at = Some(Instant::now());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let _ = sender.join();
    Exchange {
        responses: parse_responses(&buf, closed),
        closed,
    }
}

/// Why a request a backend saw is forbidden, or `None`.
fn bad_hit(
    backend: &str,
    seen: &Seen,
    allowed: Option<&str>,
    path: Option<&str>,
) -> Option<String> {
    let target = &seen.target;
    let raw_headers = format!("{:?}", seen.headers);
    if target.contains(SMUGGLE) || raw_headers.contains(SMUGGLE) {
        return Some(format!("a smuggled request reached {backend}"));
    }
    let Some(allowed) = allowed else {
        return Some(format!(
            "{backend} saw {} {target} (the request should have been refused)",
            seen.method
        ));
    };
    if backend != allowed {
        return Some(format!("{backend} saw {target} (only {allowed} may)"));
    }
    let segs = format!("{}/", seen.path().to_ascii_lowercase());
    if ["/../", "/./", "%2e", "//", "%2f", "%5c"]
        .iter()
        .any(|bad| segs.trim_end_matches('/').contains(bad) || segs.contains(bad))
    {
        return Some(format!("{backend} saw an unnormalised path {target}"));
    }
    if let Some(p) = path {
        if seen.path() != p {
            return Some(format!(
                "{backend} saw {target}, expected the normalised {p}"
            ));
        }
    }
    None
}

struct Battery {
    gw: Gateway,
    public: EchoHttp,
    admin: EchoHttp,
    rejections: usize,
}

impl Battery {
    fn start() -> Battery {
        let public = EchoHttp::start("public");
        let admin = EchoHttp::start("admin");
        let route = http_route_tos(
            "hostile-route",
            &[
                (&[], &prefix_rule("/public", "public")),
                (&["admin.internal"], &prefix_rule("/admin", "admin")),
            ],
        );
        let gw = Gateway::start(
            &[
                (
                    "gateway.yaml",
                    gateway_listeners(&[(None, "", "port: http-hostile")]),
                ),
                ("route.yaml", route),
                ("dataplanes.yaml", dataplanes(&["public", "admin"])),
                ("gateway-dataplane.yaml", gateway_dataplane()),
            ],
            &["--header-timeout", "2", "--idle-timeout", "3"],
        );
        Battery {
            gw,
            public,
            admin,
            rejections: 0,
        }
    }

    fn port(&self) -> u16 {
        self.gw.lport(1)
    }

    /// Requests the backends saw after `marks`, without the liveness probes.
    fn hits_since(&self, marks: (usize, usize)) -> Vec<(&'static str, Seen)> {
        let mut out = Vec::new();
        for (name, backend, mark) in [
            ("public", &self.public, marks.0),
            ("admin", &self.admin, marks.1),
        ] {
            for seen in backend.requests().into_iter().skip(mark) {
                if !seen.target.contains("/public/alive-") {
                    out.push((name, seen));
                }
            }
        }
        out
    }

    fn marks(&self) -> (usize, usize) {
        (self.public.count(), self.admin.count())
    }

    /// Problems with the gateway after a case: it must still route a normal request.
    fn liveness(&self, tag: &str) -> Option<String> {
        let ex = exchange(
            self.port(),
            &req(&format!("GET /public/alive-{tag} HTTP/1.1"), &[], b""),
            1,
            Duration::ZERO,
        );
        let ok = ex.responses.first().is_some_and(|(status, headers, _)| {
            *status == 200
                && headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("x-backend") && v == "public")
        });
        (!ok).then(|| format!("a normal request afterwards got {:?}", ex.statuses()))
    }

    fn run(&mut self, case: &Case) -> Vec<String> {
        let marks = self.marks();
        let n = case.n.max(1);
        let linger = Duration::from_millis(if n == 1 { 400 } else { 600 });
        let ex = exchange(self.port(), &case.data, n, linger);
        thread::sleep(Duration::from_millis(50)); // let a backend finish recording
        let hits = self.hits_since(marks);
        let st = ex.statuses();
        let mut problems = Vec::new();
        match st.first() {
            None if case.close_ok && ex.closed => {}
            None => problems.push(format!(
                "no response{}",
                if ex.closed { " (closed)" } else { "" }
            )),
            Some(s) if !case.expect.contains(s) => problems.push(format!("status {s}")),
            Some(_) => {}
        }
        if n > 1 {
            if st.len() < n {
                problems.push(format!("{} of {n} responses", st.len()));
            } else if !case.second.is_empty() && !case.second.contains(&st[1]) {
                problems.push(format!("second status {}", st[1]));
            }
            for (i, want) in case.order.iter().enumerate() {
                let (Some(want), Some(resp)) = (want, ex.responses.get(i)) else {
                    continue;
                };
                let seen: Option<String> = serde_json::from_slice::<serde_json::Value>(&resp.2)
                    .ok()
                    .and_then(|v| v["path"].as_str().map(str::to_string));
                if seen.as_deref() != Some(want) {
                    problems.push(format!(
                        "response {} is for {seen:?}, expected {want}",
                        i + 1
                    ));
                }
            }
        }
        if st.len() > n {
            problems.push(format!(
                "{} extra response(s) {:?}: a smuggled request was parsed",
                st.len() - n,
                &st[n..]
            ));
        }
        if case.close && !ex.closed && st.last().is_some_and(|s| *s >= 400) {
            problems.push("connection left open after an error".into());
        }
        let path = if n == 1 { case.path } else { None };
        for (backend, seen) in &hits {
            let mut why = bad_hit(backend, seen, case.backend, path);
            let lenient = case.close_ok
                || n > 1
                || case.name.starts_with("cl-te")
                || case.name.starts_with("te-cl");
            if why.is_none()
                && case.backend.is_some()
                && !lenient
                && st.first().is_some_and(|s| *s >= 400)
            {
                why = Some(format!(
                    "{backend} saw {} although the gateway answered {}",
                    seen.target, st[0]
                ));
            }
            problems.extend(why);
        }
        if let (Some(p), Some(200)) = (case.path, st.first()) {
            if !hits.iter().any(|(_, s)| s.path() == p) {
                problems.push(format!("the backend did not see {p}"));
            }
        }
        problems.extend(self.liveness(case.name));
        const REJECTED: &[u16] = &[400, 408, 413, 414, 431];
        self.rejections += st.iter().take(n).filter(|s| REJECTED.contains(s)).count();
        if st.is_empty() && ex.closed {
            self.rejections += 1; // refused by closing: still a refusal
        }
        problems
    }
}

/// Seconds until the gateway closes a connection that got `first` and then `trickle` every
/// 0.5 s, and the status it answered with; `None` seconds: still open after `limit`.
fn timed_close(
    port: u16,
    first: &[u8],
    trickle: Option<&[u8]>,
    limit: f64,
) -> (Option<f64>, Option<u16>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let start = Instant::now();
    let _ = s.write_all(first);
    let mut next = start + Duration::from_millis(500);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while start.elapsed().as_secs_f64() < limit {
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        match s.read(&mut chunk) {
            Ok(0) => {
                let status = parse_responses(&buf, true).first().map(|r| r.0);
                return (Some(start.elapsed().as_secs_f64()), status);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (Some(start.elapsed().as_secs_f64()), None),
        }
        if let Some(t) = trickle {
            if Instant::now() >= next {
                if s.write_all(t).is_err() {
                    return (Some(start.elapsed().as_secs_f64()), None);
                }
                next += Duration::from_millis(500);
            }
        }
    }
    (None, None)
}

#[test]
fn hostile_requests_are_refused_or_sanitised_and_every_refusal_is_counted() {
    let mut battery = Battery::start();
    let mut failures = Vec::new();
    for case in cases() {
        let problems = battery.run(&case);
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    let port = battery.port();

    // Headers trickle in, a line every 0.5 s: per-read timeouts never fire, only the
    // whole-head deadline does.
    let marks = battery.marks();
    let limit = HEADER_TIMEOUT + MARGIN + 3.0;
    let first = format!("GET /public/slow HTTP/1.1\r\nHost: {H}\r\n");
    let (took, status) = timed_close(port, first.as_bytes(), Some(b"X-Slow: 1\r\n"), limit);
    match took {
        Some(t) if t <= HEADER_TIMEOUT + MARGIN => battery.rejections += 1,
        other => failures.push(format!(
            "slowloris-trickle: still open after {other:?} s (deadline {HEADER_TIMEOUT} s)"
        )),
    }
    if !matches!(status, None | Some(408) | Some(400)) {
        failures.push(format!("slowloris-trickle: status {status:?}"));
    }
    if let Some((_, seen)) = battery.hits_since(marks).first() {
        failures.push(format!("slowloris-trickle: a backend saw {}", seen.target));
    }
    failures.extend(battery.liveness("slowloris"));

    // A connection that sends nothing is held only for the header timeout.
    let (took, _) = timed_close(port, b"", None, limit);
    match took {
        Some(t) if t <= HEADER_TIMEOUT + MARGIN => battery.rejections += 1,
        other => failures.push(format!(
            "slowloris-silent: an idle new connection still open after {other:?} s"
        )),
    }
    failures.extend(battery.liveness("silent"));

    // One full request, then silence: the keep-alive connection closes after the idle timeout
    // (and not before the response).
    let (took, status) = timed_close(
        port,
        &req("GET /public/idle HTTP/1.1", &[], b""),
        None,
        IDLE_TIMEOUT + MARGIN + 3.0,
    );
    match took {
        Some(t) if (IDLE_TIMEOUT - 0.5..=IDLE_TIMEOUT + MARGIN).contains(&t) => {}
        other => failures.push(format!(
            "idle-keepalive: closed after {other:?} s (idle timeout {IDLE_TIMEOUT} s)"
        )),
    }
    if status != Some(200) {
        failures.push(format!("idle-keepalive: the request got {status:?}"));
    }
    failures.extend(battery.liveness("idle"));

    // Every refusal is counted in the metrics.
    let metrics = battery.gw.admin_get("/metrics").text();
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("meshgate_http_requests_rejected_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    if counted < battery.rejections.max(1) as f64 {
        failures.push(format!(
            "rejections-counted: meshgate_http_requests_rejected_total = {counted}, but this run saw {} refusals",
            battery.rejections
        ));
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\n--- gateway log tail ---\n{}",
        failures.len(),
        failures.join("\n"),
        battery.gw.log_tail()
    );
}

#[test]
fn the_table_covers_every_refusal_kind() {
    // A guard against the table losing cases in a refactor: each refusal class Kuma's gateway
    // has is represented.
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    for prefix in [
        "cl-",
        "te-",
        "chunk-",
        "header-",
        "head-",
        "host-",
        "target-",
        "absolute-",
        "pipelined-",
    ] {
        assert!(
            names.iter().filter(|n| n.starts_with(prefix)).count() >= 2,
            "no {prefix}* cases"
        );
    }
    assert!(names.len() >= 65, "{} cases", names.len());
}
