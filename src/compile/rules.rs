//! One hostname group's merged rules as route entries (semantics §4.1–4.5): each match of a
//! rule becomes one entry per path it expands to, with its compiled conditions, the rule's
//! action, and the path rewrite specialised for that entry.

use super::reuse::RegexCache;
use crate::model::route::{
    HeaderMatch, HttpMatch, PathMatch, PathRewrite as RewriteSpec, QueryMatch,
};
use crate::snapshot::action::PathRewrite;
use crate::snapshot::matchers::{Conditions, HeaderMatcher, PathKind, PathMatcher, QueryMatcher};
use foldhash::HashSet;

/// The conditions of one match besides its path.
pub fn conditions(m: &HttpMatch, regexes: &mut RegexCache) -> Result<Conditions, String> {
    let mut headers = Vec::with_capacity(m.headers.len());
    for h in &m.headers {
        headers.push(header_matcher(h, regexes)?);
    }
    let mut query = Vec::with_capacity(m.query.len());
    for q in &m.query {
        query.push(match q {
            QueryMatch::Exact(name, value) => QueryMatcher::Exact(name.clone(), value.clone()),
            QueryMatch::Regex(name, pattern) => QueryMatcher::Regex(
                name.clone(),
                regexes
                    .full_match(pattern)
                    .map_err(|e| format!("query regex: {e}"))?,
            ),
        });
    }
    Ok(Conditions::new(m.method.clone(), headers, query))
}

/// One header condition, its regex compiled (through the cache).
pub fn header_matcher(h: &HeaderMatch, regexes: &mut RegexCache) -> Result<HeaderMatcher, String> {
    Ok(match h {
        HeaderMatch::Exact(name, value) => HeaderMatcher::Exact(name.clone(), value.clone()),
        HeaderMatch::Present(name) => HeaderMatcher::Present(name.clone()),
        HeaderMatch::Absent(name) => HeaderMatcher::Absent(name.clone()),
        HeaderMatch::Prefix(name, value) => HeaderMatcher::Prefix(name.clone(), value.clone()),
        HeaderMatch::Regex(name, pattern) => HeaderMatcher::Regex(
            name.clone(),
            regexes
                .full_match(pattern)
                .map_err(|e| format!("header regex: {e}"))?,
        ),
    })
}

/// PathPrefix expansion (§4.1): `/p` → prefix `/p/` + exact `/p` (unless an explicit Exact
/// `/p` exists in the virtual host); `/` → one prefix `/`, plus an exact `/` when a prefix
/// rewrite needs it to map `/` to the replacement without a trailing slash (§5.3).
pub fn expand_path(
    m: &HttpMatch,
    explicit_exact: &HashSet<&str>,
    has_prefix_rewrite: bool,
    regexes: &mut RegexCache,
) -> Result<Vec<PathMatcher>, String> {
    let matcher = |kind, value: &str| PathMatcher {
        kind,
        value: value.to_string(),
        regex: None,
    };
    Ok(match &m.path {
        None => vec![matcher(PathKind::Prefix, "/")],
        Some(PathMatch::Exact(value)) => vec![matcher(PathKind::Exact, value)],
        Some(PathMatch::Regex(pattern)) => vec![PathMatcher {
            kind: PathKind::Regex,
            value: pattern.clone(),
            regex: Some(
                regexes
                    .full_match(pattern)
                    .map_err(|e| format!("path regex: {e}"))?,
            ),
        }],
        Some(PathMatch::Prefix(value)) if value == "/" => {
            let mut v = vec![matcher(PathKind::Prefix, "/")];
            if has_prefix_rewrite && !explicit_exact.contains("/") {
                v.push(matcher(PathKind::Exact, "/"));
            }
            v
        }
        Some(PathMatch::Prefix(value)) => {
            let mut v = vec![matcher(PathKind::Prefix, &format!("{value}/"))];
            if !explicit_exact.contains(value.as_str()) {
                v.push(matcher(PathKind::Exact, value));
            }
            v
        }
    })
}

/// Specialises a rule's path rewrite for one expanded entry (§5.3): the `/p/` prefix entry
/// replaces the matched prefix, the synthesized exact `/p` entry the whole path.
pub fn specialise(spec: &RewriteSpec, path: &PathMatcher) -> Option<PathRewrite> {
    match spec {
        RewriteSpec::ReplaceFullPath(p) => Some(PathRewrite::Full(p.clone())),
        RewriteSpec::ReplacePrefixMatch(replacement) => {
            let bare = replacement.trim_end_matches('/');
            match path.kind {
                PathKind::Prefix => Some(PathRewrite::Prefix {
                    matched: path.value.clone(),
                    replacement: format!("{bare}/"),
                }),
                PathKind::Exact => Some(PathRewrite::Full(if bare.is_empty() {
                    "/".to_string()
                } else {
                    bare.to_string()
                })),
                PathKind::Regex => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(value: &str) -> HttpMatch {
        HttpMatch {
            path: Some(PathMatch::Prefix(value.to_string())),
            ..Default::default()
        }
    }

    fn expanded(m: &HttpMatch, exact: &[&str], rewrite: bool) -> Vec<(PathKind, String)> {
        let exact: HashSet<&str> = exact.iter().copied().collect();
        expand_path(m, &exact, rewrite, &mut RegexCache::default())
            .expect("valid")
            .into_iter()
            .map(|p| (p.kind, p.value))
            .collect()
    }

    #[test]
    fn a_prefix_expands_to_a_segment_prefix_and_the_exact_path() {
        assert_eq!(
            expanded(&prefix("/p"), &[], false),
            [
                (PathKind::Prefix, "/p/".to_string()),
                (PathKind::Exact, "/p".to_string())
            ]
        );
    }

    #[test]
    fn an_explicit_exact_path_suppresses_the_synthesized_one() {
        assert_eq!(
            expanded(&prefix("/p"), &["/p"], false),
            [(PathKind::Prefix, "/p/".to_string())]
        );
    }

    #[test]
    fn the_root_prefix_gets_an_exact_root_only_for_a_prefix_rewrite() {
        assert_eq!(
            expanded(&prefix("/"), &[], false),
            [(PathKind::Prefix, "/".to_string())]
        );
        assert_eq!(
            expanded(&prefix("/"), &[], true),
            [
                (PathKind::Prefix, "/".to_string()),
                (PathKind::Exact, "/".to_string())
            ]
        );
    }

    #[test]
    fn a_prefix_rewrite_is_specialised_per_entry() {
        let spec = RewriteSpec::ReplacePrefixMatch("/new/".to_string());
        let entries = expand_path(
            &prefix("/old"),
            &HashSet::default(),
            true,
            &mut RegexCache::default(),
        )
        .expect("valid");
        let rewrites: Vec<String> = entries
            .iter()
            .filter_map(|p| specialise(&spec, p))
            .map(|r| {
                r.apply(match r {
                    PathRewrite::Prefix { .. } => "/old/x",
                    PathRewrite::Full(_) => "/old",
                })
            })
            .collect();
        assert_eq!(rewrites, ["/new/x", "/new"]);
    }
}
