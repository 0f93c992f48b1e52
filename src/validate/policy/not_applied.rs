//! Kuma kinds meshgate reads without applying (spec §13): each gets a warning line saying
//! why, so a directory moved over from Kuma never loses behaviour silently. MeshProxyPatch
//! is refused when it selects the gateway: it rewrites Envoy configuration, which meshgate
//! does not have, and the user relies on that rewrite.

use super::Top;
use crate::resources::policy::TargetOnly;
use crate::resources::{Kind, Meta};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

pub const PROXY_PATCH_REFUSED: &str =
    "MeshProxyPatch is not supported by meshgate: it patches Envoy configuration";

/// Refuses a MeshProxyPatch whose top-level targetRef can select a gateway.
pub fn check(r: &mut Report, spec: &TargetOnly) {
    if r.meta().kind != Kind::NotApplied("MeshProxyPatch") {
        return;
    }
    if Top::of(spec.target_ref.as_ref()).includes_gateways {
        r.add(
            &FieldPath::spec_of(r.meta()).field("targetRef"),
            PROXY_PATCH_REFUSED,
        );
    }
}

/// The `--check` line of a kind meshgate does not apply.
pub fn warning(meta: &Meta) -> Option<String> {
    let why = meta.kind.not_applied_reason()?;
    Some(format!(
        "{}: {}: not applied by meshgate: {why}",
        meta.origin,
        meta.display_name()
    ))
}
