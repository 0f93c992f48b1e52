//! MeshService and MeshExternalService (semantics §2.5;
//! K:`pkg/core/resources/apis/meshservice/api/v1alpha1/validator.go`,
//! K:`pkg/core/resources/apis/meshexternalservice/api/v1alpha1/validator.go`). Their
//! 63-character name limit lives in [`super::meta`]. meshgate adds: MeshService ports must be
//! usable (`port` 1–65535, `targetPort` a port number or an inbound name) and TLS
//! datasources are checked like listener certificates.

use super::datasource::validate_datasource;
use super::hostname::{is_dns_name, is_ip};
use super::messages::{
    field_must_be_one_of, schema, CANNOT_BE_EMPTY, MUST_BE_DEFINED, MUST_NOT_BE_EMPTY, PORT_RANGE,
};
use super::path::FieldPath;
use super::report::Report;
use crate::resources::service::{
    ExternalEndpoint, ExternalMatch, ExternalTls, MeshExternalService, MeshService,
};
use serde_norway::Value;

const MES_PROTOCOLS: &[&str] = &["tcp", "grpc", "http", "http2"];
const VERIFICATION_MODES: &[&str] = &["SkipSAN", "SkipCA", "SkipAll", "Secured"];
const SAN_MATCH_TYPES: &[&str] = &["Prefix", "Exact"];
const MES_PORT: &str = "port must be a valid (1-65535)";

fn valid_port(p: i64) -> bool {
    (1..=65535).contains(&p)
}

pub fn validate_mesh_service(r: &mut Report, spec: &MeshService) {
    let root = FieldPath::spec_of(r.meta());
    if let Some(sel) = &spec.selector {
        let set = [
            sel.dataplane_tags.is_some(),
            sel.dataplane_ref.is_some(),
            sel.dataplane_labels.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            r.add(
                &root.field("selector"),
                "must specify only one of: dataplaneTags, dataplaneRef, or dataplaneLabels",
            );
        }
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let at = root.field("ports").index(i);
        match p.port {
            None => r.add(&at.field("port"), schema::REQUIRED),
            Some(port) if !valid_port(port) => r.add(&at.field("port"), PORT_RANGE),
            Some(_) => {}
        }
        let target = at.field("targetPort");
        match &p.target_port {
            None => {}
            Some(Value::Number(n)) if !n.as_i64().is_some_and(valid_port) => {
                r.add(&target, PORT_RANGE);
            }
            Some(Value::String(s)) if s.is_empty() => r.add(&target, CANNOT_BE_EMPTY),
            Some(Value::Number(_) | Value::String(_)) => {}
            Some(_) => r.add(&target, "must be a port number or an inbound name"),
        }
    }
}

pub fn validate_external_service(r: &mut Report, spec: &MeshExternalService) {
    let root = FieldPath::spec_of(r.meta());
    match &spec.match_ {
        None => r.add(&root.field("match"), schema::REQUIRED),
        Some(m) => validate_match(r, &root.field("match"), m),
    }
    // With an extension, endpoints and TLS are the extension's business.
    match &spec.extension {
        None => {
            for (i, e) in spec.endpoints.iter().enumerate() {
                validate_endpoint(r, &root.field("endpoints").index(i), e);
            }
            if let Some(tls) = &spec.tls {
                validate_tls(r, &root.field("tls"), tls);
            }
        }
        Some(ext) => {
            if ext
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                r.add(&root.field("extension").field("type"), MUST_NOT_BE_EMPTY);
            }
        }
    }
}

fn validate_match(r: &mut Report, at: &FieldPath, m: &ExternalMatch) {
    if let Some(t) = m.match_type.as_deref().filter(|t| !t.is_empty()) {
        if t != "HostnameGenerator" {
            r.add(
                &at.field("type"),
                format!("unrecognized type '{t}' - only 'HostnameGenerator' is supported"),
            );
        }
    }
    if !valid_port(m.port.unwrap_or(0)) {
        r.add(&at.field("port"), MES_PORT);
    }
    // The schema default is tcp.
    let protocol = m.protocol.as_deref().unwrap_or("tcp");
    if !MES_PROTOCOLS.contains(&protocol) {
        r.add(
            &at.field("protocol"),
            field_must_be_one_of("protocol", MES_PROTOCOLS),
        );
    }
}

fn validate_endpoint(r: &mut Report, at: &FieldPath, e: &ExternalEndpoint) {
    let address = e.address.as_deref().unwrap_or("");
    if is_ip(address) || is_dns_name(address) {
        if !valid_port(e.port.unwrap_or(0)) {
            r.add(&at.field("port"), MES_PORT);
        }
    } else {
        r.add(
            &at.field("address"),
            "address has to be a valid IP or hostname",
        );
    }
}

