//! What backends resolve through, after validation: Dataplanes, MeshServices,
//! MeshExternalServices, and the Secrets certificates come from.

use super::gateway::DataSource;
use crate::resources::common::Tags;

#[derive(Debug, Clone)]
pub struct Dataplane {
    /// `networking.gateway`, for a gateway Dataplane.
    pub gateway: Option<GatewayDataplane>,
    pub inbounds: Vec<Inbound>,
}

#[derive(Debug, Clone)]
pub struct GatewayDataplane {
    /// `type: BUILTIN`.
    pub builtin: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone)]
pub struct Inbound {
    /// The inbound's address, else the Dataplane's: an IP or a DNS name.
    pub address: String,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub tags: Tags,
    /// `health.ready` is not false and `state` is Ready (or unset).
    pub healthy: bool,
}

#[derive(Debug, Clone)]
pub struct MeshService {
    pub selector: ServiceSelector,
    pub ports: Vec<ServicePort>,
}

/// Which Dataplanes a MeshService selects; every part that is set must match.
#[derive(Debug, Clone, Default)]
pub struct ServiceSelector {
    pub dataplane_tags: Option<Tags>,
    pub dataplane_name: Option<String>,
    pub dataplane_labels: Option<Tags>,
}

#[derive(Debug, Clone)]
pub struct ServicePort {
    pub port: u16,
    pub name: Option<String>,
    pub target: TargetPort,
    /// `appProtocol` is `http2` or `grpc`: the backend speaks HTTP/2.
    pub h2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    /// An inbound's `name`.
    Name(String),
}

#[derive(Debug, Clone)]
pub struct ExternalService {
    /// `match.protocol` is `http2` or `grpc`.
    pub h2: bool,
    /// `(address, port)`: an IP or a DNS name.
    pub endpoints: Vec<(String, u16)>,
    pub tls: Option<ExternalTls>,
}

#[derive(Debug, Clone)]
pub struct ExternalTls {
    pub enabled: bool,
    pub verify_cert: bool,
    pub verify_hostname: bool,
    pub server_name: Option<String>,
    pub ca_cert: Option<DataSource>,
}

#[derive(Debug, Clone)]
pub struct Secret {
    /// The decoded secret bytes.
    pub data: Vec<u8>,
}
