//! Idle plain-text HTTP/1 keep-alive connections, parked: nothing kept but the socket.
//!
//! An edge holds far more idle keep-alive connections than busy ones, so what an idle one
//! costs is what the machine's memory is bought by. A connection idle past
//! `conn::PARK_AFTER` gives up its Pingora stream, digest, buffers, serving future and task,
//! and leaves tokio's reactor: its socket moves into its worker thread's [`ParkingLot`], one
//! task per worker with an epoll set of its own (mio) and one timer for every parked
//! connection's keep-alive deadline. There a connection is an 80-byte slab entry (its socket,
//! its keep-alive settings and deadline, its port's budgets and its owner) and a 24-byte
//! deadline entry. When its next request's first bytes arrive, the lot hands the socket back
//! to tokio and spawns a task that serves it, which parks it again when it idles.
//!
//! Measured with scripts/bench/idle_conns.sh and heaptrack (5,000 connections): an idle
//! connection held 2.6 KiB in its own task; parked in a task of its own it still held 624
//! bytes (a 256-byte task, a 112-byte timer and tokio's 256-byte reactor entry); in the lot
//! it holds 104 (170 with the slab's and the queues' room to grow), and 0.3–0.4 KiB of RSS
//! (nginx: 0.5–0.6). Parking and waking cost two `epoll_ctl` calls each (out of one set, into
//! the other), once per connection idle for over a second.

use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Registry, Token};
use pingora::apps::{HttpPersistentSettings, HttpServerApp};
use pingora::server::ShutdownWatch;
use slab::Slab;
use std::collections::VecDeque;
use std::future::Future;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
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

/// A plain-text HTTP/1 keep-alive connection idle past `conn::PARK_AFTER`, out of tokio's
/// reactor: its socket, its keep-alive settings and its keep-alive deadline; no stream
/// object, digest, buffer, session or task.
pub struct Parked {
    tcp: std::net::TcpStream,
    keep_alive: KeepAlive,
    deadline: Option<Instant>,
}

impl Parked {
    /// `None` (the connection closes) when the socket cannot leave tokio's reactor.
    pub fn new(
        tcp: tokio::net::TcpStream,
        keep_alive: KeepAlive,
        deadline: Option<Instant>,
    ) -> Option<Parked> {
        // Out of tokio's reactor: its entry (256 bytes) is released, and with it the waker of
        // the last read, which kept the task the connection leaves in memory.
        let tcp = tcp.into_std().ok()?;
        Some(Parked {
            tcp,
            keep_alive,
            deadline,
        })
    }
}

/// Told when a connection parks and when it stops being parked (woken or closed): the
/// listener counts parked connections per port. Parked along with the connection (the
/// listener's per-connection accounting lives in it too).
pub trait ParkingObserver: Send + Unpin + 'static {
    fn parked(&self);
    fn unparked(&self);
}

/// A connection in a lot (or on its way in): what it needs to be served when it wakes.
struct Occupant<O> {
    parked: Parked,
    owner: O,
    budgets: HttpBudgets,
}

/// Where this worker thread's connections park: a handle on its [`ParkingLot`] task.
pub struct LotHandle<O> {
    arrivals: mpsc::UnboundedSender<Occupant<O>>,
}

impl<O> Clone for LotHandle<O> {
    fn clone(&self) -> Self {
        LotHandle {
            arrivals: self.arrivals.clone(),
        }
    }
}

