//! `MeshGateway` (Kuma `api/mesh/v1alpha1/gateway.proto`).

use super::common::Tags;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshGateway {
    #[serde(default)]
    pub selectors: Vec<Selector>,
    pub tags: Option<Tags>,
    pub conf: Option<GatewayConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "match", default)]
    pub match_tags: Tags,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConf {
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    pub port: Option<i64>,
    pub protocol: Option<String>,
    pub hostname: Option<String>,
    pub tags: Option<Tags>,
    pub tls: Option<ListenerTls>,
    pub cross_mesh: Option<bool>,
    pub resources: Option<ListenerResources>,
}

impl Listener {
    /// `""` and `*` both mean "any host" (Kuma treats them as equal).
    pub fn effective_hostname(&self) -> &str {
        match self.hostname.as_deref() {
            None | Some("") => "*",
            Some(h) => h,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    pub mode: Option<String>,
    #[serde(default)]
    pub certificates: Vec<DataSource>,
    /// Kuma's placeholder; it has no effect.
    pub options: Option<serde_norway::Value>,
}

/// A Kuma datasource: exactly one of the fields is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSource {
    pub secret: Option<String>,
    pub file: Option<String>,
    /// base64 of the bytes.
    pub inline: Option<String>,
    pub inline_string: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerResources {
    pub connection_limit: Option<i64>,
}
