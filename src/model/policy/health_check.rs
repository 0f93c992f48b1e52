//! MeshHealthCheck `default` (K:`pkg/plugins/policies/meshhealthcheck/api/v1alpha1`; spec §6).

use crate::merge_fields;
use http::{HeaderName, HeaderValue};
use std::time::Duration;

/// A percentage kept exactly, in hundredths of a percent (`50.5` → 5050), so confs can be
/// compared and hashed.
pub type Hundredths = u32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HealthCheckConf {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub initial_jitter: Option<Duration>,
    pub interval_jitter: Option<Duration>,
    pub interval_jitter_percent: Option<u32>,
    pub healthy_panic_threshold: Option<Hundredths>,
    pub fail_traffic_on_panic: Option<bool>,
    pub no_traffic_interval: Option<Duration>,
    pub event_log_path: Option<String>,
    pub always_log_health_check_failures: Option<bool>,
    pub reuse_connection: Option<bool>,
    pub tcp: Option<TcpCheck>,
    pub http: Option<HttpCheck>,
    pub grpc: Option<GrpcCheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TcpCheck {
    pub disabled: Option<bool>,
    /// Written as literal text (Kuma's code hex-encodes the raw string for Envoy).
    pub send: Option<String>,
    pub receive: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    pub disabled: Option<bool>,
    pub path: Option<String>,
    pub request_headers_to_add: Option<CheckHeaders>,
    pub expected_statuses: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CheckHeaders {
    pub set: Option<Vec<(HeaderName, HeaderValue)>>,
    pub add: Option<Vec<(HeaderName, HeaderValue)>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GrpcCheck {
    pub disabled: Option<bool>,
    pub service_name: Option<String>,
    pub authority: Option<String>,
}

merge_fields!(HealthCheckConf {
    replace: [
        interval,
        timeout,
        unhealthy_threshold,
        healthy_threshold,
        initial_jitter,
        interval_jitter,
        interval_jitter_percent,
        healthy_panic_threshold,
        fail_traffic_on_panic,
        no_traffic_interval,
        event_log_path,
        always_log_health_check_failures,
        reuse_connection,
    ],
    nested: [tcp, http, grpc],
});
merge_fields!(TcpCheck {
    replace: [disabled, send, receive],
    nested: []
});
merge_fields!(HttpCheck {
    replace: [disabled, path, expected_statuses],
    nested: [request_headers_to_add],
});
merge_fields!(CheckHeaders {
    replace: [set, add],
    nested: []
});
merge_fields!(GrpcCheck {
    replace: [disabled, service_name, authority],
    nested: []
});
