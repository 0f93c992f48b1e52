//! MeshRateLimit (K:`pkg/plugins/policies/meshratelimit/api/v1alpha1/validator.go`; spec §9.2).

use super::{check_top, gateway_to_only, lower_rules, policy, Top, ROUTE_POLICY_TOP};
use crate::model::policy::rate_limit::{
    HttpRateLimit, LimitScope, LocalRateLimit, OnRateLimit, Rate, RateLimitConf, RateLimitHeaders,
    TcpRateLimit,
};
use crate::model::policy::Policy;
use crate::resources::http_route::HeaderValue as RawHeader;
use crate::resources::policy::rate_limit::{self as raw, MeshRateLimit};
use crate::validate::http_match::validate_header_name;
use crate::validate::messages::{must_have_at_least_one, MUST_BE_DEFINED, MUST_NOT_BE_DEFINED};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;
use crate::validate::values;
use std::time::Duration;

/// The label that makes a policy's HTTP limits count across the fleet (`instance`|`fleet`).
pub const SCOPE_LABEL: &str = "meshgate.io/rate-limit-scope";

/// The policy's scope label, if it has one; a value other than `instance`/`fleet` is an
/// error (a typo must not silently leave a limit per instance).
fn scope_of(meta: &crate::resources::Meta) -> Result<Option<LimitScope>, String> {
    match meta.labels.get(SCOPE_LABEL).map(String::as_str) {
        None => Ok(None),
        Some("instance") => Ok(Some(LimitScope::Instance)),
        Some("fleet") => Ok(Some(LimitScope::Fleet)),
        Some(other) => Err(format!("must be one of: instance, fleet (got {other:?})")),
    }
}

/// Kuma refuses intervals of 50 ms and less.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

pub fn lower(r: &mut Report, spec: &MeshRateLimit) -> Option<Policy<RateLimitConf>> {
    let root = FieldPath::spec_of(r.meta());
    let non_empty = |v: Option<usize>| v.is_some_and(|n| n > 0);
    let (to_n, from_n, rules_n) = (
        spec.to.as_ref().map(Vec::len),
        spec.from.as_ref().map(Vec::len),
        spec.rules.as_ref().map(Vec::len),
    );
    if non_empty(rules_n) && (non_empty(to_n) || non_empty(from_n)) {
        r.add(
            &root,
            "fields 'to' and 'from' must be empty when 'rules' is defined",
        );
    }
    check_top(r, &root, spec.target_ref.as_ref(), &ROUTE_POLICY_TOP);
    if let Err(e) = scope_of(r.meta()) {
        let labels = match r.meta().form {
            crate::resources::Form::Kubernetes => FieldPath::root().field("metadata"),
            _ => FieldPath::root(),
        };
        let at = labels.field("labels").key(SCOPE_LABEL);
        r.add(&at, e);
    }
    let top = Top::of(spec.target_ref.as_ref());
    if non_empty(rules_n) && (top.includes_gateways || top.is_route()) {
        r.add(&root.field("rules"), MUST_NOT_BE_DEFINED);
    } else {
        // Sidecar-only inbound limits: checked, never applied to a gateway.
        lower_rules(r, &root, spec.rules.as_ref(), conf);
    }
    let to = gateway_to_only(r, &root, spec, &top, conf);
    Some(policy(r, spec, to, Vec::new()))
}

fn conf(r: &mut Report, at: &FieldPath, d: Option<&raw::RateLimitConf>) -> Option<RateLimitConf> {
    let at = at.field("local");
    let Some(local) = d.and_then(|d| d.local.as_ref()) else {
        r.add(&at, MUST_BE_DEFINED);
        return None;
    };
    if local.http.is_none() && local.tcp.is_none() {
        r.add(&at, must_have_at_least_one(&["tcp", "http"]));
    }
    Some(RateLimitConf {
        local: Some(LocalRateLimit {
            http: local.http.as_ref().map(|h| http(r, &at.field("http"), h)),
            tcp: local.tcp.as_ref().map(|t| tcp(r, &at.field("tcp"), t)),
        }),
    })
}

fn http(r: &mut Report, at: &FieldPath, h: &raw::LocalHttp) -> HttpRateLimit {
    if h.disabled.is_none() && h.request_rate.is_none() && h.on_rate_limit.is_none() {
        r.add(
            at,
            must_have_at_least_one(&["disabled", "requestRate", "onRateLimit"]),
        );
    }
    HttpRateLimit {
        scope: scope_of(r.meta()).ok().flatten(),
        disabled: h.disabled,
        request_rate: h
            .request_rate
            .as_ref()
            .and_then(|rate| self::rate(r, &at.field("requestRate"), rate)),
        on_rate_limit: h
            .on_rate_limit
            .as_ref()
            .map(|o| on_rate_limit(r, &at.field("onRateLimit"), o)),
    }
}

fn tcp(r: &mut Report, at: &FieldPath, t: &raw::LocalTcp) -> TcpRateLimit {
    if t.disabled.is_none() && t.connection_rate.is_none() {
        r.add(at, must_have_at_least_one(&["disabled", "connectionRate"]));
    }
    TcpRateLimit {
        disabled: t.disabled,
        connection_rate: t
            .connection_rate
            .as_ref()
            .and_then(|rate| self::rate(r, &at.field("connectionRate"), rate)),
    }
}

