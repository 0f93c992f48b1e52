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
    /// The to[] entry (route, entry) whose rules last patched this one, and which fields
    /// they set: within one to[] the first of two identical rules wins.
    patched_by: (usize, usize),
    set_by_patcher: (bool, bool),
}

/// A rule's `default` after the merge-patch: each field from the highest-priority rule that
/// set it, with where that rule was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergedConf<'a> {
    pub filters: Option<(&'a [Filter], RulePos)>,
    pub backend_refs: Option<(&'a [BackendRef], RulePos)>,
}

impl<'a> MergedConf<'a> {
    /// Whether filters and backend references are set.
    fn fields_set(&self) -> (bool, bool) {
        (self.filters.is_some(), self.backend_refs.is_some())
    }

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
    // group's list. Keyed by the borrowed matches and the hash lowering took of them:
    // serialising each rule's matches to JSON for the key was a tenth of a 10,000-rule
    // rebuild, hashing them again a tenth of a 100,000-rule one. Rules are taken in
    // declaration order, so each group's list is in that order without a sort.
    let mut groups: RuleGroups = BTreeMap::new();
    let mut index: HashMap<String, HashMap<WrittenMatches<'a>, usize>> = HashMap::default();
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
                let block = (ri, ti);
                for (rule_i, rule) in to.rules.iter().enumerate() {
                    let pos = (source, ti, rule_i);
                    let patch = MergedConf {
                        filters: rule.filters.as_deref().map(|f| (f, pos)),
                        backend_refs: rule.backend_refs.as_deref().map(|b| (b, pos)),
                    };
                    let key = WrittenMatches {
                        hash: rule.written_matches_hash,
                        matches: &rule.written_matches,
                    };
                    let Some(&i) = group_index.get(&key) else {
                        group_index.insert(key, list.len());
                        list.push(MergedRule {
                            matches: &rule.matches,
                            matches_pos: pos,
                            conf: patch,
                            route_name: &route.meta.name,
                            other_routes: Vec::new(),
                            patched_by: block,
                            set_by_patcher: patch.fields_set(),
                        });
                        continue;
                    };
                    let Some(existing) = list.get_mut(i) else {
                        continue;
                    };
                    if existing.patched_by == block {
                        // An earlier rule of this to[] has the same matches: it wins, this
                        // one only sets what no rule of this to[] set.
                        fill_unset(&mut existing.conf, &mut existing.set_by_patcher, patch);
                    } else {
                        merge_patch(&mut existing.conf, patch);
                        existing.patched_by = block;
                        existing.set_by_patcher = patch.fields_set();
                    }
                    if existing.route_name != route.meta.name
                        && !existing.other_routes.contains(&existing.route_name)
                    {
                        existing.other_routes.push(existing.route_name);
                    }
                    existing.route_name = &route.meta.name;
                }
            }
        }
    }
    groups
}

/// A rule's matches as written, hashed by the hash lowering took and compared in full.
struct WrittenMatches<'a> {
    hash: u64,
    matches: &'a [RawMatch],
}

impl std::hash::Hash for WrittenMatches<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for WrittenMatches<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.matches == other.matches
    }
}

impl Eq for WrittenMatches<'_> {}

/// A later rule of the same to[] with the same matches: it sets only the fields the earlier
/// ones (`set`) left unset, which is what applying the rules last-first as patches gives.
fn fill_unset<'a>(base: &mut MergedConf<'a>, set: &mut (bool, bool), patch: MergedConf<'a>) {
    if !set.0 && patch.filters.is_some() {
        base.filters = patch.filters;
        set.0 = true;
    }
    if !set.1 && patch.backend_refs.is_some() {
        base.backend_refs = patch.backend_refs;
        set.1 = true;
    }
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
    fn merged_rules_keep_declaration_order() {
        // A duplicate inside one to[] takes the earlier rule's place; a later route's rule
        // with the matches of an earlier route's keeps the earlier place.
        let r = routes(
            r#"
type: MeshHTTPRoute
name: a
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: Exact, value: /one}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
    - matches: [{path: {type: Exact, value: /two}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
    - matches: [{path: {type: Exact, value: /one}}]
      default: {backendRefs: [{kind: MeshService, name: v2}]}
    - matches: [{path: {type: Exact, value: /three}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
---
type: MeshHTTPRoute
name: b
mesh: default
spec:
  targetRef: {kind: MeshGateway, name: gw}
  to:
  - targetRef: {kind: Mesh}
    rules:
    - matches: [{path: {type: Exact, value: /four}}]
      default: {backendRefs: [{kind: MeshService, name: v1}]}
    - matches: [{path: {type: Exact, value: /two}}]
      default: {backendRefs: [{kind: MeshService, name: v3}]}
"#,
        );
        let refs: Vec<&Valid<HttpRoute>> = r.iter().collect();
        let g = merge_http_routes(&refs);
        let rules = &g["*"];
        let paths: Vec<_> = rules
            .iter()
            .map(|r| match &r.matches[0].path {
                Some(crate::model::route::PathMatch::Exact(p)) => p.as_str(),
                other => panic!("an Exact path, not {other:?}"),
            })
            .collect();
        assert_eq!(paths, ["/one", "/two", "/three", "/four"]);
        let winners: Vec<_> = rules
            .iter()
            .map(|r| service(&r.conf.backend_refs()[0]))
            .collect();
        assert_eq!(winners, ["v1", "v3", "v1", "v1"]);
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
