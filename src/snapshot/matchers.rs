//! Compiled request conditions of one route entry: path, method, headers, query
//! (semantics §4.1–4.4). Written against a plain [`RequestView`] so they are unit-testable
//! without a Pingora session.

use super::regex::Regex;
use http::{HeaderMap, HeaderName, Method};
use std::sync::Arc;

/// What a matcher looks at. `path` is the normalised path without the query.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
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

    pub fn matches(&self, headers: &HeaderMap) -> bool {
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
///
/// Most entries have none, and every entry of a large directory is held in memory: none is
/// one word, and the entries a match expands to (a PathPrefix's two) share one list. Held
/// inline the three fields took 72 bytes of every entry (14 MB at 200,000 entries).
#[derive(Debug, Clone, Default)]
pub struct Conditions(Option<Arc<ConditionList>>);

#[derive(Debug)]
struct ConditionList {
    method: Option<Method>,
    headers: Vec<HeaderMatcher>,
    query: Vec<QueryMatcher>,
}

impl Conditions {
    pub fn new(
        method: Option<Method>,
        headers: Vec<HeaderMatcher>,
        query: Vec<QueryMatcher>,
    ) -> Self {
        if method.is_none() && headers.is_empty() && query.is_empty() {
            return Conditions(None);
        }
        Conditions(Some(Arc::new(ConditionList {
            method,
            headers,
            query,
        })))
    }

    pub fn method(&self) -> Option<&Method> {
        self.0.as_ref().and_then(|c| c.method.as_ref())
    }

    pub fn headers(&self) -> &[HeaderMatcher] {
        self.0.as_ref().map_or(&[], |c| &c.headers)
    }

    pub fn query(&self) -> &[QueryMatcher] {
        self.0.as_ref().map_or(&[], |c| &c.query)
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let Some(c) = &self.0 else {
            return true;
        };
        if let Some(m) = &c.method {
            if m != req.method {
                return false;
            }
        }
        c.headers.iter().all(|h| h.matches(req.headers))
            && c.query.iter().all(|q| q.matches(req.query))
    }

    pub fn header_count_for_precedence(&self) -> usize {
        self.headers()
            .iter()
            .filter(|h| h.counts_for_precedence())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::regex::full_match_regex;
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
        let c = Conditions::new(
            None,
            vec![
                HeaderMatcher::Exact(HeaderName::from_static("x-a"), "1,2".into()),
                HeaderMatcher::Absent(HeaderName::from_static("x-b")),
            ],
            vec![],
        );
        assert!(c.matches(&view("/", None, &h)));
        h.insert("x-b", HeaderValue::from_static("y"));
        assert!(!c.matches(&view("/", None, &h)));
    }

    #[test]
    fn query_uses_first_occurrence() {
        let h = HeaderMap::new();
        let c = Conditions::new(
            None,
            vec![],
            vec![QueryMatcher::Exact("a".into(), "1".into())],
        );
        assert!(c.matches(&view("/", Some("b=2&a=1&a=3"), &h)));
        assert!(!c.matches(&view("/", Some("a=3&a=1"), &h)));
        assert!(!c.matches(&view("/", None, &h)));
    }

    #[test]
    fn prefix_header_condition_is_not_counted_for_precedence() {
        let c = Conditions::new(
            None,
            vec![
                HeaderMatcher::Prefix(HeaderName::from_static("x-a"), "a".into()),
                HeaderMatcher::Present(HeaderName::from_static("x-b")),
            ],
            vec![],
        );
        assert_eq!(c.header_count_for_precedence(), 1);
    }
}
