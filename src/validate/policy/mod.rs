//! Kuma's policy validators (spec `kuma-policies.md` §4.3, §5.3, §9.2, §10.2, §13), one
//! module per kind, each checking a decoded policy and lowering it into
//! [`crate::model::policy`] in the same pass: a value is read once, and the function that
//! words its error is the one that keeps it.
//!
//! What every kind shares lives here: the top-level `targetRef` (kinds per role), the
//! `to[]` / `from[]` / `rules[]` entries, and the readers of Kuma's value formats
//! (durations, percentages) with Kuma's messages.

pub mod access_log;
pub mod circuit_breaker;
pub mod fault;
pub mod health_check;
pub mod load_balancing;
pub mod not_applied;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
pub mod trace;

use super::lower::target;
use super::messages::schema;
use super::path::FieldPath;
use super::report::Report;
use super::route_target::is_system_role;
use super::target_ref::{validate_ref, RefRules, RefView};
use super::values;
use crate::model::policy::{Policy, To};
use crate::resources::common::{IntOrString, TargetRef as RawTargetRef};
use crate::resources::policy::{Item, PolicySpec, Rule};
use std::time::Duration;

/// `kuma.io/effect: shadow`: Kuma validates the policy and never applies it.
const EFFECT_LABEL: &str = "kuma.io/effect";

/// The top-level `targetRef` of a policy, as the validators branch on it.
pub struct Top<'a> {
    /// The kind (`Mesh` when the targetRef is omitted).
    pub kind: &'a str,
    /// Kuma's `IncludesGateways`: MeshGateway, MeshHTTPRoute, or Mesh/MeshSubset whose
    /// `proxyTypes` are absent or include `Gateway`.
    pub includes_gateways: bool,
}

impl<'a> Top<'a> {
    pub fn of(t: Option<&'a RawTargetRef>) -> Top<'a> {
        let kind = t.map_or("Mesh", |t| t.kind.as_str());
        let gateway_proxy = t
            .and_then(|t| t.proxy_types.as_ref())
            .is_none_or(|p| p.iter().any(|p| p == "Gateway"));
        let includes_gateways = match kind {
            "MeshGateway" | "MeshHTTPRoute" => true,
            "Mesh" | "MeshSubset" => gateway_proxy,
            _ => false,
        };
        Top {
            kind,
            includes_gateways,
        }
    }

    /// MeshGateway or MeshHTTPRoute on top: the `to[]` kinds narrow to what a gateway route
    /// can send to.
    pub fn is_gateway_scoped(&self) -> bool {
        matches!(self.kind, "MeshGateway" | "MeshHTTPRoute")
    }

    pub fn is_route(&self) -> bool {
        self.kind == "MeshHTTPRoute"
    }
}

/// What the validator of one kind allows at the top level (system role), K:`validateTop`.
pub struct TopRules {
    pub kinds: &'static [&'static str],
    pub listener_tags: bool,
}

/// What MeshTimeout, MeshRetry and MeshRateLimit allow at the top level (system role).
pub const ROUTE_POLICY_TOP: TopRules = TopRules {
    kinds: &[
        "Mesh",
        "MeshSubset",
        "MeshGateway",
        "MeshService",
        "MeshServiceSubset",
        "MeshHTTPRoute",
        "Dataplane",
    ],
    listener_tags: true,
};

/// The top-level kinds of the policies that select proxies rather than routes (MeshHealthCheck,
/// MeshCircuitBreaker, MeshLoadBalancingStrategy, MeshFaultInjection, MeshAccessLog,
/// MeshTrace: no MeshHTTPRoute).
pub const PROXY_POLICY_KINDS: &[&str] = &[
    "Mesh",
    "MeshSubset",
    "MeshGateway",
    "MeshService",
    "MeshServiceSubset",
    "Dataplane",
];

/// What those policies allow at the top level, listener tags included.
pub const PROXY_POLICY_TOP: TopRules = TopRules {
    kinds: PROXY_POLICY_KINDS,
    listener_tags: true,
};

/// MeshTimeout's and MeshRetry's `to[]` kinds: under a gateway or route target, what a
/// gateway route can send to; otherwise the service kinds.
pub fn outbound_to_kinds(top: &Top) -> &'static [&'static str] {
    if top.is_gateway_scoped() {
        &["Mesh", "MeshExternalService"]
    } else {
        &[
            "Mesh",
            "MeshService",
            "MeshExternalService",
            "MeshMultiZoneService",
        ]
    }
}

