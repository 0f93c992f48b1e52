//! Backends: what a `backendRef` resolves to (semantics §6), compiled once per snapshot.
//!
//! A [`Backend`] is Kuma's "cluster": one destination (a legacy service name with optional
//! subset tags, a real MeshService port, or a MeshExternalService) with its endpoints. Route
//! entries that name the same destination share one `Arc<Backend>`, so round robin across its
//! endpoints is shared too, as it is for an Envoy cluster.

use super::balancer::{Balancer, Endpoints};
use super::cluster::ClusterConf;
use super::endpoint_state::{ClusterState, EndpointState};
use pingora::protocols::TcpKeepalive;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// TCP keep-alive on upstream connections: how pooled connections to a peer that vanished
/// (host gone, a NAT or firewall that dropped the flow) are found and dropped. Probes start
/// after a minute of silence; six unanswered ones, ten seconds apart, reset the connection,
/// which Pingora's pool watcher sees and evicts.
///
/// Pooled connections carry no idle timer: Pingora registers one in its shared timer wheel
/// every time a connection goes back to the pool, i.e. on every request (~1,700 of ~90,800
/// instructions per request, callgrind; BENCHMARKS.md), and Kuma's own default keeps an idle
/// upstream connection for an hour. Idle connections still end when the backend closes them
/// (the pool watches each for EOF and evicts it), when the LRU pool
/// (`upstream_keepalive_pool_size`) is full, and through these probes; an idempotent request
/// that meets a pooled connection closed under it is retried by Pingora.
pub const UPSTREAM_TCP_KEEPALIVE: TcpKeepalive = TcpKeepalive {
    idle: Duration::from_secs(60),
    interval: Duration::from_secs(10),
    count: 6,
    #[cfg(target_os = "linux")]
    user_timeout: Duration::from_secs(0),
};

/// Why a destination has no endpoints to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendState {
    Ready,
    /// The destination exists but nothing healthy serves it: 503 (§6.4).
    NoEndpoints,
    /// The reference names nothing (missing MeshService, port, MeshExternalService): 500 (§6.2).
    Unresolved(String),
}

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The DNS name the endpoint was configured with, as a ready `Host` value for
    /// `hostToBackendHostname` (the peer already carries it as SNI).
    pub host_header: Option<http::HeaderValue>,
    /// A ready-made peer, cloned per request instead of rebuilt.
    pub peer: HttpPeer,
    /// Health, ejection and in-flight count of this endpoint's identity (outlives the
    /// snapshot).
    pub state: Arc<EndpointState>,
}

/// The identity run-time state is kept under: the destination, the address, and the TLS
/// name the endpoint is reached with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointId {
    pub backend: String,
    pub addr: SocketAddr,
    pub tls_name: Option<String>,
}

/// Where compiled backends find the run-time state of their identities
/// (`runtime::registry::Registry`; fresh state for tests and `--check`).
pub trait StateSource {
    fn endpoint(&self, id: &EndpointId) -> Arc<EndpointState>;
    fn cluster(&self, backend: &str) -> Arc<ClusterState>;
}

/// Fresh state for every request of it: for builds whose snapshot never serves.
pub struct FreshState;

impl StateSource for FreshState {
    fn endpoint(&self, _: &EndpointId) -> Arc<EndpointState> {
        Arc::default()
    }
    fn cluster(&self, _: &str) -> Arc<ClusterState> {
        Arc::default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_hostname: bool,
    pub server_name: Option<String>,
    /// DER certificates to trust instead of the system roots (`verification.caCert`).
    pub ca: Option<Arc<Vec<Vec<u8>>>>,
}

#[derive(Debug)]
pub struct Backend {
    /// Stable identity, e.g. `demo-app`, `demo-app{version=v2}`, `MeshService/api:80`.
    pub key: String,
    /// Kuma's `kuma.io/service` value or resource name (access log destination, metrics).
    pub service: String,
    pub state: BackendState,
    pub endpoints: Vec<Endpoint>,
    /// External services get no `x-kuma-tags` header (they are not mesh members).
    pub external: bool,
    /// What the port's policies set on this destination.
    pub cluster: Arc<ClusterConf>,
    /// Requests, connections and retries in flight to this destination (outlives the
    /// snapshot).
    pub runtime: Arc<ClusterState>,
    balancer: Balancer,
}

/// What a backend is, apart from its endpoints and settings.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Stable identity (see [`Backend::key`]).
    pub key: String,
    pub service: String,
    /// A MeshExternalService.
    pub external: bool,
    /// Spoken to over HTTP/2 (`kuma.io/protocol: http2|grpc`).
    pub h2: bool,
}

impl Destination {
    /// A mesh service spoken to over HTTP/1 (tests).
    pub fn plain(key: &str) -> Destination {
        Destination {
            key: key.to_string(),
            service: key.to_string(),
            external: false,
            h2: false,
        }
    }
}

