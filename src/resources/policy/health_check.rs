//! MeshHealthCheck `default` (K:`pkg/plugins/policies/meshhealthcheck/api/v1alpha1/meshhealthcheck.go`).

use crate::resources::common::IntOrString;
use crate::resources::http_route::HeaderModifier;
use serde::Deserialize;

pub type MeshHealthCheck = super::PolicySpec<HealthCheckConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckConf {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_threshold: Option<i64>,
    pub healthy_threshold: Option<i64>,
    pub initial_jitter: Option<String>,
    pub interval_jitter: Option<String>,
    pub interval_jitter_percent: Option<i64>,
    pub healthy_panic_threshold: Option<IntOrString>,
    pub fail_traffic_on_panic: Option<bool>,
    pub no_traffic_interval: Option<String>,
    pub event_log_path: Option<String>,
    pub always_log_health_check_failures: Option<bool>,
    pub reuse_connection: Option<bool>,
    pub tcp: Option<TcpCheck>,
    pub http: Option<HttpCheck>,
    pub grpc: Option<GrpcCheck>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheck {
    pub disabled: Option<bool>,
    pub send: Option<String>,
    pub receive: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheck {
    pub disabled: Option<bool>,
    pub path: Option<String>,
    /// `set` and `add` as in a header modifier filter (no `remove`).
    pub request_headers_to_add: Option<HeaderModifier>,
    pub expected_statuses: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcCheck {
    pub disabled: Option<bool>,
    pub service_name: Option<String>,
    pub authority: Option<String>,
}