fn rate(r: &mut Report, at: &FieldPath, rate: &raw::Rate) -> Option<Rate> {
    let num = match rate.num {
        Some(n) if n > 0 => u32::try_from(n).ok(),
        _ => {
            r.add(&at.field("num"), "must be greater than 0");
            None
        }
    };
    let interval_at = at.field("interval");
    let interval = match rate
        .interval
        .as_deref()
        .map(|s| (s, values::go_duration(s)))
    {
        Some((s, None)) => {
            r.add(&interval_at, format!("invalid duration {s:?}"));
            None
        }
        Some((_, Some(Ok(d)))) if d > MIN_INTERVAL => Some(d),
        // Absent reads as zero, as in Kuma.
        _ => {
            r.add(&interval_at, "must be greater than: 50ms");
            None
        }
    };
    Some(Rate {
        num: num?,
        interval: interval?,
    })
}

fn on_rate_limit(r: &mut Report, at: &FieldPath, o: &raw::OnRateLimit) -> OnRateLimit {
    let status = o.status.and_then(|s| {
        let at = at.field("status");
        if s <= 0 {
            r.add(&at, "must be greater than 0");
            return None;
        }
        // meshgate: Envoy refuses statuses outside the HTTP range.
        match u16::try_from(s).ok().filter(|s| (100..=599).contains(s)) {
            Some(s) => Some(s),
            None => {
                r.add(&at, "must be an HTTP status code between 100 and 599");
                None
            }
        }
    });
    let headers = o.headers.as_ref().map(|h| {
        let at = at.field("headers");
        if h.remove.is_some() {
            r.add(&at.field("remove"), MUST_NOT_BE_DEFINED);
        }
        RateLimitHeaders {
            set: h.set.as_ref().map(|l| header_list(r, &at.field("set"), l)),
            add: h.add.as_ref().map(|l| header_list(r, &at.field("add"), l)),
        }
    });
    OnRateLimit { status, headers }
}

pub(super) fn header_list(
    r: &mut Report,
    at: &FieldPath,
    list: &[RawHeader],
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let hat = at.index(i);
        validate_header_name(r, &hat.field("name"), &h.name);
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok();
        let value = match http::HeaderValue::from_str(&h.value) {
            Ok(v) => Some(v),
            Err(_) => {
                r.add(&hat.field("value"), "invalid header value");
                None
            }
        };
        if let (Some(n), Some(v)) = (name, value) {
            out.push((n, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(target: &str, rest: &str) -> String {
        format!(
            "type: MeshRateLimit\nname: rl\nmesh: default\nspec:\n  targetRef: {target}\n{rest}"
        )
    }

    const TO: &str = "  to:\n  - targetRef: {kind: Mesh}\n    default:\n";

    #[test]
    fn a_gateway_limit_is_valid() {
        assert_yaml(
            &doc("{kind: MeshGateway, name: gw}", &format!("{TO}      local:\n        http:\n          requestRate: {{num: 1, interval: 10s}}\n          onRateLimit: {{status: 428, headers: {{add: [{{name: x-kuma-rate-limited, value: 'true'}}]}}}}\n        tcp:\n          connectionRate: {{num: 2, interval: 1s}}\n")),
            &[],
        );
    }

    #[test]
    fn scope_rules() {
        assert_yaml(
            &doc("{kind: MeshGateway, name: gw}", "  from:\n  - targetRef: {kind: Mesh}\n    default: {local: {http: {disabled: true}}}\n"),
            &["spec.from: must not be defined when the scope includes a Gateway, select only proxyType Sidecar or select only gateways and use spec.to"],
        );
        assert_yaml(
            &doc(
                "{kind: Mesh, proxyTypes: [Sidecar]}",
                &format!("{TO}      local: {{http: {{disabled: true}}}}\n"),
            ),
            &["spec.to: must not be defined"],
        );
        assert_yaml(
            &doc(
                "{kind: Mesh}",
                "  rules:\n  - default: {local: {http: {disabled: true}}}\n",
            ),
            &["spec.rules: must not be defined"],
        );
    }

    #[test]
    fn default_rules() {
        assert_yaml(
            &doc("{kind: Mesh}", &format!("{TO}      {{}}\n")),
            &["spec.to[0].default.local: must be defined"],
        );
        assert_yaml(
            &doc("{kind: Mesh}", &format!("{TO}      local: {{}}\n")),
            &["spec.to[0].default.local: must have at least one defined: tcp, http"],
        );
        assert_yaml(
            &doc("{kind: Mesh}", &format!("{TO}      local: {{http: {{}}, tcp: {{}}}}\n")),
            &[
                "spec.to[0].default.local.http: must have at least one defined: disabled, requestRate, onRateLimit",
                "spec.to[0].default.local.tcp: must have at least one defined: disabled, connectionRate",
            ],
        );
        assert_yaml(
            &doc("{kind: Mesh}", &format!("{TO}      local: {{http: {{requestRate: {{num: 0, interval: 50ms}}, onRateLimit: {{status: 0}}}}}}\n")),
            &[
                "spec.to[0].default.local.http.requestRate.num: must be greater than 0",
                "spec.to[0].default.local.http.requestRate.interval: must be greater than: 50ms",
                "spec.to[0].default.local.http.onRateLimit.status: must be greater than 0",
            ],
        );
    }
}
