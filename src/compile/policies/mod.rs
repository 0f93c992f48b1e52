//! Kuma policies → what the snapshot serves with (spec `kuma-policies.md`).
//!
//! Per port, [`PortScope`] ranks the policies of every kind that select it ([`select`]) once;
//! then each rule of the port asks it for its [`RoutePolicies`] (shared by every rule with
//! the same route-level policies: at 10,000 rules and one Mesh-wide MeshRetry, one object),
//! each destination for its [`ClusterConf`], and the port for its [`PortPolicy`]. One
//! module per kind turns a merged conf into its compiled form ([`timeouts`], [`retry`],
//! [`rate_limit`]); fault injection needs no compiling.

mod access_log;
mod cluster;
mod rate_limit;
mod retry;
pub mod select;
mod timeouts;
mod trace;

use super::reuse::RegexCache;
use crate::model::policy::rate_limit::LimitScope;
use crate::model::policy::{
    AccessLogConf, CircuitBreakerConf, FaultConf, HealthCheckConf, LoadBalancingConf, Policy,
    PolicySet, RateLimitConf, RetryConf, TimeoutConf, TraceConf,
};
use crate::model::{TargetRef, Valid};
use crate::resources::common::Tags;
use crate::resources::Meta;
use crate::runtime::registry::Registry;
use crate::snapshot::cluster::ClusterConf;
use crate::snapshot::policy::{PortPolicy, RoutePolicies};
use crate::snapshot::rate_limit::{FleetKey, HttpLimit};
use crate::snapshot::{GatewayIdentity, Protocol};
use foldhash::HashMap;
use select::{label, merged_for, merged_inbound, merged_route, Ranked};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// The listener settings a port has when no policy sets them: meshgate's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerDefaults {
    /// `--header-timeout` (Kuma: 500 ms; meshgate: 10 s, friendlier to slow clients).
    pub request_headers: Duration,
    /// `--idle-timeout` (Kuma: 5 min).
    pub idle: Duration,
    /// `--tcp-idle-timeout` (Kuma: 5 min).
    pub tcp_idle: Duration,
}

impl Default for ListenerDefaults {
    fn default() -> Self {
        ListenerDefaults {
            request_headers: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            tcp_idle: Duration::from_secs(300),
        }
    }
}

/// Every policy that applies to one port, ranked once, and what was compiled from them.
pub struct PortScope<'a> {
    port: u16,
    protocol: Protocol,
    defaults: ListenerDefaults,
    timeouts: Ranked<'a, TimeoutConf>,
    retries: Ranked<'a, RetryConf>,
    rate_limits: Ranked<'a, RateLimitConf>,
    faults: Ranked<'a, FaultConf>,
    health_checks: Ranked<'a, HealthCheckConf>,
    circuit_breakers: Ranked<'a, CircuitBreakerConf>,
    load_balancing: Ranked<'a, LoadBalancingConf>,
    access_logs: Ranked<'a, AccessLogConf>,
    traces: Ranked<'a, TraceConf>,
    otel_backends: &'a [crate::model::Valid<crate::model::policy::OtelBackend>],
    /// Rules without route-level policies share one object.
    port_wide: Option<Arc<RoutePolicies>>,
    by_routes: HashMap<Vec<&'a str>, Arc<RoutePolicies>>,
    clusters: HashMap<String, Arc<ClusterConf>>,
}

impl<'a> PortScope<'a> {
    /// The policies of `set` selecting `port` of `gateway`, whose listeners there have the
    /// merged tags `listener_tags`.
    pub fn new(
        set: &'a PolicySet,
        gateway: &Meta,
        port: u16,
        protocol: Protocol,
        listener_tags: &[&Tags],
        defaults: ListenerDefaults,
    ) -> Self {
        PortScope {
            port,
            protocol,
            defaults,
            timeouts: Ranked::select(&set.timeouts, gateway, listener_tags),
            retries: Ranked::select(&set.retries, gateway, listener_tags),
            rate_limits: Ranked::select(&set.rate_limits, gateway, listener_tags),
            faults: Ranked::select(&set.faults, gateway, listener_tags),
            health_checks: Ranked::select(&set.health_checks, gateway, listener_tags),
            circuit_breakers: Ranked::select(&set.circuit_breakers, gateway, listener_tags),
            load_balancing: Ranked::select(&set.load_balancing, gateway, listener_tags),
            access_logs: Ranked::select(&set.access_logs, gateway, listener_tags),
            traces: Ranked::select(&set.traces, gateway, listener_tags),
            otel_backends: &set.otel_backends,
            port_wide: None,
            by_routes: HashMap::default(),
            clusters: HashMap::default(),
        }
    }

