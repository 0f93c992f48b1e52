//! MeshTrace (K:`pkg/plugins/policies/meshtrace/api/v1alpha1/validator.go`; spec §12.2) and
//! MeshOpenTelemetryBackend. MeshTrace has one `default` (no `to`/`from`): it is lowered as a
//! policy whose only conf is its listener-side (inbound) one.

use super::{check_top, policy, TopRules};
use crate::model::policy::trace::{
    OtelBackend, OtelTarget, Sampling, TagValue, TraceBackend, TraceConf, TraceTag,
};
use crate::model::policy::Policy;
use crate::resources::common::IntOrString;
use crate::resources::policy::trace::{self as raw, MeshOpenTelemetryBackend, MeshTrace};
use crate::resources::Meta;
use crate::validate::lower::{Lowered, Unreadable};
use crate::validate::messages::{MUST_BE_DEFINED, MUST_NOT_BE_EMPTY};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

const TOP: TopRules = TopRules {
    kinds: super::PROXY_POLICY_KINDS,
    listener_tags: false,
};

pub fn lower(r: &mut Report, spec: &MeshTrace) -> Option<Policy<TraceConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &TOP);
    let at = root.field("default");
    let conf = conf(r, &at, spec.default.as_ref());
    let shape = crate::resources::policy::PolicySpec::<()> {
        target_ref: spec.target_ref.clone(),
        to: None,
        from: None,
        rules: None,
    };
    Some(policy(r, &shape, Vec::new(), conf.into_iter().collect()))
}

fn conf(r: &mut Report, at: &FieldPath, d: Option<&raw::TraceConf>) -> Option<TraceConf> {
    let empty = raw::TraceConf::default();
    let d = d.unwrap_or(&empty);
    let backends = match &d.backends {
        None => {
            r.add(&at.field("backends"), MUST_BE_DEFINED);
            None
        }
        Some(list) if list.len() > 1 => {
            r.add(
                &at.field("backends"),
                "must have zero or one backend defined",
            );
            None
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .filter_map(|(i, b)| backend(r, &at.field("backends").index(i), b))
                .collect(),
        ),
    };
    let sampling = d.sampling.as_ref().map(|s| {
        let at = at.field("sampling");
        let pct = |r: &mut Report, field: &str, v: Option<&IntOrString>| {
            let v = v?;
            match v.as_f64() {
                None => {
                    r.add(&at.field(field), "string is not a number");
                    None
                }
                Some(p) if !(0.0..=100.0).contains(&p) => {
                    r.add(&at.field(field), "must be between 0 and 100");
                    None
                }
                Some(p) => Some(p),
            }
        };
        Sampling {
            overall: pct(r, "overall", s.overall.as_ref()),
            client: pct(r, "client", s.client.as_ref()),
            random: pct(r, "random", s.random.as_ref()),
        }
    });
    let tags = d.tags.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(k, t)| tag(r, &at.field("tags").index(k), t))
            .collect()
    });
    Some(TraceConf {
        backends,
        sampling,
        tags,
    })
}

fn backend(r: &mut Report, at: &FieldPath, b: &raw::Backend) -> Option<TraceBackend> {
    match b.kind.as_deref() {
        Some("OpenTelemetry") => {
            let Some(o) = &b.open_telemetry else {
                r.add(&at.field("openTelemetry"), MUST_BE_DEFINED);
                return None;
            };
            let at = at.field("openTelemetry");
            otel_target(r, &at, o.endpoint.as_deref(), o.backend_ref.as_ref())
                .map(TraceBackend::Otel)
        }
        Some("Zipkin") => {
            let Some(z) = &b.zipkin else {
                r.add(&at.field("zipkin"), MUST_BE_DEFINED);
                return None;
            };
            let at = at.field("zipkin");
            if let Some(v) = z.api_version.as_deref() {
                if v != "httpJson" && v != "httpProto" {
                    r.add(
                        &at.field("apiVersion"),
                        crate::validate::messages::schema::one_of(&["httpJson", "httpProto"]),
                    );
                }
            }
            match z.url.as_deref() {
                None | Some("") => {
                    r.add(&at.field("url"), MUST_BE_DEFINED);
                    None
                }
                Some(u)
                    if u.parse::<http::Uri>()
                        .is_ok_and(|u| u.scheme().is_some() && u.host().is_some()) =>
                {
                    Some(TraceBackend::Zipkin)
                }
                Some(_) => {
                    r.add(&at.field("url"), "must be a valid url");
                    None
                }
            }
        }
        Some("Datadog") => Some(TraceBackend::Datadog),
        _ => {
            r.add(
                &at.field("type"),
                crate::validate::messages::schema::one_of(&["Zipkin", "Datadog", "OpenTelemetry"]),
            );
            None
        }
    }
}

