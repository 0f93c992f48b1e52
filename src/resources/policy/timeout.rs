//! MeshTimeout `default` (K:`pkg/plugins/policies/meshtimeout/api/v1alpha1/meshtimeout.go`).
//! Durations are Go duration strings (`2s`, `500ms`, `1m30s`).

use serde::Deserialize;

pub type MeshTimeout = super::PolicySpec<TimeoutConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    pub connection_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub http: Option<HttpTimeouts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeouts {
    pub request_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub max_stream_duration: Option<String>,
    pub max_connection_duration: Option<String>,
    pub request_headers_timeout: Option<String>,
}
