//! MeshHTTPRoute (semantics §2.2; K:`pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`
//! `validate`, `validateTos`, `validateRules`, `validateHostnames`, `validateBackendRefs`).
//! Matches and filters have their own modules; this one walks `spec.to[].rules[]`.

use super::backend_ref::{validate_backend_refs, RouteKind};
use super::http_filter::{validate_filters, FilterContext};
use super::http_match::validate_matches;
use super::messages::{schema, MUST_NOT_BE_DEFINED, MUST_NOT_BE_EMPTY};
use super::path::FieldPath;
use super::report::Report;
use super::route_target::{top_kind, validate_to_ref, validate_top};
use crate::resources::http_route::{HttpRule, MeshHttpRoute};

pub fn validate_http_route(r: &mut Report, spec: &MeshHttpRoute) {
    let root = FieldPath::spec_of(r.meta());
    validate_top(r, &root.field("targetRef"), spec.target_ref.as_ref());
    let top = top_kind(spec.target_ref.as_ref());
    for (i, to) in spec.to.iter().enumerate() {
        let at = root.field("to").index(i);
        validate_to_ref(r, &at.field("targetRef"), top, to.target_ref.as_ref());
        match &to.rules {
            None => r.add(&at.field("rules"), schema::REQUIRED),
            Some(rules) => {
                for (j, rule) in rules.iter().enumerate() {
                    validate_rule(r, &at.field("rules").index(j), top, rule);
                }
            }
        }
        // Hostnames narrow a gateway route's virtual hosts; nothing else has them. The
        // hostname strings themselves are not validated by Kuma.
        if top != "MeshGateway" && to.hostnames.as_ref().is_some_and(|h| !h.is_empty()) {
            r.add(&at.field("hostnames"), MUST_NOT_BE_DEFINED);
        }
    }
}