fn tag(r: &mut Report, at: &FieldPath, t: &raw::Tag) -> Option<TraceTag> {
    let name = t.name.clone().unwrap_or_default();
    if name.is_empty() {
        r.add(&at.field("name"), MUST_NOT_BE_EMPTY);
    }
    let value = match (&t.literal, &t.header) {
        (Some(_), Some(_)) => {
            r.add(at, "tag must have only one type defined: header, literal");
            return None;
        }
        (None, None) => {
            r.add(at, "tag must have exactly one defined: header, literal");
            return None;
        }
        (Some(l), None) => TagValue::Literal(l.clone()),
        (None, Some(h)) => {
            let Ok(header) = http::HeaderName::from_bytes(
                h.name
                    .clone()
                    .unwrap_or_default()
                    .to_ascii_lowercase()
                    .as_bytes(),
            ) else {
                r.add(&at.field("header").field("name"), MUST_NOT_BE_EMPTY);
                return None;
            };
            TagValue::Header {
                name: header,
                default: h.default.clone(),
            }
        }
    };
    (!name.is_empty()).then_some(TraceTag { name, value })
}

/// Kuma's rules for an OpenTelemetry backend's target (MeshTrace and MeshAccessLog alike):
/// exactly one of `endpoint` (`host:port`, not a URL) and `backendRef` (with labels).
pub(super) fn otel_target(
    r: &mut Report,
    at: &FieldPath,
    endpoint: Option<&str>,
    backend_ref: Option<&raw::BackendRef>,
) -> Option<OtelTarget> {
    match (endpoint, backend_ref) {
        (Some(_), Some(_)) => {
            r.add(
                at,
                "openTelemetry must have only one type defined: endpoint, backendRef",
            );
            None
        }
        (None, None) => {
            r.add(
                at,
                "openTelemetry must have exactly one defined: endpoint, backendRef",
            );
            None
        }
        (Some(e), None) if e.contains("://") => {
            r.add(
                &at.field("endpoint"),
                "must be in host:port format, not a URL",
            );
            None
        }
        (Some(e), None) => Some(OtelTarget::Endpoint(e.to_string())),
        (None, Some(b)) => match &b.labels {
            Some(l) if !l.is_empty() => Some(OtelTarget::Labels(l.clone())),
            _ => {
                r.add(
                    &at.field("backendRef"),
                    "backendRef must have exactly one defined: labels",
                );
                None
            }
        },
    }
}

/// MeshOpenTelemetryBackend's rules.
pub fn check_backend(r: &mut Report, spec: &MeshOpenTelemetryBackend) {
    let root = FieldPath::spec_of(r.meta());
    if let Some(p) = spec.protocol.as_deref() {
        if p != "grpc" && p != "http" {
            r.add(
                &root.field("protocol"),
                crate::validate::messages::schema::one_of(&["grpc", "http"]),
            );
        }
    }
    if let Some(e) = &spec.endpoint {
        if let Some(port) = e.port {
            if !(1..=65535).contains(&port) {
                r.add(
                    &root.field("endpoint").field("port"),
                    crate::validate::messages::PORT_RANGE,
                );
            }
        }
        if e.address.as_deref().is_some_and(str::is_empty) {
            r.add(&root.field("endpoint").field("address"), MUST_NOT_BE_EMPTY);
        }
    }
}

pub fn lower_backend(meta: &Meta, spec: &MeshOpenTelemetryBackend) -> Lowered<OtelBackend> {
    let e = spec.endpoint.clone().unwrap_or_default();
    let address = e.address.ok_or_else(|| Unreadable {
        field: format!("{}endpoint.address", meta.spec_prefix()),
        what: MUST_BE_DEFINED.to_string(),
    })?;
    Ok(OtelBackend {
        address,
        port: u16::try_from(e.port.unwrap_or(4317)).unwrap_or(4317),
        path: e.path.unwrap_or_default(),
        http: spec.protocol.as_deref() == Some("http"),
    })
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(default: &str) -> String {
        format!(
            "type: MeshTrace\nname: t\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  default: {default}\n"
        )
    }

    #[test]
    fn kuma_rules_and_messages() {
        assert_yaml(
            &doc("{backends: [{type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, labels: {a: b}}}}], sampling: {overall: 50}, tags: [{name: team, literal: edge}]}"),
            &[],
        );
        assert_yaml(&doc("{}"), &["spec.default.backends: must be defined"]);
        assert_yaml(
            &doc("{backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'http://x:4317'}}], sampling: {random: 101}, tags: [{name: a, literal: x, header: {name: y}}]}"),
            &[
                "spec.default.backends[0].openTelemetry.endpoint: must be in host:port format, not a URL",
                "spec.default.sampling.random: must be between 0 and 100",
                "spec.default.tags[0]: tag must have only one type defined: header, literal",
            ],
        );
        assert_yaml(
            &doc("{backends: [{type: Zipkin, zipkin: {url: 'http://zipkin:9411/api/v2/spans', traceId128bit: true, apiVersion: httpJson}}]}"),
            &[],
        );
        assert_yaml(
            &doc("{backends: [{type: Zipkin, zipkin: {apiVersion: grpc}}]}"),
            &[
                "spec.default.backends[0].zipkin.apiVersion: in body should be one of [httpJson httpProto]",
                "spec.default.backends[0].zipkin.url: must be defined",
            ],
        );
    }
}
