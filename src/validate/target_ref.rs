//! `targetRef`-shaped objects: policy and `to[]` target references, backendRefs and the
//! mirror filter's backendRef (K:`pkg/core/resources/apis/mesh/validators.go`
//! `ValidateTargetRef`, preceded by the schema's `kind` enum from the policies' `rest.yaml`).

use super::messages::schema;
use super::path::FieldPath;
use super::report::Report;
use super::tags::{validate_tags, TagRules};
use crate::resources::common::{BackendRef, Tags, TargetRef};

/// Every kind the OpenAPI schema accepts, in the schema's order.
const SCHEMA_KINDS: &[&str] = &[
    "Mesh",
    "MeshSubset",
    "MeshGateway",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
    "MeshServiceSubset",
    "MeshHTTPRoute",
    "Dataplane",
];

const PROXY_TYPES: &[&str] = &["Sidecar", "Gateway"];

/// The name Kuma gives a backend it could not resolve when converting Gateway API routes;
/// allowed in MeshHTTPRoute backendRefs despite its `/` (K:`ValidateTargetRefOpts`).
pub const UNRESOLVED_BACKEND: &str = "kuma.io/unresolved-backend";

/// The fields common to [`TargetRef`] and [`BackendRef`].
pub struct RefView<'a> {
    pub kind: &'a str,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub mesh: Option<&'a str>,
    pub tags: Option<&'a Tags>,
    pub labels: Option<&'a Tags>,
    pub section_name: Option<&'a str>,
    pub proxy_types: Option<&'a Vec<String>>,
}

impl<'a> From<&'a TargetRef> for RefView<'a> {
    fn from(t: &'a TargetRef) -> Self {
        RefView {
            kind: &t.kind,
            name: t.name.as_deref(),
            namespace: t.namespace.as_deref(),
            mesh: t.mesh.as_deref(),
            tags: t.tags.as_ref(),
            labels: t.labels.as_ref(),
            section_name: t.section_name.as_deref(),
            proxy_types: t.proxy_types.as_ref(),
        }
    }
}

impl<'a> From<&'a BackendRef> for RefView<'a> {
    fn from(b: &'a BackendRef) -> Self {
        RefView {
            kind: &b.kind,
            name: b.name.as_deref(),
            namespace: b.namespace.as_deref(),
            mesh: b.mesh.as_deref(),
            tags: b.tags.as_ref(),
            labels: b.labels.as_ref(),
            section_name: b.section_name.as_deref(),
            proxy_types: b.proxy_types.as_ref(),
        }
    }
}

pub struct RefRules<'a> {
    pub supported: &'a [&'a str],
    /// `tags` on a MeshGateway ref pick listeners; only system policies may do that.
    pub gateway_listener_tags_allowed: bool,
    pub allowed_invalid_names: &'a [&'a str],
}

impl<'a> RefRules<'a> {
    pub const fn kinds(supported: &'a [&'a str]) -> Self {
        RefRules {
            supported,
            gateway_listener_tags_allowed: false,
            allowed_invalid_names: &[],
        }
    }
}

fn set_str(v: Option<&str>) -> bool {
    v.is_some_and(|s| !s.is_empty())
}

fn set_map(v: Option<&Tags>) -> bool {
    v.is_some_and(|m| !m.is_empty())
}

