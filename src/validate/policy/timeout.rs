//! MeshTimeout (K:`pkg/plugins/policies/meshtimeout/api/v1alpha1/validator.go`; spec §4.3).

use super::{
    check_top, duration, lower_from, lower_rules, lower_to, outbound_to_kinds, policy, Sign, Top,
    ROUTE_POLICY_TOP,
};
use crate::model::policy::timeout::{HttpTimeouts, TimeoutConf};
use crate::model::policy::Policy;
use crate::resources::policy::timeout::{MeshTimeout, TimeoutConf as RawConf};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

const ROUTE_LEVEL: &str =
    "can't be specified when top-level TargetRef is referencing MeshHTTPRoute";

pub fn lower(r: &mut Report, spec: &MeshTimeout) -> Option<Policy<TimeoutConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &ROUTE_POLICY_TOP);
    let top = Top::of(spec.target_ref.as_ref());
    let has = |n: Option<usize>| n.is_some_and(|n| n > 0);
    let (to_n, from_n, rules_n) = (
        spec.to.as_ref().map(Vec::len),
        spec.from.as_ref().map(Vec::len),
        spec.rules.as_ref().map(Vec::len),
    );
    if !has(to_n) && !has(from_n) && !has(rules_n) {
        r.add(
            &root,
            "at least one of 'from', 'to' or 'rules' has to be defined",
        );
    }
    if has(rules_n) && (has(to_n) || has(from_n)) {
        r.add(
            &root,
            "fields 'to' and 'from' must be empty when 'rules' is defined",
        );
    }
    let route_level = top.is_route();
    let mut inbound = Vec::new();
    if top.is_gateway_scoped() && has(from_n) {
        r.add(&root.field("from"), "must not be defined");
    } else {
        inbound = lower_from(r, &root, spec.from.as_ref(), |r, at, d| {
            conf(r, at, d, route_level)
        });
    }
    inbound.extend(lower_rules(r, &root, spec.rules.as_ref(), |r, at, d| {
        conf(r, at, d, route_level)
    }));
    let to_kinds = outbound_to_kinds(&top);
    let to = lower_to(r, &root, spec.to.as_ref(), to_kinds, |r, at, d| {
        conf(r, at, d, route_level)
    });
    Some(policy(r, spec, to, inbound))
}

/// One `default`: at least one timeout; on a route-level policy only the route's own
/// timeouts; `connectionTimeout` positive, the others not negative (0 turns them off).
fn conf(
    r: &mut Report,
    at: &FieldPath,
    d: Option<&RawConf>,
    route_level: bool,
) -> Option<TimeoutConf> {
    let empty = RawConf::default();
    let d = d.unwrap_or(&empty);
    if d.connection_timeout.is_none() && d.idle_timeout.is_none() && d.http.is_none() {
        r.add(at, "at least one timeout should be configured");
        return None;
    }
    if route_level {
        let http = d.http.as_ref();
        let cluster_fields = [
            ("connectionTimeout", d.connection_timeout.is_some()),
            ("idleTimeout", d.idle_timeout.is_some()),
            (
                "http.maxStreamDuration",
                http.is_some_and(|h| h.max_stream_duration.is_some()),
            ),
            (
                "http.maxConnectionDuration",
                http.is_some_and(|h| h.max_connection_duration.is_some()),
            ),
        ];
        for (field, set) in cluster_fields {
            if set {
                r.add(&dotted(at, field), ROUTE_LEVEL);
            }
        }
    }
    let http = d.http.as_ref().map(|h| {
        let at = at.field("http");
        if h.request_timeout.is_none()
            && h.stream_idle_timeout.is_none()
            && h.max_stream_duration.is_none()
            && h.max_connection_duration.is_none()
        {
            r.add(
                &at,
                "at least one timeout in this section should be configured",
            );
        }
        let field = |r: &mut Report, name: &str, v: Option<&String>| {
            duration(r, &at.field(name), v, Sign::NotNegative)
        };
        HttpTimeouts {
            request_timeout: field(r, "requestTimeout", h.request_timeout.as_ref()),
            stream_idle_timeout: field(r, "streamIdleTimeout", h.stream_idle_timeout.as_ref()),
            max_stream_duration: field(r, "maxStreamDuration", h.max_stream_duration.as_ref()),
            max_connection_duration: field(
                r,
                "maxConnectionDuration",
                h.max_connection_duration.as_ref(),
            ),
            request_headers_timeout: field(
                r,
                "requestHeadersTimeout",
                h.request_headers_timeout.as_ref(),
            ),
        }
    });
    Some(TimeoutConf {
        connection_timeout: duration(
            r,
            &at.field("connectionTimeout"),
            d.connection_timeout.as_ref(),
            Sign::Positive,
        ),
        idle_timeout: duration(
            r,
            &at.field("idleTimeout"),
            d.idle_timeout.as_ref(),
            Sign::NotNegative,
        ),
        http,
    })
}

