//! Compiled request conditions of one route entry: path, method, headers, query
//! (semantics §4.1–4.4). Written against a plain [`RequestView`] so they are unit-testable
//! without a Pingora session.

use http::{HeaderMap, HeaderName, Method};
use regex_automata::meta::Config;
use regex_automata::nfa::thompson::WhichCaptures;
use std::sync::Arc;

/// A compiled route regex and the literal bytes every match starts with (the route table
/// indexes regex paths by it).
#[derive(Debug)]
pub struct Regex {
    regex: regex_automata::meta::Regex,
    literal_prefix: Box<[u8]>,
}

impl Regex {
    pub fn is_match(&self, subject: &str) -> bool {
        self.regex.is_match(subject)
    }

    pub fn literal_prefix(&self) -> &[u8] {
        &self.literal_prefix
    }
}

/// The literal bytes every match of `anchored` starts with (`^(?:/api/v[0-9]+)$` →
/// `/api/v`), from `regex-syntax`'s prefix extraction; empty when there is none (a leading
/// class, alternation without a common start, case-insensitive letters, …).
fn literal_prefix(anchored: &str) -> Box<[u8]> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let Ok(hir) = regex_syntax::Parser::new().parse(anchored) else {
        return Box::default();
    };
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    extractor
        .extract(&hir)
        .longest_common_prefix()
        .map(Box::from)
        .unwrap_or_default()
}

/// What a matcher looks at. `path` is the normalised path without the query.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Anchors an RE2 pattern so it must match the whole subject, as Envoy's `safe_regex` does.
///
/// Built with `regex-automata`'s meta engine (what `regex::Regex` wraps) as a PikeVM with its
/// prefilter only: no one-pass DFA, bounded backtracker, full or lazy DFA, no capture
/// states. Route regexes are many and mostly idle, the route table only runs those whose
/// literal prefix the path starts with, and only a yes/no answer is needed; the other engines
/// cost memory per pattern up front or per pattern run (3,300 benchmark patterns: 16.9 KiB
/// each with `regex::Regex`, 7.5 KiB here, and no lazy-DFA cache of ~6 KiB per pattern run).
pub fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    let anchored = format!("^(?:{pattern})$");
    let regex = regex_automata::meta::Regex::builder()
        .configure(
            Config::new()
                .which_captures(WhichCaptures::None)
                .onepass(false)
                .backtrack(false)
                .dfa(false)
                .hybrid(false),
        )
        .build(&anchored)
        .map_err(|e| e.to_string())?;
    Ok(Regex {
        regex,
        literal_prefix: literal_prefix(&anchored),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    Exact,
    Prefix,
    Regex,
}

/// One path condition after Kuma's PathPrefix expansion: a `Prefix` value is the byte prefix
/// Envoy is given (`/p/`, or `/`), so it matches segment-wise.
#[derive(Debug, Clone)]
pub struct PathMatcher {
    pub kind: PathKind,
    pub value: String,
    /// Shared with every matcher of the snapshot using the same pattern (`regex_cache`).
    pub regex: Option<Arc<Regex>>,
}

impl PathMatcher {
    pub fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.value,
            PathKind::Prefix => path.starts_with(&self.value),
            PathKind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

#[derive(Debug, Clone)]
pub enum HeaderMatcher {
    Exact(HeaderName, String),
    Present(HeaderName),
    Absent(HeaderName),
    Regex(HeaderName, Arc<Regex>),
    Prefix(HeaderName, String),
}

impl HeaderMatcher {
    /// Kuma counts every header condition except `Prefix` when ordering entries (§4.5 step 5).
    pub fn counts_for_precedence(&self) -> bool {
        !matches!(self, HeaderMatcher::Prefix(..))
    }

    fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            HeaderMatcher::Present(name) => headers.contains_key(name),
            HeaderMatcher::Absent(name) => !headers.contains_key(name),
            HeaderMatcher::Exact(name, want) => {
                with_joined_value(headers, name, |v| v == want.as_str())
            }
            HeaderMatcher::Prefix(name, want) => {
                with_joined_value(headers, name, |v| v.starts_with(want.as_str()))
            }
            HeaderMatcher::Regex(name, re) => with_joined_value(headers, name, |v| re.is_match(v)),
        }
    }
}

