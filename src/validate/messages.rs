//! Kuma's wording, in one place.
//!
//! - Go validator messages: K:`pkg/core/validators/messages.go` and the validators that
//!   format their own text (cited where used).
//! - OpenAPI schema messages: Kuma validates new resources (MeshHTTPRoute, MeshTCPRoute,
//!   MeshService, MeshExternalService) against their OpenAPI schema before its Go validator
//!   and reports `spec.<path> <reason>` (K:`pkg/core/resources/model/rest/unmarshaller.go`
//!   `toValidationError`); the reasons are kube-openapi's (`in body is required`, ...).

pub const CANNOT_BE_EMPTY: &str = "cannot be empty";
pub const MUST_BE_DEFINED: &str = "must be defined";
pub const MUST_NOT_BE_DEFINED: &str = "must not be defined";
pub const MUST_NOT_BE_EMPTY: &str = "must not be empty";
pub const MUST_NOT_BE_NEGATIVE: &str = "must not be negative when defined";
/// K:`pkg/core/resources/apis/mesh/validators.go` `ValidatePort`.
pub const PORT_RANGE: &str = "port must be in the range [1, 65535]";

/// K:`validators.MustBeOneOf`: `protocol must be one of: HTTP, HTTPS`.
pub fn must_be_one_of(entity: &str, allowed: &[&str]) -> String {
    format!("{entity} must be one of: {}", allowed.join(", "))
}

/// K:`validators.MakeFieldMustBeOneOfErr`: `"mode" must be one of ["A", "B"]`.
pub fn field_must_be_one_of(field: &str, allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|v| format!("{v:?}")).collect();
    format!("{field:?} must be one of [{}]", quoted.join(", "))
}

/// K:`validators.MustHaveExactlyOneOf`.
pub fn must_have_exactly_one_of(entity: &str, allowed: &[&str]) -> String {
    format!(
        "{entity} must have exactly one defined: {}",
        allowed.join(", ")
    )
}

/// K:`validators.MustHaveAtLeastOne`.
pub fn must_have_at_least_one(allowed: &[&str]) -> String {
    format!("must have at least one defined: {}", allowed.join(", "))
}

/// OpenAPI schema reasons (kube-openapi `validate` errors, as Kuma prints them).
pub mod schema {
    pub const REQUIRED: &str = "in body is required";

    pub fn one_of(allowed: &[&str]) -> String {
        format!("in body should be one of [{}]", allowed.join(" "))
    }

    pub fn pattern(pattern: &str) -> String {
        format!("in body should match '{pattern}'")
    }

    pub fn max_length(n: usize) -> String {
        format!("in body should be at most {n} chars long")
    }

    pub fn min_length(n: usize) -> String {
        format!("in body should be at least {n} chars long")
    }

    pub fn min_items(n: usize) -> String {
        format!("in body should have at least {n} items")
    }

    pub fn max_items(n: usize) -> String {
        format!("in body should have at most {n} items")
    }

    pub fn minimum(n: i64) -> String {
        format!("in body should be greater than or equal to {n}")
    }

    pub fn maximum(n: i64) -> String {
        format!("in body should be less than or equal to {n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kuma() {
        assert_eq!(
            field_must_be_one_of("mode", &["A", "B"]),
            r#""mode" must be one of ["A", "B"]"#
        );
        assert_eq!(
            must_be_one_of("type", &["X", "Y"]),
            "type must be one of: X, Y"
        );
        assert_eq!(
            schema::one_of(&["Allow", "Deny"]),
            "in body should be one of [Allow Deny]"
        );
        assert_eq!(
            must_have_at_least_one(&["set", "add", "remove"]),
            "must have at least one defined: set, add, remove"
        );
    }
}
