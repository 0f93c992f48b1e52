//! TCP and TLS listeners: MeshTCPRoute traffic (semantics §7).
//!
//! The backend is chosen per connection by weight; a connection without a route is accepted
//! and closed; a backend that cannot be reached closes the connection after MeshRetry's
//! `tcp.maxConnectAttempt` attempts over its endpoints (five without a MeshRetry). Bytes are
//! copied both ways with half-close passed through and the listener's idle timeout
//! (MeshTimeout `idleTimeout`; Kuma's default: 5 minutes). The port's MeshRateLimit
//! `connectionRate` is applied where connections are accepted (`runtime::listeners`).

use super::tls::{parse_sni, record_len, PortAcceptor, SniError};
use crate::admin::access_log;
use crate::admin::metrics::METRICS;
use crate::runtime::state::GatewayState;
use crate::snapshot::access_log::{Direction, Fields, Op, Value};
use crate::snapshot::backends::{Backend, BackendState, WeightedBackends};
use crate::snapshot::policy::PortPolicy;
use crate::snapshot::{ListenerInfo, Serving, Snapshot, TlsMode};
use log::{debug, warn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest TLS record a ClientHello can arrive in.
const MAX_HELLO: usize = 16 * 1024 + 5;

/// Serves one accepted connection on a TCP or TLS port.
pub async fn serve(
    state: Arc<GatewayState>,
    snap: Arc<Snapshot>,
    port: u16,
    stream: TcpStream,
    client: SocketAddr,
    acceptor: Option<Arc<PortAcceptor>>,
) {
    let Some(p) = snap.port(port).cloned() else {
        return;
    };
    let policy = &p.policy;
    let local = stream.local_addr().ok().map(|a| a.ip());
    let peers = Peers { client, local };
    match &p.serving {
        Serving::Tcp { listener, backends } => {
            proxy(&snap, policy, listener, backends, stream, peers).await
        }
        Serving::Tls { chains } => {
            let sni = match read_sni(&stream, state.settings.header_timeout).await {
                Ok(s) => s,
                Err(e) => {
                    debug!("{client}: closing TLS connection on port {port}: {e}");
                    return;
                }
            };
            let Some(chain) = chains.lookup(sni.as_deref().unwrap_or("")).cloned() else {
                debug!("{client}: no TLS listener for SNI {sni:?} on port {port}");
                return;
            };
            match chain.mode {
                TlsMode::Passthrough => {
                    proxy(
                        &snap,
                        policy,
                        &chain.listener,
                        &chain.backends,
                        stream,
                        peers,
                    )
                    .await
                }
                TlsMode::Terminate => {
                    let Some(acceptor) = acceptor else { return };
                    use pingora::protocols::GetSocketDigest;
                    use std::os::unix::io::AsRawFd;
                    let fd = stream.as_raw_fd();
                    let mut l4: pingora::protocols::l4::stream::Stream = stream.into();
                    l4.set_socket_digest(pingora::protocols::SocketDigest::from_raw_fd(fd));
                    match acceptor.handshake(l4).await {
                        Ok(tls) => {
                            proxy(&snap, policy, &chain.listener, &chain.backends, tls, peers).await
                        }
                        Err(e) => debug!("{client}: TLS handshake failed on port {port}: {e}"),
                    }
                }
            }
        }
        Serving::Http { .. } | Serving::Https { .. } => {}
    }
}

/// Peeks at the ClientHello (without consuming it) and returns its SNI.
async fn read_sni(stream: &TcpStream, deadline: Duration) -> Result<Option<String>, String> {
    let mut buf = vec![0u8; MAX_HELLO];
    let started = Instant::now();
    loop {
        let n = tokio::time::timeout(
            deadline.saturating_sub(started.elapsed()),
            stream.peek(&mut buf),
        )
        .await
        .map_err(|_| "no ClientHello in time".to_string())?
        .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before ClientHello".into());
        }
        let have = &buf[..n];
        match record_len(have) {
            Some(len) if len > MAX_HELLO => return Err("ClientHello too large".into()),
            Some(len) if n >= len => {
                return parse_sni(&have[..len]).map_err(|e| format!("{e:?}"));
            }
            _ => {
                if n >= 1 && have[0] != 0x16 {
                    return Err(format!("{:?}", SniError::NotTls));
                }
                // Wait for more of the record to arrive.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Connects to the backend: up to `attempts` tries, each to the next endpoint in turn, each
/// within the cluster's connect timeout.
async fn connect(backend: &Backend, attempts: u32) -> Option<(TcpStream, SocketAddr)> {
    for _ in 0..attempts.max(1) {
        let ep = backend.next_endpoint()?;
        let timeout = backend.cluster.connect_timeout;
        match tokio::time::timeout(timeout, TcpStream::connect(ep.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some((s, ep.addr));
            }
            Ok(Err(e)) => warn!(
                "TCP route: connect to {} ({}) failed: {e}",
                ep.addr, backend.key
            ),
            Err(_) => warn!(
                "TCP route: connect to {} ({}) timed out",
                ep.addr, backend.key
            ),
        }
        METRICS
            .upstream_connect_failures
            .with_label_values(&[&backend.key])
            .inc();
    }
    None
}

async fn proxy<S>(
    snap: &Snapshot,
    policy: &PortPolicy,
    listener: &ListenerInfo,
    backends: &WeightedBackends,
    mut downstream: S,
    peers: Peers,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let client = peers.client;
    let backend = backends.pick().cloned();
    let (flags, upstream_addr, sent, received) = match &backend {
        None => ("NR", None, 0, 0),
        Some(b) if b.state != BackendState::Ready => ("UH", None, 0, 0),
        Some(b) => match connect(b, policy.tcp_connect_attempts).await {
            None => ("UF", None, 0, 0),
            Some((mut up, addr)) => {
                let (a, b2) = copy_both_ways(&mut downstream, &mut up, policy.tcp_idle).await;
                ("", Some(addr), a, b2)
            }
        },
    };
    let _ = downstream.shutdown().await;
    let backend_key = backend.as_ref().map(|b| b.key.as_str()).unwrap_or("");
    let result = if flags.is_empty() { "proxied" } else { flags };
    METRICS
        .tcp_connections
        .with_label_values(&[&listener.label, backend_key, result])
        .inc();
    if !policy.access_logs.is_empty() {
        let fields = TcpFields {
            snap,
            client,
            local: peers.local,
            upstream: upstream_addr,
            backend: backend.as_deref(),
            flags,
            elapsed: started.elapsed(),
            sent: received,
            received: sent,
            direction: Direction::Outbound,
        };
        let began = std::time::SystemTime::now() - fields.elapsed;
        for log in policy.access_logs.iter() {
            let fields = TcpFields {
                direction: log.direction,
                ..fields
            };
            log.write(&fields, began);
        }
    } else if access_log::enabled() {
        let upstream = upstream_addr.map(|a| a.to_string()).unwrap_or_default();
        access_log::tcp(&access_log::TcpRecord {
            mesh: &snap.gateway.mesh,
            flags,
            source_address: &client.ip().to_string(),
            source_service: &snap.gateway.service,
            upstream_host: &upstream,
            destination_service: backend.as_ref().map(|b| b.service.as_str()).unwrap_or(""),
            duration_ms: started.elapsed().as_millis(),
            bytes_sent: received,
            bytes_received: sent,
        });
    }
}

/// Copies both directions until both have ended or the connection idles out (`None`:
/// never). A read EOF on one side becomes a write shutdown (FIN) on the other, so
/// half-closed protocols work. Returns (bytes client→backend, bytes backend→client).
async fn copy_both_ways<A, B>(a: &mut A, b: &mut B, idle: Option<Duration>) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let (mut to_b, mut to_a) = (0u64, 0u64);
    while a_open || b_open {
        let read = async {
            tokio::select! {
                r = a.read(&mut buf_a), if a_open => (true, r),
                r = b.read(&mut buf_b), if b_open => (false, r),
            }
        };
        let step = match idle {
            Some(idle) => tokio::time::timeout(idle, read).await,
            None => Ok(read.await),
        };
        let Ok((from_a, read)) = step else {
            break; // idle timeout
        };
        match read {
            Ok(0) | Err(_) => {
                if from_a {
                    a_open = false;
                    let _ = b.shutdown().await;
                } else {
                    b_open = false;
                    let _ = a.shutdown().await;
                }
                if read.is_err() {
                    break; // a reset: give up on both directions
                }
            }
            Ok(n) => {
                let written = if from_a {
                    to_b += n as u64;
                    b.write_all(&buf_a[..n]).await
                } else {
                    to_a += n as u64;
                    a.write_all(&buf_b[..n]).await
                };
                if written.is_err() {
                    break;
                }
            }
        }
    }
    (to_b, to_a)
}

/// The values of one finished TCP connection for MeshAccessLog's operators (HTTP operators
/// have none: `-`).
#[derive(Clone, Copy)]
struct TcpFields<'a> {
    snap: &'a Snapshot,
    client: SocketAddr,
    local: Option<std::net::IpAddr>,
    upstream: Option<SocketAddr>,
    backend: Option<&'a Backend>,
    flags: &'static str,
    elapsed: Duration,
    sent: u64,
    received: u64,
    direction: Direction,
}

/// The two ends of an accepted connection.
#[derive(Clone, Copy)]
struct Peers {
    client: SocketAddr,
    /// The gateway's own address on it (`%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%`).
    local: Option<std::net::IpAddr>,
}

impl Fields for TcpFields<'_> {
    fn value(&self, op: &Op) -> Option<Value<'_>> {
        let gw = &self.snap.gateway;
        Some(match op {
            Op::StartTime => Value::Time(std::time::SystemTime::now() - self.elapsed),
            Op::ResponseFlags => Value::Str(if self.flags.is_empty() {
                "-"
            } else {
                self.flags
            }),
            Op::BytesReceived => Value::Uint(self.received),
            Op::BytesSent => Value::Uint(self.sent),
            Op::Duration => Value::Uint(self.elapsed.as_millis() as u64),
            Op::UpstreamHost => Value::Addr(self.upstream?),
            Op::UpstreamCluster => Value::Str(self.backend?.key.as_str()),
            Op::DownstreamRemoteAddress => Value::Addr(self.client),
            Op::DownstreamRemoteAddressWithoutPort => Value::Ip(self.client.ip()),
            Op::KumaMesh => Value::Str(gw.mesh.as_str()),
            Op::KumaSourceService => match self.direction {
                Direction::Outbound => Value::Str(gw.service.as_str()),
                Direction::Inbound => Value::Str("unknown"),
            },
            Op::KumaDestinationService => match self.direction {
                Direction::Outbound => Value::Str("*"),
                Direction::Inbound => Value::Str(gw.service.as_str()),
            },
            Op::KumaSourceAddressWithoutPort => {
                Value::Ip(self.local.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])))
            }
            Op::KumaTrafficDirection => Value::Str(match self.direction {
                Direction::Outbound => "OUTBOUND",
                Direction::Inbound => "INBOUND",
            }),
            _ => return None,
        })
    }
}
