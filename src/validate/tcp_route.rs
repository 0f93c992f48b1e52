//! MeshTCPRoute (semantics §2.3; K:`pkg/plugins/policies/meshtcproute/api/v1alpha1/validator.go`,
//! schema K:`…/rest.yaml`: `to[].targetRef` and `to[].rules` required, at most one rule,
//! `rules[].default` required).

use super::backend_ref::{validate_backend_refs, RouteKind};
use super::messages::{schema, MUST_BE_DEFINED};
use super::path::FieldPath;
use super::report::Report;
use super::route_target::{top_kind, validate_to_ref, validate_top};
use crate::resources::tcp_route::MeshTcpRoute;

pub fn validate_tcp_route(r: &mut Report, spec: &MeshTcpRoute) {
    let root = FieldPath::spec_of(r.meta());
    validate_top(r, &root.field("targetRef"), spec.target_ref.as_ref());
    let top = top_kind(spec.target_ref.as_ref());
    for (i, to) in spec.to.iter().enumerate() {
        let at = root.field("to").index(i);
        validate_to_ref(r, &at.field("targetRef"), top, to.target_ref.as_ref());
        let rules_path = at.field("rules");
        let Some(rules) = &to.rules else {
            r.add(&rules_path, schema::REQUIRED);
            continue;
        };
        // Only rules[0] is ever used (K:`…/meshtcproute/api/v1alpha1/helpers.go` `GetDefault`).
        if rules.len() > 1 {
            r.add(&rules_path, schema::max_items(1));
        }
        for (j, rule) in rules.iter().enumerate() {
            let default = rules_path.index(j).field("default");
            let Some(conf) = &rule.default else {
                r.add(&default, schema::REQUIRED);
                continue;
            };
            let refs_path = default.field("backendRefs");
            match conf.backend_refs.as_deref().unwrap_or_default() {
                [] => r.add(&refs_path, MUST_BE_DEFINED),
                refs => validate_backend_refs(r, &refs_path, refs, RouteKind::Tcp),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn route(to: &str) -> String {
        format!("type: MeshTCPRoute\nmesh: default\nname: t\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n{to}")
    }

    #[test]
    fn valid_weighted_route() {
        assert_yaml(
            &route("  - targetRef: {kind: Mesh}\n    rules:\n    - default:\n        backendRefs:\n        - {kind: MeshService, name: a, weight: 90}\n        - {kind: MeshService, name: b, weight: 10}\n"),
            &[],
        );
    }

    #[test]
    fn backend_refs_must_be_defined() {
        assert_yaml(
            &route("  - targetRef: {kind: Mesh}\n    rules:\n    - default: {}\n"),
            &["spec.to[0].rules[0].default.backendRefs: must be defined"],
        );
    }

    #[test]
    fn at_most_one_rule_and_required_parts() {
        assert_yaml(
            &route("  - targetRef: {kind: Mesh}\n    rules:\n    - default: {backendRefs: [{kind: MeshService, name: a}]}\n    - {}\n  - {}\n"),
            &[
                "spec.to[0].rules: in body should have at most 1 items",
                "spec.to[0].rules[1].default: in body is required",
                "spec.to[1].targetRef: in body is required",
                "spec.to[1].rules: in body is required",
            ],
        );
    }

    #[test]
    fn to_ref_must_be_mesh_with_a_gateway() {
        assert_yaml(
            &route("  - targetRef: {kind: MeshService, name: a}\n    rules:\n    - default: {backendRefs: [{kind: MeshService, name: a}]}\n"),
            &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
        );
    }

    #[test]
    fn all_zero_weights_are_refused() {
        assert_yaml(
            &route("  - targetRef: {kind: Mesh}\n    rules:\n    - default:\n        backendRefs:\n        - {kind: MeshService, name: a, weight: 0}\n        - {kind: MeshService, name: b, weight: 0}\n"),
            &["spec.to[0].rules[0].default.backendRefs: the sum of weights must be greater than 0"],
        );
    }
}