    /// The port's own settings: listener timeouts, TCP idle, connection rate, TCP connect
    /// attempts, fault injection.
    pub fn port_policy(&self, registry: &Registry, gateway: &GatewayIdentity) -> PortPolicy {
        let timeouts = merged_inbound(&self.timeouts.port);
        let listener = timeouts::listener(timeouts.as_ref(), &self.defaults);
        let tcp_idle = timeouts::tcp_idle(timeouts.as_ref(), &self.defaults);
        let rate = merged_route(&self.rate_limits.port, &[]);
        let connection_rate = rate_limit::connection_rate(rate.as_ref()).map(|r| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ("tcp", &gateway.name, self.port).hash(&mut h);
            registry.bucket(h.finish(), r.num, r.interval)
        });
        let retry = merged_route(&self.retries.port, &[]);
        let faults = merged_route(&self.faults.port, &[])
            .and_then(|f| f.http)
            .unwrap_or_default();
        let mut applied: Vec<Arc<str>> = Vec::new();
        note(&mut applied, &self.timeouts.port);
        note(&mut applied, &self.retries.port);
        note(&mut applied, &self.rate_limits.port);
        note(&mut applied, &self.faults.port);
        note(&mut applied, &self.health_checks.port);
        note(&mut applied, &self.circuit_breakers.port);
        note(&mut applied, &self.load_balancing.port);
        note(&mut applied, &self.access_logs.port);
        note(&mut applied, &self.traces.port);
        let tracing = match self.protocol {
            Protocol::Http | Protocol::Https => trace::compile(
                merged_inbound(&self.traces.port).as_ref(),
                self.otel_backends,
                &gateway.service,
                registry,
            ),
            Protocol::Tcp | Protocol::Tls => None,
        };
        let access_logs = access_log::compile(
            merged_route(&self.access_logs.port, &[]).as_ref(),
            merged_inbound(&self.access_logs.port).as_ref(),
            &access_log::LogContext {
                protocol: self.protocol,
                service: &gateway.service,
                otel_backends: self.otel_backends,
                registry,
            },
        );
        PortPolicy {
            access_logs,
            tracing,
            listener,
            tcp_idle,
            connection_rate,
            tcp_connect_attempts: retry::tcp_connect_attempts(retry.as_ref()),
            faults: faults.into_boxed_slice(),
            applied: applied.into_boxed_slice(),
        }
    }

    /// The policies of a rule contributed by `routes` (the route that won the merge first).
    pub fn route(&mut self, routes: &[&'a str], regexes: &mut RegexCache) -> Arc<RoutePolicies> {
        let has_route_level = routes.iter().any(|r| {
            !self.timeouts.for_route(r).is_empty()
                || !self.retries.for_route(r).is_empty()
                || !self.rate_limits.for_route(r).is_empty()
        });
        if !has_route_level {
            if let Some(p) = &self.port_wide {
                return p.clone();
            }
            let p = Arc::new(self.compile_route(&[], regexes));
            self.port_wide = Some(p.clone());
            return p;
        }
        let key = routes.to_vec();
        if let Some(p) = self.by_routes.get(&key) {
            return p.clone();
        }
        let p = Arc::new(self.compile_route(routes, regexes));
        self.by_routes.insert(key, p.clone());
        p
    }

    fn compile_route(&self, routes: &[&'a str], regexes: &mut RegexCache) -> RoutePolicies {
        let timeouts = merged_route(&self.timeouts.port, &route_level(&self.timeouts, routes));
        let retries = merged_route(&self.retries.port, &route_level(&self.retries, routes));
        let rate = merged_route(
            &self.rate_limits.port,
            &route_level(&self.rate_limits, routes),
        );
        let mut applied: Vec<Arc<str>> = Vec::new();
        note(&mut applied, &self.timeouts.port);
        note(&mut applied, &route_level(&self.timeouts, routes));
        note(&mut applied, &self.retries.port);
        note(&mut applied, &route_level(&self.retries, routes));
        note(&mut applied, &self.rate_limits.port);
        note(&mut applied, &route_level(&self.rate_limits, routes));
        let (http_retry, grpc_retry) = retry::compile(retries.as_ref(), regexes);
        RoutePolicies {
            timeouts: timeouts::route(timeouts.as_ref()),
            retry: http_retry.map(Arc::new),
            grpc_retry: grpc_retry.map(Arc::new),
            rate_limit: rate_limit::http(rate.as_ref()),
            applied: applied.into_boxed_slice(),
        }
    }

    /// The HTTP limit of one rule: its own bucket (Envoy's per-route config), found again
    /// by `identity` on the next build while the limit is unchanged.
    pub fn http_limit(
        &self,
        policies: &RoutePolicies,
        registry: &Registry,
        gateway: &str,
        identity: impl FnOnce() -> u64,
    ) -> Option<Arc<HttpLimit>> {
        let spec = policies.rate_limit.as_ref()?;
        // Hashed only for a limited rule (7 % of compiling a 25,000-rule table otherwise).
        let identity = identity();
        Some(Arc::new(HttpLimit {
            bucket: registry.bucket(identity, spec.rate.num, spec.rate.interval),
            fleet: (spec.scope == LimitScope::Fleet)
                .then(|| FleetKey::new(gateway, identity, spec.rate.num, spec.rate.interval)),
            status: spec.status,
            set: spec.set.clone(),
            add: spec.add.clone(),
        }))
    }

    /// The cluster settings of the destination named `service` on this port.
    pub fn cluster(&mut self, service: Option<&str>) -> Arc<ClusterConf> {
        let key = service.unwrap_or("").to_string();
        if let Some(c) = self.clusters.get(&key) {
            return c.clone();
        }
        fn for_dest<C: crate::model::policy::Merge + Clone>(
            ranked: &Ranked<'_, C>,
            service: Option<&str>,
        ) -> Option<C> {
            match service {
                Some(s) => merged_for(&ranked.port, select::Destination(s)),
                None => merged_route(&ranked.port, &[]),
            }
        }
        let timeouts = for_dest(&self.timeouts, service);
        let health = for_dest(&self.health_checks, service);
        let breaker = for_dest(&self.circuit_breakers, service);
        let balancing = for_dest(&self.load_balancing, service);
        let (panic_threshold, fail_traffic_on_panic) =
            cluster::panic(health.as_ref(), breaker.as_ref());
        let c = Arc::new(ClusterConf {
            health: cluster::health(health.as_ref(), self.protocol),
            limits: cluster::limits(breaker.as_ref()),
            outlier: cluster::outlier(breaker.as_ref()),
            panic_threshold,
            fail_traffic_on_panic,
            lb: cluster::lb(balancing.as_ref()),
            ..timeouts::cluster(timeouts.as_ref())
        });
        self.clusters.insert(key, c.clone());
        c
    }
}

/// The route-level policies of `routes`, in priority order, each once.
fn route_level<'a, C>(ranked: &Ranked<'a, C>, routes: &[&str]) -> Vec<&'a Valid<Policy<C>>> {
    let mut out: Vec<&'a Valid<Policy<C>>> = Vec::new();
    for r in routes {
        for p in ranked.for_route(r) {
            if !out.iter().any(|o| std::ptr::eq(*o, *p)) {
                out.push(p);
            }
        }
    }
    out.sort_by(|a, b| select::display_name(&b.meta).cmp(select::display_name(&a.meta)));
    out
}

