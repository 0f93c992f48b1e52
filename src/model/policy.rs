//! Kuma policies after validation.

use super::target::TargetRef;
use std::time::Duration;

/// A `to[]` (or `from[]`, `rules[]`) entry: what it targets and its `default` conf.
#[derive(Debug, Clone)]
pub struct Entry<C> {
    pub target: TargetRef,
    pub conf: C,
}

#[derive(Debug, Clone)]
pub struct MeshTimeout {
    pub target: TargetRef,
    pub to: Vec<Entry<TimeoutConf>>,
}

/// MeshTimeout `default`: every field optional, `Some(ZERO)` where Kuma allows `0s` (off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutConf {
    pub connection_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub stream_idle_timeout: Option<Duration>,
    pub max_stream_duration: Option<Duration>,
    pub max_connection_duration: Option<Duration>,
    pub request_headers_timeout: Option<Duration>,
}
