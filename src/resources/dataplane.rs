//! `Dataplane` (Kuma `api/mesh/v1alpha1/dataplane.proto`): the backend endpoints and the
//! builtin gateway's own Dataplane. Only the fields a gateway uses are typed; Dataplanes carry
//! many sidecar-only fields, which are accepted and ignored.

use super::common::Tags;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataplane {
    pub networking: Option<Networking>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub address: Option<String>,
    pub advertised_address: Option<String>,
    pub inbound: Option<Vec<Inbound>>,
    pub outbound: Option<Vec<serde_norway::Value>>,
    pub gateway: Option<GatewaySpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    pub port: Option<i64>,
    pub service_port: Option<i64>,
    pub address: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Tags>,
    pub health: Option<Health>,
    pub state: Option<String>,
}

impl Inbound {
    /// Kuma's `GetHealthyInbounds`: `health.ready: false` or a state other than `Ready`
    /// takes the inbound out of load balancing.
    pub fn is_healthy(&self) -> bool {
        let ready = self.health.as_ref().and_then(|h| h.ready).unwrap_or(true);
        let state_ok = matches!(self.state.as_deref(), None | Some("") | Some("Ready"));
        ready && state_ok
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Health {
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// `BUILTIN` or `DELEGATED` (Kuma's default when omitted).
    #[serde(rename = "type")]
    pub gateway_type: Option<String>,
    pub tags: Option<Tags>,
}
