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

use super::reuse::{digest128, RulePos};
use crate::model::route::{BackendRef, Filter, HttpMatch, HttpRoute, TcpRoute, WrittenMatches};
use crate::model::{SourceId, Valid};
use foldhash::HashMap;
use std::collections::BTreeMap;

/// A rule after merging, borrowing from the routes (a rebuild compiles every rule of the
/// directory: copying them here was a quarter of a 10,000-rule rebuild).
#[derive(Debug, Clone)]
pub struct MergedRule<'a> {
    pub matches: &'a [HttpMatch],
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
#[cfg(test)]
pub type RuleGroups<'a> = BTreeMap<String, Vec<MergedRule<'a>>>;

/// One `to[]` entry of a route, as a part of a hostname group.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    pub route: &'a Valid<HttpRoute>,
    /// The route's place in the name order (blocks of one route share it).
    pub route_index: usize,
    pub to_index: usize,
}

/// A hostname group before merging: its `to[]` entries in priority order, lowest first, and
/// a digest of where each was written. The merged rules are a function of the blocks' texts
/// and order, so equal digests mean equal merged rules: a rebuild merges only the groups
/// whose digest changed (merging all 100,000 rules was a third of a one-file reload).
pub struct Group<'a> {
    pub blocks: Vec<Block<'a>>,
    pub digest: u128,
}

impl Group<'_> {
    /// How many rules the group holds before merging.
    pub fn rule_count(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.route.spec.to[b.to_index].rules.len())
            .sum()
    }
}

/// The hostname groups of `routes` (sorted by name ascending), unmerged.
pub fn group_blocks<'a>(routes: &[&'a Valid<HttpRoute>]) -> BTreeMap<String, Group<'a>> {
    let mut blocks: BTreeMap<String, Vec<Block<'a>>> = BTreeMap::new();
    for (route_index, route) in routes.iter().enumerate() {
        for (to_index, to) in route.spec.to.iter().enumerate() {
            let block = Block {
                route,
                route_index,
                to_index,
            };
            if to.hostnames.is_empty() {
                blocks.entry("*".to_string()).or_default().push(block);
            }
            for hostname in &to.hostnames {
                match blocks.get_mut(hostname) {
                    Some(list) => list.push(block),
                    None => {
                        blocks.insert(hostname.clone(), vec![block]);
                    }
                }
            }
        }
    }
    blocks
        .into_iter()
        .map(|(hostname, blocks)| {
            let digest = digest(&hostname, &blocks);
            (hostname, Group { blocks, digest })
        })
        .collect()
}

fn digest(hostname: &str, blocks: &[Block]) -> u128 {
    let mut bytes = Vec::with_capacity(16 + hostname.len() + blocks.len() * 24);
    bytes.extend_from_slice(&(hostname.len() as u64).to_le_bytes());
    bytes.extend_from_slice(hostname.as_bytes());
    for b in blocks {
        let source = SourceId::of(&b.route.meta);
        for word in [source.file_hash, source.document as u64, b.to_index as u64] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    digest128(&bytes)
}

/// Every group of `routes` (sorted by name ascending), merged.
#[cfg(test)]
pub fn merge_http_routes<'a>(routes: &[&'a Valid<HttpRoute>]) -> RuleGroups<'a> {
    group_blocks(routes)
        .into_iter()
        .map(|(hostname, group)| (hostname, merge_group(&group)))
        .collect()
}

/// One hostname group's rules, merged.
pub fn merge_group<'a>(group: &Group<'a>) -> Vec<MergedRule<'a>> {
    // Matches as written (deep equality, as Kuma compares them, by their digest) → index in
    // the list. Rules are taken in declaration order, so the list is in that order without a
    // sort.
    let rules = group.rule_count();
    let mut list: Vec<MergedRule<'a>> = Vec::with_capacity(rules);
    let mut index: HashMap<&'a WrittenMatches, usize> = HashMap::default();
    index.reserve(rules);
    for block in &group.blocks {
        let route = block.route;
        let source = SourceId::of(&route.meta);
        let (ti, to) = (block.to_index, &route.spec.to[block.to_index]);
        let from = (block.route_index, ti);
        for (rule_i, rule) in to.rules.iter().enumerate() {
            let pos = (source, ti, rule_i);
            let patch = MergedConf {
                filters: rule.filters.as_deref().map(|f| (f, pos)),
                backend_refs: rule.backend_refs.as_deref().map(|b| (b, pos)),
            };
            let key = &rule.written_matches;
            let Some(&i) = index.get(&key) else {
                index.insert(key, list.len());
                list.push(MergedRule {
                    matches: &rule.matches,
                    conf: patch,
                    route_name: &route.meta.name,
                    other_routes: Vec::new(),
                    patched_by: from,
                    set_by_patcher: patch.fields_set(),
                });
                continue;
            };
            let Some(existing) = list.get_mut(i) else {
                continue;
            };
            if existing.patched_by == from {
                // An earlier rule of this to[] has the same matches: it wins, this one only
                // sets what no rule of this to[] set.
                fill_unset(&mut existing.conf, &mut existing.set_by_patcher, patch);
            } else {
                merge_patch(&mut existing.conf, patch);
                existing.patched_by = from;
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
    list
}

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
    fn only_matches_written_alike_merge() {
        // §4.7 compares the matches as written: lowering makes the first three equal (the
        // default header type spelled out, an Exact header match with an empty value dropped),
        // Kuma keeps them apart.
        let rule = |matches: &str, svc: &str| {
            format!("    - matches: [{matches}]\n      default: {{backendRefs: [{{kind: MeshService, name: {svc}}}]}}\n")
        };
        let yaml = format!(
            "type: MeshHTTPRoute\nname: a\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    rules:\n{}{}{}{}",
            rule("{path: {type: PathPrefix, value: /a}, headers: [{name: x-h, value: v}]}", "v1"),
            rule("{path: {type: PathPrefix, value: /a}, headers: [{type: Exact, name: x-h, value: v}]}", "v2"),
            rule("{path: {type: PathPrefix, value: /a}, headers: [{name: x-h, value: v}, {name: x-e, value: ''}]}", "v3"),
            rule("{headers: [{name: x-h, value: v}], path: {value: /a, type: PathPrefix}}", "v4"),
        );
        let r = routes(&yaml);
        let refs: Vec<&Valid<HttpRoute>> = r.iter().collect();
        let rules = &merge_http_routes(&refs)["*"];
        let services: Vec<&str> = rules
            .iter()
            .map(|m| service(&m.conf.backend_refs()[0]))
            .collect();
        // The fourth is the first written in another key order: the same matches, merged into
        // the first's place, where the first of two identical rules of one to[] wins.
        assert_eq!(services, ["v1", "v2", "v3"]);
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