/// Which endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Endpoint(usize),
    /// No endpoint may take it (all failing or ejected, panic disabled, or
    /// `failTrafficOnPanic`): 503 `no healthy upstream`.
    NoneHealthy,
}

impl Backend {
    pub fn new(
        dest: Destination,
        resolved: Result<Vec<(SocketAddr, Option<String>)>, String>,
        tls: &UpstreamTls,
        cluster: Arc<ClusterConf>,
        states: &dyn StateSource,
    ) -> Self {
        let Destination {
            key,
            service,
            external,
            h2,
        } = dest;
        let tls_name = |hostname: Option<&str>| {
            tls.enabled.then(|| {
                tls.server_name
                    .clone()
                    .or_else(|| hostname.map(str::to_string))
                    .unwrap_or_default()
            })
        };
        let (state, endpoints) = match resolved {
            Err(reason) => (BackendState::Unresolved(reason), Vec::new()),
            Ok(addrs) if addrs.is_empty() => (BackendState::NoEndpoints, Vec::new()),
            Ok(addrs) => (
                BackendState::Ready,
                addrs
                    .into_iter()
                    .map(|(addr, hostname)| Endpoint {
                        peer: make_peer(addr, hostname.as_deref(), tls, h2, &cluster),
                        state: states.endpoint(&EndpointId {
                            backend: key.clone(),
                            addr,
                            tls_name: tls_name(hostname.as_deref()),
                        }),
                        addr,
                        host_header: hostname.and_then(|h| http::HeaderValue::from_str(&h).ok()),
                    })
                    .collect(),
            ),
        };
        let addrs: Vec<SocketAddr> = endpoints.iter().map(|e: &Endpoint| e.addr).collect();
        Backend {
            balancer: Balancer::new(&cluster.lb, &addrs),
            runtime: states.cluster(&key),
            key,
            service,
            state,
            endpoints,
            external,
            cluster,
        }
    }

    /// The endpoint for a request with this hash (from the cluster's hash policies): the
    /// balancer's pick, or, when that one is failing its health check or ejected, another
    /// that is not — unless too few are (Envoy's panic mode: then any, spec §6.2).
    pub fn choose(&self, hash: Option<u64>) -> Choice {
        let n = self.endpoints.len();
        if n == 0 {
            return Choice::NoneHealthy;
        }
        let first = self.balancer.pick(self, hash);
        if !self.cluster.guards_endpoints() || self.endpoints[first].state.available() {
            return Choice::Endpoint(first);
        }
        let available = self
            .endpoints
            .iter()
            .filter(|e| e.state.available())
            .count();
        let threshold = u64::from(self.cluster.panic_threshold);
        if (available as u64) * 10_000 < threshold * n as u64 {
            return if self.cluster.fail_traffic_on_panic {
                Choice::NoneHealthy
            } else {
                Choice::Endpoint(first)
            };
        }
        match self.balancer.pick_available(self, first, hash) {
            Some(i) => Choice::Endpoint(i),
            None => Choice::NoneHealthy,
        }
    }

    /// The next endpoint without a request to hash (TCP connections, mirrors).
    pub fn next_endpoint(&self) -> Option<&Endpoint> {
        match self.choose(None) {
            Choice::Endpoint(i) => self.endpoints.get(i),
            Choice::NoneHealthy => None,
        }
    }
}

impl Endpoints for Backend {
    fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
    fn state(&self, i: usize) -> &EndpointState {
        &self.endpoints[i].state
    }
}

fn make_peer(
    addr: SocketAddr,
    hostname: Option<&str>,
    tls: &UpstreamTls,
    h2: bool,
    cluster: &ClusterConf,
) -> HttpPeer {
    let sni = if tls.enabled {
        tls.server_name
            .clone()
            .or_else(|| hostname.map(str::to_string))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, tls.enabled, sni);
    // Read and write timeouts are the route's, set per request; connect and pool idle are
    // the cluster's.
    peer.options.connection_timeout = Some(cluster.connect_timeout);
    peer.options.idle_timeout = cluster.idle_timeout;
    // WebSocket and every other Upgrade are proxied (kumahq/kuma#3311): Pingora's default
    // forwards only WebSocket upgrades.
    peer.options.http_upstream_request_policy.h1_upgrade =
        pingora::upstreams::peer::H1UpgradePolicy::Preserve;
    peer.options.tcp_keepalive = Some(UPSTREAM_TCP_KEEPALIVE);
    // Response field names are sent on lower-cased (`proxy::http::plain_header`), so the
    // spelling is not kept in a second map per response.
    peer.options.h1_preserve_header_case = false;
    if tls.enabled {
        peer.options.verify_cert = tls.verify_cert;
        peer.options.verify_hostname = tls.verify_hostname;
        if let Some(ca) = &tls.ca {
            use pingora::utils::tls::{parse_x509, WrappedX509};
            let certs: Vec<WrappedX509> = ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            peer.options.ca = Some(Arc::from(certs.into_boxed_slice()));
        }
    }
    if h2 {
        // Plain h2 (prior knowledge) for h2c/gRPC backends; over TLS prefer h2 via ALPN.
        if tls.enabled {
            peer.options.set_http_version(2, 1);
        } else {
            peer.options.set_http_version(2, 2);
        }
        peer.options.max_h2_streams = 100;
    }
    peer
}

