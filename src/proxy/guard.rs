//! A guard in front of Pingora's HTTP/1 parser for what Pingora lets through
//! (operations.md §2.2, §2.4): it watches the bytes of each request head as they are read
//! and, before Pingora acts on them, refuses
//! - a head not complete within the header deadline (slowloris) → 408,
//! - a head larger than 64 KiB or with more than 100 fields → 431,
//! - a request-target holding spaces, NUL or other control bytes (Pingora would
//!   percent-escape and forward them) → 400,
//! - header names containing `_` (Kuma's gateway rejects them) → 400,
//! - ambiguous framing: `Content-Length` together with `Transfer-Encoding`, differing or
//!   malformed `Content-Length`s, a `Transfer-Encoding` not ending in `chunked`, obs-fold and
//!   field lines without a colon → 400. Pingora refuses most of these too, but with
//!   pipelining on, a refused head must never leave a smuggled tail behind, and every
//!   refusal here is counted in `meshgate_http_requests_rejected_total`.
//!
//! It follows HTTP/1 framing just enough to find the next head: a `Content-Length` body is
//! skipped by count, a chunked body followed through its chunks as Pingora's reader follows
//! them ([`crate::proxy::chunked`]; framing Pingora refuses turns the guard off, as Pingora
//! then closes the connection), and an `Upgrade` or CONNECT request turns the guard off for
//! the rest of the connection. A refusal writes a complete response with `Connection: close`
//! and then reports end-of-stream to Pingora.
//! HTTP/2 connections are not wrapped (their framing has its own limits in `h2`).
//!
//! It also bounds the upstream's silence for the request being proxied (Kuma's stream idle
//! and request timeouts, see [`Guarded::watch_upstream`]): Pingora keeps polling the
//! client's side while it waits for the upstream, to notice a client that leaves, so the
//! guard can end that wait with one timer per connection instead of the timer Pingora would
//! register for every upstream read. While a request is proxied under that bound, bytes of
//! later pipelined requests are held back here: Pingora stops polling the client once it has
//! stashed the start of the next request, and the bound would go with it.

use crate::metrics::METRICS;
use crate::proxy::chunked::{Chunked, ChunkedBody};
use crate::proxy::coalesce::Coalescer;
use crate::proxy::local::SERVER;
use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, UniqueID, UniqueIDType,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

type Stream = pingora::protocols::Stream;

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    /// Kuma's connection idle timeout: how long a keep-alive connection may wait for its
    /// next request.
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    pub allow_underscore_headers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Timeout,
    TooLarge,
    BadTarget,
    Underscore,
    BadFraming,
    BadHeader,
    BadVersion,
}

impl Refusal {
    fn status_line(self) -> &'static str {
        match self {
            Refusal::Timeout => "408 Request Timeout",
            Refusal::TooLarge => "431 Request Header Fields Too Large",
            Refusal::BadTarget
            | Refusal::Underscore
            | Refusal::BadFraming
            | Refusal::BadHeader
            | Refusal::BadVersion => "400 Bad Request",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Timeout => "header_timeout",
            Refusal::TooLarge => "header_too_large",
            Refusal::BadTarget => "bad_request_target",
            Refusal::Underscore => "underscore_header",
            Refusal::BadFraming => "bad_framing",
            Refusal::BadHeader => "bad_header",
            Refusal::BadVersion => "bad_version",
        }
    }
}

/// Where the connection is in its request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a head (keep-alive idle once the previous request is
    /// finished: `idle_timeout` applies).
    Idle,
    /// Inside a head.
    Head,
    /// Skipping a body of known length.
    Body(u64),
    /// Inside a chunked body.
    Chunked(ChunkedBody),
    /// Upgraded or CONNECT: raw bytes, nothing more to check.
    Off,
    /// A later request was refused: nothing more is read from the client.
    Closed,
}

/// Incremental scanner of one request head.
#[derive(Debug, Default)]
struct HeadScan {
    bytes: usize,
    fields: usize,
    /// The current line so far (kept short: only the start matters beyond the target).
    line: Vec<u8>,
    first_line_done: bool,
    content_length: Option<u64>,
    chunked: bool,
    upgrade: bool,
    connect: bool,
    http10: bool,
    /// The authority of an absolute-form target (`GET http://a.test/x`), lower-cased.
    absolute_authority: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
}

enum Scan {
    More,
    /// Head complete after this many bytes of the chunk; what follows.
    Done(usize),
    Refuse(Refusal),
}

/// Longest line prefix kept for inspecting a header line's name and framing fields.
const LINE_KEEP: usize = 8 * 1024;

