//! Field paths in Kuma's notation (K:`pkg/core/validators/types.go` `PathBuilder`):
//! fields joined by `.`, list indexes as `[0]`, map keys quoted as `["kuma.io/service"]`.
//!
//! Paths are immutable values: every step returns a new path, so a parent path can be reused
//! for all its children without string surgery.

use crate::resources::Meta;
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty path (a violation on the resource as a whole).
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    /// The root of a resource's own fields: `spec` for everything except flat Universal
    /// resources (MeshGateway, Dataplane), whose fields sit at the top level.
    pub fn spec_of(meta: &Meta) -> Self {
        FieldPath(meta.spec_prefix().trim_end_matches('.').to_string())
    }

    /// `a` + `b` → `a.b` (or `b` at the root).
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// `a` + 3 → `a[3]`.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// `tags` + `kuma.io/service` → `tags["kuma.io/service"]` (Go's `%q` quoting).
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key:?}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_kuma_style_paths() {
        let p = FieldPath::root().field("conf").field("listeners").index(2);
        assert_eq!(p.as_str(), "conf.listeners[2]");
        assert_eq!(
            p.field("tls").field("mode").as_str(),
            "conf.listeners[2].tls.mode"
        );
        assert_eq!(
            FieldPath::root()
                .field("tags")
                .key("kuma.io/service")
                .as_str(),
            "tags[\"kuma.io/service\"]"
        );
    }

    #[test]
    fn spec_root_depends_on_form() {
        use crate::resources::{Form, Kind};
        use crate::violation::Origin;
        let mut meta = Meta {
            origin: Origin {
                file: "f.yaml".into(),
                document: 1,
            },
            kind: Kind::MeshGateway,
            name: "gw".into(),
            mesh: "default".into(),
            namespace: None,
            labels: Default::default(),
            form: Form::Universal,
            source_hash: 0,
        };
        assert_eq!(FieldPath::spec_of(&meta).field("conf").as_str(), "conf");
        meta.form = Form::Kubernetes;
        assert_eq!(
            FieldPath::spec_of(&meta).field("conf").as_str(),
            "spec.conf"
        );
        meta.kind = Kind::MeshHttpRoute;
        meta.form = Form::Universal;
        assert_eq!(FieldPath::spec_of(&meta).field("to").as_str(), "spec.to");
    }
}
