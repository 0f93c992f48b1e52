//! `MeshTCPRoute` (Kuma `pkg/plugins/policies/meshtcproute/api/v1alpha1/meshtcproute.go`).

use super::common::{BackendRef, TargetRef};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTcpRoute {
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Vec<TcpTo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTo {
    pub target_ref: Option<TargetRef>,
    pub rules: Option<Vec<TcpRule>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRule {
    pub default: Option<TcpRuleConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRuleConf {
    pub backend_refs: Option<Vec<BackendRef>>,
}
