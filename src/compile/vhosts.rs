//! HTTP and HTTPS ports: virtual hosts from listener hostnames (semantics §3.5, §3.6) and
//! their route tables.
//!
//! Per port, listeners are taken most exact hostname first. A listener's attached routes are
//! merged into hostname groups; each route hostname that intersects the listener's becomes a
//! binding (the listener's own hostname when it contains the route's), and each binding a
//! virtual host holding the tables of the groups that match it, most exact group first. A
//! more exact listener owns its hosts (listener isolation): a less exact listener of the same
//! port gets no virtual host for them.

use super::listeners::{attaches, PlannedListener};
use super::merge::{group_blocks, merge_group, Group, MergedRule};
use super::policies::PortScope;
use super::reuse::{CachedTable, CachedVhost, TableCache, TableKey, VhostKey};
use super::rules::{conditions, expand_path, specialise};
use super::{actions, Build};
use crate::model::route::{BackendRef, Filter, PathMatch};
use crate::model::{HttpRoute, Valid};
use crate::snapshot::action::Action;
use crate::snapshot::hostname::{self, HostTable};
use crate::snapshot::policy::RoutePolicies;
use crate::snapshot::rate_limit::HttpLimit;
use crate::snapshot::route_table::{RouteEntry, RouteTable};
use crate::snapshot::{HttpsChain, ListenerInfo, Serving, VirtualHost};
use crate::violation::Violation;
use foldhash::HashSet;
use std::collections::BTreeMap;
use std::sync::Arc;

