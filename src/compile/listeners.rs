//! The gateway this process serves and its listeners (semantics §3.1–3.4): which MeshGateway,
//! its identity in the mesh, each listener's effective tags, and which routes attach to it.

use crate::model::gateway::Listener;
use crate::model::{Gateway, TargetRef, Valid, ValidSet};
use crate::resources::common::Tags;
use crate::resources::Meta;
use crate::snapshot::{hostname, GatewayIdentity, ListenerInfo};
use crate::violation::Violation;
use std::sync::Arc;

/// The MeshGateway named by `--gateway`, or the only one.
pub fn select_gateway<'a>(
    set: &'a ValidSet,
    wanted: Option<&str>,
) -> Result<&'a Valid<Gateway>, Vec<Violation>> {
    match wanted {
        Some(name) => {
            let found: Vec<_> = set
                .gateways
                .iter()
                .filter(|g| g.meta.name == name)
                .collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(vec![Violation::global(format!(
                    "MeshGateway {name:?} (--gateway) not found"
                ))]),
                _ => Err(vec![Violation::global(format!(
                    "several MeshGateways are named {name:?} (in different meshes)"
                ))]),
            }
        }
        None => match set.gateways.as_slice() {
            [one] => Ok(one),
            [] => Err(vec![Violation::global("no MeshGateway found")]),
            several => {
                let names: Vec<String> = several.iter().map(|g| g.meta.name.clone()).collect();
                Err(vec![Violation::global(format!(
                    "several MeshGateways ({}); choose one with --gateway NAME",
                    names.join(", ")
                ))])
            }
        },
    }
}

/// `networking.gateway.tags` of the builtin gateway Dataplane the MeshGateway selects.
pub fn gateway_dataplane_tags(set: &ValidSet, gw: &Valid<Gateway>) -> Tags {
    for dp in set
        .dataplanes
        .iter()
        .filter(|d| d.meta.mesh == gw.meta.mesh)
    {
        let Some(g) = dp.spec.gateway.as_ref().filter(|g| g.builtin) else {
            continue;
        };
        if gw.spec.selectors.iter().any(|s| tags_match(s, &g.tags)) {
            return g.tags.clone();
        }
    }
    Tags::new()
}

/// The gateway's identity in its mesh: its `kuma.io/service` comes from its Dataplane, else
/// its selector, else its name.
pub fn identity(gw: &Valid<Gateway>, dataplane_tags: &Tags) -> GatewayIdentity {
    let service = dataplane_tags
        .get("kuma.io/service")
        .cloned()
        .or_else(|| {
            gw.spec
                .selectors
                .first()
                .and_then(|s| s.get("kuma.io/service").cloned())
        })
        .unwrap_or_else(|| gw.meta.name.clone());
    GatewayIdentity {
        name: gw.meta.name.clone(),
        mesh: gw.meta.mesh.clone(),
        kuma_tags: http::HeaderValue::from_str(&format!("&kuma.io/service={service}&"))
            .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        service,
    }
}

/// Kuma's `TagSelector.Matches`: every selector pair present, `*` matches any value.
pub fn tags_match(selector: &Tags, tags: &Tags) -> bool {
    selector
        .iter()
        .all(|(k, v)| tags.get(k).is_some_and(|t| v == "*" || t == v))
}

/// A listener with what compiling it needs.
pub struct PlannedListener<'a> {
    pub spec: &'a Listener,
    pub info: Arc<ListenerInfo>,
    /// Dataplane gateway tags ⊕ MeshGateway tags ⊕ listener tags (later wins).
    pub tags: Tags,
}

pub fn plan<'a>(gw: &'a Valid<Gateway>, dataplane_tags: &Tags) -> Vec<PlannedListener<'a>> {
    gw.spec
        .listeners
        .iter()
        .map(|l| {
            let mut tags = dataplane_tags.clone();
            tags.extend(gw.spec.tags.clone());
            tags.extend(l.tags.clone());
            let label = if l.hostname == hostname::ANY {
                l.port.to_string()
            } else {
                format!("{}/{}", l.port, l.hostname)
            };
            PlannedListener {
                spec: l,
                info: Arc::new(ListenerInfo {
                    port: l.port,
                    protocol: l.protocol,
                    hostname: l.hostname.clone(),
                    label,
                }),
                tags,
            }
        })
        .collect()
}

/// Does a route's top-level targetRef attach it to listener `l` of `gateway` (§3.4)?
pub fn attaches(meta: &Meta, target: &TargetRef, gateway: &Meta, l: &PlannedListener) -> bool {
    match target {
        TargetRef::MeshGateway { name, tags } => {
            meta.mesh == gateway.mesh && *name == gateway.name && tags_match(tags, &l.tags)
        }
        _ => false,
    }
}
