//! What policies set on one destination of one port (Kuma's cluster settings): compiled per
//! port and destination, so two ports whose policies differ get two clusters, as in Envoy.

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
}

impl Default for ClusterConf {
    fn default() -> Self {
        ClusterConf {
            connect_timeout: super::timeouts::defaults::CONNECT,
            idle_timeout: None,
            max_stream_duration: None,
            max_connection_duration: None,
        }
    }
}
