//! MeshGateway (semantics §2.1; K:`pkg/core/resources/apis/mesh/gateway_validator.go`,
//! tests K:`…/gateway_validator_test.go`), plus meshgate's extensions: a `TLS` listener
//! needs a `tls` block, and certificate datasources are checked (see [`super::datasource`]).

use super::datasource::validate_datasource;
use super::hostname::gateway_hostname_problems;
use super::messages::{must_be_one_of, CANNOT_BE_EMPTY, MUST_NOT_BE_NEGATIVE, PORT_RANGE};
use super::path::FieldPath;
use super::report::Report;
use super::tags::{validate_tags, TagRules, DATAPLANE_ONLY_KEYS};
use crate::resources::gateway::{Listener, ListenerTls, MeshGateway};
use std::collections::{BTreeMap, BTreeSet};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TCP", "TLS"];
const TLS_MODES: &[&str] = &["TERMINATE", "PASSTHROUGH"];

/// Gateway and listener tags: any selector value, but not the Dataplane-owned keys.
const LISTENER_TAGS: TagRules = TagRules {
    forbidden_keys: DATAPLANE_ONLY_KEYS,
    ..TagRules::SELECTOR
};

/// Kuma's protobuf enums read `NONE` (or nothing) as "unset".
fn enum_value(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty() && *s != "NONE")
}

pub fn validate_gateway(r: &mut Report, spec: &MeshGateway) {
    let root = FieldPath::spec_of(r.meta());
    let cross_mesh = spec
        .conf
        .iter()
        .flat_map(|c| &c.listeners)
        .any(|l| l.cross_mesh == Some(true));

    // K:`ValidateSelectors` with RequireAtLeastOneSelector, RequireAtMostOneSelector for
    // cross-mesh gateways, and tags that need `kuma.io/service`.
    let selectors = root.field("selectors");
    if spec.selectors.is_empty() {
        r.add(&selectors, "must have at least one element");
    }
    let selector_tags = TagRules {
        require_at_least_one: true,
        require_service: true,
        ..TagRules::SELECTOR
    };
    for (i, s) in spec.selectors.iter().enumerate() {
        validate_tags(
            r,
            &selectors.index(i).field("match"),
            &s.match_tags,
            selector_tags,
        );
        if i > 0 && cross_mesh {
            r.add(&selectors.index(i), "there can be at most one selector");
        }
    }

    if let Some(tags) = &spec.tags {
        validate_tags(r, &root.field("tags"), tags, LISTENER_TAGS);
    }

    let conf = root.field("conf");
    let Some(c) = &spec.conf else {
        r.add(&conf, CANNOT_BE_EMPTY);
        return;
    };
    let listeners = conf.field("listeners");
    if c.listeners.is_empty() {
        r.add(&listeners, CANNOT_BE_EMPTY);
    }
    for (i, l) in c.listeners.iter().enumerate() {
        validate_listener(r, &listeners.index(i), l);
    }
    validate_collapsibility(r, &listeners, &c.listeners);
}