/// Kuma's message for `from` on a policy whose scope includes a gateway (MeshRateLimit,
/// MeshFaultInjection).
pub const FROM_WITH_GATEWAY: &str = "must not be defined when the scope includes a Gateway, select only proxyType Sidecar or select only gateways and use spec.to";

/// The `from` and `to` rules MeshRateLimit and MeshFaultInjection share: a gateway scope
/// takes `to` (kind Mesh) and no `from`; a sidecar scope the reverse. Sidecar-side `from`
/// entries are checked and dropped (they never apply to a gateway); the lowered `to`
/// entries are returned.
pub fn gateway_to_only<R, C>(
    r: &mut Report,
    root: &FieldPath,
    spec: &PolicySpec<R>,
    top: &Top,
    mut conf: impl FnMut(&mut Report, &FieldPath, Option<&R>) -> Option<C>,
) -> Vec<To<C>> {
    let non_empty = |v: Option<&Vec<Item<R>>>| v.is_some_and(|v| !v.is_empty());
    if non_empty(spec.from.as_ref()) && top.includes_gateways {
        r.add(&root.field("from"), FROM_WITH_GATEWAY);
    } else {
        lower_from(r, root, spec.from.as_ref(), &mut conf);
    }
    if non_empty(spec.to.as_ref()) && !top.includes_gateways {
        r.add(&root.field("to"), super::messages::MUST_NOT_BE_DEFINED);
        Vec::new()
    } else {
        lower_to(r, root, spec.to.as_ref(), &["Mesh"], conf)
    }
}

/// Checks the top-level `targetRef`: the system role gets `kinds`; other roles (Kubernetes
/// policies outside Kuma's namespace) lose MeshGateway and MeshHTTPRoute.
pub fn check_top(r: &mut Report, spec: &FieldPath, top: Option<&RawTargetRef>, rules: &TopRules) {
    let Some(t) = top else { return };
    let system = is_system_role(r.meta());
    let kinds: Vec<&str> = rules
        .kinds
        .iter()
        .copied()
        .filter(|k| system || !matches!(*k, "MeshGateway" | "MeshHTTPRoute"))
        .collect();
    let ref_rules = RefRules {
        gateway_listener_tags_allowed: system && rules.listener_tags,
        ..RefRules::kinds(&kinds)
    };
    validate_ref(r, &spec.field("targetRef"), &RefView::from(t), &ref_rules);
}

/// Checks a `to[]`/`from[]` entry's targetRef against `kinds`.
pub fn check_entry_target(
    r: &mut Report,
    at: &FieldPath,
    t: Option<&RawTargetRef>,
    kinds: &[&str],
) {
    let empty = RawTargetRef::default();
    let t = t.unwrap_or(&empty);
    validate_ref(
        r,
        &at.field("targetRef"),
        &RefView::from(t),
        &RefRules::kinds(kinds),
    );
}

/// Lowers every `to[]` entry with `conf` (which checks and reads its `default`); entries are
/// kept in declaration order.
pub fn lower_to<R, C>(
    r: &mut Report,
    spec: &FieldPath,
    to: Option<&Vec<Item<R>>>,
    kinds: &[&str],
    mut conf: impl FnMut(&mut Report, &FieldPath, Option<&R>) -> Option<C>,
) -> Vec<To<C>> {
    let mut out = Vec::new();
    for (i, item) in to.into_iter().flatten().enumerate() {
        let at = spec.field("to").index(i);
        check_entry_target(r, &at, item.target_ref.as_ref(), kinds);
        if let Some(c) = conf(r, &at.field("default"), item.default.as_ref()) {
            out.push(To {
                target: target(item.target_ref.as_ref()),
                conf: c,
            });
        }
    }
    out
}

/// Lowers the `from[]` entries (targetRef `Mesh` only) into inbound confs.
pub fn lower_from<R, C>(
    r: &mut Report,
    spec: &FieldPath,
    from: Option<&Vec<Item<R>>>,
    mut conf: impl FnMut(&mut Report, &FieldPath, Option<&R>) -> Option<C>,
) -> Vec<C> {
    let mut out = Vec::new();
    for (i, item) in from.into_iter().flatten().enumerate() {
        let at = spec.field("from").index(i);
        check_entry_target(r, &at, item.target_ref.as_ref(), &["Mesh"]);
        if let Some(c) = conf(r, &at.field("default"), item.default.as_ref()) {
            out.push(c);
        }
    }
    out
}

