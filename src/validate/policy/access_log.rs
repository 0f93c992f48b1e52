//! MeshAccessLog (K:`pkg/plugins/policies/meshaccesslog/api/v1alpha1/validator.go`; spec
//! §11.2). On a gateway `to[]` (kind Mesh) logs the outbound side and `from[]`/`rules[]`
//! add an inbound line.

use super::{check_top, lower_from, lower_rules, lower_to, policy, Top, PROXY_POLICY_TOP};
use crate::model::policy::access_log::{
    AccessLogConf, BodyValue, FormatKind, LogBackend, LogFormat, OtelLog, OtelTarget,
};
use crate::model::policy::Policy;
use crate::resources::policy::access_log::{self as raw, MeshAccessLog};
use crate::validate::messages::{schema, MUST_BE_DEFINED, MUST_NOT_BE_EMPTY};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

pub fn lower(r: &mut Report, spec: &MeshAccessLog) -> Option<Policy<AccessLogConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &PROXY_POLICY_TOP);
    let top = Top::of(spec.target_ref.as_ref());
    let non_empty = |v: Option<usize>| v.is_some_and(|n| n > 0);
    let (to_n, from_n, rules_n) = (
        spec.to.as_ref().map(Vec::len),
        spec.from.as_ref().map(Vec::len),
        spec.rules.as_ref().map(Vec::len),
    );
    if !non_empty(to_n) && !non_empty(from_n) && !non_empty(rules_n) {
        r.add(
            &root,
            "at least one of 'from', 'to' or 'rules' has to be defined",
        );
    }
    let to_kinds: &[&str] = if top.kind == "MeshGateway" {
        &["Mesh"]
    } else {
        &[
            "Mesh",
            "MeshService",
            "MeshExternalService",
            "MeshMultiZoneService",
        ]
    };
    let mut inbound = lower_from(r, &root, spec.from.as_ref(), conf);
    inbound.extend(lower_rules(r, &root, spec.rules.as_ref(), conf));
    let to = lower_to(r, &root, spec.to.as_ref(), to_kinds, conf);
    Some(policy(r, spec, to, inbound))
}

fn conf(r: &mut Report, at: &FieldPath, d: Option<&raw::AccessLogConf>) -> Option<AccessLogConf> {
    let at = at.field("backends");
    let Some(list) = d.and_then(|d| d.backends.as_ref()) else {
        r.add(&at, MUST_BE_DEFINED);
        return None;
    };
    let backends = list
        .iter()
        .enumerate()
        .filter_map(|(j, b)| backend(r, &at.index(j), b))
        .collect();
    Some(AccessLogConf {
        backends: Some(backends),
    })
}

fn backend(r: &mut Report, at: &FieldPath, b: &raw::Backend) -> Option<LogBackend> {
    match b.kind.as_deref() {
        Some("File") => {
            let Some(f) = &b.file else {
                r.add(&at.field("file"), MUST_BE_DEFINED);
                return None;
            };
            let at = at.field("file");
            let path = f.path.clone().unwrap_or_default();
            if path.is_empty() || path.contains('\0') {
                r.add(&at.field("path"), "file backend requires a valid path");
            }
            let format = f
                .format
                .as_ref()
                .and_then(|x| format(r, &at.field("format"), x));
            (!path.is_empty()).then_some(LogBackend::File { path, format })
        }
        Some("Tcp") => {
            let Some(t) = &b.tcp else {
                r.add(&at.field("tcp"), MUST_BE_DEFINED);
                return None;
            };
            let at = at.field("tcp");
            let address = t.address.clone().unwrap_or_default();
            if !valid_address(&address) {
                r.add(&at.field("address"), "tcp backend requires valid address");
            }
            let format = t
                .format
                .as_ref()
                .and_then(|x| format(r, &at.field("format"), x));
            valid_address(&address).then_some(LogBackend::Tcp { address, format })
        }
        Some("OpenTelemetry") => {
            let Some(o) = &b.open_telemetry else {
                r.add(&at.field("openTelemetry"), MUST_BE_DEFINED);
                return None;
            };
            otel(r, &at.field("openTelemetry"), o).map(LogBackend::OpenTelemetry)
        }
        None => {
            r.add(&at.field("type"), schema::REQUIRED);
            None
        }
        Some(_) => {
            r.add(
                &at.field("type"),
                schema::one_of(&["File", "Tcp", "OpenTelemetry"]),
            );
            None
        }
    }
}

