//! `rules[i].default.filters` of MeshHTTPRoute (semantics §2.2): schema enums and bounds
//! from K:`pkg/plugins/policies/meshhttproute/api/v1alpha1/rest.yaml`, Kuma's Go rules from
//! K:`…/validation.go` `validateFilters`, `validateHeaderModifier`, `validatePreciseHostname`,
//! and meshgate's: a rewrite `path` must carry the value its `type` names, and a mirror
//! percentage must be a number in 0–100.

use super::backend_ref::validate_port_and_weight;
use super::hostname::precise_hostname_problems;
use super::http_match::validate_header_name;
use super::messages::{must_have_at_least_one, schema, MUST_BE_DEFINED};
use super::path::FieldPath;
use super::report::Report;
use super::target_ref::{validate_ref, RefRules, RefView};
use crate::resources::http_route::{
    Filter, HeaderModifier, HttpMatch, PathRewrite, RequestMirror, RequestRedirect, UrlRewrite,
};
use std::collections::HashSet;

const FILTER_TYPES: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
    "RequestMirror",
];
const REWRITE_TYPES: &[&str] = &["ReplaceFullPath", "ReplacePrefixMatch"];
const SCHEMES: &[&str] = &["http", "https"];
const STATUS_CODES: &[i64] = &[301, 302, 303, 307, 308];
const MODIFIER_MAX_ITEMS: usize = 16;
const PREFIX_ONLY: &str = "can only appear if all matches match a path prefix";

/// What the filters of one rule are checked against.
pub struct FilterContext<'a> {
    pub top_kind: &'a str,
    pub matches: &'a [HttpMatch],
}

/// `path` is `…default.filters`.
pub fn validate_filters(r: &mut Report, path: &FieldPath, filters: &[Filter], ctx: &FilterContext) {
    for (i, f) in filters.iter().enumerate() {
        let at = path.index(i);
        match f.filter_type.as_str() {
            "" => r.add(&at.field("type"), schema::REQUIRED),
            "RequestHeaderModifier" => {
                let field = at.field("requestHeaderModifier");
                match &f.request_header_modifier {
                    None => r.add(&field, MUST_BE_DEFINED),
                    Some(m) => validate_header_modifier(r, &field, m),
                }
            }
            "ResponseHeaderModifier" => {
                let field = at.field("responseHeaderModifier");
                match &f.response_header_modifier {
                    None => r.add(&field, MUST_BE_DEFINED),
                    Some(m) => validate_header_modifier(r, &field, m),
                }
            }
            "RequestRedirect" => match &f.request_redirect {
                None => r.add(&at.field("requestRedirect"), MUST_BE_DEFINED),
                Some(rr) => validate_redirect(r, &at.field("requestRedirect"), rr, ctx),
            },
            "URLRewrite" => match &f.url_rewrite {
                None => r.add(&at.field("urlRewrite"), MUST_BE_DEFINED),
                Some(u) => validate_url_rewrite(r, &at.field("urlRewrite"), u, ctx),
            },
            "RequestMirror" => match &f.request_mirror {
                None => r.add(&at.field("requestMirror"), MUST_BE_DEFINED),
                Some(m) => validate_mirror(r, &at.field("requestMirror"), m),
            },
            _ => r.add(&at.field("type"), schema::one_of(FILTER_TYPES)),
        }
    }
}

/// K:`hasAnyMatchesWithoutPrefix`: a match without a path, or with a non-prefix path.
/// No matches at all count as the default `/` prefix.
fn has_match_without_prefix(matches: &[HttpMatch]) -> bool {
    matches.iter().any(|m| {
        m.path
            .as_ref()
            .is_none_or(|p| p.match_type.as_deref() != Some("PathPrefix"))
    })
}

