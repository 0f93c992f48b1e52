//! The MeshTimeout settings of a route's upstream requests.

use crate::model::policy::MeshTimeout;
use crate::model::{TargetRef, Valid};
use crate::resources::Meta;
use crate::snapshot::timeouts::Timeouts;

/// The MeshTimeout settings that apply to `route` of `gateway`: Mesh-wide, then MeshGateway,
/// then MeshHTTPRoute policies, each more specific level overriding field by field (within a
/// level, a greater policy name overriding a smaller one).
pub fn for_route(policies: &[Valid<MeshTimeout>], gateway: &Meta, route: &str) -> Timeouts {
    let mut ranked: Vec<(u8, &Valid<MeshTimeout>)> = policies
        .iter()
        .filter(|t| t.meta.mesh == gateway.mesh)
        .filter_map(|t| {
            let rank = match &t.spec.target {
                target @ TargetRef::Mesh { .. } => {
                    target.selects_gateway(&gateway.name).then_some(0)?
                }
                TargetRef::MeshGateway { name, .. } if *name == gateway.name => 1,
                TargetRef::MeshHttpRoute { name } if name == route => 2,
                _ => return None,
            };
            Some((rank, t))
        })
        .collect();
    ranked.sort_by(|a, b| (a.0, &a.1.meta.name).cmp(&(b.0, &b.1.meta.name)));
    let mut out = Timeouts::default();
    for (_, policy) in ranked {
        for to in &policy.spec.to {
            if !matches!(to.target, TargetRef::Mesh { .. }) {
                continue; // per-backend targets are not applied on the gateway
            }
            let conf = &to.conf;
            if let Some(d) = conf.connection_timeout {
                out.connect = d;
            }
            if let Some(d) = conf.request_timeout {
                out.request = (!d.is_zero()).then_some(d);
            }
            if let Some(d) = conf.stream_idle_timeout {
                out.stream_idle = (!d.is_zero()).then_some(d);
            }
        }
    }
    out
}
