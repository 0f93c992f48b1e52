//! Merging the routes attached to one listener (semantics §4.7, §7.2).
//!
//! Kuma groups `to[]` entries by hostname (exact string; no hostnames = the generic group `*`)
//! and concatenates their rules in priority order, merging rules whose `matches` are deep-equal
//! as written with a JSON merge-patch of `default` (the higher priority's `backendRefs` /
//! `filters` replace the lower's when present). Priority, lowest first:
//! - routes by name ascending (Kuma's store order; a greater name wins — code-derived, the docs
//!   say the opposite; see semantics §4.7 and Appendix B.2),
//! - `to[]` entries in order (a later entry wins),
//! - rules of one `to[]` in reverse (the first of two identical rules wins).
//!
//! The merged rules keep their declaration order, which is the tie-breaker after Kuma's sort.

use super::reuse::RulePos;
use crate::model::route::{BackendRef, Filter, HttpMatch, HttpRoute, TcpRoute};
use crate::model::{SourceId, Valid};
use crate::resources::http_route::HttpMatch as RawMatch;
use foldhash::HashMap;
use std::collections::BTreeMap;

/// A rule after merging, borrowing from the routes (a rebuild compiles every rule of the
/// directory: copying them here was a quarter of a 10,000-rule rebuild).
#[derive(Debug, Clone)]
pub struct MergedRule<'a> {
    pub matches: &'a [HttpMatch],
    /// Where the matches were written (the rule's identity across builds).
    pub matches_pos: RulePos,
    pub conf: MergedConf<'a>,
    /// The route whose rule won the merge (metrics, access log).
    pub route_name: &'a str,
    /// Other routes with a rule of identical matches merged into this one: Kuma applies a
    /// route-level policy by the rule's matches, so theirs apply too (usually empty).
    pub other_routes: Vec<&'a str>,
    /// Declaration position: (route, to[] entry, rule).
    pub order: (usize, usize, usize),
}

/// A rule's `default` after the merge-patch: each field from the highest-priority rule that
/// set it, with where that rule was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergedConf<'a> {
    pub filters: Option<(&'a [Filter], RulePos)>,
    pub backend_refs: Option<(&'a [BackendRef], RulePos)>,
}

impl<'a> MergedConf<'a> {
    /// Filters, or none.
    pub fn filters(&self) -> &'a [Filter] {
        self.filters.map_or(&[], |(f, _)| f)
    }

    /// Backend references, or none.
    pub fn backend_refs(&self) -> &'a [BackendRef] {
        self.backend_refs.map_or(&[], |(b, _)| b)
    }
}

/// Rule groups keyed by route hostname (`*` = generic).
pub type RuleGroups<'a> = BTreeMap<String, Vec<MergedRule<'a>>>;

/// `routes` must be sorted by name ascending.
pub fn merge_http_routes<'a>(routes: &[&'a Valid<HttpRoute>]) -> RuleGroups<'a> {
    // hostname → matches as written (deep equality, as Kuma compares them) → index in the
    // group's list. Keyed by the borrowed matches themselves: serialising each rule's matches
    // to JSON for the key was a tenth of a 10,000-rule rebuild.
    let mut groups: RuleGroups = BTreeMap::new();
    let mut index: HashMap<String, HashMap<&'a [RawMatch], usize>> = HashMap::default();
    for (ri, route) in routes.iter().enumerate() {
        let source = SourceId::of(&route.meta);
        for (ti, to) in route.spec.to.iter().enumerate() {
            let generic = ["*".to_string()];
            let hostnames: &[String] = if to.hostnames.is_empty() {
                &generic
            } else {
                &to.hostnames
            };
            for hostname in hostnames {
                let list = groups.entry(hostname.clone()).or_default();
                let group_index = index.entry(hostname.clone()).or_default();
                for (rule_i, rule) in to.rules.iter().enumerate().rev() {
                    let pos = (source, ti, rule_i);
                    let patch = MergedConf {
                        filters: rule.filters.as_deref().map(|f| (f, pos)),
                        backend_refs: rule.backend_refs.as_deref().map(|b| (b, pos)),
                    };
                    match group_index.get(rule.written_matches.as_slice()) {
                        Some(&i) => {
                            if let Some(existing) = list.get_mut(i) {
                                merge_patch(&mut existing.conf, patch);
                                if existing.route_name != route.meta.name
                                    && !existing.other_routes.contains(&existing.route_name)
                                {
                                    existing.other_routes.push(existing.route_name);
                                }
                                existing.route_name = &route.meta.name;
                                existing.order = existing.order.min((ri, ti, rule_i));
                            }
                        }
                        None => {
                            group_index.insert(&rule.written_matches, list.len());
                            list.push(MergedRule {
                                matches: &rule.matches,
                                matches_pos: pos,
                                conf: patch,
                                route_name: &route.meta.name,
                                other_routes: Vec::new(),
                                order: (ri, ti, rule_i),
                            });
                        }
                    }
                }
            }
        }
    }
    for list in groups.values_mut() {
        list.sort_by_key(|r| r.order);
    }
    groups
}

