//! MeshTimeout confs → the timeouts of a listener, a route and a cluster (spec §4.1). A
//! field no policy sets keeps Kuma's gateway default (meshgate's flag for the listener's
//! header and idle timeouts); `0s` turns a timeout off.

use super::ListenerDefaults;
use crate::model::policy::TimeoutConf;
use crate::snapshot::cluster::ClusterConf;
use crate::snapshot::timeouts::{defaults, ListenerTimeouts, RouteTimeouts};
use std::time::Duration;

/// `Some(0)` (a policy's `0s`) means off.
fn off_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn pick(policy: Option<Duration>, default: Option<Duration>) -> Option<Duration> {
    match policy {
        Some(d) => off_if_zero(d),
        None => default,
    }
}

/// The inbound side of an HTTP(S) port.
pub fn listener(inbound: Option<&TimeoutConf>, d: &ListenerDefaults) -> ListenerTimeouts {
    let http = |f: fn(&crate::model::policy::timeout::HttpTimeouts) -> Option<Duration>| {
        inbound.and_then(|c| c.http(f))
    };
    ListenerTimeouts {
        request_headers: pick(http(|h| h.request_headers_timeout), Some(d.request_headers)),
        idle: pick(inbound.and_then(|c| c.idle_timeout), Some(d.idle)),
        stream_idle: pick(
            http(|h| h.stream_idle_timeout),
            Some(defaults::LISTENER_STREAM_IDLE),
        ),
        request: pick(http(|h| h.request_timeout), None),
    }
}

/// The inbound idle timeout of a TCP or TLS port.
pub fn tcp_idle(inbound: Option<&TimeoutConf>, d: &ListenerDefaults) -> Option<Duration> {
    pick(inbound.and_then(|c| c.idle_timeout), Some(d.tcp_idle))
}

/// A route's timeouts from its merged `to` conf.
pub fn route(conf: Option<&TimeoutConf>) -> RouteTimeouts {
    let base = RouteTimeouts::default();
    let Some(http) = conf.and_then(|c| c.http.as_ref()) else {
        return base;
    };
    RouteTimeouts {
        request: pick(http.request_timeout, base.request),
        stream_idle: pick(http.stream_idle_timeout, base.stream_idle),
    }
}

/// A destination's cluster settings from the `to` confs covering it.
pub fn cluster(conf: Option<&TimeoutConf>) -> ClusterConf {
    let base = ClusterConf::default();
    let Some(c) = conf else { return base };
    ClusterConf {
        connect_timeout: c.connection_timeout.unwrap_or(base.connect_timeout),
        idle_timeout: pick(c.idle_timeout, base.idle_timeout),
        max_stream_duration: pick(c.http(|h| h.max_stream_duration), None),
        max_connection_duration: pick(c.http(|h| h.max_connection_duration), None),
        ..base
    }
}