impl<O: ParkingObserver> LotHandle<O> {
    /// Starts a lot on the current runtime (a worker thread's, for Pingora's no-steal
    /// runtimes). Its connections are served by `app`; `shutdown` is the service's.
    pub fn start<A>(app: Arc<A>, shutdown: ShutdownWatch) -> std::io::Result<LotHandle<O>>
    where
        A: HttpServerApp + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = LotHandle { arrivals: tx };
        let lot = ParkingLot::new(app, shutdown, handle.clone(), rx)?;
        tokio::spawn(lot);
        Ok(handle)
    }

    /// Parks `parked` (owned by `owner`, served under `budgets` when it wakes). `Err` gives
    /// the connection back when the lot is gone (its runtime shut down).
    pub fn park(&self, parked: Parked, owner: O, budgets: HttpBudgets) -> Result<(), (Parked, O)> {
        let arrival = Occupant {
            parked,
            owner,
            budgets,
        };
        self.arrivals
            .send(arrival)
            .map_err(|refused| (refused.0.parked, refused.0.owner))
    }
}

/// Readiness events taken from the lot's epoll set per `epoll_wait` (768 bytes of events);
/// more connections woken at once take another `epoll_wait` each 64.
const EVENTS_PER_WAIT: usize = 64;

/// One worker thread's parked connections: a slab of them, the epoll set their sockets are
/// registered in (itself registered in tokio's reactor, so the lot's task is woken when any
/// of them becomes readable) and their keep-alive deadlines under one timer.
pub struct ParkingLot<A, O: ParkingObserver> {
    app: Arc<A>,
    shutdown: ShutdownWatch,
    /// Given to each woken connection's task, which parks the connection here again.
    handle: LotHandle<O>,
    arrivals: mpsc::UnboundedReceiver<Occupant<O>>,
    epoll: AsyncFd<mio::Poll>,
    registry: Registry,
    events: Events,
    /// Keyed by the slab index, which is also the socket's epoll token.
    slots: Slab<Occupant<O>>,
    deadlines: Deadlines,
    timer: Pin<Box<Sleep>>,
    /// The deadline `timer` is set to.
    timer_set_for: Option<Instant>,
    /// Set when connections park, at most [`RELEASE_AFTER_PARKING`] ahead.
    release_at: Option<Pin<Box<Sleep>>>,
}

/// How long after connections park this worker hands the memory they were served with back
/// to the OS (`memory::release_freed_by_this_thread`): a worker whose connections all went
/// idle allocates nothing more, and mimalloc would keep that memory for it. Measured with
/// scripts/bench/idle_conns.sh, 5,000 idle connections: 0.96 KiB of RSS per connection
/// without, 0.41 with (nginx: 0.6); the release took 1.3 ms on a worker where 2,500 had just
/// parked. Once a second at most per worker, however many park.
const RELEASE_AFTER_PARKING: Duration = Duration::from_secs(1);

