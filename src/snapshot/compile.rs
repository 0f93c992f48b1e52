//! Resources → [`Snapshot`] (semantics Appendix C, "configuration build").
//!
//! 1. pick the MeshGateway and its builtin gateway Dataplane; compute each listener's
//!    effective tags (Dataplane gateway tags ⊕ MeshGateway tags ⊕ listener tags);
//! 2. attach routes by `targetRef {kind: MeshGateway, name, tags}` and protocol family;
//! 3. per listener, merge the attached routes' rules (`merge.rs`);
//! 4. per port, build virtual hosts from listener hostnames most exact first, with Kuma's
//!    hostname intersection, generic fall-through and listener isolation (§3.5, §3.6);
//! 5. expand rules into entries (PathPrefix → `/p/` prefix + `/p` exact, §4.1), specialise
//!    rewrites per entry, resolve backends, and index each virtual host's table.

use super::action::{
    Action, Forward, HeaderMods, HostRewrite, Mirror, PathRewrite, Redirect, Timeouts,
};
use super::backends::WeightedBackends;
use super::certs::{key_family, parse_pem_pair, read_datasource, CertSet};
use super::hostname::{self, HostTable};
use super::matchers::{Conditions, HeaderMatcher, PathKind, PathMatcher, QueryMatcher};
use super::merge::{merge_http_routes, merge_tcp_routes, MergedRule, RuleGroups};
use super::regex_cache::RegexBuild;
use super::resolve::Resolver;
use super::route_table::{RouteEntry, RouteTable};
use super::table_cache::{TableCache, TableKey, World};
use super::*;
use crate::resources::common::Tags;
use crate::resources::gateway::Listener;
use crate::resources::http_route::{
    Filter, HeaderModifier, HttpMatch, PathRewrite as PathRewriteSpec,
};
use crate::resources::timeout::parse_duration;
use crate::resources::{
    MeshGateway, MeshHttpRoute, MeshTcpRoute, MeshTimeout, Meta, Res, ResourceSet, TargetRef,
};
use crate::violation::Violation;
use foldhash::HashSet;
use http::{HeaderName, HeaderValue, Method};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// `--gateway NAME`; `None` = the only MeshGateway in the directory.
    pub gateway: Option<String>,
    /// Base for relative certificate `file` paths.
    pub policy_dir: PathBuf,
}

