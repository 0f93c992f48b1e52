//! The compiled, immutable view of a policy directory that the proxy reads.
//!
//! A [`Snapshot`] is built once per applied change (`compile`) and swapped in whole with
//! `ArcSwap`; requests and connections hold an `Arc<Snapshot>` for their lifetime, so they
//! always see one consistent configuration. Everything a request needs is precomputed:
//! port → host table → virtual host → indexed route table → weighted backends → endpoints.

pub mod access_log;
pub mod action;
pub mod backends;
pub mod balancer;
pub mod certs;
pub mod cluster;
pub mod endpoint_state;
pub mod exact_paths;
pub mod hostname;
pub mod matchers;
pub mod outlier;
pub mod policy;
pub mod rate_limit;
pub mod regex;
pub mod retry;
pub mod route_table;
pub mod timeouts;
pub mod tracing;

use backends::WeightedBackends;
use certs::CertSet;
use hostname::HostTable;
use route_table::RouteTable;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::model::{Protocol, TlsMode};

/// The gateway this process serves.
#[derive(Debug, Clone)]
pub struct GatewayIdentity {
    pub name: String,
    pub mesh: String,
    /// The gateway's `kuma.io/service` (access log source, `x-kuma-tags`).
    pub service: String,
    /// `x-kuma-tags` sent to mesh backends: `&kuma.io/service=<service>&`.
    pub kuma_tags: http::HeaderValue,
}

/// One MeshGateway listener (several may share a port).
#[derive(Debug)]
pub struct ListenerInfo {
    pub port: u16,
    pub protocol: Protocol,
    /// `*` for "any host".
    pub hostname: String,
    /// Metric label: `8080` or `8080/foo.example.com`.
    pub label: String,
}

/// A virtual host: the route tables of the hostname groups that apply to it (§3.5), most
/// exact hostname first. Tables are shared between virtual hosts (a generic `to[]` entry's
/// rules apply to every host of the listener, but are compiled once); lookup takes the best
/// match across them by Kuma's precedence, the group order breaking ties (§4.5 step 8).
#[derive(Debug)]
pub struct VirtualHost {
    /// Kuma's binding hostname (§3.5).
    pub name: String,
    pub listener: Arc<ListenerInfo>,
    pub tables: Vec<Arc<RouteTable>>,
}

/// Where a matched entry lives: (table, entry) indexes into a [`VirtualHost`].
pub type EntryRef = (usize, usize);

impl VirtualHost {
    pub fn find(&self, req: &matchers::RequestView<'_>) -> Option<EntryRef> {
        let mut best: Option<(EntryRef, &route_table::RouteEntry)> = None;
        for (t, table) in self.tables.iter().enumerate() {
            // Only a strictly better entry replaces the best so far: on a tie the earlier
            // (more exact hostname) group wins. Passing the bound lets the table skip what
            // cannot win (no regex runs once an exact path matched).
            let bound = best.map(|(_, b)| b.precedence());
            let Some(i) = table.find_index_before(req, bound) else {
                continue;
            };
            if let Some(e) = table.entries().get(i) {
                best = Some(((t, i), e));
            }
        }
        best.map(|(r, _)| r)
    }

    pub fn entry(&self, (t, i): EntryRef) -> Option<&route_table::RouteEntry> {
        self.tables.get(t)?.entries().get(i)
    }

    pub fn entry_count(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }
}

/// An HTTPS listener hostname: the certificate and the route table chosen by SNI (§3.7).
#[derive(Debug)]
pub struct HttpsChain {
    pub listener: Arc<ListenerInfo>,
    pub certs: Arc<CertSet>,
    pub vhosts: HostTable<Arc<VirtualHost>>,
}

/// A TLS listener hostname: how the connection is handled once SNI chose it (§7.3).
#[derive(Debug)]
pub struct TlsChain {
    pub listener: Arc<ListenerInfo>,
    pub mode: TlsMode,
    pub certs: Option<Arc<CertSet>>,
    pub backends: WeightedBackends,
}

#[derive(Debug)]
pub enum Serving {
    Http {
        vhosts: HostTable<Arc<VirtualHost>>,
    },
    Https {
        chains: HostTable<Arc<HttpsChain>>,
    },
    Tcp {
        listener: Arc<ListenerInfo>,
        /// Empty: no route, the connection is accepted and closed (§7.2).
        backends: WeightedBackends,
    },
    Tls {
        chains: HostTable<Arc<TlsChain>>,
    },
}

