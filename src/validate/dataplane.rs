//! Dataplane (semantics §2.4; K:`pkg/core/resources/apis/mesh/dataplane_validator.go`):
//! networking, address, builtin/delegated gateway restrictions, inbounds and tags.
//! Sidecar-only parts meshgate does not decode (listeners, probes, admin, metrics,
//! transparent proxying, outbound contents) are not checked.

use super::hostname::{is_dns_name, is_ip};
use super::messages::PORT_RANGE;
use super::path::FieldPath;
use super::report::Report;
use super::tags::{validate_tags, TagRules, PROTOCOL_TAG, SERVICE_TAG};
use crate::resources::common::Tags;
use crate::resources::dataplane::{Dataplane, GatewaySpec, Inbound};

/// K:`pkg/core/metadata/protocol.go` `SupportedProtocols` (as listed in the message).
const SUPPORTED_PROTOCOLS: &[&str] = &["grpc", "http", "http2", "kafka", "tcp"];

/// K:`ParseProtocol`: what Kuma recognises (case-insensitive), a superset of the above.
fn is_known_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_lowercase().as_str(),
        "http" | "http2" | "tcp" | "tls" | "grpc" | "kafka" | "mysql"
    )
}

pub fn validate_dataplane(r: &mut Report, spec: &Dataplane) {
    let net = FieldPath::spec_of(r.meta()).field("networking");
    let Some(n) = &spec.networking else {
        r.add(&net, "must be defined");
        return;
    };
    match &n.gateway {
        Some(gw) if gw.gateway_type.as_deref() == Some("BUILTIN") => {
            if n.inbound.as_ref().is_some_and(|i| !i.is_empty()) {
                r.add(
                    &net.field("inbound"),
                    "inbound cannot be defined for builtin gateways",
                );
            }
            if n.outbound.as_ref().is_some_and(|o| !o.is_empty()) {
                r.add(
                    &net.field("outbound"),
                    "outbound cannot be defined for builtin gateways",
                );
            }
            validate_gateway_spec(r, &net.field("gateway"), gw);
        }
        Some(gw) => {
            // DELEGATED is the default gateway type.
            match gw.gateway_type.as_deref() {
                None | Some("") | Some("DELEGATED") => {}
                Some(_) => r.add(
                    &net.field("gateway").field("type"),
                    super::messages::must_be_one_of("type", &["DELEGATED", "BUILTIN"]),
                ),
            }
            if n.inbound.as_ref().is_some_and(|i| !i.is_empty()) {
                r.add(
                    &net.field("inbound"),
                    "inbound cannot be defined for delegated gateways",
                );
            }
            validate_gateway_spec(r, &net.field("gateway"), gw);
        }
        None => {}
    }
    validate_networking(r, &net, n);
}

/// K:`validateGateway`.
fn validate_gateway_spec(r: &mut Report, at: &FieldPath, gw: &GatewaySpec) {
    let empty = Tags::new();
    let tags = gw.tags.as_ref().unwrap_or(&empty);
    let path = at.field("tags");
    if let Some(p) = tags.get(PROTOCOL_TAG) {
        if !p.eq_ignore_ascii_case("tcp") {
            r.add(
                &path.key(PROTOCOL_TAG),
                format!("other values than tcp are not allowed, provided value {p:?}"),
            );
        }
    }
    // `kuma.io/service` is required only when there are tags at all (new setups have none).
    let rules = TagRules {
        require_service: !tags.is_empty(),
        ..TagRules::TAGS
    };
    validate_tags(r, &path, tags, rules);
}

/// K:`validateNetworking` + `validateAddress`.
fn validate_networking(
    r: &mut Report,
    net: &FieldPath,
    n: &crate::resources::dataplane::Networking,
) {
    let address = n.address.as_deref().unwrap_or("");
    let at = net.field("address");
    if address.is_empty() {
        r.add(&at, "address can't be empty");
    } else {
        if address == "0.0.0.0" || address == "::" {
            r.add(&at, "must not be 0.0.0.0 or ::");
        }
        if !is_ip(address) && !is_dns_name(address) {
            r.add(&at, "address has to be valid IP address or domain name");
        }
    }
    for (i, inbound) in n.inbound.iter().flatten().enumerate() {
        let at = net.field("inbound").index(i);
        validate_inbound(r, &at, inbound);
        if inbound.tags.as_ref().is_some_and(|t| !t.is_empty())
            && !inbound
                .tags
                .as_ref()
                .is_some_and(|t| t.contains_key(SERVICE_TAG))
        {
            r.add(&at.field("tags").key(SERVICE_TAG), "tag has to exist");
        }
    }
}

