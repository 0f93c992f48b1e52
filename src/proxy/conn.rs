//! An accepted HTTP connection, from the socket to Pingora's sessions.
//!
//! meshgate accepts its own connections (listeners follow the policy files, see
//! `runtime::listeners`), so it sets up what Pingora's listeners would: the small write
//! buffer that lets a response head and a small body leave in one `send` (one `sendto` less
//! per response: ~10 % of the request rate, BENCHMARKS.md), and the limits Pingora's HTTP/1
//! reader applies to each request head. HTTP framing is Pingora's alone; this module only
//! sets time and byte budgets on it:
//! - the first request of a connection must start within the header timeout (a connection
//!   that sends nothing is closed then), later ones within the keep-alive idle timeout;
//! - a head must be complete within the header timeout of its first byte (slowloris), hold
//!   at most [`MAX_HEAD_BYTES`] and [`MAX_HEAD_FIELDS`] fields (431 beyond).
//!
//! The header timeout is the port's (MeshTimeout `requestHeadersTimeout`, else
//! `--header-timeout`), read from the snapshot the connection was accepted under.
//!
//! A plain-text connection that opens with the HTTP/2 preface is HTTP/2 with prior knowledge
//! (h2c), as Envoy's automatic codec takes it; any other is HTTP/1. The decision reads only
//! as many bytes as tell the two apart (one for `GET`, two for `POST`), which go back to the
//! stream; `Upgrade: h2c` is not taken up (Envoy does not either): such a request is served
//! over HTTP/1.1.

use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::v1::server::RequestHeadLimits;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::{L4BufferSettings, Stream as L4Stream};
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use super::parked::{KeepAlive, Parked};

/// Largest request head accepted (Envoy's default `max_request_headers_kb` is 60 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted (Envoy's default `max_headers_count`).
pub const MAX_HEAD_FIELDS: usize = 100;

/// Budgets of one HTTP port's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpBudgets {
    /// Time for a whole request head, and for the first request to start (`None`: no
    /// limit, MeshTimeout `requestHeadersTimeout: 0s`).
    pub header_timeout: Option<Duration>,
}

impl HttpBudgets {
    fn head_limits(&self) -> RequestHeadLimits {
        RequestHeadLimits {
            max_bytes: Some(MAX_HEAD_BYTES),
            max_fields: Some(MAX_HEAD_FIELDS),
            deadline: self.header_timeout,
        }
    }
}

/// Wraps an accepted socket as the stream Pingora expects.
pub fn accepted(conn: tokio::net::TcpStream) -> L4Stream {
    let _ = conn.set_nodelay(true);
    wrapped(conn)
}