/// K:`validateMeshGatewayConf`, one listener.
fn validate_listener(r: &mut Report, at: &FieldPath, l: &Listener) {
    // Hostname is optional (routes may carry hostnames instead).
    if let Some(h) = l.hostname.as_deref().filter(|h| !h.is_empty()) {
        for msg in gateway_hostname_problems(h) {
            r.add(&at.field("hostname"), msg);
        }
    }

    if !(1..=65535).contains(&l.port.unwrap_or(0)) {
        r.add(&at.field("port"), PORT_RANGE);
    }

    let cross_mesh = l.cross_mesh == Some(true);
    match enum_value(l.protocol.as_deref()) {
        None => r.add(&at.field("protocol"), CANNOT_BE_EMPTY),
        Some("HTTPS") => {
            if cross_mesh {
                r.add(
                    &at.field("protocol"),
                    "protocol is not supported with crossMesh",
                );
            } else if let Some(tls) = &l.tls {
                if tls.mode.as_deref() == Some("PASSTHROUGH") {
                    r.add(
                        &at.field("tls").field("mode"),
                        "mode is not supported on HTTPS listeners",
                    );
                }
            } else {
                r.add(&at.field("tls"), CANNOT_BE_EMPTY);
            }
        }
        // meshgate: Kuma accepts a TLS listener without `tls` and then fails to generate its
        // configuration ("unsupported TLS mode"); refuse it here instead (semantics §2.1).
        Some("TLS") if l.tls.is_none() && !cross_mesh => {
            r.add(&at.field("tls"), CANNOT_BE_EMPTY);
        }
        Some(p) if !PROTOCOLS.contains(&p) => {
            r.add(&at.field("protocol"), must_be_one_of("protocol", PROTOCOLS));
        }
        Some(_) => {}
    }

    if let Some(tls) = &l.tls {
        validate_tls(r, &at.field("tls"), tls, cross_mesh);
    }

    if let Some(tags) = &l.tags {
        validate_tags(r, &at.field("tags"), tags, LISTENER_TAGS);
    }

    if let Some(limit) = l.resources.as_ref().and_then(|res| res.connection_limit) {
        if limit < 0 {
            r.add(
                &at.field("resources").field("connectionLimit"),
                MUST_NOT_BE_NEGATIVE,
            );
        }
    }
}

fn validate_tls(r: &mut Report, at: &FieldPath, tls: &ListenerTls, cross_mesh: bool) {
    let mode = enum_value(tls.mode.as_deref());
    if cross_mesh {
        if mode.is_some() || !tls.certificates.is_empty() {
            r.add(at, "must be empty with crossMesh");
        }
        return;
    }
    match mode {
        None => r.add(&at.field("mode"), CANNOT_BE_EMPTY),
        Some("TERMINATE") => match tls.certificates.len() {
            0 => r.add(
                &at.field("certificates"),
                "cannot be empty in TLS termination mode",
            ),
            1 | 2 => {} // an RSA and/or an ECDSA pair
            _ => r.add(
                &at.field("certificates"),
                "cannot have more than 2 certificates",
            ),
        },
        Some("PASSTHROUGH") => {}
        Some(_) => r.add(&at.field("mode"), must_be_one_of("mode", TLS_MODES)),
    }
    for (i, ds) in tls.certificates.iter().enumerate() {
        validate_datasource(r, &at.field("certificates").index(i), ds);
    }
}