/// JSON merge-patch of a rule's `default`: fields present in `patch` replace, arrays wholesale.
fn merge_patch<'a>(base: &mut MergedConf<'a>, patch: MergedConf<'a>) {
    if patch.filters.is_some() {
        base.filters = patch.filters;
    }
    if patch.backend_refs.is_some() {
        base.backend_refs = patch.backend_refs;
    }
}

/// MeshTCPRoutes attached to one listener: the highest-priority route's `rules[0]` backendRefs
/// replace the others' (merge-patch of `rules[0]`, §7.2). `routes` sorted by name ascending.
pub fn merge_tcp_routes<'a>(routes: &[&'a Valid<TcpRoute>]) -> &'a [BackendRef] {
    let mut winner: &[BackendRef] = &[];
    for route in routes {
        for to in &route.spec.to {
            if let Some(refs) = &to.backend_refs {
                winner = refs;
            }
        }
    }
    winner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::route::BackendTarget;
    use crate::testkit::valid_set;

    fn service(b: &BackendRef) -> &str {
        match &b.target {
            BackendTarget::Legacy { service, .. } => service,
            other => panic!("a legacy reference, not {other:?}"),
        }
    }

    const TWO_ROUTES: &str = r#"
type: MeshHTTPRoute
name: alpha
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      default:
        filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-from, value: alpha}]}}]
        backendRefs: [{kind: MeshService, name: v1}]
---
type: MeshHTTPRoute
name: beta
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      default:
        backendRefs: [{kind: MeshService, name: v2}]
"#;

    fn routes(yaml: &str) -> Vec<Valid<HttpRoute>> {
        let mut routes = valid_set(yaml).http_routes;
        routes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        routes
    }

    #[test]
    fn identical_matches_merge_greater_name_wins_filters_survive() {
        // §4.7: beta (greater name) replaces backendRefs; alpha's filters survive the patch.
        let r = routes(TWO_ROUTES);
        let refs: Vec<&Valid<HttpRoute>> = r.iter().collect();
        let g = merge_http_routes(&refs);
        let rules = &g["*"];
        assert_eq!(rules.len(), 1);
        let conf = &rules[0].conf;
        assert_eq!(service(&conf.backend_refs()[0]), "v2");
        assert_eq!(conf.filters().len(), 1);
        assert_eq!(rules[0].route_name, "beta");
    }

    #[test]
    fn duplicate_matches_in_one_route_first_wins() {
        let r = routes(
            r#"
type: MeshHTTPRoute
name: r
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: Exact, value: /dup}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
    - matches: [{path: {type: Exact, value: /dup}}]
      default: {backendRefs: [{kind: MeshService, name: v2}]}
"#,
        );
        let refs: Vec<&Valid<HttpRoute>> = r.iter().collect();
        let g = merge_http_routes(&refs);
        let rules = &g["*"];
        assert_eq!(rules.len(), 1);
        assert_eq!(service(&rules[0].conf.backend_refs()[0]), "v1");
    }
}