pub struct Compiled {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

/// Builds a snapshot from validated resources. Problems that only show when resources are put
/// together (no gateway, a certificate that does not parse) come back as violations.
pub fn compile(
    set: &ResourceSet,
    opts: &CompileOptions,
    generation: u64,
) -> Result<Compiled, Vec<Violation>> {
    compile_reusing(set, opts, generation, &mut TableCache::default())
}

/// [`compile`], taking the route tables of hostname groups whose rules (and everything they
/// refer to) are unchanged from the previous build in `cache`; a successful build replaces
/// the cache, a failed one leaves it as it was.
pub fn compile_reusing(
    set: &ResourceSet,
    opts: &CompileOptions,
    generation: u64,
    cache: &mut TableCache,
) -> Result<Compiled, Vec<Violation>> {
    let world = World::of(set, opts);
    let previous = cache.reusable_for(&world);
    let gateway = select_gateway(set, opts.gateway.as_deref())?;
    let mesh = gateway.meta.mesh.clone();
    let gw_dataplane_tags = gateway_dataplane_tags(set, gateway);
    let service = gw_dataplane_tags
        .get("kuma.io/service")
        .cloned()
        .or_else(|| {
            gateway
                .spec
                .selectors
                .first()
                .and_then(|s| s.match_tags.get("kuma.io/service").cloned())
        })
        .unwrap_or_else(|| gateway.meta.name.clone());
    let identity = GatewayIdentity {
        name: gateway.meta.name.clone(),
        mesh: mesh.clone(),
        kuma_tags: http::HeaderValue::from_str(&format!("&kuma.io/service={service}&"))
            .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        service,
    };

    let mut ctx = Ctx {
        set,
        opts,
        gateway,
        resolver: Resolver::new(set, &mesh, &opts.policy_dir),
        violations: Vec::new(),
        route_entries: 0,
        regexes: RegexBuild::begin(),
        previous,
        tables: foldhash::HashMap::default(),
        reused_tables: 0,
    };
    let listeners = ctx.plan_listeners(&gw_dataplane_tags);

    let mut by_port: BTreeMap<u16, Vec<&PlannedListener>> = BTreeMap::new();
    for l in &listeners {
        by_port.entry(l.info.port).or_default().push(l);
    }
    let mut ports = HashMap::new();
    for (port, mut ls) in by_port {
        // Most exact hostname first: the order Kuma processes listener hostnames in.
        ls.sort_by(|a, b| hostname::exactness(&a.info.hostname, &b.info.hostname));
        let protocol = ls[0].info.protocol;
        let connection_limit = ls.iter().filter_map(|l| l.connection_limit).max();
        let serving = match protocol {
            Protocol::Http => ctx.http_port(&ls),
            Protocol::Https => ctx.https_port(&ls),
            Protocol::Tcp => ctx.tcp_port(&ls),
            Protocol::Tls => ctx.tls_port(&ls),
        };
        ports.insert(
            port,
            Arc::new(Port {
                port,
                label: port.to_string(),
                protocol,
                connection_limit,
                serving,
            }),
        );
    }
    if !ctx.violations.is_empty() {
        return Err(ctx.violations);
    }
    let backends = ctx.resolver.backends().cloned().collect();
    let warnings = std::mem::take(&mut ctx.resolver.warnings);
    log::debug!(
        "route tables: {} compiled, {} reused from the previous build",
        ctx.tables.len() - ctx.reused_tables,
        ctx.reused_tables
    );
    let next = TableCache::after_build(
        world,
        set,
        std::mem::take(&mut ctx.tables),
        std::mem::take(&mut ctx.resolver.warnings_by_key),
        &ctx.resolver.looked_up,
    );
    let route_entries = ctx.route_entries;
    drop(ctx);
    *cache = next;
    Ok(Compiled {
        snapshot: Snapshot {
            generation,
            gateway: identity,
            ports,
            route_entries,
            backends,
        },
        warnings,
    })
}

fn select_gateway<'a>(
    set: &'a ResourceSet,
    wanted: Option<&str>,
) -> Result<&'a Res<MeshGateway>, Vec<Violation>> {
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
fn gateway_dataplane_tags(set: &ResourceSet, gw: &Res<MeshGateway>) -> Tags {
    for dp in set
        .dataplanes
        .iter()
        .filter(|d| d.meta.mesh == gw.meta.mesh)
    {
        let Some(g) = dp.spec.networking.as_ref().and_then(|n| n.gateway.as_ref()) else {
            continue;
        };
        if g.gateway_type.as_deref() != Some("BUILTIN") {
            continue;
        }
        let tags = g.tags.clone().unwrap_or_default();
        if gw
            .spec
            .selectors
            .iter()
            .any(|s| tags_match(&s.match_tags, &tags))
        {
            return tags;
        }
    }
    Tags::new()
}

/// Kuma's `TagSelector.Matches`: every selector pair present, `*` matches any value.
fn tags_match(selector: &Tags, tags: &Tags) -> bool {
    selector
        .iter()
        .all(|(k, v)| tags.get(k).is_some_and(|t| v == "*" || t == v))
}

struct PlannedListener {
    index: usize,
    info: Arc<ListenerInfo>,
    spec: Listener,
    tags: Tags,
    connection_limit: Option<u32>,
}

struct Ctx<'a> {
    set: &'a ResourceSet,
    opts: &'a CompileOptions,
    gateway: &'a Res<MeshGateway>,
    resolver: Resolver<'a>,
    violations: Vec<Violation>,
    route_entries: usize,
    regexes: RegexBuild,
    /// The previous build's tables, when everything but the routes is unchanged.
    previous: Option<&'a TableCache>,
    /// The tables this build uses, compiled or reused: the next build's cache.
    tables: foldhash::HashMap<TableKey, Arc<RouteTable>>,
    reused_tables: usize,
}