/// Kuma's `NameCharacterSet` `^[0-9a-z.\-_]*$`.
pub fn is_kuma_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// Checks a targetRef-shaped object at `path`.
pub fn validate_ref(r: &mut Report, path: &FieldPath, t: &RefView, rules: &RefRules) {
    // Schema first: `kind` is required and one of the known kinds.
    let kind_path = path.field("kind");
    if t.kind.is_empty() {
        r.add(&kind_path, schema::REQUIRED);
        return;
    }
    if !SCHEMA_KINDS.contains(&t.kind) {
        r.add(&kind_path, schema::one_of(SCHEMA_KINDS));
        return;
    }
    for (i, p) in t.proxy_types.into_iter().flatten().enumerate() {
        if !PROXY_TYPES.contains(&p.as_str()) {
            r.add(
                &path.field("proxyTypes").index(i),
                schema::one_of(PROXY_TYPES),
            );
        }
    }
    if !rules.supported.contains(&t.kind) {
        r.add(&kind_path, format!("value '{}' is not supported", t.kind));
        return;
    }
    let mut ctx = RefCheck { r, path, t };
    match t.kind {
        "Mesh" => {
            if set_str(t.name) {
                ctx.at(
                    "name",
                    format!("using name with kind {} is not yet supported", t.kind),
                );
            }
            ctx.disallow_str("mesh", t.mesh);
            ctx.disallow_map("tags", t.tags);
            ctx.disallow_map("labels", t.labels);
            ctx.disallow_str("namespace", t.namespace);
            ctx.disallow_str("sectionName", t.section_name);
            ctx.proxy_types_not_empty();
        }
        "Dataplane" => {
            ctx.disallow_map("tags", t.tags);
            ctx.disallow_str("mesh", t.mesh);
            ctx.disallow_proxy_types();
            if set_map(t.labels) && (set_str(t.name) || set_str(t.namespace)) {
                ctx.at(
                    "labels",
                    "either labels or name and namespace must be specified",
                );
            }
            // Route policies are never inbound policies.
            if set_str(t.section_name) {
                ctx.at("sectionName", "can only be used with inbound policies");
            }
        }
        "MeshSubset" => {
            ctx.disallow_str("name", t.name);
            ctx.disallow_str("mesh", t.mesh);
            if let Some(tags) = t.tags {
                validate_tags(ctx.r, &path.field("tags"), tags, TagRules::TAGS);
            }
            ctx.disallow_map("labels", t.labels);
            ctx.disallow_str("namespace", t.namespace);
            ctx.disallow_str("sectionName", t.section_name);
            ctx.proxy_types_not_empty();
        }
        "MeshService" | "MeshHTTPRoute" | "MeshExternalService" => {
            ctx.name_charset(rules);
            ctx.disallow_str("mesh", t.mesh);
            ctx.disallow_map("tags", t.tags);
            ctx.disallow_proxy_types();
            if t.kind == "MeshHTTPRoute" {
                ctx.disallow_str("sectionName", t.section_name);
            }
            if !set_map(t.labels) && !set_str(t.name) {
                ctx.r.add(
                    path,
                    format!("name or labels must be set when kind is {}", t.kind),
                );
            }
            if set_map(t.labels) && (set_str(t.name) || set_str(t.namespace)) {
                let msg = if t.kind == "MeshExternalService" {
                    "either labels or name must be specified"
                } else {
                    "either labels or name and namespace must be specified"
                };
                ctx.at("labels", msg);
            }
            if t.kind == "MeshExternalService" {
                ctx.disallow_str("sectionName", t.section_name);
            }
        }
        "MeshServiceSubset" | "MeshGateway" => {
            if !set_str(t.name) {
                ctx.at("name", format!("must be set when kind is {}", t.kind));
            }
            ctx.name_charset(rules);
            ctx.disallow_str("mesh", t.mesh);
            ctx.disallow_proxy_types();
            if let Some(tags) = t.tags {
                validate_tags(ctx.r, &path.field("tags"), tags, TagRules::SELECTOR);
            }
            if t.kind == "MeshGateway" && !rules.gateway_listener_tags_allowed {
                ctx.disallow_map("tags", t.tags);
            }
            ctx.disallow_map("labels", t.labels);
            ctx.disallow_str("namespace", t.namespace);
            ctx.disallow_str("sectionName", t.section_name);
        }
        // MeshMultiZoneService has no ref-level rules (its `port` is a backendRef rule).
        _ => {}
    }
}

struct RefCheck<'r, 'a, 'p, 't> {
    r: &'r mut Report<'a>,
    path: &'p FieldPath,
    t: &'t RefView<'t>,
}

impl RefCheck<'_, '_, '_, '_> {
    fn at(&mut self, field: &str, msg: impl Into<String>) {
        self.r.add(&self.path.field(field), msg);
    }

    /// K:`disallowedField`: `must not be set with kind X`.
    fn disallow(&mut self, field: &str, set: bool) {
        if set {
            let msg = format!("must not be set with kind {}", self.t.kind);
            self.at(field, msg);
        }
    }

    fn disallow_str(&mut self, field: &str, v: Option<&str>) {
        self.disallow(field, set_str(v));
    }

    fn disallow_map(&mut self, field: &str, v: Option<&Tags>) {
        self.disallow(field, set_map(v));
    }

    fn disallow_proxy_types(&mut self) {
        self.disallow(
            "proxyTypes",
            self.t.proxy_types.is_some_and(|p| !p.is_empty()),
        );
    }

    /// K:`validateProxyTypes`.
    fn proxy_types_not_empty(&mut self) {
        if self.t.proxy_types.is_some_and(|p| p.is_empty()) {
            self.at(
                "proxyTypes",
                "must be undefined or have at least one element",
            );
        }
    }

