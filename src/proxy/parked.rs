//! Idle plain-text HTTP/1 keep-alive connections, parked: nothing kept but the socket.
//!
//! An edge holds far more idle keep-alive connections than busy ones, so what an idle one
//! costs is what the machine's memory is bought by. A connection idle past
//! `conn::PARK_AFTER` gives up its Pingora stream, digest, buffers and serving future and
//! moves to a task of its own ([`ParkedConnection`]) that holds its socket, its keep-alive
//! settings and its keep-alive deadline, and serves its next request in a box when the first
//! bytes arrive. Measured with scripts/bench/idle_conns.sh and heaptrack (5,000 connections):
//! an idle connection held 2.6 KiB before, a parked one holds a 256-byte task, its 112-byte
//! deadline timer and tokio's 256-byte reactor entry for the socket (nginx: 0.5–0.6 KiB).
//!
//! The task is a hand-written future rather than an `async fn` because rustc lays an
//! `async fn` out with its arguments and each awaited future side by side: the same loop
//! written as an `async fn` was 672 bytes, a 896-byte task.

use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::conn::{arrived_bytes, serve_woken, HttpBudgets};

/// The keep-alive settings a parked connection's next request continues with: Pingora's
/// [`HttpPersistentSettings`] (80 bytes) less what a parked connection cannot have, a user
/// context and bytes of a pipelined request (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    timeout: Option<u64>,
    reuses_remaining: Option<u32>,
    pipelining: bool,
}

impl KeepAlive {
    /// `None` when the settings carry a user context or pipelined bytes: such a connection
    /// is not parked.
    pub fn of(settings: &HttpPersistentSettings) -> Option<KeepAlive> {
        if settings.has_user_context() || settings.has_pipelined_prefix() {
            return None;
        }
        Some(KeepAlive {
            timeout: settings.keepalive_timeout(),
            reuses_remaining: settings.keepalive_reuses_remaining(),
            pipelining: settings.pipelining_enabled(),
        })
    }

    /// The settings again, for the next request's session.
    pub fn settings(self) -> HttpPersistentSettings {
        HttpPersistentSettings::new(self.timeout, self.reuses_remaining, self.pipelining)
    }
}

/// A plain-text HTTP/1 keep-alive connection idle past `conn::PARK_AFTER`: its socket (with
/// its entry in tokio's reactor), its keep-alive settings and its keep-alive deadline; no
/// stream object, digest, buffer or session.
pub struct Parked {
    tcp: TcpStream,
    keep_alive: KeepAlive,
    /// The keep-alive deadline's timer (`None`: no limit), boxed: it is 112 bytes, and a
    /// boxed `Sleep` keeps the parked connection's task in tokio's 256-byte size class.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Parked {
    pub fn new(tcp: TcpStream, keep_alive: KeepAlive, deadline: Option<Instant>) -> Parked {
        // The socket's reactor entry keeps the waker of the last read or write that waited
        // on it until readiness fires, and that waker keeps the task that registered it in
        // memory: the task the connection leaves when it parks (~400 bytes, heaptrack). A
        // poll with a waker that does nothing takes its place.
        let mut cx = Context::from_waker(Waker::noop());
        let _ = tcp.poll_read_ready(&mut cx);
        let _ = tcp.poll_write_ready(&mut cx);
        Parked {
            tcp,
            keep_alive,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }

    /// The socket and its keep-alive settings, for serving the next request.
    pub fn into_parts(self) -> (TcpStream, KeepAlive) {
        (self.tcp, self.keep_alive)
    }

    /// The next request's first bytes; `Ready(None)` (the connection closes silently, as in
    /// Pingora's own keep-alive wait) when the client closed, the keep-alive deadline passed
    /// or the read failed. Waits on the socket's own readiness slot, not on a waiter of
    /// tokio's `readable()` future, which would add its 150 bytes to the task.
    fn poll_next_request(&mut self, cx: &mut Context<'_>) -> Poll<Option<BytesMut>> {
        loop {
            match self.tcp.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => match read_now(&mut self.tcp) {
                    Ok(Some(first_bytes)) => return Poll::Ready(Some(first_bytes)),
                    Ok(None) => return Poll::Ready(None),
                    // Spurious readiness: cleared now, wait again.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return Poll::Ready(None),
                },
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            return match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            };
        }
    }
}

