//! The MeshGateway listeners: the only place that binds sockets for gateway traffic.
//!
//! Pingora binds a service's listeners once, at start, and cannot add one later
//! (cloudflare/pingora#250). meshgate needs listeners that follow the policy files, so this
//! service owns its sockets and reconciles them with every snapshot: ports that appear are
//! bound within the reload, ports that disappear stop accepting and are closed, and a port whose
//! protocol changes keeps its socket (each accepted connection is dispatched by the protocol of
//! the *current* snapshot). Every socket is registered in Pingora's listen-fd table under
//! the same `IP:port` key Pingora itself uses, so a graceful upgrade (`-u` + SIGQUIT) hands
//! runtime-added ports to the new process too; removed ports are taken out of the table.
//!
//! A port that cannot be bound is reported in `/config` and keeps `/ready` at 503; binding
//! is retried every few seconds (another process may free the port).

use crate::admin::metrics::METRICS;
use crate::proxy::conn::{self, HttpBudgets};
use crate::proxy::http::HttpGateway;
use crate::proxy::parked::{LotHandle, Parked, ParkingObserver};
use crate::proxy::tcp;
use crate::proxy::tls::PortAcceptor;
use crate::runtime::state::{GatewayState, ListenerStatus};
use crate::snapshot::{Protocol, Snapshot};
use async_trait::async_trait;
use log::{debug, error, info, warn};
use pingora::apps::ServerApp;
use pingora::proxy::HttpProxy;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use prometheus::{IntCounter, IntGauge};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const RETRY_BIND: Duration = Duration::from_secs(2);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKLOG: i32 = 65535;

pub type HttpApp = HttpProxy<HttpGateway>;

pub struct ListenerManager {
    state: Arc<GatewayState>,
    http: Arc<HttpApp>,
    bind_ip: IpAddr,
    /// Ports of the snapshot loaded before the server started: what this process claims
    /// from a predecessor's fd table during a graceful upgrade.
    initial_ports: Vec<u16>,
    /// Process-wide downstream connections (for `--max-connections`).
    connections: Arc<AtomicUsize>,
}

/// A bound port and the handle that stops its accept loop.
struct BoundPort {
    stop: watch::Sender<bool>,
}

/// Everything an accepted connection needs, shared by the port's accept loop.
struct PortContext {
    port: u16,
    label: Arc<str>,
    state: Arc<GatewayState>,
    http: Arc<HttpApp>,
    https: Option<Arc<PortAcceptor>>,
    tls: Option<Arc<PortAcceptor>>,
    active: AtomicUsize,
    connections: Arc<AtomicUsize>,
    /// This port's series of the connection metrics, looked up once: `with_label_values`
    /// hashes the label and takes the metric family's lock, and would otherwise run twice
    /// per connection and twice more each time it parks and wakes.
    metrics: PortMetrics,
}

struct PortMetrics {
    accepted: IntCounter,
    active: IntGauge,
    parked: IntGauge,
}

impl PortMetrics {
    fn new(label: &str) -> Self {
        PortMetrics {
            accepted: METRICS.downstream_total.with_label_values(&[label]),
            active: METRICS.downstream_active.with_label_values(&[label]),
            parked: METRICS.downstream_parked.with_label_values(&[label]),
        }
    }
}