/// Lowers the `rules[]` entries: only those without `matches` apply to a gateway listener
/// (`matches` select mTLS clients, which a standalone gateway has none of).
pub fn lower_rules<R, C>(
    r: &mut Report,
    spec: &FieldPath,
    rules: Option<&Vec<Rule<R>>>,
    mut conf: impl FnMut(&mut Report, &FieldPath, Option<&R>) -> Option<C>,
) -> Vec<C> {
    let mut out = Vec::new();
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let at = spec.field("rules").index(i);
        for (j, m) in rule.matches.iter().flatten().enumerate() {
            if m.spiffe_id.is_none() && m.sni.is_none() {
                r.add(
                    &at.field("matches").index(j),
                    "must specify at least one of 'spiffeID' or 'sni'",
                );
            }
        }
        let conf = conf(r, &at.field("default"), rule.default.as_ref());
        if let (Some(c), true) = (conf, rule.matches.as_ref().is_none_or(Vec::is_empty)) {
            out.push(c);
        }
    }
    out
}

/// The policy with its lowered parts (the caller has checked the shape).
pub fn policy<R, C>(
    r: &Report,
    spec: &PolicySpec<R>,
    to: Vec<To<C>>,
    inbound: Vec<C>,
) -> Policy<C> {
    Policy {
        target: target(spec.target_ref.as_ref()),
        to,
        inbound,
        shadow: r
            .meta()
            .labels
            .get(EFFECT_LABEL)
            .is_some_and(|v| v == "shadow"),
    }
}

/// Reports `spec.<field>` when a kind has no such section.
pub fn no_section<T>(r: &mut Report, spec: &FieldPath, field: &str, v: Option<&Vec<T>>) {
    if v.is_some_and(|v| !v.is_empty()) {
        r.add(&spec.field(field), "must not be defined");
    }
}

/// A `uint32` field; `positive`: 0 is refused (`must be greater than 0`).
pub fn count(r: &mut Report, at: &FieldPath, n: i64, positive: bool) -> Option<u32> {
    if positive && n == 0 {
        r.add(at, "must be greater than 0");
        return None;
    }
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) if n < 0 => {
            r.add(at, schema::minimum(0));
            None
        }
        Err(_) => {
            r.add(at, schema::maximum(i64::from(u32::MAX)));
            None
        }
    }
}

/// How a duration field may be set.
#[derive(Clone, Copy)]
pub enum Sign {
    /// `must not be negative when defined` (zero allowed: off).
    NotNegative,
    /// `must be greater than zero when defined`.
    Positive,
}

pub const GREATER_THAN_ZERO: &str = "must be greater than zero when defined";

/// Reads an optional Go duration at `at`.
pub fn duration(
    r: &mut Report,
    at: &FieldPath,
    v: Option<&String>,
    sign: Sign,
) -> Option<Duration> {
    let s = v?;
    match values::go_duration(s) {
        None => {
            r.add(at, format!("invalid duration {s:?}"));
            None
        }
        Some(Err(_)) => {
            r.add(
                at,
                match sign {
                    Sign::NotNegative => super::messages::MUST_NOT_BE_NEGATIVE,
                    Sign::Positive => GREATER_THAN_ZERO,
                },
            );
            None
        }
        Some(Ok(d)) if d.is_zero() && matches!(sign, Sign::Positive) => {
            r.add(at, GREATER_THAN_ZERO);
            None
        }
        Some(Ok(d)) => Some(d),
    }
}

/// Reads an optional percentage kept in hundredths (`healthyPanicThreshold`).
pub fn hundredths(r: &mut Report, at: &FieldPath, v: Option<&IntOrString>) -> Option<u32> {
    v?;
    percentage(r, at, v).map(|p| (p * 100.0).round() as u32)
}

/// Reads a required Kuma percentage (K:`ValidatePercentage`): 0–100, int or decimal string.
pub fn percentage(r: &mut Report, at: &FieldPath, v: Option<&IntOrString>) -> Option<f64> {
    let Some(v) = v else {
        r.add(at, schema::REQUIRED);
        return None;
    };
    match v.as_f64() {
        None => {
            r.add(at, "string must be a valid number");
            None
        }
        Some(p) if !(0.0..=100.0).contains(&p) => {
            r.add(at, "must be in inclusive range [0.0, 100.0]");
            None
        }
        Some(p) => Some(p),
    }
}