/// A socket as the stream Pingora expects: an accepted one, or a parked one woken by its
/// next request (`TCP_NODELAY` stays set on the socket).
fn wrapped(conn: tokio::net::TcpStream) -> L4Stream {
    let fd = conn.as_raw_fd();
    let mut stream: L4Stream = conn.into();
    // Without the digest Pingora cannot tell the hooks which local port (listener) or client
    // address a request came from.
    stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
    stream.set_buffer(write_buffered());
    stream
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frame type of SETTINGS, which must follow the preface (RFC 9113 §3.4).
const SETTINGS_FRAME: u8 = 0x4;

/// What the first bytes of a plain-text connection say it speaks.
enum Opening {
    H2,
    /// The preface came, but not the SETTINGS frame that must follow it in time: closed.
    Abandoned,
    /// HTTP/1 (or not HTTP: Pingora's reader answers that), with the time left for its
    /// first request head.
    Http1(Option<Duration>),
}

/// Reads until the bytes differ from the HTTP/2 preface or complete it and the header of the
/// SETTINGS frame after it, then puts them back. The first read takes up to 2 KiB, so an
/// HTTP/1 head usually arrives whole and Pingora's reader parses it from the returned bytes
/// without a second read. An HTTP/2 client must get as far as its SETTINGS frame within the
/// header timeout, as an HTTP/1 client its request head.
async fn opening(stream: &mut L4Stream, header_timeout: Option<Duration>) -> Opening {
    use tokio::io::AsyncReadExt;
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    // `Some(true)`: preface and SETTINGS header; `Some(false)`: not the preface; `None`:
    // the bytes stopped (timeout, end, error) while they still matched it.
    let verdict = loop {
        let read = stream.read(&mut buf[n..]);
        let got = match header_timeout {
            Some(t) => match tokio::time::timeout_at(started + t, read).await {
                Ok(r) => r,
                Err(_) => break None,
            },
            None => read.await,
        };
        match got {
            Ok(0) | Err(_) => break None,
            Ok(k) => n += k,
        }
        let seen = n.min(H2_PREFACE.len());
        if buf[..seen] != H2_PREFACE[..seen] {
            break Some(false);
        }
        if n >= H2_PREFACE.len() + 9 {
            break Some(buf[H2_PREFACE.len() + 3] == SETTINGS_FRAME);
        }
    };
    let preface = n >= H2_PREFACE.len() && buf[..H2_PREFACE.len()] == *H2_PREFACE;
    match (verdict, preface) {
        (Some(true), _) => {
            stream.rewind(&buf[..n]);
            return Opening::H2;
        }
        // The preface without the SETTINGS frame that must follow it: nothing to serve.
        (_, true) => return Opening::Abandoned,
        _ => stream.rewind(&buf[..n]),
    }
    // What is left of the header timeout (at least a moment, so a head that did not start
    // in time is still answered 408 by Pingora's reader).
    Opening::Http1(header_timeout.map(|t| {
        t.saturating_sub(started.elapsed())
            .max(Duration::from_millis(1))
    }))
}

/// Serves HTTP on an accepted plain-text connection until it closes: HTTP/2 with prior
/// knowledge or HTTP/1, by its first bytes.
///
/// The stream comes boxed (the box it is served in later): an `L4Stream` argument would keep
/// its ~380 bytes in the connection's task after moving into that box.
///
/// Returns the connection parked when it idles between requests past [`PARK_AFTER`], for the
/// caller to hand to its worker thread's `parked::ParkingLot`.
pub async fn serve_plain<A>(
    app: &Arc<A>,
    mut stream: Box<L4Stream>,
    budgets: HttpBudgets,
    shutdown: &ShutdownWatch,
) -> Option<Parked>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    // Boxed, as everything a connection does only once: its 2 KiB buffer would otherwise
    // be part of the connection's task for as long as the connection lives.
    match Box::pin(opening(&mut stream, budgets.header_timeout)).await {
        // h2c: Pingora's h2 server (its `h2c` option reads the preface again).
        // Boxed: Pingora's h2 server future is ~4 KiB, which every plain-text connection's
        // task would otherwise carry (`serve_plain` was 7.7 KiB, measured with size_of_val).
        Opening::H2 => {
            Box::pin(app.process_new(stream, shutdown)).await;
            None
        }
        Opening::Http1(left) => serve_http1(app, stream, budgets, left, shutdown).await,
        Opening::Abandoned => None,
    }
}

/// Serves HTTP on a handshaken TLS connection until it closes: HTTP/2 if ALPN chose it,
/// else HTTP/1.
pub async fn serve<A>(app: &Arc<A>, stream: Stream, budgets: HttpBudgets, shutdown: &ShutdownWatch)
where
    A: HttpServerApp + Send + Sync + 'static,
{
    if stream.selected_alpn_proto() == Some(ALPN::H2) {
        // HTTP/2 over TLS: Pingora's h2 server, whose framing limits are `h2`'s (boxed, as
        // for h2c).
        Box::pin(app.process_new(stream, shutdown)).await;
        return;
    }
    // A TLS connection never parks: its TLS state is most of what it holds (rustls'
    // buffers), and it stays within 1.25x of nginx's without (BENCHMARKS.md).
    let _never_parked = serve_http1(app, stream, budgets, budgets.header_timeout, shutdown).await;
}