impl<'a> Ctx<'a> {
    fn plan_listeners(&mut self, gw_dataplane_tags: &Tags) -> Vec<PlannedListener> {
        let gw = self.gateway;
        let mut out = Vec::new();
        let listeners = gw.spec.conf.as_ref().map(|c| c.listeners.as_slice());
        for (index, l) in listeners.unwrap_or_default().iter().enumerate() {
            let (Some(port), Some(protocol)) = (
                l.port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                l.protocol.as_deref().and_then(Protocol::parse),
            ) else {
                continue; // validation reported it
            };
            let hostname = l.effective_hostname().to_ascii_lowercase();
            let mut tags = gw_dataplane_tags.clone();
            tags.extend(gw.spec.tags.clone().unwrap_or_default());
            tags.extend(l.tags.clone().unwrap_or_default());
            let label = if hostname == hostname::ANY {
                port.to_string()
            } else {
                format!("{port}/{hostname}")
            };
            out.push(PlannedListener {
                index,
                info: Arc::new(ListenerInfo {
                    port,
                    protocol,
                    hostname,
                    label,
                }),
                spec: l.clone(),
                tags,
                connection_limit: l
                    .resources
                    .as_ref()
                    .and_then(|r| r.connection_limit)
                    .and_then(|c| u32::try_from(c).ok())
                    .filter(|c| *c > 0),
            });
        }
        out
    }

    /// Does a route's top-level targetRef attach it to this listener (§3.4)?
    fn attaches(&self, meta: &Meta, target: Option<&TargetRef>, l: &PlannedListener) -> bool {
        let Some(t) = target else { return false };
        meta.mesh == self.gateway.meta.mesh
            && t.kind == "MeshGateway"
            && t.name.as_deref() == Some(self.gateway.meta.name.as_str())
            && tags_match(&t.tags.clone().unwrap_or_default(), &l.tags)
    }

    /// The merged rules borrow from the resources (`'a`), not from `self`.
    fn http_groups(&self, l: &PlannedListener) -> (RuleGroups<'a>, bool) {
        let set: &'a ResourceSet = self.set;
        let mut routes: Vec<&'a Res<MeshHttpRoute>> = set
            .http_routes
            .iter()
            .map(|r| &**r)
            .filter(|r| self.attaches(&r.meta, r.spec.target_ref.as_ref(), l))
            .collect();
        routes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        (merge_http_routes(&routes), !routes.is_empty())
    }

    fn http_port(&mut self, ls: &[&PlannedListener]) -> Serving {
        let mut vhosts = HostTable::default();
        for vh in self.build_vhosts(ls).into_iter().flat_map(|(_, v)| v) {
            let name = vh.name.clone();
            vhosts.insert(&name, vh);
        }
        Serving::Http { vhosts }
    }

