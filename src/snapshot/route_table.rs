//! A virtual host's route entries, sorted by Kuma's precedence and indexed for lookup.
//!
//! Kuma sorts entries most specific first and takes the first that matches (semantics §4.5).
//! Scanning that list per request costs O(routes); instead the sorted list is indexed by path
//! kind, which preserves "first match in sorted order" because the order puts every exact entry
//! before every prefix entry before every regex entry:
//! 1. exact paths: a hash map from path to the entries for it (already in sorted order);
//! 2. prefixes: a segment trie; the entries on the trie path of the request, deepest node
//!    first, are exactly the matching prefix entries, longest first;
//! 3. regexes last, indexed by the first path segment their pattern starts with literally
//!    (`/api/v[0-9]+` is only tried for paths under `/api/`), the rest tried in order.
//!
//! Each candidate still checks its method/header/query conditions.

use super::action::{Action, PathRewrite};
use super::matchers::{Conditions, PathKind, PathMatcher, RequestView};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub path: PathMatcher,
    pub conditions: Conditions,
    pub action: Arc<Action>,
    /// URLRewrite or redirect path, specialised for this entry.
    pub path_rewrite: Option<PathRewrite>,
    /// The MeshHTTPRoute that contributed the action (metrics, access log, /config).
    pub route_name: Arc<str>,
}

impl RouteEntry {
    /// Kuma's sort key (`pkg/plugins/runtime/gateway/route/sorter.go`): exact < prefix < regex,
    /// longer path first, method before none, more headers, more query params, then the
    /// path string.
    pub fn precedence(&self) -> Precedence<'_> {
        (
            self.path.kind,
            Reverse(self.path.value.len()),
            Reverse(self.conditions.method.is_some()),
            Reverse(self.conditions.header_count_for_precedence()),
            Reverse(self.conditions.query.len()),
            self.path.value.as_str(),
        )
    }
}

/// Sort key of an entry; `Ord` is Kuma's precedence, most specific first.
pub type Precedence<'a> = (
    PathKind,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    &'a str,
);

#[derive(Debug, Default)]
struct PrefixNode {
    children: HashMap<Box<str>, PrefixNode>,
    entries: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
    exact: HashMap<String, Vec<u32>>,
    prefixes: PrefixNode,
    /// Regex entries whose pattern starts with a literal `/segment/`, by that segment.
    regex_by_segment: HashMap<Box<str>, Vec<u32>>,
    /// Regex entries without such a prefix; every path may match them.
    regex_other: Vec<u32>,
}

impl RouteTable {
    /// `entries` in Kuma's pre-sort order (more exact hostname first, then declaration);
    /// the stable sort keeps that order among full ties (§4.5 step 8).
    pub fn new(mut entries: Vec<RouteEntry>) -> Self {
        entries.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
        let mut table = RouteTable::default();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match e.path.kind {
                PathKind::Exact => table.exact.entry(e.path.value.clone()).or_default().push(i),
                PathKind::Prefix => {
                    let mut node = &mut table.prefixes;
                    for seg in prefix_segments(&e.path.value) {
                        node = node.children.entry(seg.into()).or_default();
                    }
                    node.entries.push(i);
                }
                PathKind::Regex => match literal_first_segment(&e.path.value) {
                    Some(seg) => table
                        .regex_by_segment
                        .entry(seg.into())
                        .or_default()
                        .push(i),
                    None => table.regex_other.push(i),
                },
            }
        }
        table.entries = entries;
        table
    }

    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Like [`find`](Self::find), with the entry's index (kept in the request context).
    pub fn find_index(&self, req: &RequestView<'_>) -> Option<usize> {
        let e = self.find(req)?;
        // `e` points into `self.entries`: its offset is the index.
        let offset = (e as *const RouteEntry as usize) - (self.entries.as_ptr() as usize);
        Some(offset / std::mem::size_of::<RouteEntry>())
    }

    /// The first entry in precedence order whose conditions all match.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&RouteEntry> {
        if let Some(ids) = self.exact.get(req.path) {
            if let Some(e) = self.first_matching(ids, req) {
                return Some(e);
            }
        }
        if let Some(rest) = req.path.strip_prefix('/') {
            if let Some(e) = self.find_prefix(&self.prefixes, rest, req) {
                return Some(e);
            }
        }
        self.find_regex(req)
    }

    fn first_matching(&self, ids: &[u32], req: &RequestView<'_>) -> Option<&RouteEntry> {
        ids.iter()
            .filter_map(|&i| self.entries.get(i as usize))
            .find(|e| e.conditions.matches(req))
    }

    /// `rest` is the path after the `/` that led to `node`. Deeper nodes (longer prefixes)
    /// are tried first. Recursion depth is bounded by the configured prefixes, not the path.
    fn find_prefix<'a>(
        &'a self,
        node: &'a PrefixNode,
        rest: &str,
        req: &RequestView<'_>,
    ) -> Option<&'a RouteEntry> {
        if let Some((seg, tail)) = rest.split_once('/') {
            if let Some(child) = node.children.get(seg) {
                if let Some(e) = self.find_prefix(child, tail, req) {
                    return Some(e);
                }
            }
        }
        self.first_matching(&node.entries, req)
    }

    fn find_regex(&self, req: &RequestView<'_>) -> Option<&RouteEntry> {
        let by_segment = req
            .path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(seg, _)| self.regex_by_segment.get(seg));
        let try_ids = |ids: &[u32]| {
            ids.iter()
                .filter_map(|&i| self.entries.get(i as usize))
                .find(|e| e.path.matches(req.path) && e.conditions.matches(req))
        };
        // Both lists are in precedence order; the winner is the earlier of their first hits.
        match (
            by_segment.and_then(|ids| try_ids(ids)),
            try_ids(&self.regex_other),
        ) {
            (Some(a), Some(b)) => Some(if a.precedence() <= b.precedence() {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        }
    }
}