impl ListenerManager {
    pub fn new(state: Arc<GatewayState>, http: Arc<HttpApp>, bind_ip: IpAddr) -> Self {
        let initial_ports = state.snapshot.load().port_numbers();
        ListenerManager {
            state,
            http,
            bind_ip,
            initial_ports,
            connections: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The fd-table key Pingora uses for a TCP listener (`127.0.0.1:8080`, `[::]:8080`).
    fn key(&self, port: u16) -> String {
        SocketAddr::new(self.bind_ip, port).to_string()
    }

    fn reconcile(
        &self,
        fds: &Option<ListenFds>,
        bound: &mut HashMap<u16, BoundPort>,
        shutdown: &ShutdownWatch,
    ) {
        let snap = self.state.snapshot.load_full();
        let wanted: BTreeMap<u16, Protocol> = snap.listener_plan();
        let mut errors = BTreeMap::new();

        let stale: Vec<u16> = bound
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for port in stale {
            if let Some(b) = bound.remove(&port) {
                let _ = b.stop.send(true);
            }
            if let Some(fds) = fds {
                remove_from_table(fds, &self.key(port));
            }
            info!("listener on port {port} removed");
        }

        for port in wanted.keys().copied() {
            if bound.contains_key(&port) {
                continue;
            }
            match self.bind(fds, port) {
                Ok(listener) => {
                    let (stop, stop_rx) = watch::channel(false);
                    let label: Arc<str> = Arc::from(port.to_string());
                    let ctx = Arc::new(PortContext {
                        port,
                        metrics: PortMetrics::new(&label),
                        label,
                        state: self.state.clone(),
                        http: self.http.clone(),
                        https: PortAcceptor::new(self.state.clone(), port, true)
                            .map_err(|e| error!("port {port}: {e}"))
                            .ok()
                            .map(Arc::new),
                        tls: PortAcceptor::new(self.state.clone(), port, false)
                            .map_err(|e| error!("port {port}: {e}"))
                            .ok()
                            .map(Arc::new),
                        active: AtomicUsize::new(0),
                        connections: self.connections.clone(),
                    });
                    tokio::spawn(accept_loop(listener, ctx, stop_rx, shutdown.clone()));
                    bound.insert(port, BoundPort { stop });
                    info!("listening on {} ({:?})", self.key(port), wanted.get(&port));
                }
                Err(e) => {
                    warn!("cannot listen on {}: {e}", self.key(port));
                    errors.insert(port, e);
                }
            }
        }
        METRICS.listeners_bound.set(bound.len() as i64);
        METRICS.listener_errors.set(errors.len() as i64);
        self.state.listeners.store(Arc::new(ListenerStatus {
            bound: bound.keys().copied().collect(),
            errors,
        }));
    }

    /// Binds `port`, or adopts the socket a predecessor handed over in the fd table. The
    /// table keeps its own descriptor (a `dup`), so closing ours never leaves a stale number
    /// in it.
    fn bind(&self, fds: &Option<ListenFds>, port: u16) -> Result<tokio::net::TcpListener, String> {
        let key = self.key(port);
        let inherited = fds.as_ref().and_then(|t| t.lock().get(&key).copied());
        let std_listener = match inherited {
            Some(fd) => {
                // SAFETY: `fd` is a listening socket from the fd table, which keeps owning it;
                // `dup` gives us an independent descriptor for the same socket.
                let dup = unsafe { libc_dup(fd) }.map_err(|e| format!("dup: {e}"))?;
                debug!("adopting inherited listener for {key}");
                unsafe { std::net::TcpListener::from_raw_fd(dup) }
            }
            None => {
                let addr = SocketAddr::new(self.bind_ip, port);
                let domain = socket2::Domain::for_address(addr);
                let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)
                    .map_err(|e| e.to_string())?;
                sock.set_reuse_address(true).map_err(|e| e.to_string())?;
                sock.bind(&addr.into()).map_err(|e| format!("bind: {e}"))?;
                sock.listen(BACKLOG).map_err(|e| format!("listen: {e}"))?;
                let listener: std::net::TcpListener = sock.into();
                if let Some(table) = fds {
                    let copy = listener.try_clone().map_err(|e| e.to_string())?;
                    table.lock().add(key, copy.into_raw_fd());
                }
                listener
            }
        };
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())
    }
}

/// `dup(2)` without pulling in a libc binding crate: std's `try_clone` on a borrowed fd.
unsafe fn libc_dup(fd: i32) -> std::io::Result<i32> {
    let borrowed = std::os::unix::io::BorrowedFd::borrow_raw(fd);
    let owned = borrowed.try_clone_to_owned()?;
    Ok(owned.into_raw_fd())
}