impl<A, O> ParkingLot<A, O>
where
    A: HttpServerApp + Send + Sync + 'static,
    O: ParkingObserver,
{
    fn new(
        app: Arc<A>,
        shutdown: ShutdownWatch,
        handle: LotHandle<O>,
        arrivals: mpsc::UnboundedReceiver<Occupant<O>>,
    ) -> std::io::Result<Self> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // SAFETY: the epoll fd is owned by `poll`, which the `AsyncFd` owns for its life;
        // `poll` is only ever polled through it (`poll_readiness`), never replaced.
        let epoll = unsafe {
            AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE)
                .map_err(|e| e.into_parts().1)?
        };
        Ok(ParkingLot {
            app,
            shutdown,
            handle,
            arrivals,
            epoll,
            registry,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            slots: Slab::new(),
            deadlines: Deadlines::default(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_set_for: None,
            release_at: None,
        })
    }

    /// Registers an arriving connection's socket (edge-triggered: `EPOLL_CTL_ADD` reports
    /// bytes that came before it, so none are missed between the last read and parking).
    fn park(&mut self, occupant: Occupant<O>) {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let fd = occupant.parked.tcp.as_raw_fd();
        if let Err(e) = self
            .registry
            .register(&mut SourceFd(&fd), Token(key), Interest::READABLE)
        {
            log::debug!("parking a connection: {e}");
            return; // dropped: the connection closes
        }
        if let Some(deadline) = occupant.parked.deadline {
            self.deadlines
                .push(occupant.parked.keep_alive.timeout, deadline, key);
        }
        occupant.owner.parked();
        entry.insert(occupant);
    }

    /// Takes the connection at `key` out of the lot. Dropped, it closes, which takes its
    /// socket out of the epoll set too.
    fn take(&mut self, key: usize) -> Occupant<O> {
        let occupant = self.slots.remove(key);
        occupant.owner.unparked();
        occupant
    }

    /// A readiness event on the connection at `key`: its next request's first bytes (it is
    /// served), the client's close or a failed read (it closes), or nothing (it stays).
    fn on_ready(&mut self, key: usize) {
        let Some(occupant) = self.slots.get(key) else {
            return; // closed by its deadline earlier in this batch
        };
        let read = read_now(&occupant.parked.tcp);
        if matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            return;
        }
        let occupant = self.take(key);
        if occupant.parked.deadline.is_some() {
            let slots = &self.slots;
            self.deadlines
                .forget(occupant.parked.keep_alive.timeout, |k, d| {
                    is_parked_until(slots, k, d)
                });
        }
        let Ok(Some(first_bytes)) = read else {
            return; // the client closed or the read failed: the connection closes
        };
        let Occupant {
            parked,
            owner,
            budgets,
        } = occupant;
        let fd = parked.tcp.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        let tcp = match tokio::net::TcpStream::from_std(parked.tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                log::warn!("cannot serve a woken connection: {e}");
                return;
            }
        };
        let served = serve_woken(
            self.app.clone(),
            tcp,
            parked.keep_alive,
            first_bytes,
            budgets,
            self.shutdown.clone(),
        );
        let lot = self.handle.clone();
        tokio::spawn(async move {
            if let Some(idle) = served.await {
                // Refused only when this runtime is shutting down: the connection closes.
                let _ = lot.park(idle, owner, budgets);
            }
        });
    }

    /// Takes the connections that arrived.
    fn poll_arrivals(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(arrival)) = self.arrivals.poll_recv(cx) {
            self.park(arrival);
            if self.release_at.is_none() {
                self.release_at = Some(Box::pin(tokio::time::sleep(RELEASE_AFTER_PARKING)));
            }
        }
    }

    /// Hands the memory freed by connections that parked back to the OS, once they are in.
    fn poll_release(&mut self, cx: &mut Context<'_>) {
        let Some(release_at) = self.release_at.as_mut() else {
            return;
        };
        if release_at.as_mut().poll(cx).is_ready() {
            self.release_at = None;
            crate::memory::release_freed_by_this_thread();
        }
    }

    /// Serves or closes the connections whose sockets became readable.
    fn poll_readiness(&mut self, cx: &mut Context<'_>) {
        loop {
            let mut ready = match self.epoll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(ready)) => ready,
                Poll::Ready(Err(e)) => {
                    log::warn!("parked connections' epoll set: {e}");
                    return;
                }
                Poll::Pending => return,
            };
            if let Err(e) = ready
                .get_inner_mut()
                .poll(&mut self.events, Some(Duration::ZERO))
            {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::warn!("parked connections' epoll_wait: {e}");
                }
                continue;
            }
            // Fewer events than room for them: the set has none left to report.
            if self.events.iter().count() < EVENTS_PER_WAIT {
                ready.clear_ready();
            }
            // Out of `self` while its events are handled (no allocation: an empty `Events`
            // has no buffer).
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in events.iter() {
                self.on_ready(event.token().0);
            }
            self.events = events;
        }
    }

    /// Closes the connections whose keep-alive deadline passed and sets the timer for the
    /// next one.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) {
        loop {
            let now = Instant::now();
            loop {
                let slots = &self.slots;
                let expired = self
                    .deadlines
                    .pop_expired(now, |k, d| is_parked_until(slots, k, d));
                let Some(key) = expired else { break };
                let _closed = self.take(key);
            }
            let Some(next) = self.deadlines.earliest() else {
                return;
            };
            if self.timer_set_for != Some(next) {
                self.timer.as_mut().reset(next);
                self.timer_set_for = Some(next);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return;
            }
        }
    }
}