/// The first path segment a regex pattern matches literally and completely (`/api/v[0-9]+`
/// → `api`), so it can only match paths under `/api/`. `None` when the pattern does not start
/// with a literal `/segment/` (metacharacters, flags, alternations).
fn literal_first_segment(pattern: &str) -> Option<&str> {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    let rest = p.strip_prefix('/')?;
    let end = rest.find('/')?;
    let seg = &rest[..end];
    let literal = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '~';
    // A top-level alternation could make the literal optional (`/a/x|/b`).
    if seg.is_empty() || !seg.chars().all(literal) || pattern.contains('|') {
        return None;
    }
    Some(seg)
}

/// `/a/b/` → `["a", "b"]`; `/` → `[]`.
fn prefix_segments(prefix: &str) -> impl Iterator<Item = &str> {
    let inner = prefix
        .strip_prefix('/')
        .unwrap_or(prefix)
        .strip_suffix('/')
        .unwrap_or("");
    inner.split('/').filter(move |_| !inner.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::action::{Action, Redirect};
    use super::super::matchers::{full_match_regex, HeaderMatcher};
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue, Method};

    fn entry(kind: PathKind, value: &str, name: &str) -> RouteEntry {
        RouteEntry {
            path: PathMatcher {
                kind,
                value: value.into(),
                regex: (kind == PathKind::Regex).then(|| full_match_regex(value).unwrap()),
            },
            conditions: Conditions::default(),
            action: Arc::new(Action::Redirect(Redirect {
                scheme: None,
                hostname: None,
                port: None,
                status: 302,
            })),
            path_rewrite: None,
            route_name: name.into(),
        }
    }

    fn find<'a>(t: &'a RouteTable, path: &str, headers: &HeaderMap) -> Option<&'a str> {
        t.find(&RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers,
        })
        .map(|e| &*e.route_name)
    }

    #[test]
    fn find_index_points_at_the_found_entry() {
        let t = RouteTable::new(vec![
            entry(PathKind::Prefix, "/", "root"),
            entry(PathKind::Exact, "/x", "exact"),
        ]);
        let h = HeaderMap::new();
        let req = RequestView {
            method: &Method::GET,
            path: "/x",
            query: None,
            headers: &h,
        };
        let i = t.find_index(&req).unwrap();
        assert_eq!(&*t.entries()[i].route_name, "exact");
    }

    #[test]
    fn exact_beats_prefix_beats_regex() {
        // §4.5 steps 1-3; a prefix always outranks a regex.
        let t = RouteTable::new(vec![
            entry(PathKind::Regex, "/api/.*", "regex"),
            entry(PathKind::Prefix, "/", "root"),
            entry(PathKind::Exact, "/api/x", "exact"),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "/api/x", &h), Some("exact"));
        assert_eq!(find(&t, "/api/y", &h), Some("root"));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let t = RouteTable::new(vec![
            entry(PathKind::Prefix, "/", "root"),
            entry(PathKind::Prefix, "/a/", "a"),
            entry(PathKind::Prefix, "/a/b/", "ab"),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "/a/b/c", &h), Some("ab"));
        assert_eq!(find(&t, "/a/b", &h), Some("a"));
        assert_eq!(find(&t, "/a", &h), Some("root"));
        assert_eq!(find(&t, "/x", &h), Some("root"));
    }

    #[test]
    fn regex_used_when_no_prefix_matches() {
        let mut entries: Vec<RouteEntry> = (0..10)
            .map(|i| entry(PathKind::Regex, &format!("/r{i}/[a-z]+"), &format!("r{i}")))
            .collect();
        entries.push(entry(PathKind::Prefix, "/p/", "p"));
        let t = RouteTable::new(entries);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "/r7/abc", &h), Some("r7"));
        assert_eq!(find(&t, "/r7/ABC", &h), None);
    }

    #[test]
    fn regex_literal_segment_index() {
        assert_eq!(literal_first_segment("/api/v[0-9]+"), Some("api"));
        assert_eq!(literal_first_segment("^/api/.*"), Some("api"));
        assert_eq!(literal_first_segment("/ap[a-z]/x"), None);
        assert_eq!(literal_first_segment("/a/x|/b/y"), None);
        assert_eq!(literal_first_segment("/[a-z]+/x"), None);
        // An unindexed regex still competes by precedence with an indexed one.
        let t = RouteTable::new(vec![
            entry(PathKind::Regex, "/.*/x", "short"),
            entry(PathKind::Regex, "/api/[a-z]+/x", "long"),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "/api/b/x", &h), Some("long"));
        assert_eq!(find(&t, "/zz/x", &h), Some("short"));
    }

    #[test]
    fn more_header_conditions_first_then_declaration_order() {
        let mut two = entry(PathKind::Prefix, "/", "two");
        two.conditions.headers = vec![
            HeaderMatcher::Present(HeaderName::from_static("x-a")),
            HeaderMatcher::Present(HeaderName::from_static("x-b")),
        ];
        let mut one = entry(PathKind::Prefix, "/", "one");
        one.conditions.headers = vec![HeaderMatcher::Present(HeaderName::from_static("x-a"))];
        let t = RouteTable::new(vec![one, two, entry(PathKind::Prefix, "/", "none")]);
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        assert_eq!(find(&t, "/", &h), Some("one"));
        h.insert("x-b", HeaderValue::from_static("1"));
        assert_eq!(find(&t, "/", &h), Some("two"));
    }
}
