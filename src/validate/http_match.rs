//! `rules[i].matches` of MeshHTTPRoute (semantics §2.2): the schema (required fields and
//! enums from K:`pkg/plugins/policies/meshhttproute/api/v1alpha1/rest.yaml`), then Kuma's
//! Go rules (K:`…/validation.go` `validateMatches`, `validatePath`, `validateHeaders`,
//! `validateQueryParams`), then meshgate's: regular expressions must compile.

use super::messages::{schema, MUST_NOT_BE_DEFINED};
use super::path::FieldPath;
use super::report::Report;
use super::user_regex::check_regex;
use crate::resources::http_route::{HeaderMatch, HttpMatch, PathMatch, QueryMatch};
use std::collections::HashSet;

const PATH_TYPES: &[&str] = &["Exact", "PathPrefix", "RegularExpression"];
const METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];
const HEADER_TYPES: &[&str] = &["Exact", "Present", "RegularExpression", "Absent", "Prefix"];
const QUERY_TYPES: &[&str] = &["Exact", "RegularExpression"];

/// The schema's `HeaderName` pattern, as the message quotes it.
pub const HEADER_NAME_PATTERN: &str = r"^[a-z0-9!#$%&'*+\-.^_`|~]+$";
pub const HEADER_NAME_MAX: usize = 256;

/// Checks a header name against `^[a-z0-9!#$%&'*+\-.^_`|~]+$`, ≤ 256 characters: the
/// lower-case HTTP token characters (header matching is case-insensitive, so names are
/// written lower-case).
pub fn validate_header_name(r: &mut Report, path: &FieldPath, name: &str) {
    let token =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        r.add(path, schema::REQUIRED);
    } else if name.len() > HEADER_NAME_MAX {
        r.add(path, schema::max_length(HEADER_NAME_MAX));
    } else if !name.chars().all(token) {
        r.add(path, schema::pattern(HEADER_NAME_PATTERN));
    }
}

/// `path` is `…rules[i].matches`.
pub fn validate_matches(r: &mut Report, path: &FieldPath, matches: Option<&Vec<HttpMatch>>) {
    let Some(matches) = matches else {
        r.add(path, schema::REQUIRED);
        return;
    };
    if matches.is_empty() {
        r.add(path, schema::min_items(1));
    }
    for (i, m) in matches.iter().enumerate() {
        let at = path.index(i);
        if let Some(p) = &m.path {
            validate_path(r, &at.field("path"), p);
        }
        if let Some(method) = &m.method {
            if !METHODS.contains(&method.as_str()) {
                r.add(&at.field("method"), schema::one_of(METHODS));
            }
        }
        validate_query_params(r, &at.field("queryParams"), m.query_params.as_deref());
        validate_headers(r, &at.field("headers"), m.headers.as_deref());
    }
}

fn validate_path(r: &mut Report, at: &FieldPath, p: &PathMatch) {
    let kind = match p.match_type.as_deref() {
        None => {
            r.add(&at.field("type"), schema::REQUIRED);
            None
        }
        Some(k) if !PATH_TYPES.contains(&k) => {
            r.add(&at.field("type"), schema::one_of(PATH_TYPES));
            None
        }
        Some(k) => Some(k),
    };
    let value_path = at.field("value");
    let value = match p.value.as_deref() {
        None => {
            r.add(&value_path, schema::REQUIRED);
            None
        }
        Some("") => {
            r.add(&value_path, schema::min_length(1));
            None
        }
        Some(v) => Some(v),
    };
    let (Some(kind), Some(value)) = (kind, value) else {
        return;
    };
    match kind {
        "PathPrefix" => {
            if value != "/" {
                if value.ends_with('/') {
                    r.add(
                        &value_path,
                        "does not need a trailing slash because only a `/`-separated prefix or an entire path is matched",
                    );
                }
                if !value.starts_with('/') {
                    r.add(&value_path, "must be an absolute path");
                }
            }
        }
        "Exact" => {
            if !value.starts_with('/') {
                r.add(&value_path, "must be an absolute path");
            }
        }
        _ => check_regex(r, &value_path, value),
    }
}

fn validate_headers(r: &mut Report, path: &FieldPath, headers: Option<&[HeaderMatch]>) {
    for (i, h) in headers.unwrap_or_default().iter().enumerate() {
        let at = path.index(i);
        validate_header_name(r, &at.field("name"), &h.name);
        let value = h.value.as_deref().unwrap_or("");
        // The schema default is Exact.
        match h.match_type.as_deref().unwrap_or("Exact") {
            "Exact" | "Prefix" => {}
            "Present" | "Absent" => {
                if !value.is_empty() {
                    r.add(&at.field("value"), MUST_NOT_BE_DEFINED);
                }
            }
            "RegularExpression" => check_regex(r, &at.field("value"), value),
            _ => r.add(&at.field("type"), schema::one_of(HEADER_TYPES)),
        }
    }
}