/// K:`validateInbound` (the parts meshgate decodes).
fn validate_inbound(r: &mut Report, at: &FieldPath, inbound: &Inbound) {
    if !(1..=65535).contains(&inbound.port.unwrap_or(0)) {
        r.add(&at.field("port"), PORT_RANGE);
    }
    if let Some(sp) = inbound.service_port.filter(|p| *p != 0) {
        if !(1..=65535).contains(&sp) {
            r.add(&at.field("servicePort"), PORT_RANGE);
        }
    }
    if let Some(addr) = inbound.address.as_deref().filter(|a| !a.is_empty()) {
        if !is_ip(addr) {
            r.add(&at.field("address"), "address has to be valid IP address");
        }
    }
    if let Some(tags) = &inbound.tags {
        let path = at.field("tags");
        if let Some(p) = tags.get(PROTOCOL_TAG) {
            if !is_known_protocol(p) {
                r.add(
                    &path.key(PROTOCOL_TAG),
                    format!(
                        "tag {PROTOCOL_TAG:?} has an invalid value {p:?}. Allowed values: {}",
                        SUPPORTED_PROTOCOLS.join(", ")
                    ),
                );
            }
        }
        validate_tags(r, &path, tags, TagRules::TAGS);
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn dp(networking: &str) -> String {
        format!("type: Dataplane\nmesh: default\nname: dp\n{networking}")
    }

    #[test]
    fn valid_backend_and_gateway() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 9000\n    tags: {kuma.io/service: a, kuma.io/protocol: http}\n"),
            &[],
        );
        assert_yaml(
            &dp("networking:\n  address: gw.local\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: gw}\n"),
            &[],
        );
    }

    #[test]
    fn networking_is_required() {
        assert_yaml(&dp(""), &["networking: must be defined"]);
    }

    #[test]
    fn address_rules() {
        assert_yaml(
            &dp("networking: {}\n"),
            &["networking.address: address can't be empty"],
        );
        assert_yaml(
            &dp("networking: {address: 0.0.0.0}\n"),
            &["networking.address: must not be 0.0.0.0 or ::"],
        );
        assert_yaml(
            &dp("networking: {address: 'a b'}\n"),
            &["networking.address: address has to be valid IP address or domain name"],
        );
    }

    #[test]
    fn builtin_gateway_has_no_inbounds_or_outbounds() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/service: gw}\n  inbound:\n  - port: 9000\n    tags: {kuma.io/service: gw}\n  outbound:\n  - port: 1\n"),
            &[
                "networking.inbound: inbound cannot be defined for builtin gateways",
                "networking.outbound: outbound cannot be defined for builtin gateways",
            ],
        );
    }

    #[test]
    fn delegated_gateway_has_no_inbounds() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  gateway:\n    tags: {kuma.io/service: gw}\n  inbound:\n  - port: 9000\n    tags: {kuma.io/service: gw}\n"),
            &["networking.inbound: inbound cannot be defined for delegated gateways"],
        );
    }

    #[test]
    fn gateway_tags() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  gateway:\n    type: BUILTIN\n    tags: {kuma.io/protocol: http}\n"),
            &[
                "networking.gateway.tags[\"kuma.io/protocol\"]: other values than tcp are not allowed, provided value \"http\"",
                "networking.gateway.tags: mandatory tag \"kuma.io/service\" is missing",
            ],
        );
    }

    #[test]
    fn inbound_port_and_tags() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 0\n    tags: {version: v/1}\n  - port: 1\n    servicePort: 70000\n    tags: {kuma.io/service: a, kuma.io/protocol: foo}\n"),
            &[
                "networking.inbound[0].port: port must be in the range [1, 65535]",
                "networking.inbound[0].tags[\"version\"]: tag value must consist of alphanumeric characters, dots, dashes and underscores",
                "networking.inbound[0].tags[\"kuma.io/service\"]: tag has to exist",
                "networking.inbound[1].servicePort: port must be in the range [1, 65535]",
                "networking.inbound[1].tags[\"kuma.io/protocol\"]: tag \"kuma.io/protocol\" has an invalid value \"foo\". Allowed values: grpc, http, http2, kafka, tcp",
            ],
        );
    }

    #[test]
    fn inbound_without_tags_needs_no_service() {
        assert_yaml(
            &dp("networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 1\n"),
            &[],
        );
    }
}
