//! The timeouts requests and connections run under, compiled from MeshTimeout (spec §4.1):
//! Kuma's gateway defaults where no policy sets a value, `None` where a policy turned one
//! off (`0s`).

use std::time::Duration;

/// Kuma's gateway defaults without any MeshTimeout
/// (K:`plugins/runtime/gateway/{filter_chain,route_table}_generator.go`).
pub mod defaults {
    use std::time::Duration;
    pub const ROUTE_REQUEST: Duration = Duration::from_secs(15);
    pub const ROUTE_STREAM_IDLE: Duration = Duration::from_secs(5);
    pub const CONNECT: Duration = Duration::from_secs(5);
    pub const LISTENER_STREAM_IDLE: Duration = Duration::from_secs(5);
}

/// A routed request's upstream timeouts (route side: `to`, Mesh entry or route level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteTimeouts {
    /// Envoy's route `timeout`: the whole response must be received within it, all retries
    /// included.
    pub request: Option<Duration>,
    /// Envoy's route `idle_timeout`: the longest silence on the upstream stream.
    pub stream_idle: Option<Duration>,
}

impl Default for RouteTimeouts {
    fn default() -> Self {
        RouteTimeouts {
            request: Some(defaults::ROUTE_REQUEST),
            stream_idle: Some(defaults::ROUTE_STREAM_IDLE),
        }
    }
}

/// A listener's own timeouts (inbound side: `from[]`, `rules[]`) for HTTP and HTTPS ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerTimeouts {
    /// A whole request head must arrive within it (`requestHeadersTimeout`); the first
    /// request of a connection must start within it too. `None`: no limit.
    pub request_headers: Option<Duration>,
    /// A keep-alive connection may wait this long for its next request (`idleTimeout`);
    /// `None`: forever.
    pub idle: Option<Duration>,
    /// The longest silence from the client while a request is in flight
    /// (`streamIdleTimeout`): 408 when it passes before the request is complete.
    pub stream_idle: Option<Duration>,
    /// The whole request must be received within it (`requestTimeout`); `None`: no limit.
    pub request: Option<Duration>,
}
