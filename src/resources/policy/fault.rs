//! MeshFaultInjection `default` (K:`pkg/plugins/policies/meshfaultinjection/api/v1alpha1`).

use crate::resources::common::IntOrString;
use serde::Deserialize;

pub type MeshFaultInjection = super::PolicySpec<FaultConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConf {
    pub http: Option<Vec<Fault>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
    pub response_bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    pub http_status: Option<i64>,
    pub percentage: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    pub value: Option<String>,
    pub percentage: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bandwidth {
    pub limit: Option<String>,
    pub percentage: Option<IntOrString>,
}