/// HTTP/1 requests on `stream` until it closes or parks; the first must start within
/// `first_head_timeout`.
async fn serve_http1<A>(
    app: &Arc<A>,
    stream: Stream,
    budgets: HttpBudgets,
    first_head_timeout: Option<Duration>,
    shutdown: &ShutdownWatch,
) -> Option<Parked>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let first = start(
        app,
        first_session(stream, first_head_timeout),
        budgets,
        shutdown,
    )
    .await;
    keep_alive_requests(app, first, budgets, shutdown).await
}

/// Serves a parked connection's next request, whose `first_bytes` woke it, and the requests
/// after it until the connection closes or parks again (in its own task, spawned by the
/// parking lot).
pub(crate) async fn serve_woken<A>(
    app: Arc<A>,
    tcp: tokio::net::TcpStream,
    keep_alive: KeepAlive,
    first_bytes: BytesMut,
    budgets: HttpBudgets,
    shutdown: ShutdownWatch,
) -> Option<Parked>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let stream: Stream = Box::new(wrapped(tcp));
    let session = next_session(stream, Some(keep_alive.settings()), Some(first_bytes));
    let next = start(&app, session, budgets, &shutdown).await;
    keep_alive_requests(&app, next, budgets, &shutdown).await
}

/// The requests that follow `served` on its connection, until it closes or parks.
async fn keep_alive_requests<A>(
    app: &Arc<A>,
    mut served: Option<pingora::apps::ReusedHttpStream>,
    budgets: HttpBudgets,
    shutdown: &ShutdownWatch,
) -> Option<Parked>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    while let Some((mut stream, persistent)) = served.map(|r| r.consume()) {
        // Between requests the connection waits here, in this small future, for the next
        // request's first bytes, not inside Pingora's request future (see `start`).
        let mut first_bytes = None;
        if let Some(p) = persistent.as_ref().filter(|p| !p.has_pipelined_prefix()) {
            let wait = p
                .keepalive_timeout()
                .filter(|s| *s > 0)
                .map(Duration::from_secs);
            // One clock read for the keep-alive deadline and the parking time.
            let now = tokio::time::Instant::now();
            let deadline = wait.map(|d| now + d);
            let keep_alive = KeepAlive::of(p);
            let next_bytes = match plain_stream(stream) {
                Ok(l4) => match plain_next_request(l4, deadline, now, keep_alive.is_some()).await {
                    PlainWait::Arrived(s, bytes) => Some((s, bytes)),
                    PlainWait::Idle(tcp) => {
                        return keep_alive.and_then(|k| Parked::new(tcp, k, deadline));
                    }
                    PlainWait::Ended => None,
                },
                Err(Some(tls)) => next_request_bytes(tls, deadline).await,
                Err(None) => return None,
            };
            match next_bytes {
                Some((s, bytes)) => {
                    stream = s;
                    first_bytes = Some(bytes);
                }
                None => return None,
            }
        }
        let session = next_session(stream, persistent, first_bytes);
        served = start(app, session, budgets, shutdown).await;
    }
    None
}

// The sessions are built in plain functions: a session (~1 KiB) borrowed inside the async
// function above would keep its space in the connection's task for the connection's life,
// moved away or not.

/// An HTTP/1 session whose request headers keep only lower-cased names: Pingora's second,
/// case-preserving map would be built per request and copied into the upstream request, and
/// the gateway sends names lower-cased anyway, as Kuma's gateway (Envoy) does (see
/// `http::plain_header`).
fn http1_session(stream: Stream) -> ServerSession {
    let mut session = ServerSession::new_http1(stream);
    if let ServerSession::H1(h1) = &mut session {
        h1.set_preserve_header_case(false);
    }
    session
}