fn dotted(at: &FieldPath, fields: &str) -> FieldPath {
    fields.split('.').fold(at.clone(), |p, f| p.field(f))
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(spec: &str) -> String {
        format!("type: MeshTimeout\nname: t\nmesh: default\nspec:\n{spec}")
    }

    #[test]
    fn kuma_default_policies_are_valid() {
        assert_yaml(
            &doc("  targetRef: {kind: Mesh, proxyTypes: [Gateway]}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 5m, http: {streamIdleTimeout: 5s, requestHeadersTimeout: 500ms}}\n  to:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1h, http: {streamIdleTimeout: 5s}}\n"),
            &[],
        );
    }

    #[test]
    fn shape_rules() {
        assert_yaml(
            &doc("  targetRef: {kind: Mesh}\n"),
            &["spec: at least one of 'from', 'to' or 'rules' has to be defined"],
        );
        assert_yaml(
            &doc("  targetRef: {kind: MeshGateway, name: gw}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1s}\n"),
            &["spec.from: must not be defined"],
        );
        assert_yaml(
            &doc("  rules:\n  - default: {idleTimeout: 1s}\n  to:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1s}\n"),
            &["spec: fields 'to' and 'from' must be empty when 'rules' is defined"],
        );
        assert_yaml(
            &doc("  targetRef: {kind: MeshGateway, name: gw}\n  to:\n  - targetRef: {kind: MeshService, name: a}\n    default: {idleTimeout: 1s}\n"),
            &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
        );
    }

    #[test]
    fn default_rules() {
        assert_yaml(
            &doc("  to:\n  - targetRef: {kind: Mesh}\n    default: {}\n"),
            &["spec.to[0].default: at least one timeout should be configured"],
        );
        assert_yaml(
            &doc("  to:\n  - targetRef: {kind: Mesh}\n    default: {http: {requestHeadersTimeout: 1s}}\n"),
            &["spec.to[0].default.http: at least one timeout in this section should be configured"],
        );
        assert_yaml(
            &doc("  to:\n  - targetRef: {kind: Mesh}\n    default: {connectionTimeout: 0s, idleTimeout: -1s, http: {requestTimeout: -2s}}\n"),
            &[
                "spec.to[0].default.http.requestTimeout: must not be negative when defined",
                "spec.to[0].default.connectionTimeout: must be greater than zero when defined",
                "spec.to[0].default.idleTimeout: must not be negative when defined",
            ],
        );
        assert_yaml(
            &doc("  targetRef: {kind: MeshHTTPRoute, name: r}\n  to:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1s, http: {requestTimeout: 1s, maxStreamDuration: 1s}}\n"),
            &[
                "spec.to[0].default.idleTimeout: can't be specified when top-level TargetRef is referencing MeshHTTPRoute",
                "spec.to[0].default.http.maxStreamDuration: can't be specified when top-level TargetRef is referencing MeshHTTPRoute",
            ],
        );
        assert_yaml(
            &doc("  rules:\n  - matches: [{}]\n    default: {idleTimeout: 1s}\n"),
            &["spec.rules[0].matches[0]: must specify at least one of 'spiffeID' or 'sni'"],
        );
    }
}