fn otel(r: &mut Report, at: &FieldPath, o: &raw::OtelBackend) -> Option<OtelLog> {
    let target =
        match super::trace::otel_target(r, at, o.endpoint.as_deref(), o.backend_ref.as_ref()) {
            // Kuma: an empty port is 4317.
            Some(OtelTarget::Endpoint(e)) => {
                let endpoint = if e.contains(':') {
                    e
                } else {
                    format!("{e}:4317")
                };
                if valid_address(&endpoint) {
                    Some(OtelTarget::Endpoint(endpoint))
                } else {
                    r.add(&at.field("endpoint"), "must be a valid host:port");
                    None
                }
            }
            other => other,
        };
    let mut attributes = Vec::new();
    for (k, a) in o.attributes.iter().flatten().enumerate() {
        let at = at.field("attributes").index(k);
        match (a.key.as_deref(), a.value.as_deref()) {
            (Some(key), Some(value)) if !key.is_empty() && !value.is_empty() => {
                attributes.push((key.to_string(), value.to_string()));
            }
            (key, value) => {
                if key.is_none_or(str::is_empty) {
                    r.add(&at.field("key"), "key cannot be empty");
                }
                if value.is_none_or(str::is_empty) {
                    r.add(&at.field("value"), "value cannot be empty");
                }
            }
        }
    }
    let body = match &o.body {
        None => None,
        Some(v) => Some(body_value(r, &at.field("body"), v, true)?),
    };
    Some(OtelLog {
        target: target?,
        body,
        attributes,
    })
}

const BODY_FORMS: &str = "must be a string or an OTLP AnyValue with one of: stringValue, boolValue, intValue, doubleValue, bytesValue, arrayValue, kvlistValue";

/// A body: at the top a plain string is the text itself; everywhere an OTLP `AnyValue` in
/// its JSON form (`{stringValue: …}`, `{kvlistValue: {values: [{key, value}]}}`, …).
fn body_value(
    r: &mut Report,
    at: &FieldPath,
    v: &serde_norway::Value,
    top: bool,
) -> Option<BodyValue> {
    use serde_norway::Value;
    if let (true, Value::String(s)) = (top, v) {
        return Some(BodyValue::String(s.clone()));
    }
    let one = match v {
        Value::Mapping(m) if m.len() == 1 => m.iter().next(),
        _ => None,
    };
    let Some((Value::String(kind), inner)) = one else {
        r.add(at, BODY_FORMS);
        return None;
    };
    let here = at.field(kind);
    match (kind.as_str(), inner) {
        ("stringValue", Value::String(s)) => Some(BodyValue::String(s.clone())),
        ("boolValue", Value::Bool(b)) => Some(BodyValue::Bool(*b)),
        ("intValue", Value::Number(n)) if n.as_i64().is_some() => n.as_i64().map(BodyValue::Int),
        // The protobuf JSON mapping writes 64-bit integers as strings.
        ("intValue", Value::String(s)) if s.parse::<i64>().is_ok() => {
            s.parse().ok().map(BodyValue::Int)
        }
        ("doubleValue", Value::Number(n)) => Some(BodyValue::Double(n.to_string())),
        ("bytesValue", Value::String(s)) => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => Some(BodyValue::Bytes(b)),
                Err(_) => refuse(r, &here, "must be base64"),
            }
        }
        ("arrayValue", _) => {
            let values = inner.get("values").and_then(Value::as_sequence);
            let Some(values) = values else {
                return refuse(r, &here, "must have values (a list of AnyValue)");
            };
            let items: Vec<Option<BodyValue>> = values
                .iter()
                .enumerate()
                .map(|(i, x)| body_value(r, &here.field("values").index(i), x, false))
                .collect();
            items
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(BodyValue::Array)
        }
        ("kvlistValue", _) => {
            let values = inner.get("values").and_then(Value::as_sequence);
            let Some(values) = values else {
                return refuse(r, &here, "must have values (a list of {key, value})");
            };
            let mut out = Some(Vec::new());
            for (i, kv) in values.iter().enumerate() {
                let at = here.field("values").index(i);
                let key = kv
                    .get("key")
                    .and_then(Value::as_str)
                    .filter(|k| !k.is_empty());
                let value = kv.get("value");
                let item = match (key, value) {
                    (Some(k), Some(v)) => {
                        body_value(r, &at.field("value"), v, false).map(|v| (k.to_string(), v))
                    }
                    (None, _) => refuse(r, &at.field("key"), "key cannot be empty"),
                    (_, None) => refuse(r, &at.field("value"), MUST_BE_DEFINED),
                };
                match (item, out.as_mut()) {
                    (Some(item), Some(list)) => list.push(item),
                    _ => out = None,
                }
            }
            out.map(BodyValue::KvList)
        }
        _ => {
            r.add(at, BODY_FORMS);
            None
        }
    }
}

fn refuse<T>(r: &mut Report, at: &FieldPath, what: &str) -> Option<T> {
    r.add(at, what);
    None
}

