//! Merging the routes attached to one listener (semantics §4.7, §7.2).
//!
//! Kuma groups `to[]` entries by hostname (exact string; no hostnames = the generic group `*`)
//! and concatenates their rules in priority order, merging rules whose `matches` are deep-equal
//! with a JSON merge-patch of `default` (the higher priority's `backendRefs` / `filters` replace
//! the lower's when present). Priority, lowest first:
//! - routes by name ascending (Kuma's store order; a greater name wins — code-derived, the docs
//!   say the opposite; see semantics §4.7 and Appendix B.2),
//! - `to[]` entries in order (a later entry wins),
//! - rules of one `to[]` in reverse (the first of two identical rules wins).
//!
//! The merged rules keep their declaration order, which is the tie-breaker after Kuma's sort.

use crate::resources::http_route::{Filter, HttpMatch, HttpRuleConf};
use crate::resources::{BackendRef, MeshHttpRoute, MeshTcpRoute, Res};
use foldhash::HashMap;
use std::collections::BTreeMap;

/// A rule after merging, borrowing from the resources (a rebuild compiles every rule of the
/// directory: copying them here was a quarter of a 10,000-rule rebuild).
#[derive(Debug, Clone)]
pub struct MergedRule<'a> {
    pub matches: &'a [HttpMatch],
    pub conf: MergedConf<'a>,
    /// The route whose rule won the merge (metrics, access log).
    pub route_name: &'a str,
    /// Declaration position: (route, to[] entry, rule).
    pub order: (usize, usize, usize),
}

/// A rule's `default` after the merge-patch: each field from the highest-priority rule that
/// set it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergedConf<'a> {
    pub filters: Option<&'a [Filter]>,
    pub backend_refs: Option<&'a [BackendRef]>,
}

impl<'a> MergedConf<'a> {
    fn of(conf: Option<&'a HttpRuleConf>) -> Self {
        MergedConf {
            filters: conf.and_then(|c| c.filters.as_deref()),
            backend_refs: conf.and_then(|c| c.backend_refs.as_deref()),
        }
    }
}

/// Rule groups keyed by route hostname (`*` = generic).
pub type RuleGroups<'a> = BTreeMap<String, Vec<MergedRule<'a>>>;

/// `routes` must be sorted by name ascending.
pub fn merge_http_routes<'a>(routes: &[&'a Res<MeshHttpRoute>]) -> RuleGroups<'a> {
    // hostname → matches (deep equality, as Kuma compares them) → index in the group's list.
    // Keyed by the borrowed matches themselves: serialising each rule's matches to JSON for
    // the key was a tenth of a 10,000-rule rebuild.
    let mut groups: RuleGroups = BTreeMap::new();
    let mut index: HashMap<String, HashMap<&'a [HttpMatch], usize>> = HashMap::default();
    for (ri, route) in routes.iter().enumerate() {
        for (ti, to) in route.spec.to.iter().enumerate() {
            let hostnames: Vec<String> = match &to.hostnames {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                _ => vec!["*".to_string()],
            };
            let rules = to.rules.as_deref().unwrap_or_default();
            for hostname in &hostnames {
                let list = groups.entry(hostname.clone()).or_default();
                let group_index = index.entry(hostname.clone()).or_default();
                for (rule_i, rule) in rules.iter().enumerate().rev() {
                    let matches = rule.matches.as_deref().unwrap_or_default();
                    let patch = MergedConf::of(rule.default.as_ref());
                    match group_index.get(matches) {
                        Some(&i) => {
                            if let Some(existing) = list.get_mut(i) {
                                merge_patch(&mut existing.conf, patch);
                                existing.route_name = &route.meta.name;
                                existing.order = existing.order.min((ri, ti, rule_i));
                            }
                        }
                        None => {
                            group_index.insert(matches, list.len());
                            list.push(MergedRule {
                                matches,
                                conf: patch,
                                route_name: &route.meta.name,
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
pub fn merge_tcp_routes(routes: &[&Res<MeshTcpRoute>]) -> Vec<BackendRef> {
    let mut winner: Option<Vec<BackendRef>> = None;
    for route in routes {
        for to in &route.spec.to {
            let refs = to
                .rules
                .as_ref()
                .and_then(|r| r.first())
                .and_then(|r| r.default.as_ref())
                .and_then(|d| d.backend_refs.clone());
            if let Some(refs) = refs {
                winner = Some(refs);
            }
        }
    }
    winner.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::loader::load_dir;

    fn routes(yaml: &str) -> Vec<crate::resources::Shared<MeshHttpRoute>> {
        let dir = std::env::temp_dir().join(format!("meshgate-merge-{}", yaml.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.yaml"), yaml).unwrap();
        let mut l = load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        l.resources
            .http_routes
            .sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        l.resources.http_routes
    }

    const TWO_ROUTES: &str = r#"
type: MeshHTTPRoute
name: alpha
mesh: default
spec:
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
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      default:
        backendRefs: [{kind: MeshService, name: v2}]
"#;

    #[test]
    fn identical_matches_merge_greater_name_wins_filters_survive() {
        // §4.7: beta (greater name) replaces backendRefs; alpha's filters survive the patch.
        let r = routes(TWO_ROUTES);
        let refs: Vec<&Res<MeshHttpRoute>> = r.iter().map(|r| &**r).collect();
        let g = merge_http_routes(&refs);
        let rules = &g["*"];
        assert_eq!(rules.len(), 1);
        let conf = &rules[0].conf;
        assert_eq!(conf.backend_refs.unwrap()[0].name.as_deref(), Some("v2"));
        assert!(conf.filters.is_some());
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
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: Exact, value: /dup}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
    - matches: [{path: {type: Exact, value: /dup}}]
      default: {backendRefs: [{kind: MeshService, name: v2}]}
"#,
        );
        let refs: Vec<&Res<MeshHttpRoute>> = r.iter().map(|r| &**r).collect();
        let g = merge_http_routes(&refs);
        let rules = &g["*"];
        assert_eq!(rules.len(), 1);
        let name = rules[0].conf.backend_refs.unwrap()[0].name.clone();
        assert_eq!(name.as_deref(), Some("v1"));
    }
}