fn validate_tls(r: &mut Report, at: &FieldPath, tls: &ExternalTls) {
    let Some(v) = &tls.verification else { return };
    let at = at.field("verification");
    if let Some(name) = &v.server_name {
        if !is_dns_name(name) {
            r.add(&at.field("serverName"), "must be a valid DNS name");
        }
    }
    if let Some(mode) = v.mode.as_deref().filter(|m| !m.is_empty()) {
        if !VERIFICATION_MODES.contains(&mode) {
            r.add(
                &at.field("mode"),
                field_must_be_one_of("mode", VERIFICATION_MODES),
            );
        }
    }
    for (i, san) in v.subject_alt_names.iter().flatten().enumerate() {
        // The schema default is Exact.
        let kind = san.get("type").and_then(Value::as_str).unwrap_or("Exact");
        if !SAN_MATCH_TYPES.contains(&kind) {
            r.add(
                &at.field("subjectAltNames").index(i).field("type"),
                field_must_be_one_of("type", SAN_MATCH_TYPES),
            );
        }
    }
    match (&v.client_cert, &v.client_key) {
        (Some(_), None) => r.add(
            &at.field("clientKey"),
            format!("{MUST_BE_DEFINED} when clientCert is defined"),
        ),
        (None, Some(_)) => r.add(
            &at.field("clientCert"),
            format!("{MUST_BE_DEFINED} when clientKey is defined"),
        ),
        _ => {}
    }
    for (field, ds) in [
        ("caCert", &v.ca_cert),
        ("clientCert", &v.client_cert),
        ("clientKey", &v.client_key),
    ] {
        if let Some(ds) = ds {
            validate_datasource(r, &at.field(field), ds);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn ms(spec: &str) -> String {
        format!("type: MeshService\nmesh: default\nname: svc\nspec:\n{spec}")
    }

    fn mes(spec: &str) -> String {
        format!("type: MeshExternalService\nmesh: default\nname: ext\nspec:\n{spec}")
    }

    const MATCH: &str = "  match: {type: HostnameGenerator, port: 80, protocol: http}\n";

    #[test]
    fn mesh_service_valid() {
        assert_yaml(
            &ms("  selector:\n    dataplaneTags: {kuma.io/service: a}\n  ports:\n  - {port: 80, targetPort: 9001, appProtocol: http}\n  - {port: 81, targetPort: main}\n"),
            &[],
        );
    }

    #[test]
    fn mesh_service_selector_is_exclusive() {
        assert_yaml(
            &ms("  selector:\n    dataplaneTags: {a: b}\n    dataplaneRef: {name: dp}\n"),
            &["spec.selector: must specify only one of: dataplaneTags, dataplaneRef, or dataplaneLabels"],
        );
    }

    #[test]
    fn mesh_service_ports() {
        assert_yaml(
            &ms("  ports:\n  - {targetPort: 1}\n  - {port: 0, targetPort: 70000}\n  - {port: 1, targetPort: ''}\n"),
            &[
                "spec.ports[0].port: in body is required",
                "spec.ports[1].port: port must be in the range [1, 65535]",
                "spec.ports[1].targetPort: port must be in the range [1, 65535]",
                "spec.ports[2].targetPort: cannot be empty",
            ],
        );
    }

    #[test]
    fn external_service_valid() {
        assert_yaml(
            &mes(&format!("{MATCH}  endpoints:\n  - {{address: 127.0.0.1, port: 9100}}\n  - {{address: httpbin.org, port: 443}}\n  tls:\n    enabled: true\n    verification: {{mode: SkipAll, serverName: httpbin.org}}\n")),
            &[],
        );
    }

    #[test]
    fn external_service_match() {
        assert_yaml(
            &mes("  endpoints: []\n"),
            &["spec.match: in body is required"],
        );
        assert_yaml(
            &mes("  match: {type: Other, port: 0, protocol: udp}\n"),
            &[
                "spec.match.type: unrecognized type 'Other' - only 'HostnameGenerator' is supported",
                "spec.match.port: port must be a valid (1-65535)",
                "spec.match.protocol: \"protocol\" must be one of [\"tcp\", \"grpc\", \"http\", \"http2\"]",
            ],
        );
    }

    #[test]
    fn external_service_endpoints() {
        assert_yaml(
            &mes(&format!("{MATCH}  endpoints:\n  - {{address: 'not a host', port: 1}}\n  - {{address: 10.0.0.1, port: 0}}\n")),
            &[
                "spec.endpoints[0].address: address has to be a valid IP or hostname",
                "spec.endpoints[1].port: port must be a valid (1-65535)",
            ],
        );
    }

    #[test]
    fn external_service_tls() {
        assert_yaml(
            &mes(&format!("{MATCH}  tls:\n    verification:\n      mode: Strict\n      serverName: 'bad name'\n      subjectAltNames: [{{type: Regex, value: x}}]\n      clientCert: {{inline: '%%'}}\n")),
            &[
                "spec.tls.verification.serverName: must be a valid DNS name",
                "spec.tls.verification.mode: \"mode\" must be one of [\"SkipSAN\", \"SkipCA\", \"SkipAll\", \"Secured\"]",
                "spec.tls.verification.subjectAltNames[0].type: \"type\" must be one of [\"Prefix\", \"Exact\"]",
                "spec.tls.verification.clientKey: must be defined when clientCert is defined",
                "spec.tls.verification.clientCert.inline: must be valid base64",
            ],
        );
        assert_yaml(
            &mes(&format!(
                "{MATCH}  tls:\n    verification:\n      clientKey: {{secret: k}}\n"
            )),
            &["spec.tls.verification.clientCert: must be defined when clientKey is defined"],
        );
    }

    #[test]
    fn external_service_extension_needs_a_type() {
        assert_yaml(
            &mes(&format!("{MATCH}  extension: {{config: {{}}}}\n  endpoints:\n  - {{address: 'skipped because of the extension'}}\n")),
            &["spec.extension.type: must not be empty"],
        );
    }
}
