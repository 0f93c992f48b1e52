//! Runtime settings that are not Kuma resources: command-line knobs for the proxy's own
//! protections and logging (issue 4). Defaults follow Kuma's gateway where it has one.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Time a TLS client has to send its ClientHello on a TLS port (`--header-timeout`; on
    /// HTTP ports the flag is the default of MeshTimeout's `requestHeadersTimeout`, see
    /// `compile::ListenerDefaults`).
    pub header_timeout: Duration,
    /// Process-wide cap on downstream connections (0 = none).
    pub max_connections: usize,
    /// Envoy in Kuma's gateway rejects header names containing `_`; this lets them through.
    pub allow_underscore_headers: bool,
    /// gzip responses as Kuma's gateway does (`--compression off` turns it off).
    pub compression: bool,
    /// Answer HTTP/1.0 requests 426 as Kuma's gateway (Envoy) does; meshgate serves them
    /// unless `--http10 reject`.
    pub reject_http10: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_timeout: Duration::from_secs(10),
            max_connections: 0,
            allow_underscore_headers: false,
            compression: true,
            reject_http10: false,
        }
    }
}