fn validate_query_params(r: &mut Report, path: &FieldPath, params: Option<&[QueryMatch]>) {
    let mut seen = HashSet::new();
    for (i, q) in params.unwrap_or_default().iter().enumerate() {
        let at = path.index(i);
        if q.name.is_empty() {
            r.add(&at.field("name"), schema::REQUIRED);
        }
        match q.match_type.as_deref() {
            None => r.add(&at.field("type"), schema::REQUIRED),
            Some("Exact") => {}
            Some("RegularExpression") => check_regex(r, &at.field("value"), &q.value),
            Some(_) => r.add(&at.field("type"), schema::one_of(QUERY_TYPES)),
        }
        if !seen.insert(q.name.as_str()) {
            r.add(
                &at.field("name"),
                format!("multiple entries for name {}", q.name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check(yaml: &str) -> Vec<String> {
        let m: Option<Vec<HttpMatch>> = serde_norway::from_str(yaml).expect("test matches");
        run(&meta(), |r| {
            validate_matches(r, &FieldPath::root().field("matches"), m.as_ref())
        })
    }

    #[test]
    fn matches_are_required_and_non_empty() {
        assert_eq!(check("null"), ["matches: in body is required"]);
        assert_eq!(
            check("[]"),
            ["matches: in body should have at least 1 items"]
        );
        assert!(check("[{}]").is_empty());
    }

    #[test]
    fn path_type_and_value_are_required() {
        assert_eq!(
            check("[{path: {}}]"),
            [
                "matches[0].path.type: in body is required",
                "matches[0].path.value: in body is required",
            ]
        );
        assert_eq!(
            check("[{path: {type: Exact, value: ''}}]"),
            ["matches[0].path.value: in body should be at least 1 chars long"]
        );
        assert_eq!(
            check("[{path: {type: Prefix, value: /a}}]"),
            ["matches[0].path.type: in body should be one of [Exact PathPrefix RegularExpression]"]
        );
    }

    #[test]
    fn path_prefix_without_trailing_slash() {
        assert!(check(
            "[{path: {type: PathPrefix, value: /}}, {path: {type: PathPrefix, value: /a}}]"
        )
        .is_empty());
        assert_eq!(
            check("[{path: {type: PathPrefix, value: /api/}}]"),
            ["matches[0].path.value: does not need a trailing slash because only a `/`-separated prefix or an entire path is matched"]
        );
    }

    #[test]
    fn paths_are_absolute() {
        assert_eq!(
            check(
                "[{path: {type: Exact, value: relative}}, {path: {type: PathPrefix, value: rel}}]"
            ),
            [
                "matches[0].path.value: must be an absolute path",
                "matches[1].path.value: must be an absolute path",
            ]
        );
    }

    #[test]
    fn path_regex_must_compile() {
        assert!(check("[{path: {type: RegularExpression, value: '/v[0-9]+'}}]").is_empty());
        assert_eq!(
            check("[{path: {type: RegularExpression, value: '/(a'}}]"),
            ["matches[0].path.value: must be a valid regular expression: unclosed group"]
        );
    }

    #[test]
    fn method_enum() {
        assert!(check("[{method: GET}]").is_empty());
        assert_eq!(
            check("[{method: get}]"),
            ["matches[0].method: in body should be one of [CONNECT DELETE GET HEAD OPTIONS PATCH POST PUT TRACE]"]
        );
    }

    #[test]
    fn header_names_are_lower_case_tokens() {
        assert!(check("[{headers: [{name: x-a_b, value: v}]}]").is_empty());
        assert_eq!(
            check("[{headers: [{name: Content-Type, value: v}]}]"),
            [r"matches[0].headers[0].name: in body should match '^[a-z0-9!#$%&'*+\-.^_`|~]+$'"]
        );
        let long = format!("[{{headers: [{{name: {}}}]}}]", "a".repeat(257));
        assert_eq!(
            check(&long),
            ["matches[0].headers[0].name: in body should be at most 256 chars long"]
        );
        assert_eq!(
            check("[{headers: [{value: v}]}]"),
            ["matches[0].headers[0].name: in body is required"]
        );
    }

    #[test]
    fn header_types() {
        assert_eq!(
            check("[{headers: [{type: Present, name: x, value: '1'}, {type: Absent, name: y, value: '1'}, {type: Absent, name: z}]}]"),
            [
                "matches[0].headers[0].value: must not be defined",
                "matches[0].headers[1].value: must not be defined",
            ]
        );
        assert_eq!(
            check("[{headers: [{type: Suffix, name: x, value: a}]}]"),
            ["matches[0].headers[0].type: in body should be one of [Exact Present RegularExpression Absent Prefix]"]
        );
        assert_eq!(
            check("[{headers: [{type: RegularExpression, name: x, value: '['}]}]").len(),
            1
        );
    }

    #[test]
    fn query_params() {
        assert!(check("[{queryParams: [{type: Exact, name: a, value: '1'}, {type: RegularExpression, name: b, value: '[0-9]+'}]}]").is_empty());
        assert_eq!(
            check("[{queryParams: [{type: Exact, name: foo, value: '1'}, {type: RegularExpression, name: foo, value: '[0-9]+'}]}]"),
            ["matches[0].queryParams[1].name: multiple entries for name foo"]
        );
        assert_eq!(
            check("[{queryParams: [{name: a, value: '1'}, {type: Prefix, name: b, value: '1'}, {type: RegularExpression, name: c, value: '('}]}]"),
            [
                "matches[0].queryParams[0].type: in body is required",
                "matches[0].queryParams[1].type: in body should be one of [Exact RegularExpression]",
                "matches[0].queryParams[2].value: must be a valid regular expression: unclosed group",
            ]
        );
    }
}
