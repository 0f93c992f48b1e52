//! Policies as the request path reads them: compiled once per snapshot, per port
//! ([`PortPolicy`]) and per rule ([`RoutePolicies`], shared by every rule the same policies
//! apply to). `applied` names the policies that made each one, for `/config`.

use super::rate_limit::TokenBucket;
use super::retry::RetryPolicy;
use super::timeouts::{ListenerTimeouts, RouteTimeouts};
use crate::model::policy::fault::Fault;
use crate::model::policy::rate_limit::{LimitScope, Rate};
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// What the policies of a rule set: its upstream timeouts, retries and rate limit.
#[derive(Debug)]
pub struct RoutePolicies {
    pub timeouts: RouteTimeouts,
    /// MeshRetry's `http` section; `None`: no MeshRetry selects the rule (meshgate then
    /// retries connect failures only, see `proxy::http::retry`).
    pub retry: Option<Arc<RetryPolicy>>,
    /// MeshRetry's `grpc` section, for gRPC requests.
    pub grpc_retry: Option<Arc<RetryPolicy>>,
    /// The limit every rule gets a bucket of its own for.
    pub rate_limit: Option<RateLimitSpec>,
    pub applied: Box<[Arc<str>]>,
}

impl Default for RoutePolicies {
    fn default() -> Self {
        RoutePolicies {
            timeouts: RouteTimeouts::default(),
            retry: None,
            grpc_retry: None,
            rate_limit: None,
            applied: Box::new([]),
        }
    }
}

/// A merged MeshRateLimit `local.http`, before it gets a bucket.
#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub rate: Rate,
    pub scope: LimitScope,
    pub status: u16,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

/// What the policies of a port set on the port itself.
#[derive(Debug)]
pub struct PortPolicy {
    /// HTTP and HTTPS ports.
    pub listener: ListenerTimeouts,
    /// TCP and TLS ports: a proxied connection without bytes either way this long is
    /// closed; `None`: never.
    pub tcp_idle: Option<Duration>,
    /// MeshRateLimit `local.tcp.connectionRate`: connections beyond it are closed at once.
    pub connection_rate: Option<Arc<TokenBucket>>,
    /// MeshRetry `tcp.maxConnectAttempt` for TCP routes.
    pub tcp_connect_attempts: u32,
    /// MeshFaultInjection `http[]`, applied in order to every routed request.
    pub faults: Box<[Fault]>,
    /// MeshAccessLog: the logs every request (HTTP) or connection (TCP) of the port writes.
    pub access_logs: Box<[super::access_log::AccessLog]>,
    /// MeshTrace (HTTP and HTTPS ports).
    pub tracing: Option<super::tracing::Tracing>,
    pub applied: Box<[Arc<str>]>,
}