impl<A, O> Future for ParkingLot<A, O>
where
    A: HttpServerApp + Send + Sync + 'static,
    O: ParkingObserver,
{
    type Output = ();

    /// Runs for the life of the worker's runtime: its handle in the thread's listener state
    /// and in woken connections' tasks keeps the arrivals channel open.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let lot = self.get_mut();
        lot.poll_arrivals(cx);
        lot.poll_readiness(cx);
        lot.poll_deadlines(cx);
        lot.poll_release(cx);
        Poll::Pending
    }
}

impl<A, O: ParkingObserver> Drop for ParkingLot<A, O> {
    /// Connections parked when the runtime shuts down close, counted out.
    fn drop(&mut self) {
        for (_, occupant) in self.slots.iter() {
            occupant.owner.unparked();
        }
    }
}

/// What has arrived on a parked socket, read without waiting (`conn::arrived_bytes`).
fn read_now(mut tcp: &std::net::TcpStream) -> std::io::Result<Option<BytesMut>> {
    arrived_bytes(|buf| tcp.read(buf))
}

/// Whether the connection at `key` is parked with keep-alive deadline `deadline` (a deadline
/// entry may outlive its connection, and its slot be taken by another).
fn is_parked_until<O>(slots: &Slab<Occupant<O>>, key: usize, deadline: Instant) -> bool {
    slots
        .get(key)
        .is_some_and(|a| a.parked.deadline == Some(deadline))
}

/// A lot's keep-alive deadlines: one queue per keep-alive timeout, in parking order. For one
/// timeout that is deadline order, to within the timer's millisecond: a connection parks
/// `conn::PARK_AFTER` after its last response, and its deadline is the timeout after that
/// same response. A connection that leaves before its deadline leaves its entry behind
/// (stale); a queue more than half stale is compacted, so stale entries never cost more than
/// live ones.
#[derive(Default)]
struct Deadlines {
    /// A handful: one per distinct keep-alive timeout (MeshTimeout `idleTimeout`) in use.
    queues: Vec<DeadlineQueue>,
}

struct DeadlineQueue {
    timeout: Option<u64>,
    entries: VecDeque<(Instant, usize)>,
    stale: usize,
}

/// Stale entries a queue may hold before it is compacted, whatever its length.
const STALE_BEFORE_COMPACTING: usize = 64;

impl Deadlines {
    fn push(&mut self, timeout: Option<u64>, deadline: Instant, key: usize) {
        let queue = match self.queues.iter().position(|q| q.timeout == timeout) {
            Some(i) => &mut self.queues[i],
            None => {
                self.queues.push(DeadlineQueue {
                    timeout,
                    entries: VecDeque::new(),
                    stale: 0,
                });
                self.queues.last_mut().expect("just pushed")
            }
        };
        queue.entries.push_back((deadline, key));
    }

    /// A connection of the queue for `timeout` left before its deadline; `live` tells a
    /// parked connection's entry from a stale one.
    fn forget(&mut self, timeout: Option<u64>, live: impl Fn(usize, Instant) -> bool) {
        let Some(queue) = self.queues.iter_mut().find(|q| q.timeout == timeout) else {
            return;
        };
        queue.stale += 1;
        if queue.stale > STALE_BEFORE_COMPACTING && queue.stale * 2 > queue.entries.len() {
            queue.entries.retain(|&(deadline, key)| live(key, deadline));
            queue.stale = 0;
        }
    }

