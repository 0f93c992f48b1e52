//! Lowering: a resource that passed every check becomes its [`crate::model`] value.
//!
//! The checks have already refused every value these functions cannot read, so an `Err`
//! here means a check is missing: it is reported as a violation of that resource (never a
//! panic, never a silent default), naming the field.

mod gateway;
mod route;
mod service;

pub use gateway::gateway;
pub use route::{header_matches, http_route, target, tcp_route};
pub use service::{dataplane, external_service, mesh_service, secret};

/// Why a validated value could not be lowered: the field and what was wrong.
#[derive(Debug)]
pub struct Unreadable {
    pub field: String,
    pub what: String,
}

pub type Lowered<T> = Result<T, Unreadable>;

pub(crate) fn unreadable(field: impl Into<String>, what: impl Into<String>) -> Unreadable {
    Unreadable {
        field: field.into(),
        what: what.into(),
    }
}

/// `value` or, when it is `None`, an [`Unreadable`] naming `field`.
pub(crate) fn required<T>(value: Option<T>, field: &str) -> Lowered<T> {
    value.ok_or_else(|| unreadable(field, "missing or not readable"))
}
