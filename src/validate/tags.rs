//! Tag maps: selectors, gateway/listener tags, Dataplane tags
//! (K:`pkg/core/resources/apis/mesh/validators.go` `ValidateSelector`, `ValidateTags`,
//! `validateTagKeyValues`, `SelectorKeyNotInSet`).

use super::path::FieldPath;
use super::report::Report;
use crate::resources::common::Tags;

pub const SERVICE_TAG: &str = "kuma.io/service";
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";

/// Keys a MeshGateway's own and its listeners' tags must not use: they are properties of
/// Dataplanes (K:`gateway_validator.go`).
pub const DATAPLANE_ONLY_KEYS: &[&str] = &[
    "kuma.io/external-service",
    PROTOCOL_TAG,
    SERVICE_TAG,
    "kuma.io/zone",
];

/// Which value character set applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Selectors: `^([a-zA-Z0-9.\-_:/]*|\*)$`.
    Selector,
    /// Tags of a Dataplane: `^[a-zA-Z0-9.\-_:]*$`.
    Tag,
}

#[derive(Debug, Clone, Copy)]
pub struct TagRules {
    pub values: Values,
    pub require_at_least_one: bool,
    pub require_service: bool,
    pub forbidden_keys: &'static [&'static str],
}

impl TagRules {
    pub const SELECTOR: TagRules = TagRules {
        values: Values::Selector,
        require_at_least_one: false,
        require_service: false,
        forbidden_keys: &[],
    };
    pub const TAGS: TagRules = TagRules {
        values: Values::Tag,
        ..TagRules::SELECTOR
    };
}

/// `[a-zA-Z0-9.\-_:/]` (tag names and selector values).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')
}

/// `[a-zA-Z0-9.\-_:]` (tag values).
fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')
}

pub fn validate_tags(r: &mut Report, path: &FieldPath, tags: &Tags, rules: TagRules) {
    if rules.require_at_least_one && tags.is_empty() {
        r.add(path, "must have at least one tag");
    }
    // A BTreeMap iterates in sorted key order, like Kuma's `Keys`.
    for (key, value) in tags {
        if key.is_empty() {
            r.add(path, "tag name must be non-empty");
        }
        if !key.chars().all(is_name_char) {
            r.add(
                &path.key(key),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            );
        }
        if rules.forbidden_keys.contains(&key.as_str()) {
            r.add(&path.key(key), format!("tag name must not be {key:?}"));
        }
        if value.is_empty() {
            r.add(&path.key(key), "tag value must be non-empty");
        }
        match rules.values {
            Values::Selector => {
                if value != "*" && !value.chars().all(is_name_char) {
                    r.add(
                        &path.key(key),
                        "tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be \"*\"",
                    );
                }
            }
            Values::Tag => {
                if !value.chars().all(is_value_char) {
                    r.add(
                        &path.key(key),
                        "tag value must consist of alphanumeric characters, dots, dashes and underscores",
                    );
                }
            }
        }
    }
    if rules.require_service && !tags.contains_key(SERVICE_TAG) {
        r.add(path, format!("mandatory tag {SERVICE_TAG:?} is missing"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(tags: &[(&str, &str)], rules: TagRules) -> Vec<String> {
        let tags: Tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        run(&meta(), |r| {
            validate_tags(r, &FieldPath::root().field("t"), &tags, rules)
        })
    }

    #[test]
    fn selector_values_allow_star_and_slashes() {
        assert!(check(
            &[("kuma.io/service", "*"), ("a", "b/c")],
            TagRules::SELECTOR
        )
        .is_empty());
        assert_eq!(
            check(&[("a", "b c")], TagRules::SELECTOR),
            ["t[\"a\"]: tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be \"*\""]
        );
    }

    #[test]
    fn tag_values_refuse_slashes() {
        assert!(check(&[("kuma.io/service", "a_b:c")], TagRules::TAGS).is_empty());
        assert_eq!(
            check(&[("a", "b/c")], TagRules::TAGS),
            ["t[\"a\"]: tag value must consist of alphanumeric characters, dots, dashes and underscores"]
        );
    }

    #[test]
    fn names_and_empty_values() {
        assert_eq!(
            check(&[("a b", "")], TagRules::TAGS),
            [
                "t[\"a b\"]: tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
                "t[\"a b\"]: tag value must be non-empty",
            ]
        );
    }

    #[test]
    fn required_and_forbidden_keys() {
        let rules = TagRules {
            require_at_least_one: true,
            require_service: true,
            ..TagRules::SELECTOR
        };
        assert_eq!(
            check(&[], rules),
            [
                "t: must have at least one tag",
                "t: mandatory tag \"kuma.io/service\" is missing"
            ]
        );
        let rules = TagRules {
            forbidden_keys: DATAPLANE_ONLY_KEYS,
            ..TagRules::SELECTOR
        };
        assert_eq!(
            check(&[("kuma.io/zone", "z")], rules),
            ["t[\"kuma.io/zone\"]: tag name must not be \"kuma.io/zone\""]
        );
    }
}
