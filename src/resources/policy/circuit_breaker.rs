//! MeshCircuitBreaker `default`
//! (K:`pkg/plugins/policies/meshcircuitbreaker/api/v1alpha1/meshcircuitbreaker.go`).

use crate::resources::common::IntOrString;
use serde::Deserialize;

pub type MeshCircuitBreaker = super::PolicySpec<CircuitBreakerConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConf {
    pub connection_limits: Option<ConnectionLimits>,
    pub outlier_detection: Option<OutlierDetection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionLimits {
    pub max_connections: Option<i64>,
    pub max_connection_pools: Option<i64>,
    pub max_pending_requests: Option<i64>,
    pub max_requests: Option<i64>,
    pub max_retries: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    pub disabled: Option<bool>,
    pub interval: Option<String>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_percent: Option<i64>,
    pub split_external_and_local_errors: Option<bool>,
    pub healthy_panic_threshold: Option<IntOrString>,
    pub detectors: Option<Detectors>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detectors {
    pub total_failures: Option<Consecutive>,
    pub gateway_failures: Option<Consecutive>,
    pub local_origin_failures: Option<Consecutive>,
    pub success_rate: Option<SuccessRate>,
    pub failure_percentage: Option<FailurePercentage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Consecutive {
    pub consecutive: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessRate {
    pub minimum_hosts: Option<i64>,
    pub request_volume: Option<i64>,
    pub standard_deviation_factor: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePercentage {
    pub minimum_hosts: Option<i64>,
    pub request_volume: Option<i64>,
    pub threshold: Option<i64>,
}
