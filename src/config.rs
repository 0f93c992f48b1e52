//! Runtime settings that are not Kuma resources: command-line knobs for the proxy's own
//! protections and logging (issue 4). Defaults follow Kuma's gateway where it has one.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Time a client has to send a complete request head (slowloris guard). Kuma uses 500 ms;
    /// meshgate defaults to 10 s, friendlier to slow mobile clients.
    pub header_timeout: Duration,
    /// Idle keep-alive timeout between requests on a downstream connection (Kuma: 5 min).
    pub idle_timeout: Duration,
    /// Idle timeout of TCP-route connections (Kuma's gateway default: 5 min).
    pub tcp_idle_timeout: Duration,
    /// Process-wide cap on downstream connections (0 = none).
    pub max_connections: usize,
    /// Envoy in Kuma's gateway rejects header names containing `_`; this lets them through.
    pub allow_underscore_headers: bool,
    /// Largest request head accepted, in bytes (431 above it).
    pub max_header_bytes: usize,
    /// Most header fields accepted (431 above it).
    pub max_header_count: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            tcp_idle_timeout: Duration::from_secs(300),
            max_connections: 0,
            allow_underscore_headers: false,
            max_header_bytes: 64 * 1024,
            max_header_count: 100,
        }
    }
}
