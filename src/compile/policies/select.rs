//! Which policies apply to a port and to a route, in Kuma's priority order (spec §2, §3.1),
//! and their `default` confs merged (§3.2).
//!
//! Order, lowest priority first (K:`core/matchers/dataplane.go` `SortByTargetRef`): the
//! top-level kind (`Mesh` < `MeshSubset` < `MeshGateway` < `MeshService` < ... <
//! `MeshHTTPRoute`), then for `MeshGateway` the number of listener tags (a listener-scoped
//! policy beats a gateway-wide one), then the name *inverted* — the lexicographically
//! smaller name wins (the `kuma.io/display-name` label when set).
//!
//! Scope is per port (spec §2): a policy selecting one listener by tags applies to every
//! listener hostname sharing that port, as Kuma keys gateway rules by `address:port`.

use crate::model::policy::{merged, Merge, Policy};
use crate::model::{TargetRef, Valid};
use crate::resources::common::Tags;
use crate::resources::Meta;
use foldhash::HashMap;
use std::cmp::Reverse;

const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// The name Kuma orders policies by.
pub fn display_name(meta: &Meta) -> &str {
    meta.labels
        .get(DISPLAY_NAME_LABEL)
        .map_or(meta.name.as_str(), String::as_str)
}

/// `Kind/name`, as `/config` and warnings show a policy.
pub fn label(meta: &Meta) -> String {
    meta.display_name()
}

fn priority<C>(p: &Valid<Policy<C>>) -> (u8, usize, Reverse<&str>) {
    (
        p.spec.target.specificity(),
        p.spec.target.listener_tag_count(),
        Reverse(display_name(&p.meta)),
    )
}

/// The policies of one kind selecting one port: the port-wide ones and, per route name, the
/// ones targeting that MeshHTTPRoute; each list lowest priority first.
pub struct Ranked<'a, C> {
    pub port: Vec<&'a Valid<Policy<C>>>,
    pub by_route: HashMap<&'a str, Vec<&'a Valid<Policy<C>>>>,
}

impl<'a, C> Ranked<'a, C> {
    /// The policies of `policies` that select a listener of `gateway` on this port, whose
    /// listeners' merged tags are `listener_tags`.
    pub fn select(
        policies: &'a [Valid<Policy<C>>],
        gateway: &Meta,
        listener_tags: &[&Tags],
    ) -> Self {
        let mut port = Vec::new();
        let mut by_route: HashMap<&'a str, Vec<&'a Valid<Policy<C>>>> = HashMap::default();
        for p in policies {
            if p.meta.mesh != gateway.mesh || p.spec.shadow {
                continue;
            }
            match &p.spec.target {
                TargetRef::MeshHttpRoute { name } => {
                    by_route.entry(name.as_str()).or_default().push(p);
                }
                target => {
                    if listener_tags
                        .iter()
                        .any(|tags| target.selects_listener(&gateway.name, tags))
                    {
                        port.push(p);
                    }
                }
            }
        }
        port.sort_by(|a, b| priority(a).cmp(&priority(b)));
        for list in by_route.values_mut() {
            list.sort_by(|a, b| priority(a).cmp(&priority(b)));
        }
        Ranked { port, by_route }
    }

    /// The route-level policies of the route named `route`, if any.
    pub fn for_route(&self, route: &str) -> &[&'a Valid<Policy<C>>] {
        self.by_route.get(route).map_or(&[], Vec::as_slice)
    }
}

/// The `to[]` confs that cover every destination (`targetRef: Mesh`), in priority order.
pub fn mesh_entries<'a, C>(
    ranked: impl IntoIterator<Item = &'a &'a Valid<Policy<C>>>,
) -> impl Iterator<Item = &'a C>
where
    C: 'a,
{
    ranked.into_iter().flat_map(|p| {
        p.spec
            .to
            .iter()
            .filter(|t| matches!(t.target, TargetRef::Mesh { .. }))
            .map(|t| &t.conf)
    })
}

