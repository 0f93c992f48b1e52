//! `targetRef` after validation (Kuma `common_api.TargetRef`).

use crate::resources::common::Tags;

/// What a route's or policy's `targetRef` (or a `to[]` entry's) selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetRef {
    /// `Mesh`, optionally limited to proxy types (`Gateway`, `Sidecar`).
    Mesh { proxy_types: Option<Vec<ProxyType>> },
    /// `MeshSubset`: the proxies (for a gateway: the listeners) whose tags include `tags`.
    MeshSubset {
        tags: Tags,
        proxy_types: Option<Vec<ProxyType>>,
    },
    /// `MeshGateway NAME`, optionally limited to the listeners whose tags include `tags`.
    MeshGateway { name: String, tags: Tags },
    /// `MeshService NAME` (legacy `kuma.io/service` or a real MeshService).
    MeshService { name: String },
    /// `MeshServiceSubset NAME` with `tags`.
    MeshServiceSubset { name: String, tags: Tags },
    /// `MeshExternalService NAME`.
    MeshExternalService { name: String },
    /// `MeshHTTPRoute NAME`.
    MeshHttpRoute { name: String },
    /// Any other kind (`Dataplane`, `MeshMultiZoneService`, ...).
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
            TargetRef::MeshSubset { .. } => "MeshSubset",
            TargetRef::MeshGateway { .. } => "MeshGateway",
            TargetRef::MeshService { .. } => "MeshService",
            TargetRef::MeshServiceSubset { .. } => "MeshServiceSubset",
            TargetRef::MeshExternalService { .. } => "MeshExternalService",
            TargetRef::MeshHttpRoute { .. } => "MeshHTTPRoute",
            TargetRef::Other { kind, .. } => kind,
        }
    }

    /// Kuma's order of top-level kinds, least specific first
    /// (K:`api/common/v1alpha1/targetref.go` `order`).
    pub fn specificity(&self) -> u8 {
        match self.kind() {
            "Mesh" => 0,
            "Dataplane" => 1,
            "MeshSubset" => 2,
            "MeshGateway" => 3,
            "MeshService" => 4,
            "MeshExternalService" => 5,
            "MeshMultiZoneService" => 6,
            "MeshServiceSubset" => 7,
            "MeshHTTPRoute" => 8,
            _ => 0,
        }
    }

    /// Does a `proxyTypes` list let this target select a gateway (absent: every proxy)?
    fn gateway_proxy(proxy_types: &Option<Vec<ProxyType>>) -> bool {
        proxy_types
            .as_ref()
            .is_none_or(|p| p.contains(&ProxyType::Gateway))
    }

    /// Kuma's `IncludesGateways`: could this top-level target select a built-in gateway?
    pub fn includes_gateways(&self) -> bool {
        match self {
            TargetRef::Mesh { proxy_types } | TargetRef::MeshSubset { proxy_types, .. } => {
                Self::gateway_proxy(proxy_types)
            }
            TargetRef::MeshGateway { .. } | TargetRef::MeshHttpRoute { .. } => true,
            _ => false,
        }
    }

    /// Does this top-level target select a listener of `gateway` whose merged tags are
    /// `listener_tags` (Kuma's `DppSelectedByPolicy` for a built-in gateway)? A
    /// `MeshHTTPRoute` target is resolved by the caller through the route.
    pub fn selects_listener(&self, gateway: &str, listener_tags: &Tags) -> bool {
        let has = |tags: &Tags| {
            tags.iter()
                .all(|(k, v)| listener_tags.get(k).is_some_and(|t| v == "*" || t == v))
        };
        let service = |name: &str| {
            listener_tags
                .get("kuma.io/service")
                .is_some_and(|s| s == name)
        };
        match self {
            TargetRef::Mesh { proxy_types } => Self::gateway_proxy(proxy_types),
            TargetRef::MeshSubset { tags, proxy_types } => {
                Self::gateway_proxy(proxy_types) && has(tags)
            }
            TargetRef::MeshGateway { name, tags } => name == gateway && has(tags),
            TargetRef::MeshService { name } => service(name),
            TargetRef::MeshServiceSubset { name, tags } => service(name) && has(tags),
            _ => false,
        }
    }

    /// Does this top-level target select a MeshGateway named `gateway` at all?
    pub fn selects_gateway(&self, gateway: &str) -> bool {
        match self {
            TargetRef::Mesh { proxy_types } => Self::gateway_proxy(proxy_types),
            TargetRef::MeshGateway { name, .. } => name == gateway,
            _ => false,
        }
    }

    /// The number of listener tags a MeshGateway target names (more = higher priority).
    pub fn listener_tag_count(&self) -> usize {
        match self {
            TargetRef::MeshGateway { tags, .. } => tags.len(),
            _ => 0,
        }
    }
}