/// What has arrived on a parked socket, read without waiting (`conn::arrived_bytes`).
/// Through `poll_read`, which clears the readiness after a short read, as Pingora's
/// `Stream::try_read_now` does: `try_read` would leave it set, and the next keep-alive wait
/// would pay a `recvfrom` that finds nothing.
fn read_now(tcp: &mut TcpStream) -> std::io::Result<Option<BytesMut>> {
    arrived_bytes(|buf| {
        let mut read = ReadBuf::new(buf);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(tcp).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) => Ok(read.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    })
}

/// Told when a connection parks and when it stops being parked (woken or closed): the
/// listener counts parked connections per port. Held by the parked connection's task for
/// the connection's life (the listener's per-connection accounting lives in it too).
pub trait ParkingObserver: Send + Unpin + 'static {
    fn parked(&self);
    fn unparked(&self);
}

/// The future serving one plain-text HTTP/1 connection from the first time it parks to its
/// end: waiting parked, serving (boxed) when a request arrives, parked again when it idles.
pub struct ParkedConnection<A, O: ParkingObserver> {
    app: Arc<A>,
    observer: O,
    budgets: HttpBudgets,
    shutdown: ShutdownWatch,
    state: State,
}

type Serving = Pin<Box<dyn Future<Output = Option<Parked>> + Send>>;

enum State {
    Waiting(Parked),
    Serving(Serving),
    Ended,
}

impl<A, O> ParkedConnection<A, O>
where
    A: HttpServerApp + Send + Sync + 'static,
    O: ParkingObserver,
{
    pub fn new(
        app: Arc<A>,
        observer: O,
        parked: Parked,
        budgets: HttpBudgets,
        shutdown: ShutdownWatch,
    ) -> Self {
        observer.parked();
        ParkedConnection {
            app,
            observer,
            budgets,
            shutdown,
            state: State::Waiting(parked),
        }
    }
}

impl<A, O> Future for ParkedConnection<A, O>
where
    A: HttpServerApp + Send + Sync + 'static,
    O: ParkingObserver,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Waiting(parked) => {
                    let Poll::Ready(arrived) = parked.poll_next_request(cx) else {
                        return Poll::Pending;
                    };
                    this.observer.unparked();
                    let (State::Waiting(parked), Some(first_bytes)) =
                        (std::mem::replace(&mut this.state, State::Ended), arrived)
                    else {
                        return Poll::Ready(());
                    };
                    this.state = State::Serving(serve_woken(
                        this.app.clone(),
                        parked,
                        first_bytes,
                        this.budgets,
                        this.shutdown.clone(),
                    ));
                }
                State::Serving(serving) => match serving.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(parked)) => {
                        this.observer.parked();
                        this.state = State::Waiting(parked);
                    }
                    Poll::Ready(None) => {
                        this.state = State::Ended;
                        return Poll::Ready(());
                    }
                },
                State::Ended => return Poll::Ready(()),
            }
        }
    }
}

impl<A, O: ParkingObserver> Drop for ParkedConnection<A, O> {
    /// A connection dropped while parked (its runtime shut down) is counted out too.
    fn drop(&mut self) {
        if matches!(self.state, State::Waiting(_)) {
            self.observer.unparked();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_settings_survive_parking() {
        let settings = HttpPersistentSettings::new(Some(60), Some(7), true);
        let kept = KeepAlive::of(&settings).expect("plain settings park");
        let back = kept.settings();
        assert_eq!(back.keepalive_timeout(), Some(60));
        assert_eq!(back.keepalive_reuses_remaining(), Some(7));
        assert!(back.pipelining_enabled());
        assert_eq!(KeepAlive::of(&back), Some(kept));
    }

    #[test]
    fn a_connection_with_a_user_context_or_pipelined_bytes_is_not_parked() {
        let mut with_context = HttpPersistentSettings::new(None, None, false);
        with_context.set_user_context(Box::new(1u8));
        assert_eq!(KeepAlive::of(&with_context), None);
        let mut pipelined = HttpPersistentSettings::new(None, None, false);
        pipelined.set_pipelined_prefix(BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert_eq!(KeepAlive::of(&pipelined), None);
    }
}
