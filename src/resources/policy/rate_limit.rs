//! MeshRateLimit `default` (K:`pkg/plugins/policies/meshratelimit/api/v1alpha1/meshratelimit.go`).

use crate::resources::http_route::HeaderModifier;
use serde::Deserialize;

pub type MeshRateLimit = super::PolicySpec<RateLimitConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConf {
    pub local: Option<Local>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Local {
    pub http: Option<LocalHttp>,
    pub tcp: Option<LocalTcp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalHttp {
    pub disabled: Option<bool>,
    pub request_rate: Option<Rate>,
    pub on_rate_limit: Option<OnRateLimit>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalTcp {
    pub disabled: Option<bool>,
    pub connection_rate: Option<Rate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rate {
    pub num: Option<i64>,
    pub interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnRateLimit {
    pub status: Option<i64>,
    /// `set` and `add` as in a header modifier filter (no `remove`).
    pub headers: Option<HeaderModifier>,
}