/// K:`validateHeaderModifier` plus the schema's item limits and header-name pattern.
fn validate_header_modifier(r: &mut Report, at: &FieldPath, m: &HeaderModifier) {
    if m.set.is_none() && m.add.is_none() && m.remove.is_none() {
        r.add(at, must_have_at_least_one(&["set", "add", "remove"]));
        return;
    }
    let lengths = [
        ("set", m.set.as_ref().map_or(0, Vec::len)),
        ("add", m.add.as_ref().map_or(0, Vec::len)),
        ("remove", m.remove.as_ref().map_or(0, Vec::len)),
    ];
    for (field, len) in lengths {
        if len > MODIFIER_MAX_ITEMS {
            r.add(&at.field(field), schema::max_items(MODIFIER_MAX_ITEMS));
        }
    }
    // One header name may appear once across set, add and remove.
    let mut seen: HashSet<&str> = HashSet::new();
    for (field, list) in [("set", &m.set), ("add", &m.add)] {
        for (i, h) in list.iter().flatten().enumerate() {
            let name_path = at.field(field).index(i).field("name");
            validate_header_name(r, &name_path, &h.name);
            if !seen.insert(h.name.as_str()) {
                r.add(&name_path, "duplicate header name");
            }
        }
    }
    for (i, name) in m.remove.iter().flatten().enumerate() {
        if !seen.insert(name.as_str()) {
            r.add(
                &at.field("remove").index(i).field("name"),
                "duplicate header name",
            );
        }
    }
}

fn validate_redirect(r: &mut Report, at: &FieldPath, rr: &RequestRedirect, ctx: &FilterContext) {
    if let Some(s) = &rr.scheme {
        if !SCHEMES.contains(&s.as_str()) {
            r.add(&at.field("scheme"), schema::one_of(SCHEMES));
        }
    }
    if let Some(h) = &rr.hostname {
        validate_precise_hostname(r, &at.field("hostname"), h);
    }
    if let Some(p) = &rr.path {
        validate_path_rewrite(r, &at.field("path"), p, ctx);
    }
    if let Some(port) = rr.port {
        if port < 1 {
            r.add(&at.field("port"), schema::minimum(1));
        } else if port > 65535 {
            r.add(&at.field("port"), schema::maximum(65535));
        }
    }
    if let Some(code) = rr.status_code {
        if !STATUS_CODES.contains(&code) {
            r.add(
                &at.field("statusCode"),
                "in body should be one of [301 302 303 307 308]",
            );
        }
    }
}

fn validate_url_rewrite(r: &mut Report, at: &FieldPath, u: &UrlRewrite, ctx: &FilterContext) {
    if let Some(p) = &u.path {
        validate_path_rewrite(r, &at.field("path"), p, ctx);
    }
    if let Some(h) = &u.hostname {
        validate_precise_hostname(r, &at.field("hostname"), h);
    }
    if u.host_to_backend_hostname == Some(true) {
        let field = at.field("hostToBackendHostname");
        if ctx.top_kind != "MeshGateway" {
            r.add(&field, "can only be set with MeshGateway");
        }
        if u.hostname.is_some() {
            r.add(&field, "cannot be set together with hostname");
        }
    }
}

/// Redirect and URL-rewrite `path`: the schema (`type` required, enum), Kuma's prefix rule,
/// and meshgate's requirement that the value named by `type` is present.
fn validate_path_rewrite(r: &mut Report, at: &FieldPath, p: &PathRewrite, ctx: &FilterContext) {
    match p.rewrite_type.as_deref() {
        None => r.add(&at.field("type"), schema::REQUIRED),
        Some("ReplaceFullPath") if p.replace_full_path.is_none() => {
            r.add(&at.field("replaceFullPath"), MUST_BE_DEFINED);
        }
        Some("ReplacePrefixMatch") if p.replace_prefix_match.is_none() => {
            r.add(&at.field("replacePrefixMatch"), MUST_BE_DEFINED);
        }
        Some(t) if !REWRITE_TYPES.contains(&t) => {
            r.add(&at.field("type"), schema::one_of(REWRITE_TYPES));
        }
        Some(_) => {}
    }
    if p.replace_prefix_match.is_some() && has_match_without_prefix(ctx.matches) {
        r.add(&at.field("replacePrefixMatch"), PREFIX_ONLY);
    }
}