/// Closes the table's descriptor for `key` and forgets it, so a later upgrade does not hand
/// a dead port to the next process. `Fds` has no remove, but `close_unclaimed` with every
/// other key kept does exactly that.
fn remove_from_table(fds: &ListenFds, key: &str) {
    let mut table = fds.lock();
    let (keys, _) = table.serialize();
    let keep: HashSet<String> = keys.into_iter().filter(|k| k != key).collect();
    table.close_unclaimed(&keep);
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<PortContext>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((conn, peer)) => {
                    let ctx = ctx.clone();
                    let shutdown = shutdown.clone();
                    on_a_worker(conn, move |conn| serve_connection(ctx, conn, peer, shutdown));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept on port {}: {e}", ctx.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    debug!("accept loop for port {} stopped", ctx.port);
}

/// Serves an accepted connection (`serve`) on one of the listener service's worker threads
/// (Pingora's `threads`), chosen at random as Pingora's own listeners choose
/// (`pingora_runtime::current_handle`), with its socket moved to that thread's reactor so
/// the thread that serves it also polls it. A plain `tokio::spawn` kept every connection on
/// the accept loop's thread: with `threads: 2`, one worker served all the traffic and the
/// other none (`ps -L`; tests/integration/dynamic_listeners.rs).
fn on_a_worker<F, Fut>(conn: tokio::net::TcpStream, serve: F)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let worker = pingora_runtime::current_handle();
    if worker.id() == tokio::runtime::Handle::current().id() {
        tokio::spawn(serve(conn));
        return;
    }
    // Off this reactor (its registration would keep waking this thread), onto the worker's.
    let conn = match conn.into_std() {
        Ok(conn) => conn,
        Err(e) => {
            debug!("accepted connection lost moving to a worker: {e}");
            return;
        }
    };
    worker.spawn(async move {
        match tokio::net::TcpStream::from_std(conn) {
            Ok(conn) => serve(conn).await,
            Err(e) => warn!("cannot serve an accepted connection: {e}"),
        }
    });
}

/// Decrements connection counts however the connection ends (it owns the port's context, so
/// it can go with the connection into its worker's parking lot and the task that serves it
/// when it wakes).
struct ConnGuard {
    ctx: Arc<PortContext>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.ctx.active.fetch_sub(1, Ordering::Relaxed);
        self.ctx.connections.fetch_sub(1, Ordering::Relaxed);
        self.ctx.metrics.active.dec();
    }
}

/// Counts the connection in `meshgate_downstream_connections_parked` while it is parked.
impl ParkingObserver for ConnGuard {
    fn parked(&self) {
        self.ctx.metrics.parked.inc();
    }

    fn unparked(&self) {
        self.ctx.metrics.parked.dec();
    }
}

thread_local! {
    /// This worker thread's parking lot, started by its first parked connection.
    static LOT: RefCell<Option<LotHandle<ConnGuard>>> = const { RefCell::new(None) };
}

/// Parks an idle plain-text connection in this worker thread's lot (`proxy::parked`).
fn park(
    app: &Arc<HttpApp>,
    parked: Parked,
    guard: ConnGuard,
    budgets: HttpBudgets,
    shutdown: &ShutdownWatch,
) {
    LOT.with_borrow_mut(|lot| {
        let (parked, guard) = match lot.as_ref() {
            Some(handle) => match handle.park(parked, guard, budgets) {
                Ok(()) => return,
                Err(refused) => refused,
            },
            None => (parked, guard),
        };
        // No lot on this thread yet, or one left by a runtime that shut down.
        match LotHandle::start(app.clone(), shutdown.clone()) {
            Ok(started) => {
                // Refused only by a lot already shut down: the connection closes.
                let _ = started.park(parked, guard, budgets);
                *lot = Some(started);
            }
            Err(e) => warn!("cannot park idle connections: {e}"),
        }
    });
}

/// How an admitted connection is served, read from the snapshot it was accepted under.
enum Admitted {
    /// HTTP and HTTPS: each request looks the current snapshot up, so the connection holds
    /// none. A keep-alive connection that kept the one it was accepted under would keep that
    /// generation's route tables in memory after every reload for as long as it stays open
    /// (`meshgate_config_snapshots_live` counts them; tests/integration/reload.rs).
    Http(Protocol, HttpBudgets),
    /// TCP and TLS routes: the connection is proxied to its end under this snapshot.
    Tcp(Arc<Snapshot>),
}

