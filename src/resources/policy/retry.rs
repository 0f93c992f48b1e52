//! MeshRetry `default` (K:`pkg/plugins/policies/meshretry/api/v1alpha1/meshretry.go`).

use crate::resources::common::Tags;
use crate::resources::http_route::HeaderMatch;
use serde::Deserialize;

pub type MeshRetry = super::PolicySpec<RetryConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConf {
    pub tcp: Option<TcpRetry>,
    pub http: Option<HttpRetry>,
    pub grpc: Option<GrpcRetry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRetry {
    pub max_connect_attempt: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    pub num_retries: Option<i64>,
    pub per_try_timeout: Option<String>,
    pub back_off: Option<BackOff>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    pub retry_on: Option<Vec<String>>,
    pub retriable_response_headers: Option<Vec<HeaderMatch>>,
    pub retriable_request_headers: Option<Vec<HeaderMatch>>,
    pub host_selection: Option<Vec<Predicate>>,
    pub host_selection_max_attempts: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRetry {
    pub num_retries: Option<i64>,
    pub per_try_timeout: Option<String>,
    pub back_off: Option<BackOff>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    pub retry_on: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOff {
    pub base_interval: Option<String>,
    pub max_interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitedBackOff {
    pub reset_headers: Option<Vec<ResetHeader>>,
    pub max_interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetHeader {
    pub name: Option<String>,
    /// `Seconds` or `UnixTimestamp`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    /// `OmitPreviousHosts`, `OmitHostsWithTags`, `OmitPreviousPriorities`.
    pub predicate: Option<String>,
    pub tags: Option<Tags>,
    pub update_frequency: Option<i64>,
}