/// A destination as `to[].targetRef: {kind: MeshService, name}` names it: a
/// `kuma.io/service` value or a real MeshService. (MeshExternalService entries have no
/// effect on a gateway, as in Kuma: see `super::warnings`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination<'a>(pub &'a str);

/// The `to[]` confs that cover `dest`, merged: per policy (in priority order) its `Mesh`
/// entries first, then the ones naming the destination, each in declaration order (spec
/// §3.2, recommendation 8).
pub fn merged_for<'a, C: Merge + Clone + 'a>(
    ranked: &[&'a Valid<Policy<C>>],
    dest: Destination,
) -> Option<C> {
    let mut confs: Vec<&C> = Vec::new();
    for p in ranked {
        confs.extend(
            p.spec
                .to
                .iter()
                .filter(|t| matches!(t.target, TargetRef::Mesh { .. }))
                .map(|t| &t.conf),
        );
        confs.extend(
            p.spec
                .to
                .iter()
                .filter(|t| matches!(&t.target, TargetRef::MeshService { name } if name == dest.0))
                .map(|t| &t.conf),
        );
    }
    merged(confs)
}

/// The inbound confs (`from[]`, catch-all `rules[]`), merged in priority order.
pub fn merged_inbound<C: Merge + Clone>(ranked: &[&Valid<Policy<C>>]) -> Option<C> {
    merged(ranked.iter().flat_map(|p| p.spec.inbound.iter()))
}

/// The `Mesh` `to[]` confs of the port, then of the route-level policies, merged.
pub fn merged_route<C: Merge + Clone>(
    port: &[&Valid<Policy<C>>],
    route: &[&Valid<Policy<C>>],
) -> Option<C> {
    merged(mesh_entries(port).chain(mesh_entries(route)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::TimeoutConf;
    use crate::testkit::valid_set;
    use std::time::Duration;

    const POLICIES: &str = r#"
type: MeshTimeout
name: b-mesh
mesh: default
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 1s, idleTimeout: 1s}}]
---
type: MeshTimeout
name: z-gateway
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 2s}}]
---
type: MeshTimeout
name: a-gateway
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s}}]
---
type: MeshTimeout
name: tagged
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw, tags: {port: http-2}}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 4s}}]
---
type: MeshTimeout
name: sidecars
mesh: default
spec:
  targetRef: {kind: Mesh, proxyTypes: [Sidecar]}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 9s}}]
---
type: MeshTimeout
name: other-mesh
mesh: other
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 9s}}]
"#;

    fn gateway() -> Meta {
        valid_set(
            "type: MeshGateway\nname: gw\nmesh: default\nselectors: [{match: {kuma.io/service: gw}}]\nconf: {listeners: [{port: 8080, protocol: HTTP}]}\n",
        )
        .gateways[0]
        .meta
        .clone()
    }

    fn tags(port: &str) -> Tags {
        [("port".to_string(), port.to_string())]
            .into_iter()
            .collect()
    }

    fn names<'a>(r: &Ranked<'a, TimeoutConf>) -> Vec<&'a str> {
        r.port.iter().map(|p| p.meta.name.as_str()).collect()
    }

    #[test]
    fn order_is_kind_then_listener_tags_then_smaller_name_last() {
        let set = valid_set(POLICIES);
        let port1 = tags("http-1");
        let r = Ranked::select(&set.policies.timeouts, &gateway(), &[&port1]);
        assert_eq!(names(&r), ["b-mesh", "z-gateway", "a-gateway"]);
        let merged: TimeoutConf = merged_route(&r.port, &[]).expect("confs");
        assert_eq!(merged.connection_timeout, Some(Duration::from_secs(3)));
        assert_eq!(merged.idle_timeout, Some(Duration::from_secs(1)), "merged");

        let port2 = tags("http-2");
        let r = Ranked::select(&set.policies.timeouts, &gateway(), &[&port2]);
        assert_eq!(names(&r), ["b-mesh", "z-gateway", "a-gateway", "tagged"]);
    }
}