    /// The key of a parked connection whose deadline is at or before `now`, its entry
    /// removed; stale entries met on the way are dropped.
    fn pop_expired(
        &mut self,
        now: Instant,
        live: impl Fn(usize, Instant) -> bool,
    ) -> Option<usize> {
        for queue in &mut self.queues {
            while let Some(&(deadline, key)) = queue.entries.front() {
                if deadline > now {
                    break;
                }
                queue.entries.pop_front();
                if live(key, deadline) {
                    return Some(key);
                }
                queue.stale = queue.stale.saturating_sub(1);
            }
        }
        None
    }

    /// The earliest deadline queued (perhaps stale: the timer then finds nothing to close).
    fn earliest(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.entries.front().map(|&(deadline, _)| deadline))
            .min()
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

    /// What a parked connection costs the lot besides its 24-byte deadline entry: its slab
    /// entry (80 bytes, heaptrack), which holds this. An owner like the listener's is one `Arc`.
    #[test]
    fn a_parked_connection_is_under_a_hundred_bytes() {
        struct Owner(#[allow(dead_code)] Arc<()>);
        impl ParkingObserver for Owner {
            fn parked(&self) {}
            fn unparked(&self) {}
        }
        let size = std::mem::size_of::<Occupant<Owner>>();
        assert!(size <= 80, "{size} bytes");
        assert_eq!(std::mem::size_of::<(Instant, usize)>(), 24);
    }

    #[test]
    fn deadlines_expire_in_order_across_timeouts_and_skip_connections_that_left() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut parked: Vec<(usize, Instant)> = vec![(0, at(60_000)), (1, at(5_000))];
        let mut deadlines = Deadlines::default();
        deadlines.push(Some(60), at(60_000), 0);
        deadlines.push(Some(5), at(5_000), 1);
        deadlines.push(Some(5), at(5_010), 2); // left before its deadline
        deadlines.push(Some(5), at(5_020), 3);
        parked.push((3, at(5_020)));
        let live = |parked: &Vec<(usize, Instant)>| {
            let parked = parked.clone();
            move |k: usize, d: Instant| parked.contains(&(k, d))
        };
        deadlines.forget(Some(5), live(&parked));
        assert_eq!(deadlines.earliest(), Some(at(5_000)));
        assert_eq!(deadlines.pop_expired(at(4_999), live(&parked)), None);
        assert_eq!(deadlines.pop_expired(at(5_030), live(&parked)), Some(1));
        parked.retain(|&(k, _)| k != 1);
        assert_eq!(deadlines.pop_expired(at(5_030), live(&parked)), Some(3));
        parked.retain(|&(k, _)| k != 3);
        assert_eq!(deadlines.pop_expired(at(5_030), live(&parked)), None);
        assert_eq!(deadlines.earliest(), Some(at(60_000)));
        // Slot 0 taken by another connection with another deadline: its old entry is stale.
        parked = vec![(0, at(61_000))];
        deadlines.push(Some(60), at(61_000), 0);
        assert_eq!(deadlines.pop_expired(at(60_500), live(&parked)), None);
        assert_eq!(deadlines.pop_expired(at(61_000), live(&parked)), Some(0));
    }

    #[test]
    fn a_queue_mostly_of_connections_that_left_is_compacted() {
        let t0 = Instant::now();
        let mut deadlines = Deadlines::default();
        let n = 1000;
        for key in 0..n {
            deadlines.push(Some(60), t0 + Duration::from_millis(key as u64), key);
        }
        // Every connection but the last ten wakes before its deadline.
        let live = |k: usize, _: Instant| k >= n - 10;
        for _ in 0..n - 10 {
            deadlines.forget(Some(60), live);
        }
        let left = deadlines.queues[0].entries.len();
        assert!(
            left <= 2 * (STALE_BEFORE_COMPACTING + 10),
            "{left} entries kept"
        );
        let mut expired = Vec::new();
        while let Some(key) = deadlines.pop_expired(t0 + Duration::from_secs(1), live) {
            expired.push(key);
        }
        assert_eq!(expired, (n - 10..n).collect::<Vec<_>>());
    }
}
