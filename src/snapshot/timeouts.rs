//! The timeouts a route's upstream requests run under.

use std::time::Duration;

/// Per-route upstream timeouts (semantics §8.1): Kuma's gateway defaults, overridden by
/// MeshTimeout policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Whole request (Envoy's route timeout); `None` = disabled.
    pub request: Option<Duration>,
    /// Longest silence on the upstream stream; `None` = disabled.
    pub stream_idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Some(Duration::from_secs(15)),
            stream_idle: Some(Duration::from_secs(5)),
        }
    }
}

impl Timeouts {
    /// Pingora times each upstream read; the tighter of the two limits is the read timeout,
    /// and which one it is decides the 504 body Envoy would send.
    pub fn read_timeout(&self) -> (Option<Duration>, &'static str) {
        match (self.request, self.stream_idle) {
            (Some(r), Some(i)) if r < i => (Some(r), "upstream request timeout"),
            (Some(r), None) => (Some(r), "upstream request timeout"),
            (_, Some(i)) => (Some(i), "stream timeout"),
            (None, None) => (None, "stream timeout"),
        }
    }
}