fn note<C>(applied: &mut Vec<Arc<str>>, policies: &[&Valid<Policy<C>>]) {
    applied.extend(policies.iter().map(|p| Arc::from(label(&p.meta))));
}

/// Warnings about targets that name nothing in the directory and parts of policies Kuma
/// does not apply to a gateway either (spec §2, §4.4).
pub fn warnings(set: &crate::model::ValidSet) -> Vec<String> {
    let gateways: Vec<(&str, &str)> = set
        .gateways
        .iter()
        .map(|g| (g.meta.mesh.as_str(), g.meta.name.as_str()))
        .collect();
    let routes: Vec<(&str, &str)> = set
        .http_routes
        .iter()
        .map(|r| (r.meta.mesh.as_str(), r.meta.name.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut check = |meta: &Meta, target: &TargetRef| {
        match target {
        TargetRef::MeshGateway { name, .. }
            if !gateways.contains(&(meta.mesh.as_str(), name.as_str())) =>
        {
            out.push(format!(
                "{}: {}: spec.targetRef names MeshGateway {name:?}, which is not in the directory; it selects nothing",
                meta.origin,
                meta.display_name()
            ))
        }
        TargetRef::MeshHttpRoute { name }
            if !routes.contains(&(meta.mesh.as_str(), name.as_str())) =>
        {
            out.push(format!(
                "{}: {}: spec.targetRef names MeshHTTPRoute {name:?}, which is not in the directory; it selects nothing",
                meta.origin,
                meta.display_name()
            ))
        }
        _ => {}
    }
    };
    for r in &set.http_routes {
        check(&r.meta, &r.spec.target);
    }
    for r in &set.tcp_routes {
        check(&r.meta, &r.spec.target);
    }
    let p = &set.policies;
    for (meta, target) in p
        .timeouts
        .iter()
        .map(|x| (&x.meta, &x.spec.target))
        .chain(p.retries.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.rate_limits.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.faults.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.health_checks.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.circuit_breakers.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.load_balancing.iter().map(|x| (&x.meta, &x.spec.target)))
        .chain(p.access_logs.iter().map(|x| (&x.meta, &x.spec.target)))
    {
        check(meta, target);
    }
    external_entries(&mut out, &p.timeouts);
    external_entries(&mut out, &p.retries);
    not_applied_parts(&mut out, p);
    access_log::warnings(&mut out, &p.access_logs, &p.otel_backends);
    trace::warnings(&mut out, p);
    out
}

/// Parts of MeshHealthCheck, MeshCircuitBreaker and MeshLoadBalancingStrategy that Kuma's
/// gateway does not apply either, or that need what a standalone gateway has not (spec §6.1,
/// §7, §8.1): accepted, named in `--check`.
fn not_applied_parts(out: &mut Vec<String>, p: &PolicySet) {
    let mut say = |meta: &Meta, what: String| {
        out.push(format!("{}: {}: {what}", meta.origin, meta.display_name()))
    };
    for h in p
        .health_checks
        .iter()
        .filter(|h| h.spec.target.includes_gateways())
    {
        for (i, to) in h.spec.to.iter().enumerate() {
            if to
                .conf
                .grpc
                .as_ref()
                .is_some_and(|g| g.disabled != Some(true))
            {
                say(&h.meta, format!("spec.to[{i}].default.grpc is not applied: a gateway's check type follows its listener's protocol (HTTP or TCP), as in Kuma"));
            }
        }
    }
    for c in p
        .circuit_breakers
        .iter()
        .filter(|c| c.spec.target.includes_gateways())
    {
        if !c.spec.inbound.is_empty() {
            say(&c.meta, "spec.from / spec.rules have no effect on a gateway (Kuma applies only spec.to there)".to_string());
        }
        for (i, to) in c.spec.to.iter().enumerate() {
            if to
                .conf
                .connection_limits
                .as_ref()
                .is_some_and(|l| l.max_connection_pools.is_some())
            {
                say(&c.meta, format!("spec.to[{i}].default.connectionLimits.maxConnectionPools is not applied: meshgate keeps one pool per endpoint"));
            }
        }
    }
    for l in p
        .load_balancing
        .iter()
        .filter(|l| l.spec.target.includes_gateways())
    {
        for (i, to) in l.spec.to.iter().enumerate() {
            if to.conf.locality_awareness == Some(true) {
                say(&l.meta, format!("spec.to[{i}].default.localityAwareness is not applied: a standalone gateway has no zones"));
            }
            let filter_state = to.conf.effective_hash_policies().iter().any(|h| {
                matches!(
                    h.source,
                    crate::model::policy::load_balancing::HashSource::FilterState(_)
                )
            });
            if filter_state {
                say(&l.meta, format!("spec.to[{i}]: a FilterState hash policy never produces a hash here (Envoy-internal state)"));
            }
        }
    }
}

/// `to[]` entries for a MeshExternalService are accepted under a gateway target and have no
/// effect there (Kuma's `applyToGateway` reads only Mesh and service rules).
fn external_entries<C>(out: &mut Vec<String>, policies: &[Valid<Policy<C>>]) {
    for p in policies {
        if !p.spec.target.includes_gateways() {
            continue;
        }
        for (i, to) in p.spec.to.iter().enumerate() {
            if let TargetRef::MeshExternalService { name } = &to.target {
                out.push(format!(
                    "{}: {}: spec.to[{i}] (MeshExternalService {name:?}) is not applied on a gateway, as in Kuma",
                    p.meta.origin,
                    p.meta.display_name()
                ));
            }
        }
    }
}