/// `host:port` (a name or an IP, Kuma's URL-like check).
fn valid_address(a: &str) -> bool {
    let a = a.strip_prefix("tcp://").unwrap_or(a);
    match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn format(r: &mut Report, at: &FieldPath, f: &raw::Format) -> Option<LogFormat> {
    let omit_empty_values = f.omit_empty_values.unwrap_or(false);
    let kind = match f.kind.as_deref() {
        Some("Plain") => match f.plain.as_deref() {
            None => {
                r.add(&at.field("plain"), MUST_BE_DEFINED);
                return None;
            }
            Some("") => {
                r.add(&at.field("plain"), MUST_NOT_BE_EMPTY);
                return None;
            }
            Some(p) => FormatKind::Plain(p.to_string()),
        },
        Some("Json") => {
            let Some(list) = &f.json else {
                r.add(&at.field("json"), MUST_BE_DEFINED);
                return None;
            };
            if list.is_empty() {
                r.add(&at.field("json"), MUST_NOT_BE_EMPTY);
                return None;
            }
            let mut out = Vec::new();
            for (k, e) in list.iter().enumerate() {
                let eat = at.field("json").index(k);
                let key = e.key.clone().unwrap_or_default();
                let value = e.value.clone().unwrap_or_default();
                if key.is_empty() {
                    r.add(&eat.field("key"), "key cannot be empty");
                }
                if value.is_empty() {
                    r.add(&eat.field("value"), "value cannot be empty");
                }
                // Kuma builds `{"key": "value"}` as text and parses it.
                let text = format!("{{\"{key}\": \"{value}\"}}");
                if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                    r.add(&eat, "is not a valid JSON object");
                }
                out.push((key, value));
            }
            FormatKind::Json(out)
        }
        None => {
            r.add(&at.field("type"), schema::REQUIRED);
            return None;
        }
        Some(_) => {
            r.add(&at.field("type"), schema::one_of(&["Plain", "Json"]));
            return None;
        }
    };
    Some(LogFormat {
        kind,
        omit_empty_values,
    })
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(to_kind: &str, default: &str) -> String {
        format!(
            "type: MeshAccessLog\nname: al\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {to_kind}\n    default: {default}\n"
        )
    }

    #[test]
    fn file_tcp_and_formats_are_valid() {
        assert_yaml(
            &doc("{kind: Mesh}", "{backends: [{type: File, file: {path: /tmp/a.log, format: {type: Json, json: [{key: m, value: '%REQ(:METHOD)%'}]}}}, {type: Tcp, tcp: {address: 'logs.internal:5170', format: {type: Plain, plain: '%START_TIME%'}}}]}"),
            &[],
        );
    }

    #[test]
    fn open_telemetry_backends() {
        assert_yaml(
            &doc("{kind: Mesh}", "{backends: [{type: OpenTelemetry, openTelemetry: {endpoint: 'otel:4317', body: {kvlistValue: {values: [{key: m, value: {stringValue: '%KUMA_MESH%'}}, {key: n, value: {arrayValue: {values: [{intValue: '7'}, {doubleValue: 1.5}, {bytesValue: aGk=}]}}}]}}, attributes: [{key: s, value: '%RESPONSE_CODE%'}]}}, {type: OpenTelemetry, openTelemetry: {backendRef: {kind: MeshOpenTelemetryBackend, labels: {a: b}}, body: 'plain %KUMA_MESH%'}}]}"),
            &[],
        );
        assert_yaml(
            &doc("{kind: Mesh}", "{backends: [{type: OpenTelemetry, openTelemetry: {}}, {type: OpenTelemetry, openTelemetry: {endpoint: 'http://otel:4317'}}, {type: OpenTelemetry, openTelemetry: {endpoint: 'otel:4317', body: {kvlistValue: {values: [{key: m, value: {mapValue: 1}}]}}, attributes: [{key: '', value: x}]}}]}"),
            &[
                "spec.to[0].default.backends[0].openTelemetry: openTelemetry must have exactly one defined: endpoint, backendRef",
                "spec.to[0].default.backends[1].openTelemetry.endpoint: must be in host:port format, not a URL",
                "spec.to[0].default.backends[2].openTelemetry.attributes[0].key: key cannot be empty",
                "spec.to[0].default.backends[2].openTelemetry.body.kvlistValue.values[0].value: must be a string or an OTLP AnyValue with one of: stringValue, boolValue, intValue, doubleValue, bytesValue, arrayValue, kvlistValue",
            ],
        );
    }

    #[test]
    fn kuma_rules_and_messages() {
        assert_yaml(
            &doc(
                "{kind: MeshService, name: a}",
                "{backends: [{type: File, file: {path: /tmp/a.log}}]}",
            ),
            &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
        );
        assert_yaml(
            &doc("{kind: Mesh}", "{}"),
            &["spec.to[0].default.backends: must be defined"],
        );
        assert_yaml(
            &doc("{kind: Mesh}", "{backends: [{type: File}, {type: Tcp, tcp: {address: 'no port'}}, {type: File, file: {path: /x, format: {type: Json, json: [{key: '', value: 'a\"b'}]}}}]}"),
            &[
                "spec.to[0].default.backends[0].file: must be defined",
                "spec.to[0].default.backends[1].tcp.address: tcp backend requires valid address",
                "spec.to[0].default.backends[2].file.format.json[0].key: key cannot be empty",
                "spec.to[0].default.backends[2].file.format.json[0]: is not a valid JSON object",
            ],
        );
    }
}