/// The session of a connection's first request, which must start within
/// `first_head_timeout`: a read timeout (not the keep-alive wait, which ends silently) so
/// Pingora reports it to the `request_head_error` hook, which counts it.
fn first_session(stream: Stream, first_head_timeout: Option<Duration>) -> ServerSession {
    let mut session = http1_session(stream);
    session.set_keepalive(None);
    if let ServerSession::H1(h1) = &mut session {
        h1.set_read_timeout(first_head_timeout);
    }
    session
}

/// The session of a later request: the keep-alive wait the hooks chose, pipelined bytes,
/// pipelining itself, and the bytes already read while the connection waited.
fn next_session(
    stream: Stream,
    persistent: Option<pingora::apps::HttpPersistentSettings>,
    first_bytes: Option<BytesMut>,
) -> ServerSession {
    let mut session = http1_session(stream);
    if let Some(persistent) = persistent {
        persistent.apply_to_session(&mut session);
    }
    if let (Some(bytes), ServerSession::H1(h1)) = (first_bytes, &mut session) {
        h1.set_pipelined_prefix(bytes);
    }
    session
}

/// One request (and its response) on `session`, in the box Pingora's `process_new_http`
/// builds it in (vendor/README.md): the request future is tens of KiB and the session itself
/// ~1 KiB, and inline they would size the connection's task, idle or not. Measured with
/// scripts/bench/idle_conns.sh (5,000 idle keep-alive connections): 38 KiB per connection
/// with the request future inline.
fn start<'a, A>(
    app: &'a Arc<A>,
    mut session: ServerSession,
    budgets: HttpBudgets,
    shutdown: &'a ShutdownWatch,
) -> std::pin::Pin<Box<dyn Future<Output = Option<pingora::apps::ReusedHttpStream>> + Send + 'a>>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    if let ServerSession::H1(h1) = &mut session {
        h1.set_request_head_limits(budgets.head_limits());
    }
    if *shutdown.borrow() {
        session.set_keepalive(None);
    }
    app.process_new_http(session, shutdown)
}

/// The first bytes of the next request on an idle keep-alive connection, read by the
/// keep-alive `deadline` (`None`: no limit), with the stream back; `None` when the client
/// closed, the wait ran out or the read failed, all of which end the connection silently,
/// as Pingora's own keep-alive wait does. At most 1 KiB is read here; Pingora's reader takes
/// the rest. A TLS connection reads into a buffer held while it waits (its TLS layer holds
/// its own anyway); a plain-text one waits in [`plain_next_request`].
async fn next_request_bytes(
    mut stream: Stream,
    deadline: Option<tokio::time::Instant>,
) -> Option<(Stream, BytesMut)> {
    use tokio::io::AsyncReadExt;
    let mut buf = BytesMut::with_capacity(1024);
    let read = stream.read_buf(&mut buf);
    let n = match deadline {
        Some(t) => tokio::time::timeout_at(t, read).await.ok()?.ok()?,
        None => read.await.ok()?,
    };
    (n > 0).then_some((stream, buf))
}

/// The plain-text stream inside `stream`; `Err(Some(stream))` when it is another kind (TLS).
/// (`Err(None)`, the stream lost, cannot happen: the type is checked before the downcast.)
fn plain_stream(stream: Stream) -> Result<Box<L4Stream>, Option<Stream>> {
    if !(*stream).as_any().is::<L4Stream>() {
        return Err(Some(stream));
    }
    stream.into_any().downcast::<L4Stream>().map_err(|_| None)
}

/// How long a plain-text keep-alive connection waits for its next request as it is (its
/// stream with Pingora's one-MSS write buffer, its digest, its session's future) before it
/// parks: only its socket is kept until the next request arrives, in its worker thread's
/// `parked::ParkingLot`. Within the second, a busy connection's next request finds
/// everything in place (nothing allocated on the request path); past it, an idle connection
/// costs 0.3–0.4 KiB of RSS instead of 2.6 (scripts/bench/idle_conns.sh, BENCHMARKS.md).
const PARK_AFTER: Duration = Duration::from_secs(1);