impl<'a> Build<'a> {
    pub(super) fn http_port(
        &mut self,
        ls: &[&PlannedListener<'a>],
        scope: &mut PortScope<'a>,
    ) -> Serving {
        let mut vhosts = HostTable::default();
        for vh in self.build_vhosts(ls, scope).into_iter().flatten() {
            let name = vh.name.clone();
            vhosts.insert(&name, vh);
        }
        Serving::Http { vhosts }
    }

    pub(super) fn https_port(
        &mut self,
        ls: &[&PlannedListener<'a>],
        scope: &mut PortScope<'a>,
    ) -> Serving {
        let mut chains = HostTable::default();
        let built = self.build_vhosts(ls, scope);
        for (l, vhs) in ls.iter().zip(built) {
            let Some(certs) = self.cert_set(l) else {
                continue;
            };
            let mut table = HostTable::default();
            for vh in vhs {
                let name = vh.name.clone();
                table.insert(&name, vh);
            }
            chains.insert(
                &l.info.hostname,
                Arc::new(HttpsChain {
                    listener: l.info.clone(),
                    certs,
                    vhosts: table,
                }),
            );
        }
        Serving::Https { chains }
    }

    /// The routes attached to `l` as unmerged hostname groups, and whether there are any.
    fn http_groups(&self, l: &PlannedListener) -> (BTreeMap<String, Group<'a>>, bool) {
        let set = self.set;
        let gateway = &self.gateway.meta;
        let mut routes: Vec<&'a Valid<HttpRoute>> = set
            .http_routes
            .iter()
            .filter(|r| attaches(&r.meta, &r.spec.target, gateway, l))
            .collect();
        routes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        (group_blocks(&routes), !routes.is_empty())
    }

    /// Virtual hosts per listener of one port, in the order of `ls`.
    fn build_vhosts(
        &mut self,
        ls: &[&PlannedListener<'a>],
        scope: &mut PortScope<'a>,
    ) -> Vec<Vec<Arc<VirtualHost>>> {
        let mut owned: Vec<String> = Vec::new(); // hostnames of listeners already processed
        let mut out = Vec::new();
        for l in ls {
            let (groups, has_routes) = self.http_groups(l);
            let lh = l.info.hostname.clone();
            let mut vhosts = Vec::new();
            if !has_routes {
                // A listener without routes still owns its hosts and answers 404 (the seed
                // document's rule; Kuma's code would fall through to a wildcard listener).
                vhosts.push(Arc::new(VirtualHost {
                    name: lh.clone(),
                    listener: l.info.clone(),
                    tables: Vec::new(),
                }));
                owned.push(lh);
                out.push(vhosts);
                continue;
            }
            let mut bindings: Vec<String> = Vec::new();
            for h in groups.keys() {
                if !hostname::matches(h, &lh) {
                    continue; // route hostname does not intersect this listener
                }
                let b = if hostname::contains(h, &lh) {
                    lh.clone()
                } else {
                    h.clone()
                };
                if !bindings.contains(&b) {
                    bindings.push(b);
                }
            }
            bindings.sort_by(|a, b| hostname::exactness(a, b));
            // Compiled group tables of this listener, shared by its virtual hosts. The key
            // adds the Exact paths other groups of a virtual host contribute, because they
            // suppress this group's PathPrefix exact entries (§4.1).
            // Keyed by the Exact paths of the *other* groups only: a group's own are the same
            // in every virtual host, and the big groups have thousands of them.
            let mut tables: foldhash::HashMap<(&str, Vec<&str>), KeyedTable> =
                foldhash::HashMap::default();
            // Each group's paths, collected when a virtual host that selects it is built.
            let mut paths: foldhash::HashMap<&str, GroupPaths> = foldhash::HashMap::default();
            for b in &bindings {
                if owned.iter().any(|o| hostname::contains(o, b)) {
                    continue; // listener isolation: a more exact listener owns these hosts
                }
                let mut selected: Vec<(&String, &Group<'a>)> = groups
                    .iter()
                    .filter(|(h, _)| hostname::matches(h, b))
                    .filter(|(h, _)| {
                        // a more specific binding got its own virtual host
                        !(*h != b && bindings.contains(h) && hostname::contains(b, h))
                    })
                    .collect();
                // Kuma's pre-sort order: rules of more exact hostnames first (§4.5 step 8).
                selected.sort_by(|(a, _), (b, _)| hostname::exactness(a, b));
                let vhost_key = VhostKey::new(
                    &l.info,
                    b,
                    selected.iter().map(|(h, g)| (h.as_str(), g.digest)),
                );
                if let Some(vhost) = self.reuse_vhost(&vhost_key) {
                    vhosts.push(vhost);
                    continue;
                }
                for (h, group) in &selected {
                    paths
                        .entry(h.as_str())
                        .or_insert_with(|| GroupPaths::of(group));
                }
                let selected_paths: Vec<&GroupPaths> =
                    selected.iter().map(|(h, _)| &paths[h.as_str()]).collect();
                let mut vh_tables = Vec::new();
                let mut vh_keys = Vec::new();
                for (h, group) in &selected {
                    let group_paths = &paths[h.as_str()];
                    let key = (h.as_str(), group_paths.extra_suppressed(&selected_paths));
                    let (table, table_key) = match tables.get(&key) {
                        Some(t) => t.clone(),
                        None => {
                            let suppressed = group_paths.suppressed(&key.1);
                            let t = self.group_table(
                                &l.info,
                                h,
                                &suppressed,
                                &group_paths.exact,
                                group,
                                scope,
                            );
                            tables.insert(key, t.clone());
                            t
                        }
                    };
                    if !table.is_empty() {
                        vh_tables.push(table);
                        vh_keys.push(table_key);
                    }
                }
                let vhost = Arc::new(VirtualHost {
                    name: b.clone(),
                    listener: l.info.clone(),
                    tables: vh_tables,
                });
                self.vhosts.insert(
                    vhost_key,
                    CachedVhost {
                        vhost: vhost.clone(),
                        tables: vh_keys,
                    },
                );
                vhosts.push(vhost);
            }
            owned.push(lh);
            out.push(vhosts);
        }
        out
    }

    /// The previous build's virtual host under `key`, when it and every table it holds can
    /// be reused; its tables join this build's as [`Self::group_table`] would take them.
    fn reuse_vhost(&mut self, key: &VhostKey) -> Option<Arc<VirtualHost>> {
        let previous = self.previous?;
        let cached = previous.vhost(key)?;
        let mut tables = Vec::with_capacity(cached.tables.len());
        for table_key in &cached.tables {
            tables.push(previous.get(table_key)?);
        }
        for (table_key, table) in cached.tables.iter().zip(tables) {
            if self.tables.contains_key(table_key) {
                continue; // taken in already, with its backends
            }
            self.take_table(table_key.clone(), table, previous);
        }
        self.vhosts.insert(
            key.clone(),
            CachedVhost {
                vhost: cached.vhost.clone(),
                tables: cached.tables.clone(),
            },
        );
        Some(cached.vhost.clone())
    }

    /// A table of the previous build joins this one: its backends and entries count, and it
    /// is cached for the next build.
    fn take_table(&mut self, key: TableKey, cached: &CachedTable, previous: &TableCache) {
        for backend in cached.backends.iter() {
            self.resolver.adopt(backend, previous.warnings_for(backend));
        }
        self.route_entries += cached.table.len();
        self.reused_tables += 1;
        self.tables.insert(key, cached.clone());
    }

    /// A hostname group's table and its key: the previous build's when the key is unchanged
    /// (see [`super::reuse::TableCache`]), else merged and compiled. `suppressed`: the
    /// group's PathPrefix values an Exact path of the virtual host suppresses; `group_exact`:
    /// the group's own Exact paths ([`GroupPaths`]).
    fn group_table(
        &mut self,
        listener: &ListenerInfo,
        group: &str,
        suppressed: &[String],
        group_exact: &HashSet<&str>,
        blocks: &Group<'a>,
        scope: &mut PortScope<'a>,
    ) -> (Arc<RouteTable>, TableKey) {
        let key = TableKey::new(listener, group, suppressed, blocks.digest);
        if let Some(previous) = self.previous {
            if let Some(cached) = previous.get(&key) {
                let table = cached.table.clone();
                if !self.tables.contains_key(&key) {
                    self.take_table(key.clone(), cached, previous);
                }
                return (table, key);
            }
        }
        let mut exact = group_exact.clone();
        exact.extend(suppressed.iter().map(String::as_str));
        let rules = merge_group(blocks);
        let table = Arc::new(self.route_table(&rules, &exact, scope, listener, group));
        self.tables
            .insert(key.clone(), CachedTable::new(table.clone()));
        (table, key)
    }

    /// One hostname group's rules as an indexed table. `explicit_exact`: the Exact paths of
    /// the virtual host, which suppress the exact half of a PathPrefix expansion (§4.1).
    fn route_table(
        &mut self,
        rules: &[MergedRule<'a>],
        explicit_exact: &HashSet<&str>,
        scope: &mut PortScope<'a>,
        listener: &ListenerInfo,
        group: &str,
    ) -> RouteTable {
        // Most matches expand to one or two entries (a PathPrefix to its exact and prefix
        // halves): room for two each spares the big groups' lists their doubling copies.
        let matches: usize = rules.iter().map(|r| r.matches.len().max(1)).sum();
        let mut entries = Vec::with_capacity(2 * matches);
        let match_all = [Default::default()];
        for rule in rules {
            let mut routes = Vec::with_capacity(1 + rule.other_routes.len());
            routes.push(rule.route_name);
            routes.extend(rule.other_routes.iter().copied());
            let policies = scope.route(&routes, self.regexes);
            let limit = scope.http_limit(&policies, self.registry, &self.gateway.meta.name, || {
                rule_identity(&self.gateway.meta.name, listener, group, rule)
            });
            let action = self.action(rule, scope, policies, limit, listener.port);
            let route_name = self
                .route_names
                .entry(rule.route_name)
                .or_insert_with(|| Arc::from(rule.route_name))
                .clone();
            let rewrite = actions::rewrite_of(rule);
            // No matches: one that matches every request (§4.1).
            let matches = if rule.matches.is_empty() {
                &match_all[..]
            } else {
                rule.matches
            };
            for m in matches {
                let expanded = conditions(m, self.regexes).and_then(|c| {
                    let paths = expand_path(m, explicit_exact, rewrite.is_some(), self.regexes)?;
                    Ok((c, paths))
                });
                let (conditions, paths) = match expanded {
                    Ok(x) => x,
                    Err(e) => {
                        self.rule_violation(rule, e);
                        continue;
                    }
                };
                for path in paths {
                    let path_rewrite = rewrite.and_then(|r| specialise(r, &path)).map(Box::new);
                    entries.push(RouteEntry {
                        path,
                        conditions: conditions.clone(),
                        action: action.clone(),
                        path_rewrite,
                        route_name: route_name.clone(),
                    });
                }
            }
        }
        self.route_entries += entries.len();
        RouteTable::new(entries)
    }

    /// A rule's action. Rules written alike (the same filters and backends under the same
    /// policies, on one port) share one, unless the rule has a rate-limit bucket of its own:
    /// at 100,000 rules to 8 services an action per rule held 37 MB (heaptrack).
    fn action(
        &mut self,
        rule: &MergedRule<'a>,
        scope: &mut PortScope<'a>,
        policies: Arc<RoutePolicies>,
        limit: Option<Arc<HttpLimit>>,
        port: u16,
    ) -> Arc<Action> {
        let key = limit.is_none().then(|| ActionKey {
            port,
            filters: rule.conf.filters(),
            backend_refs: rule.conf.backend_refs(),
            policies: Arc::as_ptr(&policies) as usize,
        });
        if let Some(action) = key.as_ref().and_then(|k| self.actions.get(k)) {
            return action.clone();
        }
        let action = Arc::new(actions::action(
            rule,
            &mut self.resolver,
            scope,
            policies,
            limit,
        ));
        if let Some(key) = key {
            self.actions.insert(key, action.clone());
        }
        action
    }

    /// A rule that cannot be compiled (a regex the engine refuses) rejects the build, naming
    /// its route.
    fn rule_violation(&mut self, rule: &MergedRule, message: String) {
        let meta = self
            .set
            .http_routes
            .iter()
            .find(|r| r.meta.name == rule.route_name)
            .map(|r| &r.meta);
        let v = match meta {
            Some(m) => Violation::new(&m.origin, Some(m.display_name()), "spec.to", message),
            None => Violation::global(message),
        };
        if !self.violations.contains(&v) {
            self.violations.push(v);
        }
    }
}

/// What an action is made of besides the build's backends and the port's settings. The
/// policies are told apart by address: the port's scope hands out one `Arc` per set of
/// routes, and it outlives the build's use of this key.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct ActionKey<'a> {
    port: u16,
    filters: &'a [Filter],
    backend_refs: &'a [BackendRef],
    policies: usize,
}

/// A compiled or reused table and its key.
type KeyedTable = (Arc<RouteTable>, TableKey);

/// One hostname group's Exact paths and PathPrefix values, collected once per listener.
///
/// Which of a group's PathPrefix exact entries a virtual host suppresses depends on the
/// Exact paths of every group the virtual host selects. Collecting them again for every
/// binding walked the big groups (no hostname, `*.example.com`) once per hostname: at
/// 100,000 rules and 500 hostnames that was most of a rebuild's time.
struct GroupPaths<'r> {
    exact: HashSet<&'r str>,
    prefix: HashSet<&'r str>,
    /// The group's PathPrefix values that are also its own Exact paths, sorted.
    own_suppressed: Vec<&'r str>,
}

impl<'r> GroupPaths<'r> {
    /// The paths of a group's rules, unmerged (merging only drops rules whose matches equal
    /// another's, so the sets are the same), in one walk into sets sized ahead.
    fn of(group: &Group<'r>) -> Self {
        let rules = group.rule_count();
        let mut exact = HashSet::with_capacity_and_hasher(rules, Default::default());
        let mut prefix = HashSet::with_capacity_and_hasher(rules / 2, Default::default());
        for b in &group.blocks {
            for rule in &b.route.spec.to[b.to_index].rules {
                for m in &rule.matches {
                    match &m.path {
                        Some(PathMatch::Exact(p)) => exact.insert(p.as_str()),
                        Some(PathMatch::Prefix(p)) => prefix.insert(p.as_str()),
                        _ => false,
                    };
                }
            }
        }
        Self::new(exact, prefix)
    }

    fn new(exact: HashSet<&'r str>, prefix: HashSet<&'r str>) -> Self {
        let mut own_suppressed: Vec<&str> = prefix
            .iter()
            .copied()
            .filter(|p| exact.contains(p))
            .collect();
        own_suppressed.sort_unstable();
        GroupPaths {
            exact,
            prefix,
            own_suppressed,
        }
    }

    /// This group's PathPrefix values that an Exact path of another group of `vhost` (the
    /// groups of one virtual host) suppresses and its own do not, sorted and without
    /// repeats. Each other group is walked on its smaller side.
    fn extra_suppressed(&self, vhost: &[&GroupPaths<'r>]) -> Vec<&'r str> {
        let mut out: Vec<&str> = Vec::new();
        for other in vhost {
            if std::ptr::eq(*other, self) {
                continue;
            }
            if other.exact.len() < self.prefix.len() {
                out.extend(
                    other
                        .exact
                        .iter()
                        .copied()
                        .filter(|p| self.prefix.contains(p)),
                );
            } else {
                out.extend(
                    self.prefix
                        .iter()
                        .copied()
                        .filter(|p| other.exact.contains(p)),
                );
            }
        }
        out.retain(|p| !self.exact.contains(p));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every PathPrefix value of this group that is suppressed, given the other groups'
    /// share (`extra`, from [`Self::extra_suppressed`]): sorted, without repeats.
    fn suppressed(&self, extra: &[&str]) -> Vec<String> {
        let mut all: Vec<&str> = self.own_suppressed.iter().chain(extra).copied().collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter().map(str::to_string).collect()
    }
}

/// What identifies a rule's rate-limit bucket across builds: the gateway, the listener and
/// hostname group it is served in, its route and its matches as written. Anything else
/// (another rule added to the file, a reordered directory) keeps the bucket.
/// The identity of a rule's limit: stable across reloads and, hashed with a fixed-seed
/// xxHash64, the same in every instance of a fleet (it names the shared counter).
fn rule_identity(gateway: &str, listener: &ListenerInfo, group: &str, rule: &MergedRule) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = twox_hash::XxHash64::with_seed(0);
    (
        gateway,
        listener.port,
        listener.hostname.as_str(),
        group,
        rule.route_name,
        rule.matches,
    )
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::GroupPaths;

    fn group<'r>(exact: &[&'r str], prefix: &[&'r str]) -> GroupPaths<'r> {
        GroupPaths::new(
            exact.iter().copied().collect(),
            prefix.iter().copied().collect(),
        )
    }

    /// The definition: a group's PathPrefix values that are an Exact path of any group of
    /// the virtual host, itself included.
    fn by_definition(g: &GroupPaths, vhost: &[&GroupPaths]) -> Vec<String> {
        let mut out: Vec<String> = g
            .prefix
            .iter()
            .filter(|p| vhost.iter().any(|o| o.exact.contains(*p)))
            .map(|p| p.to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn suppressed_prefixes_are_those_any_group_of_the_vhost_has_as_exact() {
        // A big group (walked on its prefix side) and small ones (walked on their exact side).
        let big_prefixes: Vec<String> = (0..50).map(|i| format!("/p{i}")).collect();
        let big_exact: Vec<String> = (0..50).map(|i| format!("/e{i}")).collect();
        let bp: Vec<&str> = big_prefixes.iter().map(String::as_str).collect();
        let mut be: Vec<&str> = big_exact.iter().map(String::as_str).collect();
        be.push("/p3"); // suppresses its own prefix
        let generic = group(&be, &bp);
        let host = group(&["/p7", "/p9", "/x"], &["/e1", "/x", "/y"]);
        let other = group(&["/y", "/p9"], &[]);
        let vhost = [&host, &generic, &other];
        let suppressed =
            |g: &GroupPaths, vhost: &[&GroupPaths]| g.suppressed(&g.extra_suppressed(vhost));
        for g in vhost {
            assert_eq!(suppressed(g, &vhost), by_definition(g, &vhost));
        }
        assert_eq!(suppressed(&generic, &vhost), ["/p3", "/p7", "/p9"]);
        assert_eq!(host.extra_suppressed(&vhost), ["/e1", "/y"]);
        assert_eq!(suppressed(&host, &vhost), ["/e1", "/x", "/y"]);
        // Alone, a group suppresses only what it has as both.
        assert_eq!(generic.extra_suppressed(&[&generic]), Vec::<&str>::new());
        assert_eq!(suppressed(&generic, &[&generic]), ["/p3"]);
    }
}
