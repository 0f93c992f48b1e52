//! `default.backendRefs` of MeshHTTPRoute and MeshTCPRoute rules: each ref's kind and
//! name rules (K:`mesh.ValidateTargetRef` via [`super::target_ref`]), the MeshMultiZoneService
//! port (K:`pkg/core/validators/common_validators.go` `ValidateBackendRef`), the schema's
//! `weight >= 0`, plus meshgate's own checks: `port` in 1–65535 and a weight sum above 0.
//! Whether an empty list is allowed differs per route kind and is decided by the caller.

use super::messages::{schema, MUST_BE_DEFINED, PORT_RANGE};
use super::path::FieldPath;
use super::report::Report;
use super::target_ref::{validate_ref, RefRules, RefView, UNRESOLVED_BACKEND};
use crate::resources::common::BackendRef;

pub const BACKEND_KINDS: &[&str] = &[
    "MeshService",
    "MeshServiceSubset",
    "MeshExternalService",
    "MeshMultiZoneService",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Http,
    Tcp,
}

/// Checks a non-empty backendRefs list at `path` (`…default.backendRefs`).
pub fn validate_backend_refs(
    r: &mut Report,
    path: &FieldPath,
    refs: &[BackendRef],
    route: RouteKind,
) {
    // Only MeshHTTPRoute accepts the unresolved-backend placeholder (K:meshhttproute
    // `validateBackendRefs` passes `AllowedInvalidNames`, meshtcproute's does not).
    let allowed_invalid_names: &[&str] = match route {
        RouteKind::Http => &[UNRESOLVED_BACKEND],
        RouteKind::Tcp => &[],
    };
    let rules = RefRules {
        allowed_invalid_names,
        ..RefRules::kinds(BACKEND_KINDS)
    };
    for (i, b) in refs.iter().enumerate() {
        let at = path.index(i);
        validate_ref(r, &at, &RefView::from(b), &rules);
        validate_port_and_weight(r, &at, b);
    }
    // meshgate: with every weight 0 no backend could ever be picked. A single ref is exempt:
    // Kuma's gateway then still sends it all traffic (semantics §6.3). For MeshHTTPRoute the
    // rule is served and matching requests get 500, the Gateway API rule the semantics
    // recommend (§6.3, acceptance kuma-s49); a TCP proxy has no status to answer with, so a
    // MeshTCPRoute that could never connect anywhere is refused instead (§7.2).
    if route == RouteKind::Tcp && refs.len() >= 2 && refs.iter().all(|b| b.effective_weight() == 0)
    {
        r.add(path, "the sum of weights must be greater than 0");
    }
}

/// The numeric fields of one backendRef (also used for the mirror filter's backendRef).
pub fn validate_port_and_weight(r: &mut Report, at: &FieldPath, b: &BackendRef) {
    if b.kind == "MeshMultiZoneService" && b.port.is_none() {
        r.add(
            &at.field("port"),
            format!("{MUST_BE_DEFINED} with kind MeshMultiZoneService"),
        );
    }
    // meshgate: Kuma's schema only says int32; a port outside 1–65535 can never resolve.
    if let Some(port) = b.port {
        if !(1..=65535).contains(&port) {
            r.add(&at.field("port"), PORT_RANGE);
        }
    }
    if let Some(w) = b.weight {
        if w < 0 {
            r.add(&at.field("weight"), schema::minimum(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(yaml: &str, route: RouteKind) -> Vec<String> {
        let refs: Vec<BackendRef> = serde_norway::from_str(yaml).expect("test backendRefs");
        run(&meta(), |r| {
            validate_backend_refs(r, &FieldPath::root().field("backendRefs"), &refs, route)
        })
    }

    #[test]
    fn kinds_are_restricted() {
        assert!(check("[{kind: MeshService, name: a}]", RouteKind::Http).is_empty());
        assert_eq!(
            check("[{kind: Mesh}]", RouteKind::Http),
            ["backendRefs[0].kind: value 'Mesh' is not supported"]
        );
    }

    #[test]
    fn names_must_use_kuma_charset_except_unresolved_on_http() {
        let ok = "[{kind: MeshService, name: kuma.io/unresolved-backend}]";
        assert!(check(ok, RouteKind::Http).is_empty());
        assert_eq!(
            check(ok, RouteKind::Tcp),
            ["backendRefs[0].name: invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'."]
        );
    }

    #[test]
    fn subset_needs_a_name() {
        assert_eq!(
            check(
                "[{kind: MeshServiceSubset, tags: {v: '1'}}]",
                RouteKind::Http
            ),
            ["backendRefs[0].name: must be set when kind is MeshServiceSubset"]
        );
    }

    #[test]
    fn multi_zone_service_needs_a_port() {
        assert!(check(
            "[{kind: MeshMultiZoneService, name: a, port: 80}]",
            RouteKind::Tcp
        )
        .is_empty());
        assert_eq!(
            check("[{kind: MeshMultiZoneService, name: a}]", RouteKind::Tcp),
            ["backendRefs[0].port: must be defined with kind MeshMultiZoneService"]
        );
    }

    #[test]
    fn port_and_weight_ranges() {
        assert_eq!(
            check(
                "[{kind: MeshService, name: a, port: 70000, weight: -1}]",
                RouteKind::Http
            ),
            [
                "backendRefs[0].port: port must be in the range [1, 65535]",
                "backendRefs[0].weight: in body should be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn all_zero_weights_are_refused_for_two_or_more_refs() {
        assert!(check("[{kind: MeshService, name: a, weight: 0}]", RouteKind::Http).is_empty());
        assert!(check(
            "[{kind: MeshService, name: a, weight: 0}, {kind: MeshService, name: b}]",
            RouteKind::Http
        )
        .is_empty());
        // HTTP: served, answered 500 per request.
        assert!(check(
            "[{kind: MeshService, name: a, weight: 0}, {kind: MeshService, name: b, weight: 0}]",
            RouteKind::Http
        )
        .is_empty());
        assert_eq!(
            check(
                "[{kind: MeshService, name: a, weight: 0}, {kind: MeshService, name: b, weight: 0}]",
                RouteKind::Tcp
            ),
            ["backendRefs: the sum of weights must be greater than 0"]
        );
    }
}