/// A rule's backends with their weights, chosen per request (HTTP) or per connection (TCP).
#[derive(Debug, Clone, Default)]
pub struct WeightedBackends {
    /// (backend, cumulative weight); only backends with weight > 0.
    items: Vec<(Arc<Backend>, u64)>,
    total: u64,
}

impl WeightedBackends {
    /// Builds from `(backend, weight)` pairs in declaration order. Kuma collapses refs to the
    /// same destination (the last weight wins) and forces a lone backend's weight to 100 %
    /// (§6.3); weight 0 is never chosen otherwise.
    pub fn new(refs: Vec<(Arc<Backend>, u32)>) -> Self {
        let mut collapsed: Vec<(Arc<Backend>, u32)> = Vec::new();
        for (b, w) in refs {
            match collapsed.iter_mut().find(|(c, _)| c.key == b.key) {
                Some(slot) => slot.1 = w,
                None => collapsed.push((b, w)),
            }
        }
        if collapsed.len() == 1 {
            collapsed[0].1 = collapsed[0].1.max(1);
        }
        let mut total = 0u64;
        let items = collapsed
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(b, w)| {
                total += u64::from(w);
                (b, total)
            })
            .collect();
        WeightedBackends { items, total }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every backend that can be picked, in declaration order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.items.iter().map(|(b, _)| b)
    }

    pub fn pick(&self) -> Option<&Arc<Backend>> {
        match self.items.len() {
            0 => None,
            1 => self.items.first().map(|(b, _)| b),
            _ => {
                let r = fastrand::u64(0..self.total);
                let i = self.items.partition_point(|(_, cum)| *cum <= r);
                self.items.get(i).map(|(b, _)| b)
            }
        }
    }

    /// `(backend, weight)` for `/config`.
    pub fn describe(&self) -> Vec<(String, u64)> {
        let mut prev = 0;
        self.items
            .iter()
            .map(|(b, cum)| {
                let w = cum - prev;
                prev = *cum;
                (b.key.clone(), w)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(key: &str, port: u16) -> Arc<Backend> {
        Arc::new(Backend::new(
            Destination::plain(key),
            Ok(vec![(SocketAddr::from(([127, 0, 0, 1], port)), None)]),
            &UpstreamTls::default(),
            Arc::default(),
            &FreshState,
        ))
    }

    #[test]
    fn lone_backend_with_weight_zero_gets_all_traffic() {
        // §6.3: "a rule with a single backend of weight 0 gets weight forced to 1".
        let w = WeightedBackends::new(vec![(backend("a", 1), 0)]);
        assert_eq!(w.pick().map(|b| b.key.as_str()), Some("a"));
    }

    #[test]
    fn weight_zero_is_never_chosen_among_several() {
        let w = WeightedBackends::new(vec![(backend("a", 1), 0), (backend("b", 2), 1)]);
        for _ in 0..200 {
            assert_eq!(w.pick().map(|b| b.key.as_str()), Some("b"));
        }
    }

    #[test]
    fn same_destination_collapses_last_weight_wins() {
        let w = WeightedBackends::new(vec![
            (backend("a", 1), 5),
            (backend("b", 2), 1),
            (backend("a", 1), 0),
        ]);
        assert_eq!(w.describe(), vec![("b".to_string(), 1)]);
    }

    #[test]
    fn weights_split_traffic_proportionally() {
        let w = WeightedBackends::new(vec![(backend("a", 1), 80), (backend("b", 2), 20)]);
        let n = 20_000;
        let a = (0..n)
            .filter(|_| w.pick().map(|b| b.key.as_str()) == Some("a"))
            .count();
        let share = a as f64 / n as f64;
        assert!((0.77..0.83).contains(&share), "share {share}");
    }

    #[test]
    fn endpoints_rotate_round_robin() {
        let b = Backend::new(
            Destination::plain("s"),
            Ok(vec![
                (SocketAddr::from(([127, 0, 0, 1], 1)), None),
                (SocketAddr::from(([127, 0, 0, 1], 2)), None),
            ]),
            &UpstreamTls::default(),
            Arc::default(),
            &FreshState,
        );
        let ports: Vec<u16> = (0..4)
            .filter_map(|_| b.next_endpoint().map(|e| e.addr.port()))
            .collect();
        assert_eq!(ports, vec![1, 2, 1, 2]);
    }
}