fn validate_precise_hostname(r: &mut Report, at: &FieldPath, hostname: &str) {
    for msg in precise_hostname_problems(hostname) {
        r.add(at, msg);
    }
}

fn validate_mirror(r: &mut Report, at: &FieldPath, m: &RequestMirror) {
    let ref_path = at.field("backendRef");
    match &m.backend_ref {
        None => r.add(&ref_path, schema::REQUIRED),
        Some(b) => {
            let rules = RefRules::kinds(&["MeshService", "MeshServiceSubset"]);
            validate_ref(r, &ref_path, &RefView::from(b), &rules);
            validate_port_and_weight(r, &ref_path, b);
        }
    }
    if let Some(p) = &m.percentage {
        let value = super::values::percentage(p);
        let field = at.field("percentage");
        match value {
            None => r.add(&field, "string must be a valid number"),
            Some(v) if !(0.0..=100.0).contains(&v) => {
                r.add(&field, "must be in inclusive range [0.0, 100.0]");
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::testutil::{meta, run};

    fn check_with(yaml: &str, matches: &str, top_kind: &str) -> Vec<String> {
        let filters: Vec<Filter> = serde_norway::from_str(yaml).expect("test filters");
        let matches: Vec<HttpMatch> = serde_norway::from_str(matches).expect("test matches");
        let ctx = FilterContext {
            top_kind,
            matches: &matches,
        };
        run(&meta(), |r| {
            validate_filters(r, &FieldPath::root().field("filters"), &filters, &ctx)
        })
    }

    fn check(yaml: &str) -> Vec<String> {
        check_with(
            yaml,
            "[{path: {type: PathPrefix, value: /}}]",
            "MeshGateway",
        )
    }

    #[test]
    fn filter_type_enum_and_object() {
        assert_eq!(check("[{}]"), ["filters[0].type: in body is required"]);
        assert_eq!(
            check("[{type: Rewrite}]"),
            ["filters[0].type: in body should be one of [RequestHeaderModifier ResponseHeaderModifier RequestRedirect URLRewrite RequestMirror]"]
        );
        assert_eq!(
            check("[{type: RequestHeaderModifier}, {type: ResponseHeaderModifier}, {type: RequestRedirect}, {type: URLRewrite}, {type: RequestMirror}]"),
            [
                "filters[0].requestHeaderModifier: must be defined",
                "filters[1].responseHeaderModifier: must be defined",
                "filters[2].requestRedirect: must be defined",
                "filters[3].urlRewrite: must be defined",
                "filters[4].requestMirror: must be defined",
            ]
        );
    }

    #[test]
    fn header_modifier_needs_an_operation() {
        assert_eq!(
            check("[{type: RequestHeaderModifier, requestHeaderModifier: {}}]"),
            ["filters[0].requestHeaderModifier: must have at least one defined: set, add, remove"]
        );
        assert!(
            check("[{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [x]}}]")
                .is_empty()
        );
    }

    #[test]
    fn header_modifier_names_are_unique_tokens() {
        assert_eq!(
            check("[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: '1'}, {name: a, value: '2'}], add: [{name: X-B, value: '1'}], remove: [a]}}]"),
            [
                "filters[0].requestHeaderModifier.set[1].name: duplicate header name",
                r"filters[0].requestHeaderModifier.add[0].name: in body should match '^[a-z0-9!#$%&'*+\-.^_`|~]+$'",
                "filters[0].requestHeaderModifier.remove[0].name: duplicate header name",
            ]
        );
    }

    #[test]
    fn header_modifier_lists_hold_at_most_16() {
        let names: Vec<String> = (0..17).map(|i| format!("h{i}")).collect();
        let yaml = format!(
            "[{{type: RequestHeaderModifier, requestHeaderModifier: {{remove: [{}]}}}}]",
            names.join(", ")
        );
        assert_eq!(
            check(&yaml),
            ["filters[0].requestHeaderModifier.remove: in body should have at most 16 items"]
        );
    }

    #[test]
    fn redirect_fields() {
        assert!(check("[{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, port: 443, statusCode: 301}}]").is_empty());
        assert_eq!(
            check("[{type: RequestRedirect, requestRedirect: {scheme: ftp, hostname: 10.0.0.1, port: 0, statusCode: 200}}]"),
            [
                "filters[0].requestRedirect.scheme: in body should be one of [http https]",
                "filters[0].requestRedirect.hostname: cannot be an IP address",
                "filters[0].requestRedirect.port: in body should be greater than or equal to 1",
                "filters[0].requestRedirect.statusCode: in body should be one of [301 302 303 307 308]",
            ]
        );
        let bad_host = check("[{type: RequestRedirect, requestRedirect: {hostname: Foo.com}}]");
        assert_eq!(bad_host.len(), 1);
        assert!(
            bad_host[0].starts_with("filters[0].requestRedirect.hostname: a lowercase RFC 1123")
        );
    }

    #[test]
    fn replace_prefix_match_needs_prefix_matches() {
        let redirect = "[{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]";
        assert!(check(redirect).is_empty());
        assert!(check_with(redirect, "[]", "MeshGateway").is_empty());
        assert_eq!(
            check_with(redirect, "[{path: {type: Exact, value: /a}}]", "MeshGateway"),
            ["filters[0].requestRedirect.path.replacePrefixMatch: can only appear if all matches match a path prefix"]
        );
        assert_eq!(
            check_with(
                "[{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]",
                "[{path: {type: PathPrefix, value: /a}}, {method: GET}]",
                "MeshGateway"
            ),
            ["filters[0].urlRewrite.path.replacePrefixMatch: can only appear if all matches match a path prefix"]
        );
    }

    #[test]
    fn rewrite_path_needs_its_value() {
        assert_eq!(
            check("[{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath}}}, {type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch}}}, {type: URLRewrite, urlRewrite: {path: {replaceFullPath: /x}}}, {type: URLRewrite, urlRewrite: {path: {type: Full}}}]"),
            [
                "filters[0].urlRewrite.path.replaceFullPath: must be defined",
                "filters[1].requestRedirect.path.replacePrefixMatch: must be defined",
                "filters[2].urlRewrite.path.type: in body is required",
                "filters[3].urlRewrite.path.type: in body should be one of [ReplaceFullPath ReplacePrefixMatch]",
            ]
        );
    }

    #[test]
    fn host_to_backend_hostname_rules() {
        assert!(
            check("[{type: URLRewrite, urlRewrite: {hostToBackendHostname: true}}]").is_empty()
        );
        assert_eq!(
            check("[{type: URLRewrite, urlRewrite: {hostname: a.example.com, hostToBackendHostname: true}}]"),
            ["filters[0].urlRewrite.hostToBackendHostname: cannot be set together with hostname"]
        );
        assert_eq!(
            check_with(
                "[{type: URLRewrite, urlRewrite: {hostToBackendHostname: true}}]",
                "[]",
                "Mesh"
            ),
            ["filters[0].urlRewrite.hostToBackendHostname: can only be set with MeshGateway"]
        );
        assert_eq!(
            check("[{type: URLRewrite, urlRewrite: {hostname: 1.2.3.4}}]"),
            ["filters[0].urlRewrite.hostname: cannot be an IP address"]
        );
    }

    #[test]
    fn mirror_backend_and_percentage() {
        assert!(check("[{type: RequestMirror, requestMirror: {backendRef: {kind: MeshService, name: a}, percentage: '50.5'}}]").is_empty());
        assert_eq!(
            check("[{type: RequestMirror, requestMirror: {percentage: 10}}, {type: RequestMirror, requestMirror: {backendRef: {kind: MeshExternalService, name: a}, percentage: 101}}, {type: RequestMirror, requestMirror: {backendRef: {kind: MeshService, name: a}, percentage: abc}}]"),
            [
                "filters[0].requestMirror.backendRef: in body is required",
                "filters[1].requestMirror.backendRef.kind: value 'MeshExternalService' is not supported",
                "filters[1].requestMirror.percentage: must be in inclusive range [0.0, 100.0]",
                "filters[2].requestMirror.percentage: string must be a valid number",
            ]
        );
    }
}