impl HeadScan {
    /// Scans `data` line by line (a whole line in one chunk is inspected in place; only a
    /// line split across reads is copied into `line`, whose buffer is reused).
    fn feed(&mut self, data: &[u8], limits: &Limits) -> Scan {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let newline = memchr::memchr(b'\n', rest);
            let take = newline.map_or(rest.len(), |n| n + 1);
            if self.bytes + take > limits.max_header_bytes {
                return Scan::Refuse(Refusal::TooLarge);
            }
            self.bytes += take;
            pos += take;
            let Some(n) = newline else {
                self.keep_partial(rest);
                return Scan::More;
            };
            let scanned = if self.line.is_empty() {
                self.line_done(self.kept(&rest[..n]), limits)
            } else {
                self.keep_partial(&rest[..n]);
                let line = std::mem::take(&mut self.line);
                let scanned = self.line_done(&line, limits);
                self.line = line;
                self.line.clear();
                scanned
            };
            match scanned {
                Ok(true) => return Scan::Done(pos),
                Ok(false) => {}
                Err(r) => return Scan::Refuse(r),
            }
        }
        Scan::More
    }

    /// The part of a header line that is inspected (the request line is kept whole).
    fn kept<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        if self.first_line_done && line.len() > LINE_KEEP {
            &line[..LINE_KEEP]
        } else {
            line
        }
    }

    fn keep_partial(&mut self, part: &[u8]) {
        let room = if self.first_line_done {
            LINE_KEEP.saturating_sub(self.line.len())
        } else {
            part.len()
        };
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    /// One complete line (without its `\n`); `Ok(true)` when it ends the head.
    fn line_done(&mut self, line: &[u8], limits: &Limits) -> Result<bool, Refusal> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.first_line_done {
            if line.is_empty() {
                return Ok(false); // RFC 9112 §2.2: ignore empty lines before the request line
            }
            self.first_line_done = true;
            self.request_line(line)?;
            return Ok(false);
        }
        if line.is_empty() {
            // An absolute-form target and Host must name the same authority: a proxy
            // routing by one while the backend trusts the other is a classic bypass.
            if let Some(a) = &self.absolute_authority {
                if self.host.as_deref() != Some(a.as_slice()) {
                    return Err(Refusal::BadTarget);
                }
            }
            return Ok(true);
        }
        self.fields += 1;
        if self.fields > limits.max_header_count {
            return Err(Refusal::TooLarge);
        }
        self.header_line(line, limits)?;
        Ok(false)
    }

    fn request_line(&mut self, line: &[u8]) -> Result<(), Refusal> {
        // method SP request-target SP HTTP-version, nothing else (RFC 9112 §3).
        let mut parts = line.split(|&c| c == b' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let version = parts.next().unwrap_or_default();
        if parts.next().is_some() || target.is_empty() {
            return Err(Refusal::BadTarget);
        }
        if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
            return Err(Refusal::BadVersion); // incl. an HTTP/2 preface on an HTTP/1 port
        }
        self.http10 = version == b"HTTP/1.0";
        let scheme_len = [&b"http://"[..], b"https://"]
            .into_iter()
            .find_map(|scheme| {
                target
                    .get(..scheme.len())
                    .filter(|t| t.eq_ignore_ascii_case(scheme))
                    .map(|_| scheme.len())
            });
        if let Some(rest) = scheme_len.map(|n| &target[n..]) {
            let end = rest
                .iter()
                .position(|&c| c == b'/' || c == b'?')
                .unwrap_or(rest.len());
            let authority = &rest[..end];
            if authority.is_empty() || authority.contains(&b'@') {
                return Err(Refusal::BadTarget); // userinfo is forbidden (RFC 9110 §4.2.4)
            }
            self.absolute_authority = Some(authority.to_ascii_lowercase());
        }
        if target.iter().any(|&c| c < 0x21 || c == 0x7f) {
            return Err(Refusal::BadTarget);
        }
        self.connect = method == b"CONNECT";
        Ok(())
    }

    fn header_line(&mut self, line: &[u8], limits: &Limits) -> Result<(), Refusal> {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err(Refusal::BadHeader); // obs-fold (RFC 9112 §5.2)
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(Refusal::BadHeader);
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&c| c <= b' ' || c == 0x7f) {
            return Err(Refusal::BadHeader); // incl. whitespace before the colon (§5.1)
        }
        if !limits.allow_underscore_headers && name.contains(&b'_') {
            return Err(Refusal::Underscore);
        }
        let value = trim(&line[colon + 1..]);
        if value.iter().any(|&c| (c < b' ' && c != b'\t') || c == 0x7f) {
            return Err(Refusal::BadHeader); // NUL, bare CR and other controls (RFC 9110 §5.5)
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Refusal::BadFraming)?;
            if self.content_length.is_some_and(|prev| prev != parsed) {
                return Err(Refusal::BadFraming);
            }
            self.content_length = Some(parsed);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&c| c == b',')
                .next()
                .map(trim)
                .unwrap_or_default();
            if !last.eq_ignore_ascii_case(b"chunked") || self.http10 {
                // RFC 9112 §6.3: chunked must be final; §6.1: TE in HTTP/1.0 is faulty framing
                return Err(Refusal::BadFraming);
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"host") && self.absolute_authority.is_some() {
            // Only compared with an absolute-form target's authority.
            self.host = Some(value.to_ascii_lowercase());
        }
        if self.chunked && self.content_length.is_some() {
            // RFC 9112 §6.1 allows "use TE, then close"; refusing is simpler and leaves no
            // room for a smuggled request behind the body.
            return Err(Refusal::BadFraming);
        }
        Ok(())
    }

    /// What follows the head.
    fn next_phase(&self) -> Phase {
        if self.upgrade || self.connect {
            Phase::Off
        } else if self.chunked {
            Phase::Chunked(ChunkedBody::default())
        } else {
            match self.content_length {
                Some(n) if n > 0 => Phase::Body(n),
                _ => Phase::Idle,
            }
        }
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// The guarded stream, over plain TCP or the plaintext side of TLS.
#[derive(Debug)]
pub struct Guarded {
    inner: Stream,
    limits: Arc<Limits>,
    listener: Arc<str>,
    phase: Phase,
    scan: HeadScan,
    /// The header deadline of the current head. Made when the guard first waits for more of
    /// a head, so a head that arrives whole (nearly all of them) costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Heads handed to Pingora, and requests the HTTP layer has finished (see
    /// [`Guarded::request_finished`]): equal when no request is active on the connection.
    heads: u32,
    finished: AtomicU32,
    /// Since when the connection waits for its next request with none active.
    idle_since: Option<Instant>,
    /// One timer per connection for the idle timeout, re-armed lazily: it is left running
    /// across requests and, when it fires early, pushed to the current wait's deadline. A
    /// timer registered per request (Pingora's keep-alive timeout) cost ~3,000 instructions
    /// of every request (callgrind).
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// The upstream silence bound of the request being proxied, in ms (0: none). Set by the
    /// HTTP layer through `&self` (the stream is Pingora's while a hook runs), cleared when
    /// the request is finished.
    upstream_limit_ms: AtomicU64,
    /// A new bound was set: its silence counts from the guard's next look at it.
    upstream_restart: AtomicBool,
    /// The guard ended a read because the bound ran out.
    upstream_timed_out: AtomicBool,
    /// The last bytes read from or written to the client while a bound applies.
    last_activity: Option<Instant>,
    /// One timer per connection for the bound, moved lazily like `idle_timer`.
    upstream_timer: Option<Pin<Box<Sleep>>>,
    /// The client closed while pipelined bytes were held back: end-of-stream comes after
    /// them.
    eof_held: bool,
    /// A refusal being written: the response bytes and how many are out.
    refusal: Option<(Vec<u8>, usize)>,
    done: bool,
    /// Bytes cleared for Pingora, and how many of them it has taken.
    ready: Vec<u8>,
    ready_pos: usize,
    /// The current head, held back until it is complete and checked: Pingora never sees
    /// part of a head that is then refused.
    held: Vec<u8>,
    /// A request was already handed to Pingora on this connection.
    delivered: bool,
    /// A deferred refusal is queued: after `ready`, client bytes are discarded.
    eof_after_ready: bool,
    /// Response bytes on their way out, coalesced like Pingora's own listeners do.
    out: Coalescer,
}

/// The header by which a refusal reaches the HTTP layer when an earlier request on the
/// connection is still being answered. Pipelined responses must stay in order, so the guard
/// cannot write its answer itself then: it hands Pingora this stand-in request instead, which
/// `HttpGateway::early_request_filter` answers with the status, closing the connection.
pub const REFUSED_HEADER: &str = "x-meshgate-refused";

/// The error text of a read the upstream bound ended.
pub const UPSTREAM_TIMEOUT: &str = "upstream silent for longer than the stream timeout";

impl Guarded {
    pub fn new(inner: Stream, limits: Arc<Limits>, listener: Arc<str>) -> Self {
        let deadline = Some(Box::pin(tokio::time::sleep(limits.header_timeout)));
        Guarded {
            inner,
            limits,
            listener,
            // The first head is expected at once: a connection that sends nothing is held
            // only for the header deadline.
            phase: Phase::Head,
            scan: HeadScan::default(),
            deadline,
            heads: 0,
            finished: AtomicU32::new(0),
            idle_since: None,
            idle_timer: None,
            upstream_limit_ms: AtomicU64::new(0),
            upstream_restart: AtomicBool::new(false),
            upstream_timed_out: AtomicBool::new(false),
            last_activity: None,
            upstream_timer: None,
            eof_held: false,
            refusal: None,
            done: false,
            ready: Vec::new(),
            ready_pos: 0,
            held: Vec::new(),
            delivered: false,
            eof_after_ready: false,
            out: Coalescer::default(),
        }
    }

    fn refuse(&mut self, r: Refusal) {
        METRICS
            .http_rejected
            .with_label_values(&[&self.listener, r.reason()])
            .inc();
        self.held.clear();
        self.deadline = None;
        if self.delivered {
            let status = &r.status_line()[..3];
            let stand_in = format!(
                "GET / HTTP/1.1\r\nhost: refused.meshgate\r\n{REFUSED_HEADER}: {status}\r\n\r\n"
            );
            self.ready.extend_from_slice(stand_in.as_bytes());
            self.heads = self.heads.wrapping_add(1);
            self.eof_after_ready = true;
            self.phase = Phase::Closed;
            return;
        }
        let resp = format!(
            "HTTP/1.1 {}\r\nserver: {SERVER}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            r.status_line()
        );
        self.refusal = Some((resp.into_bytes(), 0));
        self.deadline = None;
    }

    /// A refused head's stand-in request (carrying [`REFUSED_HEADER`]) has been queued for
    /// Pingora on this connection.
    pub fn stand_in_queued(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The HTTP layer finished a request on this connection (its `logging` hook): once every
    /// head handed over is finished, waiting for the next one is idle time.
    pub fn request_finished(&self) {
        // Only this connection's task reads or writes the counter; atomic for `Sync` alone.
        let finished = self.finished.load(Ordering::Relaxed);
        self.finished
            .store(finished.wrapping_add(1), Ordering::Relaxed);
        self.upstream_limit_ms.store(0, Ordering::Relaxed);
        self.upstream_timed_out.store(false, Ordering::Relaxed);
    }

    /// Bounds the upstream's silence for the request about to be proxied: once no byte has
    /// gone to or come from the client for `limit` while Pingora waits, the guard's read
    /// fails with [`UPSTREAM_TIMEOUT`] and [`Guarded::upstream_timed_out`] is set. Upstream
    /// bytes reach the client as Pingora forwards them, and a request body comes from the
    /// client, so this is the silence of the stream in both directions (Envoy's stream idle
    /// timeout). Called for every upstream attempt; `None` lifts the bound.
    pub fn watch_upstream(&self, limit: Option<Duration>) {
        let ms = limit.map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64);
        self.upstream_limit_ms.store(ms, Ordering::Relaxed);
        self.upstream_restart.store(true, Ordering::Relaxed);
        self.upstream_timed_out.store(false, Ordering::Relaxed);
    }

    /// Whether the guard ended the current request's upstream wait (answer 504).
    pub fn upstream_timed_out(&self) -> bool {
        self.upstream_timed_out.load(Ordering::Relaxed)
    }

    fn upstream_limit(&self) -> Option<Duration> {
        match self.upstream_limit_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Bytes moved to or from the client: the stream is not silent.
    fn note_activity(&mut self) {
        if self.upstream_limit_ms.load(Ordering::Relaxed) != 0 {
            self.last_activity = Some(Instant::now());
        }
    }

    /// Whether the bound of the request being proxied has run out. Polls the connection's
    /// upstream timer (registering the waker). The timer is only moved earlier eagerly; a
    /// timer left behind by activity fires early and is then moved to the current deadline,
    /// so a request that sees activity costs no timer update.
    fn upstream_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(limit) = self.upstream_limit() else {
            return false;
        };
        let restart = self.upstream_restart.swap(false, Ordering::Relaxed);
        let since = match self.last_activity {
            Some(at) if !restart => at,
            _ => *self.last_activity.insert(Instant::now()),
        };
        let deadline = since + limit;
        let timer = self
            .upstream_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        let expired = lazy_timer_expired(timer, deadline, cx);
        if expired {
            self.upstream_timed_out.store(true, Ordering::Relaxed);
        }
        expired
    }

    /// The read Pingora is waiting on found nothing: either the bound ran out (an error
    /// Pingora takes as the client side failing; the HTTP layer answers 504) or wait.
    fn pending_or_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.upstream_expired(cx) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                UPSTREAM_TIMEOUT,
            )));
        }
        Poll::Pending
    }

    /// Bytes of a later request are kept here, not handed to Pingora, while a request is
    /// proxied under a bound (see the module comment).
    fn holding(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Head) && self.upstream_limit().is_some()
    }

    /// Runs the head scanner over `data`, bytes just read into Pingora's buffer. Returns how
    /// many of them, from the start, are cleared for Pingora where they lie; the rest were
    /// moved to `ready` (cleared, behind bytes already waiting) or `held` (an incomplete
    /// head), or discarded. Bytes are only copied when they cannot stay: a head split across
    /// reads, or anything queued behind bytes Pingora has not taken yet.
    fn inspect(&mut self, data: &[u8]) -> usize {
        let mut cleared = Cleared {
            in_place: 0,
            contiguous: self.ready.is_empty() && self.held.is_empty(),
        };
        let mut pos = 0;
        while pos < data.len() {
            match self.phase.clone() {
                Phase::Closed => break,
                Phase::Off => {
                    self.clear(&mut cleared, data, pos..data.len());
                    break;
                }
                Phase::Chunked(mut body) => match body.feed(&data[pos..]) {
                    Chunked::More => {
                        self.phase = Phase::Chunked(body);
                        self.clear(&mut cleared, data, pos..data.len());
                        break;
                    }
                    Chunked::Done(used) => {
                        self.clear(&mut cleared, data, pos..pos + used);
                        pos += used;
                        self.phase = Phase::Idle;
                    }
                    Chunked::Invalid => {
                        // Pingora's reader fails on these bytes and closes the connection;
                        // they are its to refuse.
                        self.phase = Phase::Off;
                    }
                },
                Phase::Body(n) => {
                    let take = (n as usize).min(data.len() - pos);
                    self.clear(&mut cleared, data, pos..pos + take);
                    pos += take;
                    let left = n - take as u64;
                    self.phase = if left == 0 {
                        Phase::Idle
                    } else {
                        Phase::Body(left)
                    };
                }
                Phase::Idle => {
                    self.phase = Phase::Head;
                    self.scan = HeadScan::default();
                }
                Phase::Head => match self.scan.feed(&data[pos..], &self.limits) {
                    Scan::More => {
                        self.held.extend_from_slice(&data[pos..]);
                        break;
                    }
                    Scan::Refuse(r) => {
                        self.refuse(r);
                        break;
                    }
                    Scan::Done(used) => {
                        if self.held.is_empty() {
                            self.clear(&mut cleared, data, pos..pos + used);
                        } else {
                            // The rest of a head begun in an earlier read.
                            self.held.extend_from_slice(&data[pos..pos + used]);
                            self.ready.append(&mut self.held);
                            cleared.contiguous = false;
                        }
                        self.delivered = true;
                        self.heads = self.heads.wrapping_add(1);
                        pos += used;
                        self.phase = self.scan.next_phase();
                        self.deadline = None;
                    }
                },
            }
        }
        cleared.in_place
    }

    /// Clears `data[range]` for Pingora: in place while everything cleared so far is one run
    /// from the start of `data`, else queued in `ready`.
    fn clear(&mut self, cleared: &mut Cleared, data: &[u8], range: std::ops::Range<usize>) {
        if cleared.contiguous && cleared.in_place == range.start {
            cleared.in_place = range.end;
        } else {
            cleared.contiguous = false;
            self.ready.extend_from_slice(&data[range]);
        }
    }

    /// The read found nothing to read: start the timer that bounds this wait, if any.
    fn arm_wait_timer(&mut self, cx: &mut Context<'_>) {
        match self.phase {
            Phase::Head if self.deadline.is_none() && !self.eof_after_ready => {
                let mut deadline = Box::pin(tokio::time::sleep(self.limits.header_timeout));
                // Registers the waker; ready at once only for a zero timeout.
                if deadline.as_mut().poll(cx).is_ready() {
                    self.refuse(Refusal::Timeout);
                    cx.waker().wake_by_ref();
                } else {
                    self.deadline = Some(deadline);
                }
            }
            Phase::Idle
                if self.idle_since.is_none()
                    && self.heads == self.finished.load(Ordering::Relaxed) =>
            {
                let now = Instant::now();
                self.idle_since = Some(now);
                if self.idle_timer.is_none() {
                    let timer = tokio::time::sleep_until(now + self.limits.idle_timeout);
                    self.idle_timer = Some(Box::pin(timer));
                }
                if self.idle_expired(cx) {
                    self.done = true;
                    cx.waker().wake_by_ref();
                }
            }
            _ => {}
        }
    }

    /// Whether the current idle wait has lasted the idle timeout. Polls the connection's idle
    /// timer (registering the waker); a timer that fired for an earlier wait is moved to this
    /// wait's deadline instead.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(since), Some(timer)) = (self.idle_since, self.idle_timer.as_mut()) else {
            return false;
        };
        lazy_timer_expired(timer, since + self.limits.idle_timeout, cx)
    }
}

