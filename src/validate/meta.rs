//! Resource names and meshes (K:`pkg/core/resources/apis/mesh/meta_validator.go`
//! `ValidateMeta`, applied by Kuma to every Universal resource; Kubernetes applies the same
//! RFC 1123 subdomain rule to `metadata.name`), plus the 63-character display-name limit of
//! MeshService / MeshExternalService (K:`…/meshservice/api/v1alpha1/validator.go`,
//! K:`…/meshexternalservice/api/v1alpha1/validator.go`).

use super::hostname::is_rfc1123_domain;
use super::path::FieldPath;
use super::report::Report;
use crate::resources::{Form, Kind};

const IDENTIFIER_MSG: &str =
    "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case \
alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const MESH_MSG: &str = "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.";

/// Kuma's backward-compatible mesh charset `^[0-9a-z-_.]*$`.
fn is_mesh_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

pub fn validate_meta(r: &mut Report) {
    let meta = r.meta().clone();
    let name_path = match meta.form {
        Form::Universal => FieldPath::root().field("name"),
        Form::Kubernetes => FieldPath::root().field("metadata").field("name"),
    };
    // K:`validateIdentifier`: empty, then length, then charset (one message at most).
    if meta.name.is_empty() {
        r.add(&name_path, "cannot be empty");
    } else if meta.name.len() > 253 {
        r.add(&name_path, "value length must less or equal 253");
    } else if !is_rfc1123_domain(&meta.name) {
        r.add(&name_path, IDENTIFIER_MSG);
    }

    let mesh_path = FieldPath::root().field("mesh");
    if meta.mesh.is_empty() {
        r.add(&mesh_path, "cannot be empty");
    } else if meta.mesh.len() > 253 {
        r.add(&mesh_path, "value length must less or equal 253");
    } else if !is_mesh_name(&meta.mesh) {
        r.add(&mesh_path, MESH_MSG);
    }

    // K:`validators.ValidateLength(RootedAt("name"), 63, displayName)`: these names become
    // DNS labels of generated hostnames.
    if matches!(meta.kind, Kind::MeshService | Kind::MeshExternalService) && meta.name.len() > 63 {
        r.add(
            &FieldPath::root().field("name"),
            "must not be longer than 63 characters",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(kind: Kind, form: Form, name: &str, mesh: &str) -> Vec<String> {
        let mut m = meta();
        m.kind = kind;
        m.form = form;
        m.name = name.into();
        m.mesh = mesh.into();
        run(&m, validate_meta)
    }

    #[test]
    fn names_are_rfc1123_subdomains() {
        assert!(check(Kind::MeshHttpRoute, Form::Universal, "a-b.c", "default").is_empty());
        assert_eq!(
            check(Kind::MeshHttpRoute, Form::Universal, "Bad_Name", "default"),
            [format!("name: {IDENTIFIER_MSG}")]
        );
        assert_eq!(
            check(Kind::MeshGateway, Form::Kubernetes, "a..b", "default"),
            [format!("metadata.name: {IDENTIFIER_MSG}")]
        );
        assert_eq!(
            check(
                Kind::Dataplane,
                Form::Universal,
                &"a".repeat(254),
                "default"
            ),
            ["name: value length must less or equal 253"]
        );
    }

    #[test]
    fn mesh_charset_allows_underscore() {
        assert!(check(Kind::MeshGateway, Form::Universal, "gw", "my_mesh-1.x").is_empty());
        assert_eq!(
            check(Kind::MeshGateway, Form::Universal, "gw", "My Mesh"),
            [format!("mesh: {MESH_MSG}")]
        );
    }

    #[test]
    fn service_names_are_at_most_63() {
        let long = "a".repeat(64);
        assert!(check(Kind::MeshHttpRoute, Form::Universal, &long, "default").is_empty());
        assert_eq!(
            check(Kind::MeshService, Form::Universal, &long, "default"),
            ["name: must not be longer than 63 characters"]
        );
        assert_eq!(
            check(
                Kind::MeshExternalService,
                Form::Kubernetes,
                &long,
                "default"
            ),
            ["name: must not be longer than 63 characters"]
        );
    }
}