/// How [`plain_next_request`] ended.
enum PlainWait {
    /// The next request's first bytes arrived.
    Arrived(Stream, BytesMut),
    /// Idle past [`PARK_AFTER`]: the socket, to be parked.
    Idle(tokio::net::TcpStream),
    /// The client closed, the keep-alive wait ran out or the read failed.
    Ended,
}

/// [`next_request_bytes`] for a plain-text connection: it waits for readiness holding no
/// buffer (1 KiB less per idle connection) and reads what arrived into a buffer of a plain
/// function. Idle past [`PARK_AFTER`] from `idle_since`, it gives its socket up for parking;
/// a stream that cannot give it up (never expected: checked) keeps waiting here without its
/// write buffer.
async fn plain_next_request(
    mut l4: Box<L4Stream>,
    deadline: Option<tokio::time::Instant>,
    idle_since: tokio::time::Instant,
    may_park: bool,
) -> PlainWait {
    let mut released = false;
    loop {
        let until = if released {
            deadline
        } else {
            let park = idle_since + PARK_AFTER;
            Some(deadline.map_or(park, |d| d.min(park)))
        };
        let ready = match until {
            Some(t) => tokio::time::timeout_at(t, l4.readable()).await,
            None => Ok(l4.readable().await),
        };
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return PlainWait::Ended,
            // The keep-alive wait is over.
            Err(_) if released || deadline.is_some_and(|d| d <= tokio::time::Instant::now()) => {
                return PlainWait::Ended
            }
            // Idle past PARK_AFTER: the response was flushed long ago.
            Err(_) => {
                if may_park {
                    match l4.into_tcp() {
                        Ok(tcp) => return PlainWait::Idle(tcp),
                        Err(stream) => l4 = Box::new(stream),
                    }
                }
                l4.set_buffer(L4BufferSettings::new(0, 0));
                released = true;
                continue;
            }
        }
        let arrived = match read_arrived(&mut l4) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return PlainWait::Ended,
            // Spurious readiness: cleared now, wait again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // Bytes put back in the stream: its own read path hands them over.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                restore_write_buffer(&mut l4, released);
                return match next_request_bytes(l4, deadline).await {
                    Some((stream, bytes)) => PlainWait::Arrived(stream, bytes),
                    None => PlainWait::Ended,
                };
            }
            Err(_) => return PlainWait::Ended,
        };
        restore_write_buffer(&mut l4, released);
        return PlainWait::Arrived(l4, arrived);
    }
}

/// Gives an idle connection's write buffer back before its next request is served.
fn restore_write_buffer(l4: &mut L4Stream, released: bool) {
    if released {
        l4.set_buffer(write_buffered());
    }
}

/// No read buffer (an idle connection would hold it; TLS reads whole records anyway),
/// Pingora's one-MSS write buffer.
fn write_buffered() -> L4BufferSettings {
    L4BufferSettings::default().read(0)
}

/// What has arrived on `l4`, read without waiting; `Ok(None)` when the client closed.
fn read_arrived(l4: &mut L4Stream) -> std::io::Result<Option<BytesMut>> {
    arrived_bytes(|buf| l4.try_read_now(buf))
}

/// The first bytes of an idle connection's next request, as `read_now` (a read that does
/// not wait) gets them: at most 1 KiB (Pingora's reader takes the rest), into a stack buffer
/// of this plain function, so that no waiting future holds it; `Ok(None)` when the client
/// closed.
pub(super) fn arrived_bytes(
    read_now: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<Option<BytesMut>> {
    let mut buf = [0u8; 1024];
    let n = read_now(&mut buf)?;
    Ok((n > 0).then(|| BytesMut::from(&buf[..n])))
}