/// Everything served on one port (Kuma collapses same-port listeners into one socket).
#[derive(Debug)]
pub struct Port {
    pub port: u16,
    /// Metric label for traffic no listener hostname claimed (the port number).
    pub label: String,
    pub protocol: Protocol,
    /// MeshGateway `resources.connectionLimit` for this port.
    pub connection_limit: Option<u32>,
    /// What the policies selecting this port set on it.
    pub policy: Arc<policy::PortPolicy>,
    pub serving: Serving,
}

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub gateway: GatewayIdentity,
    /// By port number (foldhash: looked up twice per request).
    pub ports: foldhash::HashMap<u16, Arc<Port>>,
    /// Number of compiled route entries (shared tables counted once).
    pub route_entries: usize,
    /// Every backend the routes resolve to (for `/config`).
    pub backends: Vec<Arc<backends::Backend>>,
    /// Counts this snapshot in [`live_snapshots`] while it is in memory.
    pub alive: Liveness,
}

/// Snapshots in memory: the active one and older ones still held by something in flight.
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many snapshots are in memory. More than one or two for long means something (a
/// request, a TCP connection) holds an old generation, and all of its route tables with it.
pub fn live_snapshots() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A snapshot's place in [`live_snapshots`], from its build to its drop.
#[derive(Debug)]
pub struct Liveness(());

impl Liveness {
    pub fn new() -> Liveness {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Liveness(())
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Snapshot {
    /// The ports to bind, in order.
    pub fn port_numbers(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.ports.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn port(&self, port: u16) -> Option<&Arc<Port>> {
        self.ports.get(&port)
    }

    /// Ports with their protocols, for the listener manager and readiness.
    pub fn listener_plan(&self) -> BTreeMap<u16, Protocol> {
        self.ports.iter().map(|(p, v)| (*p, v.protocol)).collect()
    }
}

/// Where an HTTP request lands in a snapshot: the answer of [`Snapshot::route`].
#[derive(Debug)]
pub enum Route<'a> {
    /// No HTTP or HTTPS listener on that port, or no HTTPS listener hostname for that SNI.
    NoListener,
    /// No virtual host or no entry matched: 404. `listener` is the listener hostname that
    /// took the request, when one did (an HTTPS SNI chain, a virtual host).
    NoRoute {
        listener: Option<&'a Arc<ListenerInfo>>,
    },
    /// The matched entry of a virtual host.
    Entry {
        listener: &'a Arc<ListenerInfo>,
        vhost: &'a Arc<VirtualHost>,
        entry: EntryRef,
    },
}

impl<'a> Route<'a> {
    /// The matched entry, if any.
    pub fn entry(&self) -> Option<&'a route_table::RouteEntry> {
        match *self {
            Route::Entry { vhost, entry, .. } => vhost.entry(entry),
            _ => None,
        }
    }
}

impl Snapshot {
    /// The route an HTTP request takes: by port, then (HTTPS) the SNI's listener hostname,
    /// then the Host's virtual host, then Kuma's precedence among the entries (§3.5, §4.5).
    /// The one lookup the proxy, the tests and the benchmarks share. `host` is normalised
    /// (lower case, no port: [`hostname::normalize_host`]); `sni` is ignored on plain HTTP.
    pub fn route(
        &self,
        port: u16,
        sni: Option<&str>,
        host: &str,
        req: &matchers::RequestView<'_>,
    ) -> Route<'_> {
        let Some(port) = self.port(port) else {
            return Route::NoListener;
        };
        let (listener, vhost) = match &port.serving {
            Serving::Http { vhosts } => {
                let Some(vhost) = vhosts.lookup(host) else {
                    return Route::NoRoute { listener: None };
                };
                (&vhost.listener, vhost)
            }
            Serving::Https { chains } => {
                let Some(chain) = chains.lookup(sni.unwrap_or("")) else {
                    return Route::NoListener;
                };
                // Both SNI and Host must match (§3.5 step 5): Host is looked up in the
                // chain's own table only.
                match chain.vhosts.lookup(host) {
                    Some(vhost) => (&chain.listener, vhost),
                    None => {
                        return Route::NoRoute {
                            listener: Some(&chain.listener),
                        }
                    }
                }
            }
            Serving::Tcp { .. } | Serving::Tls { .. } => return Route::NoListener,
        };
        match vhost.find(req) {
            Some(entry) => Route::Entry {
                listener,
                vhost,
                entry,
            },
            None => Route::NoRoute {
                listener: Some(listener),
            },
        }
    }
}