    fn https_port(&mut self, ls: &[&PlannedListener]) -> Serving {
        let mut chains = HostTable::default();
        let built = self.build_vhosts(ls);
        for (l, vhs) in ls.iter().zip(built) {
            let Some(certs) = self.cert_set(l) else {
                continue;
            };
            let mut table = HostTable::default();
            for vh in vhs.1 {
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

    /// Virtual hosts per listener of one port, in the order of `ls` (§3.5, §3.6).
    fn build_vhosts(&mut self, ls: &[&PlannedListener]) -> Vec<(usize, Vec<Arc<VirtualHost>>)> {
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
                out.push((l.index, vhosts));
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
            let mut tables: foldhash::HashMap<(String, Vec<String>), Arc<RouteTable>> =
                foldhash::HashMap::default();
            for b in &bindings {
                if owned.iter().any(|o| hostname::contains(o, b)) {
                    continue; // listener isolation: a more exact listener owns these hosts
                }
                let mut selected: Vec<(&String, &Vec<MergedRule>)> = groups
                    .iter()
                    .filter(|(h, _)| hostname::matches(h, b))
                    .filter(|(h, _)| {
                        // a more specific binding got its own virtual host
                        !(*h != b && bindings.contains(h) && hostname::contains(b, h))
                    })
                    .collect();
                // Kuma's pre-sort order: rules of more exact hostnames first (§4.5 step 8).
                selected.sort_by(|(a, _), (b, _)| hostname::exactness(a, b));
                let vhost_exact: HashSet<&str> = selected
                    .iter()
                    .flat_map(|(_, rules)| explicit_exact_paths(rules))
                    .collect();
                let mut vh_tables = Vec::new();
                for (h, rules) in &selected {
                    let mut suppress: Vec<String> = prefix_paths(rules)
                        .filter(|p| vhost_exact.contains(p))
                        .map(str::to_string)
                        .collect();
                    suppress.sort();
                    suppress.dedup();
                    let key = ((*h).clone(), suppress);
                    let table = match tables.get(&key) {
                        Some(t) => t.clone(),
                        None => {
                            let t = self.group_table(&l.info, h, &key.1, rules);
                            tables.insert(key, t.clone());
                            t
                        }
                    };
                    if !table.is_empty() {
                        vh_tables.push(table);
                    }
                }
                vhosts.push(Arc::new(VirtualHost {
                    name: b.clone(),
                    listener: l.info.clone(),
                    tables: vh_tables,
                }));
            }
            owned.push(lh);
            out.push((l.index, vhosts));
        }
        out
    }

    /// A hostname group's table: the previous build's when its key is unchanged (see
    /// `table_cache`), else compiled. `suppressed`: the Exact paths other groups of the
    /// virtual host contribute.
    fn group_table(
        &mut self,
        listener: &ListenerInfo,
        group: &str,
        suppressed: &[String],
        rules: &[MergedRule],
    ) -> Arc<RouteTable> {
        let key = TableKey::new(listener, group, suppressed, rules);
        if let Some(previous) = self.previous {
            if let Some(table) = previous.get(&key) {
                for backend in table.entries().iter().flat_map(|e| e.action.backends()) {
                    self.resolver.adopt(backend, previous.warnings_for(backend));
                }
                self.route_entries += table.len();
                self.reused_tables += 1;
                self.tables.insert(key, table.clone());
                return table.clone();
            }
        }
        let exact: HashSet<&str> = explicit_exact_paths(rules)
            .chain(suppressed.iter().map(String::as_str))
            .collect();
        let table = Arc::new(self.route_table(rules, &exact, listener));
        self.tables.insert(key, table.clone());
        table
    }

    /// One hostname group's rules as an indexed table. `explicit_exact`: the Exact paths of
    /// the virtual host, which suppress the exact half of a PathPrefix expansion (§4.1).
    fn route_table(
        &mut self,
        rules: &[MergedRule],
        explicit_exact: &HashSet<&str>,
        listener: &ListenerInfo,
    ) -> RouteTable {
        let mut entries = Vec::new();
        let match_all = [HttpMatch::default()];
        for rule in rules {
            let action = match self.action(rule, listener) {
                Ok(a) => Arc::new(a),
                Err(e) => {
                    self.rule_violation(rule, e);
                    continue;
                }
            };
            let route_name: Arc<str> = Arc::from(rule.route_name);
            let rewrite = rewrite_spec(rule);
            // No matches: one that matches every request (§4.1).
            let matches: &[HttpMatch] = if rule.matches.is_empty() {
                &match_all
            } else {
                rule.matches
            };
            for m in matches {
                let conditions = match conditions(m, &self.regexes) {
                    Ok(c) => c,
                    Err(e) => {
                        self.rule_violation(rule, e);
                        continue;
                    }
                };
                for path in expand_path(m, explicit_exact, rewrite.is_some(), &self.regexes) {
                    let path = match path {
                        Ok(p) => p,
                        Err(e) => {
                            self.rule_violation(rule, e);
                            continue;
                        }
                    };
                    let path_rewrite = rewrite.as_ref().and_then(|r| specialise(r, &path));
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

    /// Filters + backends of one merged rule (§5). With backendRefs the rule forwards, even
    /// when it also has a redirect (Kuma configures the forward action last).
    fn action(&mut self, rule: &MergedRule, _listener: &ListenerInfo) -> Result<Action, String> {
        let mut request_headers = HeaderMods::default();
        let mut response_headers = HeaderMods::default();
        let mut host_rewrite = None;
        let mut redirect = None;
        let mut mirror = None;
        for f in rule.conf.filters.unwrap_or_default() {
            match f.filter_type.as_str() {
                "RequestHeaderModifier" => {
                    let mut mods = header_mods(f.request_header_modifier.as_ref())?;
                    // `set: host` is Kuma's host rewrite (§5.1).
                    if let Some(i) = mods.set.iter().position(|(n, _)| n == http::header::HOST) {
                        let (_, v) = mods.set.remove(i);
                        v.to_str().map_err(|e| e.to_string())?;
                        host_rewrite = Some(HostRewrite::Literal(v));
                    }
                    request_headers.extend(mods);
                }
                "ResponseHeaderModifier" => {
                    response_headers.extend(header_mods(f.response_header_modifier.as_ref())?)
                }
                "RequestRedirect" => redirect = f.request_redirect.clone(),
                "URLRewrite" => {
                    if let Some(u) = &f.url_rewrite {
                        if let Some(h) = &u.hostname {
                            let h = http::HeaderValue::from_str(h).map_err(|e| e.to_string())?;
                            host_rewrite = Some(HostRewrite::Literal(h));
                        } else if u.host_to_backend_hostname == Some(true) {
                            host_rewrite = Some(HostRewrite::BackendHostname);
                        }
                    }
                }
                "RequestMirror" => mirror = self.mirror(f)?,
                other => return Err(format!("filter type {other:?} is not supported")),
            }
        }
        let refs = rule.conf.backend_refs.unwrap_or_default();
        if refs.is_empty() {
            if let Some(r) = redirect {
                let port = match r.port {
                    Some(p) => Some(u16::try_from(p).map_err(|_| "invalid redirect port")?),
                    None => None,
                };
                return Ok(Action::Redirect(Redirect {
                    scheme: r.scheme,
                    hostname: r.hostname,
                    port,
                    status: r
                        .status_code
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(302),
                }));
            }
        }
        let backends = WeightedBackends::new(
            refs.iter()
                .map(|r| (self.resolver.resolve(r), r.effective_weight()))
                .collect(),
        );
        Ok(Action::Forward(Box::new(Forward {
            backends,
            request_headers,
            response_headers,
            host_rewrite,
            mirror,
            timeouts: self.timeouts_for(rule.route_name)?,
        })))
    }

    /// The MeshTimeout settings that apply to a route: Mesh-wide, then MeshGateway, then
    /// MeshHTTPRoute policies, each more specific level overriding field by field (and, within
    /// a level, a greater policy name overriding a smaller one, as with routes).
    fn timeouts_for(&self, route: &str) -> Result<Timeouts, String> {
        let gw = &self.gateway.meta;
        let mut policies: Vec<(u8, &Res<MeshTimeout>)> = self
            .set
            .timeouts
            .iter()
            .filter(|t| t.meta.mesh == gw.mesh)
            .filter_map(|t| {
                let target = t.spec.target_ref.as_ref()?;
                let rank = match target.kind.as_str() {
                    "Mesh" => {
                        let gateway_proxies = target
                            .proxy_types
                            .as_ref()
                            .is_none_or(|p| p.iter().any(|p| p == "Gateway"));
                        gateway_proxies.then_some(0)?
                    }
                    "MeshGateway" if target.name.as_deref() == Some(gw.name.as_str()) => 1,
                    "MeshHTTPRoute" if target.name.as_deref() == Some(route) => 2,
                    _ => return None,
                };
                Some((rank, &**t))
            })
            .collect();
        policies.sort_by(|a, b| (a.0, &a.1.meta.name).cmp(&(b.0, &b.1.meta.name)));
        let mut out = Timeouts::default();
        for (_, policy) in policies {
            let name = &policy.meta.name;
            for to in policy.spec.to.iter().flatten() {
                if to.target_ref.as_ref().is_some_and(|t| t.kind != "Mesh") {
                    continue; // per-backend targets are not applied on the gateway
                }
                let Some(conf) = &to.default else { continue };
                let parse = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
                    match v {
                        None => Ok(None),
                        Some(s) => parse_duration(s).map(Some).ok_or_else(|| {
                            format!("MeshTimeout/{name}: {field}: invalid duration {s:?}")
                        }),
                    }
                };
                if let Some(d) = parse("connectionTimeout", &conf.connection_timeout)? {
                    out.connect = d;
                }
                if let Some(http) = &conf.http {
                    if let Some(d) = parse("http.requestTimeout", &http.request_timeout)? {
                        out.request = (!d.is_zero()).then_some(d);
                    }
                    if let Some(d) = parse("http.streamIdleTimeout", &http.stream_idle_timeout)? {
                        out.stream_idle = (!d.is_zero()).then_some(d);
                    }
                }
            }
        }
        Ok(out)
    }

    /// RequestMirror: a legacy reference only (service name + optional subset tags, §5.4).
    fn mirror(&mut self, f: &Filter) -> Result<Option<Mirror>, String> {
        let Some(m) = &f.request_mirror else {
            return Ok(None);
        };
        let Some(r) = &m.backend_ref else {
            return Ok(None);
        };
        let fraction = match &m.percentage {
            None => 1.0,
            Some(serde_norway::Value::Number(n)) => n.as_f64().unwrap_or(100.0) / 100.0,
            Some(serde_norway::Value::String(s)) => {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("invalid mirror percentage {s:?}"))?
                    / 100.0
            }
            Some(_) => return Err("invalid mirror percentage".to_string()),
        };
        if fraction <= 0.0 {
            return Ok(None);
        }
        let backend = self
            .resolver
            .legacy(r.name.as_deref().unwrap_or_default(), r.tags.as_ref());
        Ok(Some(Mirror {
            backend,
            fraction: fraction.min(1.0),
        }))
    }

    fn tcp_port(&mut self, ls: &[&PlannedListener]) -> Serving {
        // One TCP proxy per port: the union of every listener's destinations (§7.2).
        let mut refs = Vec::new();
        for l in ls {
            refs.extend(self.tcp_refs(l));
        }
        let backends = WeightedBackends::new(
            refs.iter()
                .map(|r| (self.resolver.resolve(r), r.effective_weight()))
                .collect(),
        );
        Serving::Tcp {
            listener: ls[0].info.clone(),
            backends,
        }
    }

    fn tcp_refs(&self, l: &PlannedListener) -> Vec<crate::resources::BackendRef> {
        let mut routes: Vec<&Res<MeshTcpRoute>> = self
            .set
            .tcp_routes
            .iter()
            .map(|r| &**r)
            .filter(|r| self.attaches(&r.meta, r.spec.target_ref.as_ref(), l))
            .collect();
        routes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        merge_tcp_routes(&routes)
    }

    fn tls_port(&mut self, ls: &[&PlannedListener]) -> Serving {
        let mut chains = HostTable::default();
        for l in ls {
            let mode = match l.spec.tls.as_ref().and_then(|t| t.mode.as_deref()) {
                Some("PASSTHROUGH") => TlsMode::Passthrough,
                _ => TlsMode::Terminate,
            };
            let certs = match mode {
                TlsMode::Terminate => match self.cert_set(l) {
                    Some(c) => Some(c),
                    None => continue,
                },
                TlsMode::Passthrough => None,
            };
            let refs = self.tcp_refs(l);
            let backends = WeightedBackends::new(
                refs.iter()
                    .map(|r| (self.resolver.resolve(r), r.effective_weight()))
                    .collect(),
            );
            chains.insert(
                &l.info.hostname,
                Arc::new(TlsChain {
                    listener: l.info.clone(),
                    mode,
                    certs,
                    backends,
                }),
            );
        }
        Serving::Tls { chains }
    }

    /// Loads and checks a listener's certificates; problems become violations naming the field.
    fn cert_set(&mut self, l: &PlannedListener) -> Option<Arc<CertSet>> {
        let meta = &self.gateway.meta;
        let base = format!(
            "{}conf.listeners[{}].tls.certificates",
            meta.spec_prefix(),
            l.index
        );
        let certs = l
            .spec
            .tls
            .as_ref()
            .map(|t| t.certificates.as_slice())
            .unwrap_or_default();
        if certs.is_empty() {
            self.violations.push(Violation::new(
                &meta.origin,
                Some(meta.display_name()),
                base,
                "cannot be empty in TLS termination mode",
            ));
            return None;
        }
        let mut keys = Vec::new();
        for (j, ds) in certs.iter().enumerate() {
            let parsed = read_datasource(ds, &self.opts.policy_dir, &meta.mesh, &self.set.secrets)
                .and_then(|pem| parse_pem_pair(&pem));
            match parsed {
                Ok(k) => {
                    if keys.iter().any(|other: &Arc<rustls::sign::CertifiedKey>| {
                        key_family(other) == key_family(&k)
                    }) {
                        self.violations.push(Violation::new(
                            &meta.origin,
                            Some(meta.display_name()),
                            format!("{base}[{j}]"),
                            "certificates must differ in key type (one RSA, one ECDSA)",
                        ));
                    }
                    keys.push(k);
                }
                Err(e) => self.violations.push(Violation::new(
                    &meta.origin,
                    Some(meta.display_name()),
                    format!("{base}[{j}]"),
                    e,
                )),
            }
        }
        (!keys.is_empty() && keys.len() == certs.len()).then(|| Arc::new(CertSet { keys }))
    }
}

fn explicit_exact_paths<'a>(rules: &'a [MergedRule<'a>]) -> impl Iterator<Item = &'a str> {
    rules
        .iter()
        .flat_map(|r| r.matches.iter())
        .filter_map(|m| m.path.as_ref())
        .filter(|p| p.match_type.as_deref() == Some("Exact"))
        .filter_map(|p| p.value.as_deref())
}

/// PathPrefix values (without trailing `/`; `/` for the root) of a group's rules.
fn prefix_paths<'a>(rules: &'a [MergedRule<'a>]) -> impl Iterator<Item = &'a str> {
    rules
        .iter()
        .flat_map(|r| r.matches.iter())
        .filter_map(|m| m.path.as_ref())
        .filter(|p| p.match_type.as_deref() == Some("PathPrefix"))
        .filter_map(|p| p.value.as_deref())
        .map(|v| match v.trim_end_matches('/') {
            "" => "/",
            t => t,
        })
}

fn header_mods(m: Option<&HeaderModifier>) -> Result<HeaderMods, String> {
    let mut out = HeaderMods::default();
    let Some(m) = m else { return Ok(out) };
    let pair = |h: &crate::resources::http_route::HeaderValue| {
        Ok::<_, String>((
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| format!("{}: {e}", h.name))?,
            HeaderValue::from_str(&h.value).map_err(|e| format!("{}: {e}", h.name))?,
        ))
    };
    for h in m.set.iter().flatten() {
        out.set.push(pair(h)?);
    }
    for h in m.add.iter().flatten() {
        out.add.push(pair(h)?);
    }
    for name in m.remove.iter().flatten() {
        out.remove
            .push(HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?);
    }
    Ok(out)
}

fn conditions(m: &HttpMatch, regexes: &RegexBuild) -> Result<Conditions, String> {
    let method = match &m.method {
        Some(s) => Some(Method::from_bytes(s.as_bytes()).map_err(|e| format!("method {s}: {e}"))?),
        None => None,
    };
    let mut headers = Vec::new();
    for h in m.headers.iter().flatten() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| format!("header {}: {e}", h.name))?;
        let value = h.value.clone().unwrap_or_default();
        headers.push(match h.match_type.as_deref().unwrap_or("Exact") {
            // Kuma quirk (§4.3): an Exact match with an empty value is dropped.
            "Exact" if value.is_empty() => continue,
            "Exact" => HeaderMatcher::Exact(name, value),
            "Present" => HeaderMatcher::Present(name),
            "Absent" => HeaderMatcher::Absent(name),
            "Prefix" => HeaderMatcher::Prefix(name, value),
            "RegularExpression" => HeaderMatcher::Regex(
                name,
                regexes
                    .full_match(&value)
                    .map_err(|e| format!("header regex: {e}"))?,
            ),
            other => return Err(format!("header match type {other:?}")),
        });
    }
    let mut query = Vec::new();
    for q in m.query_params.iter().flatten() {
        query.push(match q.match_type.as_deref().unwrap_or("Exact") {
            // Kuma drops an Exact query match with an empty value too (§4.4).
            "Exact" if q.value.is_empty() => continue,
            "Exact" => QueryMatcher::Exact(q.name.clone(), q.value.clone()),
            "RegularExpression" => QueryMatcher::Regex(
                q.name.clone(),
                regexes
                    .full_match(&q.value)
                    .map_err(|e| format!("query regex: {e}"))?,
            ),
            other => return Err(format!("query match type {other:?}")),
        });
    }
    Ok(Conditions {
        method,
        headers,
        query,
    })
}

/// PathPrefix expansion (§4.1): `/p` → prefix `/p/` + exact `/p` (unless an explicit Exact
/// `/p` exists in the virtual host); `/` → one prefix `/`, plus an exact `/` when a prefix
/// rewrite needs it to map `/` to the replacement without a trailing slash (§5.3).
fn expand_path(
    m: &HttpMatch,
    explicit_exact: &HashSet<&str>,
    has_prefix_rewrite: bool,
    regexes: &RegexBuild,
) -> Vec<Result<PathMatcher, String>> {
    let matcher = |kind, value: &str| PathMatcher {
        kind,
        value: value.to_string(),
        regex: None,
    };
    let Some(p) = &m.path else {
        return vec![Ok(matcher(PathKind::Prefix, "/"))];
    };
    let value = p.value.clone().unwrap_or_default();
    match p.match_type.as_deref() {
        Some("Exact") => vec![Ok(matcher(PathKind::Exact, &value))],
        Some("RegularExpression") => vec![regexes
            .full_match(&value)
            .map(|re| PathMatcher {
                kind: PathKind::Regex,
                value: value.clone(),
                regex: Some(re),
            })
            .map_err(|e| format!("path regex: {e}"))],
        Some("PathPrefix") => {
            let trimmed = value.trim_end_matches('/');
            if trimmed.is_empty() {
                let mut v = vec![Ok(matcher(PathKind::Prefix, "/"))];
                if has_prefix_rewrite && !explicit_exact.contains("/") {
                    v.push(Ok(matcher(PathKind::Exact, "/")));
                }
                return v;
            }
            let mut v = vec![Ok(matcher(PathKind::Prefix, &format!("{trimmed}/")))];
            if !explicit_exact.contains(trimmed) {
                v.push(Ok(matcher(PathKind::Exact, trimmed)));
            }
            v
        }
        other => vec![Err(format!("path match type {other:?}"))],
    }
}

/// The path rewrite a rule asks for: its redirect's when it redirects, else its URLRewrite's.
fn rewrite_spec(rule: &MergedRule) -> Option<PathRewriteSpec> {
    let filters = rule.conf.filters.unwrap_or_default();
    let forwards = rule.conf.backend_refs.is_some_and(|b| !b.is_empty());
    let mut out = None;
    for f in filters {
        let p = match f.filter_type.as_str() {
            "RequestRedirect" if !forwards => {
                f.request_redirect.as_ref().and_then(|r| r.path.clone())
            }
            "URLRewrite" if forwards => f.url_rewrite.as_ref().and_then(|u| u.path.clone()),
            _ => None,
        };
        if p.is_some() {
            out = p;
        }
    }
    out
}

/// Specialises a rule's path rewrite for one expanded entry (§5.3).
fn specialise(spec: &PathRewriteSpec, path: &PathMatcher) -> Option<PathRewrite> {
    match spec.rewrite_type.as_deref() {
        Some("ReplaceFullPath") => spec.replace_full_path.clone().map(PathRewrite::Full),
        Some("ReplacePrefixMatch") => {
            let replacement = spec.replace_prefix_match.clone()?;
            let bare = replacement.trim_end_matches('/');
            match path.kind {
                PathKind::Prefix => Some(PathRewrite::Prefix {
                    matched: path.value.clone(),
                    replacement: format!("{bare}/"),
                }),
                PathKind::Exact => Some(PathRewrite::Full(if bare.is_empty() {
                    "/".to_string()
                } else {
                    bare.to_string()
                })),
                PathKind::Regex => None,
            }
        }
        _ => None,
    }
}
