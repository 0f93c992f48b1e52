//! The target references every route kind shares (semantics §2.2, §2.3):
//! - the top-level `spec.targetRef` (K:meshhttproute/meshtcproute `validateTop`): MeshGateway
//!   is allowed only for policies of the *system* role, which may also pick listeners by tags;
//! - `spec.to[i].targetRef` (K:`validateToRef`): with a MeshGateway on top it must be `Mesh`,
//!   otherwise a service kind.

use super::messages::schema;
use super::path::FieldPath;
use super::report::Report;
use super::target_ref::{validate_ref, RefRules, RefView};
use crate::resources::common::TargetRef;
use crate::resources::{Form, Meta};

const POLICY_ROLE_LABEL: &str = "kuma.io/policy-role";

/// Namespaces where Kuma (or Kong Mesh) runs: policies there get the system role.
const SYSTEM_NAMESPACES: &[&str] = &["kuma-system", "kong-mesh-system"];

/// K:`core_model.PolicyRole`: the `kuma.io/policy-role` label, absent meaning system. On
/// Kubernetes Kuma's webhook sets that label from the namespace (system only in the system
/// namespace, issue kumahq/kuma#12864), so a Kubernetes-form policy without the label counts
/// as system only when its namespace is a system namespace (or not given).
pub fn is_system_role(meta: &Meta) -> bool {
    match meta.labels.get(POLICY_ROLE_LABEL) {
        Some(role) => role == "system",
        None => match (meta.form, meta.namespace.as_deref()) {
            (Form::Universal, _) | (Form::Kubernetes, None) => true,
            (Form::Kubernetes, Some(ns)) => SYSTEM_NAMESPACES.contains(&ns),
        },
    }
}

/// The effective top-level kind: an absent `targetRef` means `Mesh`.
pub fn top_kind(top: Option<&TargetRef>) -> &str {
    top.map_or("Mesh", |t| t.kind.as_str())
}

pub fn validate_top(r: &mut Report, path: &FieldPath, top: Option<&TargetRef>) {
    let Some(t) = top else { return };
    let rules = if is_system_role(r.meta()) {
        RefRules {
            gateway_listener_tags_allowed: true,
            ..RefRules::kinds(&[
                "Mesh",
                "MeshGateway",
                "MeshSubset",
                "MeshService",
                "MeshServiceSubset",
                "Dataplane",
            ])
        }
    } else {
        RefRules::kinds(&[
            "Mesh",
            "MeshSubset",
            "MeshService",
            "MeshServiceSubset",
            "Dataplane",
        ])
    };
    validate_ref(r, path, &RefView::from(t), &rules);
}

/// `to[i].targetRef`; the schema requires it.
pub fn validate_to_ref(r: &mut Report, path: &FieldPath, top_kind: &str, to: Option<&TargetRef>) {
    let Some(t) = to else {
        r.add(path, schema::REQUIRED);
        return;
    };
    let rules = if top_kind == "MeshGateway" {
        RefRules::kinds(&["Mesh"])
    } else {
        RefRules::kinds(&["MeshService", "MeshExternalService", "MeshMultiZoneService"])
    };
    validate_ref(r, path, &RefView::from(t), &rules);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn top(yaml: &str, m: &Meta) -> Vec<String> {
        let t: TargetRef = serde_norway::from_str(yaml).expect("test targetRef");
        run(m, |r| {
            validate_top(r, &FieldPath::root().field("targetRef"), Some(&t))
        })
    }

    #[test]
    fn gateway_targets_need_the_system_role() {
        let mut m = meta();
        assert!(top("{kind: MeshGateway, name: gw, tags: {a: b}}", &m).is_empty());
        m.form = Form::Kubernetes;
        m.namespace = Some("kuma-system".into());
        assert!(top("{kind: MeshGateway, name: gw}", &m).is_empty());
        m.namespace = Some("apps".into());
        assert_eq!(
            top("{kind: MeshGateway, name: gw}", &m),
            ["targetRef.kind: value 'MeshGateway' is not supported"]
        );
        m.labels.insert(POLICY_ROLE_LABEL.into(), "system".into());
        assert!(top("{kind: MeshGateway, name: gw}", &m).is_empty());
    }

    #[test]
    fn top_level_kinds() {
        assert_eq!(
            top("{kind: MeshHTTPRoute, name: x}", &meta()),
            ["targetRef.kind: value 'MeshHTTPRoute' is not supported"]
        );
        assert!(top("{kind: Mesh}", &meta()).is_empty());
    }

    #[test]
    fn to_refs_depend_on_the_top_kind() {
        let check = |top: &str, yaml: Option<&str>| {
            let t: Option<TargetRef> = yaml.map(|y| serde_norway::from_str(y).expect("ref"));
            run(&meta(), |r| {
                validate_to_ref(r, &FieldPath::root().field("targetRef"), top, t.as_ref())
            })
        };
        assert!(check("MeshGateway", Some("{kind: Mesh}")).is_empty());
        assert_eq!(
            check("MeshGateway", Some("{kind: MeshService, name: v1}")),
            ["targetRef.kind: value 'MeshService' is not supported"]
        );
        assert!(check("Mesh", Some("{kind: MeshService, name: v1}")).is_empty());
        assert_eq!(
            check("Mesh", Some("{kind: Mesh}")),
            ["targetRef.kind: value 'Mesh' is not supported"]
        );
        assert_eq!(
            check("MeshGateway", None),
            ["targetRef: in body is required"]
        );
    }
}
