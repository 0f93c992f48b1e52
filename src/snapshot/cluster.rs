//! What policies set on one destination of one port (Kuma's cluster settings): compiled per
//! port and destination, so two ports whose policies differ get two clusters, as in Envoy.

use crate::model::policy::load_balancing::HashPolicy;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterConf {
    /// MeshTimeout `connectionTimeout` (Kuma's default: 5 s).
    pub connect_timeout: Duration,
    /// MeshTimeout `idleTimeout`: how long a pooled connection may stay unused. `None`:
    /// no timer (see `snapshot::backends::UPSTREAM_TCP_KEEPALIVE` for why that is the
    /// default).
    pub idle_timeout: Option<Duration>,
    /// MeshTimeout `http.maxStreamDuration`: a whole exchange with the backend.
    pub max_stream_duration: Option<Duration>,
    /// MeshTimeout `http.maxConnectionDuration`: a connection is not reused past this age.
    pub max_connection_duration: Option<Duration>,
    /// MeshHealthCheck, for the check type the port's protocol takes (§6.1).
    pub health: Option<Arc<HealthCheck>>,
    /// MeshCircuitBreaker `connectionLimits`; `None`: no limits.
    pub limits: Option<Limits>,
    /// MeshCircuitBreaker `outlierDetection` with at least one detector on.
    pub outlier: Option<Arc<Outlier>>,
    /// Below this share of available endpoints (hundredths of a percent), traffic goes to
    /// all of them (Envoy's panic mode; default 50 %, 0 disables it).
    pub panic_threshold: u32,
    /// In panic, fail every request with 503 instead.
    pub fail_traffic_on_panic: bool,
    /// MeshLoadBalancingStrategy.
    pub lb: Arc<Lb>,
}

impl Default for ClusterConf {
    fn default() -> Self {
        ClusterConf {
            connect_timeout: super::timeouts::defaults::CONNECT,
            idle_timeout: None,
            max_stream_duration: None,
            max_connection_duration: None,
            health: None,
            limits: None,
            outlier: None,
            panic_threshold: 5000,
            fail_traffic_on_panic: false,
            lb: Arc::default(),
        }
    }
}

impl ClusterConf {
    /// Can an endpoint of this cluster be out of service (health check or ejection)?
    pub fn guards_endpoints(&self) -> bool {
        self.health.is_some() || self.outlier.is_some()
    }
}

/// An active health check (spec §6), defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub initial_jitter: Duration,
    pub interval_jitter: Duration,
    pub interval_jitter_percent: u32,
    /// The interval until the cluster has had traffic.
    pub no_traffic_interval: Duration,
    pub reuse_connection: bool,
    pub always_log_failures: bool,
    pub event_log_path: Option<String>,
    pub probe: Probe,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// `GET path` over HTTP/1.1; healthy iff the status is expected.
    Http {
        path: String,
        set: Vec<(HeaderName, HeaderValue)>,
        add: Vec<(HeaderName, HeaderValue)>,
        expected: Vec<u16>,
    },
    /// Connect; write `send`; every `receive` block must come back, in order.
    Tcp {
        send: Option<Vec<u8>>,
        receive: Vec<Vec<u8>>,
    },
}

/// Connection limits per cluster (spec §7.1); Envoy's defaults for what the policy leaves
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Outlier detection (spec §7.2), Envoy's defaults filled in; a `None` detector is off.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Outlier {
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub split_local_errors: bool,
    pub total_failures: Option<u32>,
    pub gateway_failures: Option<u32>,
    pub local_origin_failures: Option<u32>,
    pub success_rate: Option<SuccessRate>,
    pub failure_percentage: Option<FailurePercentage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SuccessRate {
    pub minimum_hosts: u32,
    pub request_volume: u32,
    /// Thousandths.
    pub stdev_factor: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailurePercentage {
    pub minimum_hosts: u32,
    pub request_volume: u32,
    pub threshold: u32,
}

/// The load balancer of a cluster and the hash policies of the requests sent to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Lb {
    pub kind: LbKind,
    pub hash_policies: Vec<HashPolicy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LbKind {
    #[default]
    RoundRobin,
    Random,
    LeastRequest {
        choices: u32,
    },
    RingHash {
        murmur: bool,
        min_ring_size: u32,
        max_ring_size: u32,
    },
    Maglev {
        table_size: u32,
    },
}

impl LbKind {
    pub fn name(&self) -> &'static str {
        match self {
            LbKind::RoundRobin => "RoundRobin",
            LbKind::Random => "Random",
            LbKind::LeastRequest { .. } => "LeastRequest",
            LbKind::RingHash { .. } => "RingHash",
            LbKind::Maglev { .. } => "Maglev",
        }
    }
}