    /// K:`validateName`.
    fn name_charset(&mut self, rules: &RefRules) {
        let name = self.t.name.unwrap_or("");
        if !rules.allowed_invalid_names.contains(&name) && !is_kuma_name(name) {
            self.at(
                "name",
                "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(yaml: &str, rules: &RefRules) -> Vec<String> {
        let t: TargetRef = serde_norway::from_str(yaml).expect("test targetRef");
        run(&meta(), |r| {
            validate_ref(
                r,
                &FieldPath::root().field("targetRef"),
                &RefView::from(&t),
                rules,
            )
        })
    }

    const GW: RefRules = RefRules {
        supported: &["Mesh", "MeshGateway"],
        gateway_listener_tags_allowed: true,
        allowed_invalid_names: &[],
    };

    #[test]
    fn kind_is_required_and_known() {
        assert_eq!(check("{}", &GW), ["targetRef.kind: in body is required"]);
        assert_eq!(
            check("kind: Foo", &GW),
            ["targetRef.kind: in body should be one of [Mesh MeshSubset MeshGateway MeshService MeshExternalService MeshMultiZoneService MeshServiceSubset MeshHTTPRoute Dataplane]"]
        );
        assert_eq!(
            check("kind: MeshService\nname: a", &GW),
            ["targetRef.kind: value 'MeshService' is not supported"]
        );
    }

    #[test]
    fn mesh_gateway_needs_a_valid_name_and_no_foreign_fields() {
        assert!(check("kind: MeshGateway\nname: edge\ntags: {port: http}", &GW).is_empty());
        assert_eq!(
            check("kind: MeshGateway", &GW),
            ["targetRef.name: must be set when kind is MeshGateway"]
        );
        assert_eq!(
            check("kind: MeshGateway\nname: Edge", &GW),
            ["targetRef.name: invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'."]
        );
        assert_eq!(
            check(
                "kind: MeshGateway\nname: e\nmesh: m\nnamespace: n\nsectionName: s\nlabels: {a: b}\nproxyTypes: [Gateway]",
                &GW
            ),
            [
                "targetRef.mesh: must not be set with kind MeshGateway",
                "targetRef.proxyTypes: must not be set with kind MeshGateway",
                "targetRef.labels: must not be set with kind MeshGateway",
                "targetRef.namespace: must not be set with kind MeshGateway",
                "targetRef.sectionName: must not be set with kind MeshGateway",
            ]
        );
    }

    #[test]
    fn mesh_gateway_tags_need_permission() {
        let rules = RefRules::kinds(&["MeshGateway"]);
        assert_eq!(
            check("kind: MeshGateway\nname: e\ntags: {a: b}", &rules),
            ["targetRef.tags: must not be set with kind MeshGateway"]
        );
    }

    #[test]
    fn mesh_takes_no_name() {
        assert!(check("kind: Mesh", &GW).is_empty());
        assert_eq!(
            check("kind: Mesh\nname: x\nproxyTypes: []", &GW),
            [
                "targetRef.name: using name with kind Mesh is not yet supported",
                "targetRef.proxyTypes: must be undefined or have at least one element",
            ]
        );
    }

    #[test]
    fn mesh_service_needs_name_or_labels() {
        let rules = RefRules::kinds(&["MeshService", "MeshExternalService"]);
        assert!(check("kind: MeshService\nname: a", &rules).is_empty());
        assert_eq!(
            check("kind: MeshService", &rules),
            ["targetRef: name or labels must be set when kind is MeshService"]
        );
        assert_eq!(
            check("kind: MeshExternalService\nname: a\nlabels: {x: y}", &rules),
            ["targetRef.labels: either labels or name must be specified"]
        );
    }

    #[test]
    fn proxy_types_enum() {
        assert_eq!(
            check("kind: Mesh\nproxyTypes: [Ingress]", &GW),
            ["targetRef.proxyTypes[0]: in body should be one of [Sidecar Gateway]"]
        );
    }

    #[test]
    fn unresolved_backend_name_is_an_allowed_exception() {
        let rules = RefRules {
            allowed_invalid_names: &[UNRESOLVED_BACKEND],
            ..RefRules::kinds(&["MeshService"])
        };
        assert!(check(
            "kind: MeshService\nname: kuma.io/unresolved-backend",
            &rules
        )
        .is_empty());
        assert_eq!(check("kind: MeshService\nname: a/b", &rules).len(), 1);
    }
}
