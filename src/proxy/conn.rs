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

use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::v1::server::RequestHeadLimits;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::{L4BufferSettings, Stream as L4Stream};
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

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
    let fd = conn.as_raw_fd();
    let mut stream: L4Stream = conn.into();
    // Without the digest Pingora cannot tell the hooks which local port (listener) or client
    // address a request came from.
    stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
    // No read buffer (an idle connection would hold it; TLS reads whole records anyway),
    // Pingora's one-MSS write buffer.
    stream.set_buffer(L4BufferSettings::default().read(0));
    stream
}

/// Serves HTTP on an accepted (and, for HTTPS, handshaken) stream until it closes.
pub async fn serve<A>(app: &Arc<A>, stream: Stream, budgets: HttpBudgets, shutdown: &ShutdownWatch)
where
    A: HttpServerApp + Send + Sync + 'static,
{
    if stream.selected_alpn_proto() == Some(ALPN::H2) {
        // HTTP/2 over TLS: Pingora's h2 server, whose framing limits are `h2`'s.
        app.process_new(stream, shutdown).await;
        return;
    }
    let mut session = ServerSession::new_http1(stream);
    // The first request must start within the header timeout: a read timeout (not the
    // keep-alive wait, which ends silently) so Pingora reports it to the
    // `request_head_error` hook, which counts it.
    session.set_keepalive(None);
    if let ServerSession::H1(h1) = &mut session {
        h1.set_read_timeout(budgets.header_timeout);
    }
    let mut next = start(app, session, budgets, shutdown).await;
    while let Some((stream, persistent)) = next.map(|r| r.consume()) {
        let mut session = ServerSession::new_http1(stream);
        if let Some(persistent) = persistent {
            // The keep-alive wait the hooks chose, pipelined bytes, pipelining itself.
            persistent.apply_to_session(&mut session);
        }
        next = start(app, session, budgets, shutdown).await;
    }
}

async fn start<A>(
    app: &Arc<A>,
    mut session: ServerSession,
    budgets: HttpBudgets,
    shutdown: &ShutdownWatch,
) -> Option<pingora::apps::ReusedHttpStream>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    if let ServerSession::H1(h1) = &mut session {
        h1.set_request_head_limits(budgets.head_limits());
    }
    if *shutdown.borrow() {
        session.set_keepalive(None);
    }
    app.process_new_http(session, shutdown).await
}