/// The port's connection limits and MeshRateLimit `local.tcp.connectionRate` for a new
/// connection (`active` and `total` count it); `None` closes it.
fn admit(ctx: &PortContext, active: usize, total: usize) -> Option<Admitted> {
    let snap = ctx.state.snapshot.load_full();
    // `None`: the port was removed after this connection was accepted.
    let port = snap.port(ctx.port)?;
    let max = ctx.state.settings.max_connections;
    let over_port = port.connection_limit.is_some_and(|l| active > l as usize);
    if over_port || (max > 0 && total > max) {
        METRICS
            .http_rejected
            .with_label_values(&[&ctx.label, "conn_limit"])
            .inc();
        return None; // Envoy closes connections over the limit
    }
    // A connection beyond the rate is closed before any byte is read from or sent to it.
    if let Some(bucket) = &port.policy.connection_rate {
        if !bucket.try_take() {
            METRICS
                .rate_limited
                .with_label_values(&[&ctx.label, ""])
                .inc();
            return None;
        }
    }
    let budgets = HttpBudgets {
        header_timeout: port.policy.listener.request_headers,
    };
    Some(match port.protocol {
        p @ (Protocol::Http | Protocol::Https) => Admitted::Http(p, budgets),
        Protocol::Tcp | Protocol::Tls => Admitted::Tcp(snap.clone()),
    })
}

async fn serve_connection(
    ctx: Arc<PortContext>,
    conn: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: ShutdownWatch,
) {
    let active = ctx.active.fetch_add(1, Ordering::Relaxed) + 1;
    let total = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    ctx.metrics.active.inc();
    ctx.metrics.accepted.inc();
    let guard = ConnGuard { ctx: ctx.clone() };
    let Some(admitted) = admit(&ctx, active, total) else {
        return;
    };
    // Each kind's future is boxed: the connection's task is as large as its largest state,
    // and an idle HTTP connection would otherwise carry the space of a TLS handshake and of
    // a TCP proxy loop it never runs (scripts/bench/idle_conns.sh, BENCHMARKS.md).
    match admitted {
        Admitted::Http(Protocol::Https, budgets) => {
            Box::pin(serve_https(&ctx, conn, peer, budgets, &shutdown)).await
        }
        Admitted::Http(_, budgets) => {
            let parked = Box::pin(conn::serve_plain(
                &ctx.http,
                Box::new(conn::accepted(conn)),
                budgets,
                &shutdown,
            ))
            .await;
            // An idle connection moves to its worker thread's parking lot; this task ends.
            if let Some(parked) = parked {
                park(&ctx.http, parked, guard, budgets, &shutdown);
            }
        }
        Admitted::Tcp(snap) => {
            Box::pin(tcp::serve(
                ctx.state.clone(),
                snap,
                ctx.port,
                conn,
                peer,
                ctx.tls.clone(),
            ))
            .await
        }
    }
}

/// The TLS handshake (boxed: only while it runs), then HTTP on the connection.
async fn serve_https(
    ctx: &PortContext,
    conn: tokio::net::TcpStream,
    peer: SocketAddr,
    budgets: HttpBudgets,
    shutdown: &ShutdownWatch,
) {
    let Some(acceptor) = ctx.https.clone() else {
        return;
    };
    let handshake = Box::pin(tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        acceptor.handshake(conn::accepted(conn)),
    ))
    .await;
    match handshake {
        Ok(Ok(tls)) => conn::serve(&ctx.http, tls, budgets, shutdown).await,
        Ok(Err(e)) => debug!("{peer}: TLS handshake on port {}: {e}", ctx.port),
        Err(_) => debug!("{peer}: TLS handshake on port {} timed out", ctx.port),
    }
}

#[async_trait]
impl Service for ListenerManager {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut bound: HashMap<u16, BoundPort> = HashMap::new();
        let mut changes = self.state.changes.subscribe();
        let mut retry = tokio::time::interval(RETRY_BIND);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.reconcile(&fds, &mut bound, &shutdown);
            let has_errors = !self.state.listeners.load().errors.is_empty();
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
                _ = changes.changed() => {}
                _ = retry.tick(), if has_errors => {}
            }
        }
        super::drain::start(&self.state, "shutdown");
        for (_, b) in bound.drain() {
            let _ = b.stop.send(true);
        }
        // Wake idle keep-alive connections so they close instead of waiting for a request.
        self.http.cleanup().await;
        info!("listeners stopped");
    }

    fn name(&self) -> &str {
        "meshgate-listeners"
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.initial_ports.iter().map(|p| self.key(*p)).collect())
    }
}
