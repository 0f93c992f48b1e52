//! `targetRef` after validation (Kuma `common_api.TargetRef`).

use crate::resources::common::Tags;

/// What a route's or policy's `targetRef` (or a `to[]` entry's) selects. Kinds meshgate
/// never matches on are kept by name so a policy can still be described and ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetRef {
    /// `Mesh`, optionally limited to proxy types (`Gateway`, `Sidecar`).
    Mesh { proxy_types: Option<Vec<ProxyType>> },
    /// `MeshGateway NAME`, optionally limited to the listeners whose tags include `tags`.
    MeshGateway { name: String, tags: Tags },
    /// `MeshHTTPRoute NAME`.
    MeshHttpRoute { name: String },
    /// `MeshService NAME` (legacy `kuma.io/service` or a real MeshService).
    MeshService { name: String },
    /// Any other kind (`MeshSubset`, `Dataplane`, `MeshExternalService`, ...).
    Other { kind: String, name: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyType {
    Gateway,
    Sidecar,
}

impl TargetRef {
    /// An omitted `targetRef` means the whole mesh.
    pub const MESH: TargetRef = TargetRef::Mesh { proxy_types: None };

    pub fn kind(&self) -> &str {
        match self {
            TargetRef::Mesh { .. } => "Mesh",
            TargetRef::MeshGateway { .. } => "MeshGateway",
            TargetRef::MeshHttpRoute { .. } => "MeshHTTPRoute",
            TargetRef::MeshService { .. } => "MeshService",
            TargetRef::Other { kind, .. } => kind,
        }
    }

    /// Does this top-level target select a MeshGateway named `gateway` at all (Kuma's
    /// `IncludesGateways` narrowed to one gateway)?
    pub fn selects_gateway(&self, gateway: &str) -> bool {
        match self {
            TargetRef::Mesh { proxy_types } => proxy_types
                .as_ref()
                .is_none_or(|p| p.contains(&ProxyType::Gateway)),
            TargetRef::MeshGateway { name, .. } => name == gateway,
            _ => false,
        }
    }
}