/// K:`validateListenerCollapsibility`: listeners sharing a port become one socket, so they
/// must agree on the protocol and the connection limit and differ in hostname (`""` == `*`).
/// Reported per port in port order, listeners in index order.
fn validate_collapsibility(r: &mut Report, listeners_path: &FieldPath, listeners: &[Listener]) {
    let mut by_port: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, l) in listeners.iter().enumerate() {
        by_port.entry(l.port.unwrap_or(0)).or_default().push(i);
    }
    for indexes in by_port.values() {
        let protocols: BTreeSet<&str> = indexes
            .iter()
            .map(|&i| enum_value(listeners[i].protocol.as_deref()).unwrap_or("NONE"))
            .collect();
        if protocols.len() > 1 {
            for &i in indexes {
                r.add(
                    &listeners_path.index(i),
                    "protocol conflicts with other listeners on this port",
                );
            }
        }

        let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for &i in indexes {
            by_host
                .entry(listeners[i].effective_hostname())
                .or_default()
                .push(i);
        }
        let mut duplicated: Vec<usize> = by_host
            .values()
            .filter(|v| v.len() > 1)
            .flatten()
            .copied()
            .collect();
        duplicated.sort_unstable();
        for i in duplicated {
            r.add(
                &listeners_path.index(i),
                "multiple listeners for hostname on this port",
            );
        }

        let limited: Vec<(usize, i64)> = indexes
            .iter()
            .filter_map(|&i| {
                let limit = listeners[i].resources.as_ref()?.connection_limit?;
                (limit != 0).then_some((i, limit))
            })
            .collect();
        let distinct: BTreeSet<i64> = limited.iter().map(|(_, l)| *l).collect();
        if distinct.len() > 1 {
            for (i, _) in limited {
                r.add(
                    &listeners_path
                        .index(i)
                        .field("resources")
                        .field("connectionLimit"),
                    "conflicting values for this port",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    /// A valid gateway header; tests append listeners (or replace everything after it).
    fn gw(rest: &str) -> String {
        format!("type: MeshGateway\nmesh: default\nname: gw\n{rest}")
    }

    const SEL: &str = "selectors:\n- match:\n    kuma.io/service: gw\n";

    fn listeners(items: &str) -> String {
        gw(&format!("{SEL}conf:\n  listeners:\n{items}"))
    }

    #[test]
    fn valid_gateway() {
        assert_yaml(
            &listeners(
                "  - port: 8080\n    protocol: HTTP\n    hostname: foo.example.com\n    tags: {port: http}\n  - port: 8080\n    protocol: HTTP\n    hostname: '*.example.com'\n  - port: 8080\n    protocol: HTTP\n",
            ),
            &[],
        );
    }

    #[test]
    fn selectors_are_required_with_service_tag() {
        assert_yaml(
            &gw("conf:\n  listeners:\n  - port: 1\n    protocol: HTTP\n"),
            &["selectors: must have at least one element"],
        );
        assert_yaml(
            &gw("selectors:\n- match: {app: edge}\nconf:\n  listeners:\n  - port: 1\n    protocol: HTTP\n"),
            &["selectors[0].match: mandatory tag \"kuma.io/service\" is missing"],
        );
        assert_yaml(
            &gw("selectors:\n- match: {}\nconf:\n  listeners:\n  - port: 1\n    protocol: HTTP\n"),
            &[
                "selectors[0].match: must have at least one tag",
                "selectors[0].match: mandatory tag \"kuma.io/service\" is missing",
            ],
        );
    }

    #[test]
    fn cross_mesh_allows_one_selector() {
        assert_yaml(
            &gw("selectors:\n- match: {kuma.io/service: a}\n- match: {kuma.io/service: b}\nconf:\n  listeners:\n  - port: 1\n    protocol: HTTP\n    crossMesh: true\n"),
            &["selectors[1]: there can be at most one selector"],
        );
    }

    #[test]
    fn gateway_and_listener_tags_refuse_dataplane_keys() {
        assert_yaml(
            &gw(&format!("{SEL}tags:\n  kuma.io/service: gw\nconf:\n  listeners:\n  - port: 1\n    protocol: HTTP\n    tags: {{kuma.io/protocol: http}}\n")),
            &[
                "tags[\"kuma.io/service\"]: tag name must not be \"kuma.io/service\"",
                "conf.listeners[0].tags[\"kuma.io/protocol\"]: tag name must not be \"kuma.io/protocol\"",
            ],
        );
    }

    #[test]
    fn conf_and_listeners_are_required() {
        assert_yaml(&gw(SEL), &["conf: cannot be empty"]);
        assert_yaml(
            &gw(&format!("{SEL}conf:\n  listeners: []\n")),
            &["conf.listeners: cannot be empty"],
        );
    }

    #[test]
    fn port_range_and_protocol() {
        assert_yaml(
            &listeners(
                "  - protocol: HTTP\n  - port: 70000\n    protocol: HTTP\n    hostname: a.b\n",
            ),
            &[
                "conf.listeners[0].port: port must be in the range [1, 65535]",
                "conf.listeners[1].port: port must be in the range [1, 65535]",
            ],
        );
        assert_yaml(
            &listeners("  - port: 1\n"),
            &["conf.listeners[0].protocol: cannot be empty"],
        );
        assert_yaml(
            &listeners("  - port: 1\n    protocol: UDP\n"),
            &["conf.listeners[0].protocol: protocol must be one of: HTTP, HTTPS, TCP, TLS"],
        );
    }

    #[test]
    fn hostnames() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n    hostname: '*.foo.*.example.com'\n  - port: 2\n    protocol: HTTP\n    hostname: foo.example$.com\n  - port: 3\n    protocol: HTTP\n    hostname: '*'\n"),
            &[
                "conf.listeners[0].hostname: invalid wildcard domain",
                "conf.listeners[1].hostname: invalid hostname",
            ],
        );
    }

    #[test]
    fn https_needs_terminating_tls() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTPS\n"),
            &["conf.listeners[0].tls: cannot be empty"],
        );
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTPS\n    tls: {mode: PASSTHROUGH}\n"),
            &["conf.listeners[0].tls.mode: mode is not supported on HTTPS listeners"],
        );
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTPS\n    crossMesh: true\n"),
            &["conf.listeners[0].protocol: protocol is not supported with crossMesh"],
        );
    }

    #[test]
    fn tls_block_rules() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTPS\n    tls: {mode: TERMINATE}\n  - port: 2\n    protocol: TLS\n    tls: {certificates: [{secret: a}]}\n  - port: 3\n    protocol: TLS\n    tls:\n      mode: TERMINATE\n      certificates: [{secret: a}, {secret: b}, {secret: c}]\n  - port: 4\n    protocol: TLS\n    tls: {mode: PASSTHROUGH}\n"),
            &[
                "conf.listeners[0].tls.certificates: cannot be empty in TLS termination mode",
                "conf.listeners[1].tls.mode: cannot be empty",
                "conf.listeners[2].tls.certificates: cannot have more than 2 certificates",
            ],
        );
        assert_yaml(
            &listeners("  - port: 1\n    protocol: TLS\n    tls: {mode: BOTH}\n"),
            &["conf.listeners[0].tls.mode: mode must be one of: TERMINATE, PASSTHROUGH"],
        );
    }

    #[test]
    fn tls_protocol_needs_a_tls_block() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: TLS\n"),
            &["conf.listeners[0].tls: cannot be empty"],
        );
    }

    #[test]
    fn cross_mesh_refuses_tls() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n    crossMesh: true\n    tls: {mode: TERMINATE}\n"),
            &["conf.listeners[0].tls: must be empty with crossMesh"],
        );
    }

    #[test]
    fn certificate_datasources() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTPS\n    tls:\n      mode: TERMINATE\n      certificates:\n      - {secret: a, file: b}\n      - {inline: '%%%'}\n"),
            &[
                "conf.listeners[0].tls.certificates[0]: datasource must have exactly one defined: secret, file, inline, inlineString",
                "conf.listeners[0].tls.certificates[1].inline: must be valid base64",
            ],
        );
    }

    #[test]
    fn protocol_conflict_on_a_port() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n    hostname: a.test\n  - port: 1\n    protocol: TCP\n    hostname: b.test\n  - port: 2\n    protocol: TCP\n"),
            &[
                "conf.listeners[0]: protocol conflicts with other listeners on this port",
                "conf.listeners[1]: protocol conflicts with other listeners on this port",
            ],
        );
    }

    #[test]
    fn empty_hostname_equals_star() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n  - port: 1\n    protocol: HTTP\n    hostname: '*'\n  - port: 1\n    protocol: HTTP\n    hostname: a.test\n"),
            &[
                "conf.listeners[0]: multiple listeners for hostname on this port",
                "conf.listeners[1]: multiple listeners for hostname on this port",
            ],
        );
    }

    #[test]
    fn connection_limits_must_agree() {
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n    hostname: one.test\n    resources: {connectionLimit: 2}\n  - port: 1\n    protocol: HTTP\n    hostname: two.test\n    resources: {connectionLimit: 1}\n  - port: 1\n    protocol: HTTP\n    hostname: three.test\n"),
            &[
                "conf.listeners[0].resources.connectionLimit: conflicting values for this port",
                "conf.listeners[1].resources.connectionLimit: conflicting values for this port",
            ],
        );
        assert_yaml(
            &listeners("  - port: 1\n    protocol: HTTP\n    resources: {connectionLimit: -1}\n"),
            &["conf.listeners[0].resources.connectionLimit: must not be negative when defined"],
        );
    }

    #[test]
    fn kubernetes_form_paths_start_with_spec() {
        assert_yaml(
            "apiVersion: kuma.io/v1alpha1\nkind: MeshGateway\nmesh: default\nmetadata:\n  name: gw\nspec:\n  selectors:\n  - match:\n      kuma.io/service: gw\n  conf:\n    listeners:\n    - protocol: HTTP\n",
            &["spec.conf.listeners[0].port: port must be in the range [1, 65535]"],
        );
    }
}
