//! Kuma datasources (`{secret | file | inline | inlineString}`) used by listener certificates
//! and MeshExternalService TLS. Kuma leaves them to the data plane; meshgate checks them up
//! front so a typo is reported by `--check` instead of at snapshot compile time:
//! exactly one source, and `inline` must be base64 (decoded like `snapshot::certs`).

use super::messages::must_have_exactly_one_of;
use super::path::FieldPath;
use super::report::Report;
use crate::resources::gateway::DataSource;
use base64::Engine;

const SOURCES: &[&str] = &["secret", "file", "inline", "inlineString"];

pub fn validate_datasource(r: &mut Report, path: &FieldPath, ds: &DataSource) {
    let set = [
        ds.secret.is_some(),
        ds.file.is_some(),
        ds.inline.is_some(),
        ds.inline_string.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        r.add(path, must_have_exactly_one_of("datasource", SOURCES));
    }
    if let Some(inline) = &ds.inline {
        if base64::engine::general_purpose::STANDARD
            .decode(inline.trim())
            .is_err()
        {
            r.add(&path.field("inline"), "must be valid base64");
        }
    }
    for (field, value) in [("secret", &ds.secret), ("file", &ds.file)] {
        if value.as_deref() == Some("") {
            r.add(&path.field(field), "cannot be empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(yaml: &str) -> Vec<String> {
        let ds: DataSource = serde_norway::from_str(yaml).expect("test datasource");
        run(&meta(), |r| {
            validate_datasource(r, &FieldPath::root().field("c"), &ds)
        })
    }

    #[test]
    fn exactly_one_source() {
        assert!(check("secret: s").is_empty());
        assert!(check("inlineString: pem").is_empty());
        let msg = "c: datasource must have exactly one defined: secret, file, inline, inlineString";
        assert_eq!(check("{}"), [msg]);
        assert_eq!(check("{secret: s, file: f}"), [msg]);
    }

    #[test]
    fn inline_must_be_base64() {
        assert!(check("inline: aGVsbG8=").is_empty());
        assert_eq!(
            check("inline: 'not base64!'"),
            ["c.inline: must be valid base64"]
        );
    }

    #[test]
    fn names_must_not_be_empty() {
        assert_eq!(check("file: ''"), ["c.file: cannot be empty"]);
    }
}
