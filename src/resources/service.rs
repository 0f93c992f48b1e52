//! `MeshService` and `MeshExternalService`.

use super::common::Tags;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshService {
    pub selector: Option<MeshServiceSelector>,
    #[serde(default)]
    pub ports: Vec<MeshServicePort>,
    /// Managed by Kuma's control plane; accepted and ignored.
    pub identities: Option<serde_norway::Value>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServiceSelector {
    pub dataplane_tags: Option<Tags>,
    pub dataplane_ref: Option<DataplaneRef>,
    pub dataplane_labels: Option<Tags>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataplaneRef {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshServicePort {
    pub port: Option<i64>,
    /// An inbound port number or an inbound name.
    pub target_port: Option<serde_norway::Value>,
    pub app_protocol: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshExternalService {
    #[serde(rename = "match")]
    pub match_: Option<ExternalMatch>,
    #[serde(default)]
    pub endpoints: Vec<ExternalEndpoint>,
    pub tls: Option<ExternalTls>,
    pub extension: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMatch {
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExternalEndpoint {
    pub address: Option<String>,
    pub port: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalTls {
    pub enabled: Option<bool>,
    pub version: Option<serde_norway::Value>,
    pub allow_renegotiation: Option<bool>,
    pub verification: Option<ExternalTlsVerification>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalTlsVerification {
    /// `Secured` (default), `SkipSAN`, `SkipCA`, `SkipAll`.
    pub mode: Option<String>,
    pub server_name: Option<String>,
    pub subject_alt_names: Option<Vec<serde_norway::Value>>,
    pub ca_cert: Option<super::gateway::DataSource>,
    pub client_cert: Option<super::gateway::DataSource>,
    pub client_key: Option<super::gateway::DataSource>,
}