fn validate_rule(r: &mut Report, at: &FieldPath, top: &str, rule: &HttpRule) {
    validate_matches(r, &at.field("matches"), rule.matches.as_ref());
    let default = at.field("default");
    let Some(conf) = &rule.default else {
        r.add(&default, schema::REQUIRED);
        return;
    };
    let matches = rule.matches.as_deref().unwrap_or_default();
    let filters = conf.filters.as_deref().unwrap_or_default();
    validate_filters(
        r,
        &default.field("filters"),
        filters,
        &FilterContext {
            top_kind: top,
            matches,
        },
    );
    let refs_path = default.field("backendRefs");
    match conf.backend_refs.as_deref().unwrap_or_default() {
        // A gateway rule must send traffic somewhere unless it only redirects.
        [] => {
            let redirects = filters.iter().any(|f| f.filter_type == "RequestRedirect");
            if top == "MeshGateway" && !redirects {
                r.add(&refs_path, MUST_NOT_BE_EMPTY);
            }
        }
        refs => validate_backend_refs(r, &refs_path, refs, RouteKind::Http),
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn route(spec: &str) -> String {
        format!("type: MeshHTTPRoute\nmesh: default\nname: r\nspec:\n{spec}")
    }

    const TOP: &str = "  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n";

    /// A gateway route with one rule whose body (matches + default) is `rule`.
    fn gw_rule(rule: &str) -> String {
        route(&format!(
            "{TOP}  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - {rule}\n"
        ))
    }

    const OK_REFS: &str = "default: {backendRefs: [{kind: MeshService, name: v1}]}";

    #[test]
    fn valid_gateway_route() {
        assert_yaml(
            &route(&format!("{TOP}  to:\n  - targetRef:\n      kind: Mesh\n    hostnames: [a.test]\n    rules:\n    - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n      {OK_REFS}\n")),
            &[],
        );
    }

    #[test]
    fn gateway_to_refs_must_be_mesh() {
        assert_yaml(
            &route(&format!("{TOP}  to:\n  - targetRef:\n      kind: MeshService\n      name: v1\n    rules:\n    - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n      {OK_REFS}\n")),
            &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
        );
    }

    #[test]
    fn gateway_target_needs_a_name() {
        assert_yaml(
            &route("  targetRef:\n    kind: MeshGateway\n  to:\n  - targetRef: {kind: Mesh}\n    rules:\n    - matches: [{path: {type: PathPrefix, value: /}}]\n      default: {backendRefs: [{kind: MeshService, name: v1}]}\n"),
            &["spec.targetRef.name: must be set when kind is MeshGateway"],
        );
    }

    #[test]
    fn hostnames_only_with_gateway() {
        assert_yaml(
            &route(&format!("  targetRef:\n    kind: Mesh\n  to:\n  - targetRef:\n      kind: MeshService\n      name: v1\n    hostnames: [a.test]\n    rules:\n    - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n      {OK_REFS}\n")),
            &["spec.to[0].hostnames: must not be defined"],
        );
    }

    #[test]
    fn rules_and_to_target_ref_are_required() {
        assert_yaml(
            &route(&format!("{TOP}  to:\n  - hostnames: [a.test]\n")),
            &[
                "spec.to[0].targetRef: in body is required",
                "spec.to[0].rules: in body is required",
            ],
        );
    }

    #[test]
    fn rule_needs_matches_and_default() {
        assert_yaml(
            &gw_rule("{}"),
            &[
                "spec.to[0].rules[0].matches: in body is required",
                "spec.to[0].rules[0].default: in body is required",
            ],
        );
    }

    #[test]
    fn paths_inside_rules() {
        assert_yaml(
            &gw_rule(&format!(
                "matches: [{{path: {{type: Exact, value: relative}}}}]\n      {OK_REFS}"
            )),
            &["spec.to[0].rules[0].matches[0].path.value: must be an absolute path"],
        );
    }

    #[test]
    fn gateway_rules_need_backends_unless_redirecting() {
        assert_yaml(
            &gw_rule("matches: [{path: {type: PathPrefix, value: /}}]\n      default:\n        filters:\n        - type: URLRewrite\n          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /other}}"),
            &["spec.to[0].rules[0].default.backendRefs: must not be empty"],
        );
        assert_yaml(
            &gw_rule("matches: [{path: {type: PathPrefix, value: /}}]\n      default:\n        filters:\n        - type: RequestRedirect\n          requestRedirect: {scheme: https}"),
            &[],
        );
    }

    #[test]
    fn non_gateway_rules_may_have_no_backends() {
        assert_yaml(
            &route("  targetRef: {kind: Mesh}\n  to:\n  - targetRef: {kind: MeshService, name: v1}\n    rules:\n    - matches: [{path: {type: PathPrefix, value: /}}]\n      default: {}\n"),
            &[],
        );
    }

    #[test]
    fn backend_refs_inside_rules() {
        assert_yaml(
            &gw_rule("matches: [{path: {type: PathPrefix, value: /}}]\n      default:\n        backendRefs:\n        - {kind: MeshService, name: a, weight: 0}\n        - {kind: MeshService, name: b, weight: 0}\n        - {kind: MeshMultiZoneService, name: c, weight: 0}"),
            &[
                "spec.to[0].rules[0].default.backendRefs[2].port: must be defined with kind MeshMultiZoneService",
            ],
        );
        assert_yaml(
            &gw_rule("matches: [{path: {type: PathPrefix, value: /}}]\n      default:\n        backendRefs:\n        - {kind: MeshService, name: Bad}\n        - {kind: MeshService}"),
            &[
                "spec.to[0].rules[0].default.backendRefs[0].name: invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.",
                "spec.to[0].rules[0].default.backendRefs[1]: name or labels must be set when kind is MeshService",
            ],
        );
    }

    #[test]
    fn kubernetes_route_outside_system_namespace_cannot_target_gateways() {
        assert_yaml(
            &format!("apiVersion: kuma.io/v1alpha1\nkind: MeshHTTPRoute\nmetadata:\n  name: r\n  namespace: apps\n  labels: {{kuma.io/mesh: default}}\nspec:\n{TOP}  to: []\n"),
            &["spec.targetRef.kind: value 'MeshGateway' is not supported"],
        );
    }
}