/// Envoy matches a multi-valued header against its values joined with `,`. The common
/// single-value case borrows instead of allocating.
fn with_joined_value(headers: &HeaderMap, name: &HeaderName, f: impl Fn(&str) -> bool) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let Some(second) = values.next() else {
        return first.to_str().is_ok_and(&f);
    };
    let mut joined = String::new();
    for v in [first, second].into_iter().chain(values) {
        let Ok(s) = v.to_str() else {
            return false;
        };
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(s);
    }
    f(&joined)
}

#[derive(Debug, Clone)]
pub enum QueryMatcher {
    Exact(String, String),
    Regex(String, Arc<Regex>),
}

impl QueryMatcher {
    fn matches(&self, query: Option<&str>) -> bool {
        // Envoy uses the first occurrence of the parameter, compared as written in the URL.
        match self {
            QueryMatcher::Exact(n, want) => query
                .and_then(|q| first_query_value(q, n))
                .is_some_and(|v| v == want),
            QueryMatcher::Regex(n, re) => query
                .and_then(|q| first_query_value(q, n))
                .is_some_and(|v| re.is_match(v)),
        }
    }
}

fn first_query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Everything an entry checks besides the path. All conditions are ANDed (§4.2–4.4).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatcher>,
    pub query: Vec<QueryMatcher>,
}

impl Conditions {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.method {
            if m != req.method {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }

    pub fn header_count_for_precedence(&self) -> usize {
        self.headers
            .iter()
            .filter(|h| h.counts_for_precedence())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            path,
            query,
            headers,
        }
    }

    #[test]
    fn regex_literal_prefix() {
        let prefix = |p: &str| full_match_regex(p).unwrap().literal_prefix().to_vec();
        assert_eq!(prefix("/api/v[0-9]+"), b"/api/v");
        assert_eq!(prefix("^/api/.*"), b"/api/");
        assert_eq!(prefix("/ap[a-z]/x"), b"/ap");
        assert_eq!(prefix("/a/x|/b/y"), b"/");
        assert_eq!(prefix("[/]x"), b"/x");
        assert_eq!(prefix("(?i)/api"), b"/");
        assert_eq!(prefix(".*/x"), b"");
    }

    #[test]
    fn prefix_is_a_byte_prefix_of_the_expanded_value() {
        // §4.1: PathPrefix /api is expanded to `/api/` (prefix) + `/api` (exact).
        let m = PathMatcher {
            kind: PathKind::Prefix,
            value: "/api/".into(),
            regex: None,
        };
        assert!(m.matches("/api/"));
        assert!(m.matches("/api/x"));
        assert!(!m.matches("/apix"));
        assert!(!m.matches("/API/x"));
    }

    #[test]
    fn regex_must_match_the_whole_path() {
        // §4.1: safe_regex is a full match.
        let m = PathMatcher {
            kind: PathKind::Regex,
            value: "/api/v[0-9]+".into(),
            regex: Some(Arc::new(full_match_regex("/api/v[0-9]+").unwrap())),
        };
        assert!(m.matches("/api/v12"));
        assert!(!m.matches("/api/v12/x"));
        assert!(!m.matches("/x/api/v1"));
    }

    #[test]
    fn header_conditions_are_anded_and_multi_values_joined() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let c = Conditions {
            method: None,
            headers: vec![
                HeaderMatcher::Exact(HeaderName::from_static("x-a"), "1,2".into()),
                HeaderMatcher::Absent(HeaderName::from_static("x-b")),
            ],
            query: vec![],
        };
        assert!(c.matches(&view("/", None, &h)));
        h.insert("x-b", HeaderValue::from_static("y"));
        assert!(!c.matches(&view("/", None, &h)));
    }

    #[test]
    fn query_uses_first_occurrence() {
        let h = HeaderMap::new();
        let c = Conditions {
            method: None,
            headers: vec![],
            query: vec![QueryMatcher::Exact("a".into(), "1".into())],
        };
        assert!(c.matches(&view("/", Some("b=2&a=1&a=3"), &h)));
        assert!(!c.matches(&view("/", Some("a=3&a=1"), &h)));
        assert!(!c.matches(&view("/", None, &h)));
    }

    #[test]
    fn prefix_header_condition_is_not_counted_for_precedence() {
        let c = Conditions {
            method: None,
            headers: vec![
                HeaderMatcher::Prefix(HeaderName::from_static("x-a"), "a".into()),
                HeaderMatcher::Present(HeaderName::from_static("x-b")),
            ],
            query: vec![],
        };
        assert_eq!(c.header_count_for_precedence(), 1);
    }
}
