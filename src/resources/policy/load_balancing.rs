//! MeshLoadBalancingStrategy `default`
//! (K:`pkg/plugins/policies/meshloadbalancingstrategy/api/v1alpha1/meshloadbalancingstrategy.go`).

use serde::Deserialize;

pub type MeshLoadBalancingStrategy = super::PolicySpec<LoadBalancingConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancingConf {
    pub load_balancer: Option<LoadBalancer>,
    pub hash_policies: Option<Vec<HashPolicy>>,
    /// Zones and affinity: validated loosely, never applied (no zones standalone).
    pub locality_awareness: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub round_robin: Option<serde_norway::Value>,
    pub random: Option<serde_norway::Value>,
    pub least_request: Option<LeastRequest>,
    pub ring_hash: Option<RingHash>,
    pub maglev: Option<Maglev>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeastRequest {
    pub choice_count: Option<i64>,
    pub active_request_bias: Option<crate::resources::common::IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    pub hash_function: Option<String>,
    pub min_ring_size: Option<i64>,
    pub max_ring_size: Option<i64>,
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maglev {
    pub table_size: Option<i64>,
    pub hash_policies: Option<Vec<HashPolicy>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashPolicy {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub terminal: Option<bool>,
    pub header: Option<Named>,
    pub cookie: Option<Cookie>,
    pub connection: Option<Connection>,
    pub query_parameter: Option<Named>,
    pub filter_state: Option<FilterState>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Named {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cookie {
    pub name: Option<String>,
    pub ttl: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    #[serde(rename = "sourceIP")]
    pub source_ip: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterState {
    pub key: Option<String>,
}