/// Whether `deadline` has passed, for a connection's lazily moved timer: the timer may still
/// be set for an earlier deadline (activity moved the real one without touching the timer);
/// firing early, it is moved to `deadline` instead. Registers the waker.
fn lazy_timer_expired(
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> bool {
    while timer.as_mut().poll(cx).is_ready() {
        if timer.deadline() >= deadline {
            return true;
        }
        timer.as_mut().reset(deadline);
    }
    false
}

/// What [`Guarded::inspect`] has cleared in place so far.
struct Cleared {
    in_place: usize,
    /// Everything cleared so far is `data[..in_place]`.
    contiguous: bool,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if this.refusal.is_none() && this.phase == Phase::Head && !this.eof_after_ready {
            if let Some(d) = this.deadline.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    this.refuse(Refusal::Timeout);
                }
            }
        }
        if this.idle_since.is_some() && this.idle_expired(cx) {
            // Kuma's idle timeout: end the stream, which Pingora takes as the client leaving
            // between requests and closes quietly.
            this.done = true;
            return Poll::Ready(Ok(()));
        }
        if let Some((resp, sent)) = this.refusal.as_mut() {
            // Write the refusal after any response still buffered, then report end-of-stream
            // so Pingora closes quietly.
            if this.out.poll_drain(&mut this.inner, cx).is_pending() {
                return Poll::Pending;
            }
            while *sent < resp.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &resp[*sent..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(n)) => *sent += n,
                    Poll::Pending => return Poll::Pending,
                }
            }
            if Pin::new(&mut this.inner).poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            this.done = true;
            return Poll::Ready(Ok(()));
        }
        loop {
            let hold = this.holding();
            if !hold && this.ready_pos < this.ready.len() {
                let n = (this.ready.len() - this.ready_pos).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if !hold && this.eof_held {
                return Poll::Ready(Ok(())); // the client closed after the held bytes
            }
            if hold
                && (this.eof_held
                    || this.ready.len() - this.ready_pos + this.held.len()
                        >= this.limits.max_header_bytes)
            {
                // Nothing more is taken from the client until the proxied request ends.
                return this.pending_or_timed_out(cx);
            }
            // Read straight into Pingora's buffer, then take the fresh bytes back out: the
            // scanner decides what Pingora may see (no intermediate buffer to zero).
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().len() == before {
                        if hold && this.ready_pos < this.ready.len() {
                            this.eof_held = true;
                            continue;
                        }
                        return Poll::Ready(Ok(())); // the client closed
                    }
                    this.idle_since = None;
                    if !hold {
                        // Held bytes belong to a later request: they do not keep this
                        // request's upstream wait alive (a client trickling a pipelined head
                        // could otherwise hold an upstream connection for as long as it likes).
                        this.note_activity();
                    }
                    if this.eof_after_ready {
                        // After a refused request nothing more is taken from the client; the
                        // stream is not ended either, or Pingora would take it for a client
                        // that went away and abort the requests still being answered.
                        buf.set_filled(before);
                        continue;
                    }
                    let in_place = this.inspect(&buf.filled()[before..]);
                    if hold && in_place > 0 {
                        // Held back, in front of whatever the scan queued behind them (the
                        // queue was empty, or nothing would have been cleared in place).
                        let bytes = buf.filled()[before..before + in_place].to_vec();
                        this.ready.splice(this.ready_pos..this.ready_pos, bytes);
                        buf.set_filled(before);
                        continue;
                    }
                    buf.set_filled(before + in_place);
                    if in_place > 0 {
                        return Poll::Ready(Ok(()));
                    }
                    if this.refusal.is_some() {
                        // Answer (write the refusal) on the next poll.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    // Loop: deliver what became ready, or read more of a held head.
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.arm_wait_timer(cx);
                    return this.pending_or_timed_out(cx);
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = this.out.poll_write(&mut this.inner, cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.note_activity();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.out.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.out.poll_shutdown(&mut this.inner, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let written = this.out.poll_write_vectored(&mut this.inner, cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.note_activity();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        // Whatever is still buffered goes out before the close.
        let _ = std::future::poll_fn(|cx| self.out.poll_drain(&mut self.inner, cx)).await;
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, d: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(d)
    }
}

#[async_trait]
impl Peek for Guarded {
    // Peeking bypasses the guard; Pingora only peeks for the h2c preface, which is off.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_header_bytes: 64 * 1024,
            max_header_count: 100,
            allow_underscore_headers: false,
        }
    }

    fn scan(head: &[u8]) -> Result<(usize, Phase), Refusal> {
        let mut s = HeadScan::default();
        match s.feed(head, &limits()) {
            Scan::Done(n) => Ok((n, s.next_phase())),
            Scan::Refuse(r) => Err(r),
            Scan::More => panic!("incomplete head"),
        }
    }

    /// The same head fed in two reads split at `at`; `Done` counts bytes of the second read.
    fn scan_split(head: &[u8], at: usize) -> Result<(usize, Phase), Refusal> {
        let mut s = HeadScan::default();
        match s.feed(&head[..at], &limits()) {
            Scan::More => {}
            Scan::Done(n) => return Ok((n, s.next_phase())),
            Scan::Refuse(r) => return Err(r),
        }
        match s.feed(&head[at..], &limits()) {
            Scan::Done(n) => Ok((at + n, s.next_phase())),
            Scan::Refuse(r) => Err(r),
            Scan::More => panic!("incomplete head"),
        }
    }

    #[test]
    fn a_head_split_anywhere_scans_like_a_whole_one() {
        let heads: [&[u8]; 4] = [
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"GET http://A.test/x HTTP/1.1\r\nhost: a.test\r\n\r\n",
            b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n",
            b"GET / HTTP/1.1\r\nx_y: 1\r\n\r\n",
        ];
        for head in heads {
            let whole = scan(head);
            for at in 1..head.len() {
                assert_eq!(scan_split(head, at), whole, "split at {at}: {head:?}");
            }
        }
        assert_eq!(scan(heads[1]).map(|r| r.1), Ok(Phase::Idle));
        assert_eq!(scan(heads[2]), Err(Refusal::BadTarget));
        assert_eq!(scan(heads[3]), Err(Refusal::Underscore));
    }

    #[test]
    fn a_normal_head_passes_and_finds_its_body() {
        let h = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(scan(h), Ok((h.len() - 5, Phase::Body(5))));
        let h = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(scan(h), Ok((h.len(), Phase::Idle)));
    }

    #[test]
    fn control_bytes_and_spaces_in_the_target_are_refused() {
        assert_eq!(scan(b"GET /a b HTTP/1.1\r\n\r\n"), Err(Refusal::BadTarget));
        assert_eq!(
            scan(b"GET /a\x00b HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadTarget)
        );
        assert_eq!(
            scan(b"GET /a\x01 HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadTarget)
        );
    }

    #[test]
    fn underscores_in_names_are_refused() {
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nx_a: 1\r\n\r\n"),
            Err(Refusal::Underscore)
        );
    }

    #[test]
    fn too_many_fields_or_bytes_are_431() {
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            h.extend(format!("x-{i}: v\r\n").as_bytes());
        }
        h.extend(b"\r\n");
        assert_eq!(scan(&h), Err(Refusal::TooLarge));
        let mut h = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
        h.extend(vec![b'a'; 70 * 1024]);
        assert!(matches!(
            HeadScan::default().feed(&h, &limits()),
            Scan::Refuse(Refusal::TooLarge)
        ));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cl_te = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(cl_te), Err(Refusal::BadFraming));
        let two_cl = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(scan(two_cl), Err(Refusal::BadFraming));
        let bad_cl = b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n";
        assert_eq!(scan(bad_cl), Err(Refusal::BadFraming));
        let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert_eq!(scan(te), Err(Refusal::BadFraming));
        let fold = b"GET / HTTP/1.1\r\nx-a: 1\r\n 2\r\n\r\n";
        assert_eq!(scan(fold), Err(Refusal::BadHeader));
        let space = b"GET / HTTP/1.1\r\nx-a : 1\r\n\r\n";
        assert_eq!(scan(space), Err(Refusal::BadHeader));
    }

    #[test]
    fn bad_versions_and_control_bytes_in_values_are_refused() {
        assert_eq!(scan(b"GET / HTTP/1.2\r\n\r\n"), Err(Refusal::BadVersion));
        assert_eq!(scan(b"PRI * HTTP/2.0\r\n\r\n"), Err(Refusal::BadVersion));
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nx-a: a\x00b\r\n\r\n"),
            Err(Refusal::BadHeader)
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nx-a: a\rb\r\n\r\n"),
            Err(Refusal::BadHeader)
        );
        assert_eq!(
            scan(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Refusal::BadFraming)
        );
        assert!(scan(b"GET / HTTP/1.1\r\nx-a: a\tb\r\n\r\n").is_ok());
    }

    #[test]
    fn absolute_form_must_agree_with_host() {
        assert!(scan(b"GET http://a.test/x HTTP/1.1\r\nHost: A.test\r\n\r\n").is_ok());
        assert_eq!(
            scan(b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n"),
            Err(Refusal::BadTarget)
        );
        assert_eq!(
            scan(b"GET http://u@a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            Err(Refusal::BadTarget)
        );
    }

    #[test]
    fn upgrade_turns_the_guard_off() {
        let h = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(scan(h), Ok((h.len(), Phase::Off)));
    }

    /// Sends `chunks` from a client, each its own write with a pause so the guard sees them
    /// as separate reads, and returns every byte the guard hands on, until end of stream.
    async fn read_through(chunks: &[&[u8]]) -> Vec<u8> {
        use tokio::io::AsyncWriteExt;
        let (mut guarded, mut client) = guarded_pair().await;
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client.shutdown().await.unwrap();
            // Keep the read side open so a refusal can be written back.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let seen = read_to_end(&mut guarded).await;
        writer.await.unwrap();
        seen
    }

    #[tokio::test]
    async fn pingora_reads_the_cleared_bytes_in_order_however_they_arrive() {
        let stream: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;x=y\r\nhello\r\n0\r\nt: 1\r\n\r\n\
            GET /d HTTP/1.1\r\nHost: a\r\n\r\n";
        // Whole, byte by byte, and cut across heads and the body: always the same bytes.
        assert_eq!(read_through(&[stream]).await, stream);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_through(&bytes).await, stream);
        let cuts: Vec<&[u8]> = stream.chunks(23).collect();
        assert_eq!(read_through(&cuts).await, stream);

        // A refused head behind a delivered one becomes the stand-in request, and nothing
        // after it reaches Pingora.
        let first: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        let bad: &[u8] = b"GET /b HTTP/1.1\r\nx_y: 1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let mut want = first.to_vec();
        want.extend_from_slice(
            format!("GET / HTTP/1.1\r\nhost: refused.meshgate\r\n{REFUSED_HEADER}: 400\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(read_through(&[first, bad]).await, want);
        let together = [first, bad].concat();
        assert_eq!(read_through(&[&together]).await, want);
    }

    #[tokio::test]
    async fn the_head_after_a_chunked_body_is_checked_too() {
        // The chunked body is followed to its end, so the head behind it is scanned (and
        // refused) like any other, however the bytes are cut.
        let first: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            3\r\nx_y\r\n0\r\n\r\n";
        let bad: &[u8] = b"GET /b HTTP/1.1\r\nx_y: 1\r\n\r\n";
        let mut want = first.to_vec();
        want.extend_from_slice(
            format!("GET / HTTP/1.1\r\nhost: refused.meshgate\r\n{REFUSED_HEADER}: 400\r\n\r\n")
                .as_bytes(),
        );
        let stream = [first, bad].concat();
        assert_eq!(read_through(&[&stream]).await, want);
        let cuts: Vec<&[u8]> = stream.chunks(7).collect();
        assert_eq!(read_through(&cuts).await, want);

        // Chunk framing Pingora refuses: the guard steps aside and Pingora has the bytes.
        let broken: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            zz\r\nGET /b HTTP/1.1\r\nx_y: 1\r\n\r\n";
        assert_eq!(read_through(&[broken]).await, broken);
    }

    /// A guarded server side and its client.
    async fn guarded_pair() -> (Guarded, tokio::net::TcpStream) {
        let (inner, client) = crate::proxy::accepted_stream_pair().await;
        (
            Guarded::new(inner, Arc::new(limits()), Arc::from("test")),
            client,
        )
    }

    /// A guarded pair whose first request, `GET /a`, Pingora has read.
    async fn guarded_after_a_request() -> (Guarded, tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut guarded, mut client) = guarded_pair().await;
        let head: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(head).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = guarded.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], head);
        (guarded, client)
    }

    /// Everything the guard hands on until end of stream.
    async fn read_to_end(guarded: &mut Guarded) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), guarded.read(&mut buf))
                .await
                .expect("guard stalled")
                .unwrap();
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn the_upstream_bound_ends_a_silent_wait_and_moves_with_activity() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut guarded, _client) = guarded_after_a_request().await;
        let mut buf = vec![0u8; 4096];

        // No bound: the wait for the upstream is not the guard's to end.
        let unbounded = tokio::time::timeout(Duration::from_millis(300), guarded.read(&mut buf));
        assert!(unbounded.await.is_err(), "a read without a bound ended");

        // Bounded at 200 ms, with a response byte written after 120 ms: the wait ends about
        // 200 ms after that write, as a timed-out read, and the guard says why.
        guarded.watch_upstream(Some(Duration::from_millis(200)));
        let started = Instant::now();
        let mut first = [0u8; 1];
        let wait = tokio::time::timeout(Duration::from_millis(120), guarded.read(&mut first));
        assert!(wait.await.is_err(), "ended before the bound");
        guarded.write_all(b"H").await.unwrap();
        guarded.flush().await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), guarded.read(&mut first))
            .await
            .expect("the bound never ended the wait")
            .expect_err("a silent upstream must end the read with an error");
        let waited = started.elapsed();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(guarded.upstream_timed_out());
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
            "ended after {waited:?}: the write at ~120 ms should have moved the deadline to ~320 ms"
        );

        // The request finished: the bound is lifted.
        guarded.request_finished();
        let lifted = tokio::time::timeout(Duration::from_millis(300), guarded.read(&mut first));
        assert!(lifted.await.is_err(), "the bound outlived its request");
    }

    #[tokio::test]
    async fn pipelined_bytes_wait_while_a_bounded_request_is_proxied() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut guarded, mut client) = guarded_after_a_request().await;
        let second: &[u8] = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";

        // While the first request is proxied, Pingora's one-byte probes see nothing of the
        // next requests nor of the client's close, and the bound still runs.
        guarded.watch_upstream(Some(Duration::from_millis(300)));
        client.write_all(second).await.unwrap();
        client.shutdown().await.unwrap();
        let mut probe = [0u8; 1];
        let probed = tokio::time::timeout(Duration::from_millis(150), guarded.read(&mut probe));
        assert!(
            probed.await.is_err(),
            "pipelined bytes reached Pingora mid-request"
        );

        // The request finished: the held requests come out in order, then the end of stream.
        guarded.request_finished();
        let seen = read_to_end(&mut guarded).await;
        assert_eq!(seen, second);
    }

    #[tokio::test]
    async fn held_bytes_do_not_keep_a_bounded_wait_alive() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut guarded, mut client) = guarded_after_a_request().await;
        guarded.watch_upstream(Some(Duration::from_millis(200)));
        // A pipelined head trickling in, a byte every 40 ms for over a second.
        let trickle = tokio::spawn(async move {
            for b in b"GET /b HTTP/1.1\r\nHost: a\r\nx-pad: aaaaaaa\r\n" {
                if client.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        let started = Instant::now();
        let mut probe = [0u8; 1];
        let err = tokio::time::timeout(Duration::from_secs(5), guarded.read(&mut probe))
            .await
            .expect("the trickle kept the wait alive")
            .expect_err("the bound must end the wait");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "ended after {:?}",
            started.elapsed()
        );
        trickle.abort();
    }
}
