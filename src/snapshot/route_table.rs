//! A virtual host's route entries, sorted by Kuma's precedence and indexed for lookup.
//!
//! Kuma sorts entries most specific first and takes the first that matches (semantics §4.5).
//! Scanning that list per request costs O(routes); instead the sorted list is indexed by path
//! kind, which preserves "first match in sorted order" because the order puts every exact entry
//! before every prefix entry before every regex entry:
//! 1. exact paths: a hash index from path to the entries for it (already in sorted order);
//! 2. prefixes: a segment trie; the entries on the trie path of the request, deepest node
//!    first, are exactly the matching prefix entries, longest first;
//! 3. regexes last, indexed by the literal prefix every match of their pattern starts with
//!    (`/api/v[0-9]+` is only tried for paths starting with `/api/v`), the rest tried in
//!    order.
//!
//! A virtual host searches several tables (one per hostname group) and passes the best
//! match so far as a bound, so a table skips every kind that could not beat it.
//!
//! Each candidate still checks its method/header/query conditions.

use super::action::{Action, PathRewrite};
use super::exact_paths::ExactPaths;
use super::matchers::{Conditions, PathKind, PathMatcher, RequestView};
use foldhash::HashMap;
use std::cmp::Reverse;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub path: PathMatcher,
    pub conditions: Conditions,
    pub action: Arc<Action>,
    /// URLRewrite or redirect path, specialised for this entry (boxed: most entries have
    /// none, and inline it took 48 bytes of each).
    pub path_rewrite: Option<Box<PathRewrite>>,
    /// The MeshHTTPRoute that contributed the action (metrics, access log, /config).
    pub route_name: Arc<str>,
}

impl RouteEntry {
    /// Kuma's sort key for this entry (`pkg/plugins/runtime/gateway/route/sorter.go`).
    pub fn precedence(&self) -> Precedence<'_> {
        Precedence {
            path_kind: self.path.kind,
            longer_path: Reverse(self.path.value.len()),
            has_method: Reverse(self.conditions.method().is_some()),
            more_headers: Reverse(self.conditions.header_count_for_precedence()),
            more_query_params: Reverse(self.conditions.query().len()),
            path: self.path.value.as_str(),
        }
    }
}

/// Kuma's precedence between two entries, most specific first: the derived order compares
/// the fields in declaration order, so the first field that differs decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence<'a> {
    /// Exact before prefix before regex.
    pub path_kind: PathKind,
    /// The longer path value first.
    pub longer_path: Reverse<usize>,
    /// A method condition before none.
    pub has_method: Reverse<bool>,
    /// More header conditions first (Prefix header matches not counted, §4.5 step 5).
    pub more_headers: Reverse<usize>,
    /// More query parameter conditions first.
    pub more_query_params: Reverse<usize>,
    /// Then the path string itself.
    pub path: &'a str,
}

#[derive(Debug, Default)]
struct PrefixNode {
    children: HashMap<Box<str>, PrefixNode>,
    entries: Vec<u32>,
}

/// Regex entries are indexed by the literal prefix every match of their pattern starts with,
/// cut to this many bytes so a lookup probes at most this many distinct key lengths.
const REGEX_KEY_MAX: usize = 16;

#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
    exact: ExactPaths,
    prefixes: PrefixNode,
    /// Regex entries by the (cut) literal prefix of their pattern; the empty key holds the
    /// patterns with no literal prefix, which every path may match.
    regex_by_prefix: HashMap<Box<[u8]>, Vec<u32>>,
    /// The distinct key lengths in `regex_by_prefix`, ascending.
    regex_key_lengths: Vec<usize>,
}

impl RouteTable {
    /// `entries` in Kuma's pre-sort order (more exact hostname first, then declaration);
    /// the stable sort keeps that order among full ties (§4.5 step 8).
    pub fn new(entries: Vec<RouteEntry>) -> Self {
        let entries = in_precedence_order(entries);
        let mut table = RouteTable {
            exact: ExactPaths::new(&entries),
            ..RouteTable::default()
        };
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match e.path.kind {
                PathKind::Exact => {} // indexed by `ExactPaths::new` above
                PathKind::Prefix => {
                    let mut node = &mut table.prefixes;
                    for seg in prefix_segments(&e.path.value) {
                        node = node.children.entry(seg.into()).or_default();
                    }
                    node.entries.push(i);
                }
                PathKind::Regex => {
                    let prefix = e
                        .path
                        .regex
                        .as_ref()
                        .map_or(&[][..], |r| r.literal_prefix());
                    let key = &prefix[..prefix.len().min(REGEX_KEY_MAX)];
                    table.regex_by_prefix.entry(key.into()).or_default().push(i);
                }
            }
        }
        let mut lengths: Vec<usize> = table.regex_by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        table.regex_key_lengths = lengths;
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

    /// The index of the first entry in precedence order whose conditions all match.
    pub fn find_index(&self, req: &RequestView<'_>) -> Option<usize> {
        self.find_index_before(req, None)
    }

    /// The first entry in precedence order whose conditions all match, if it ranks strictly
    /// before `bound` (the best match already found in another table of the virtual host).
    /// Kinds that cannot beat the bound are not searched at all: once an exact entry has
    /// matched, no prefix trie walk or regex runs.
    pub fn find_index_before(
        &self,
        req: &RequestView<'_>,
        bound: Option<Precedence<'_>>,
    ) -> Option<usize> {
        let beats = |i: usize| {
            bound.is_none_or(|b| self.entries.get(i).is_some_and(|e| e.precedence() < b))
        };
        let searched = |kind: PathKind| bound.is_none_or(|b| kind <= b.path_kind);
        // The table's own first match is its best: if that does not beat the bound, nothing
        // later in the table does.
        if let Some(ids) = self.exact.get(&self.entries, req.path) {
            if let Some(i) = self.first_matching(ids, req) {
                return beats(i).then_some(i);
            }
        }
        if searched(PathKind::Prefix) {
            if let Some(rest) = req.path.strip_prefix('/') {
                if let Some(i) = self.find_prefix(&self.prefixes, rest, req) {
                    return beats(i).then_some(i);
                }
            }
        }
        if searched(PathKind::Regex) {
            return self.find_regex(req).filter(|&i| beats(i));
        }
        None
    }

    /// The first entry in precedence order whose conditions all match.
    pub fn find(&self, req: &RequestView<'_>) -> Option<&RouteEntry> {
        self.entries.get(self.find_index(req)?)
    }

    fn first_matching(
        &self,
        ids: impl IntoIterator<Item = u32>,
        req: &RequestView<'_>,
    ) -> Option<usize> {
        ids.into_iter().map(|i| i as usize).find(|&i| {
            self.entries
                .get(i)
                .is_some_and(|e| e.conditions.matches(req))
        })
    }

    /// `rest` is the path after the `/` that led to `node`. Deeper nodes (longer prefixes)
    /// are tried first. Recursion depth is bounded by the configured prefixes, not the path.
    fn find_prefix(&self, node: &PrefixNode, rest: &str, req: &RequestView<'_>) -> Option<usize> {
        if let Some((seg, tail)) = rest.split_once('/') {
            if let Some(child) = node.children.get(seg) {
                if let Some(i) = self.find_prefix(child, tail, req) {
                    return Some(i);
                }
            }
        }
        self.first_matching(node.entries.iter().copied(), req)
    }

    /// Regexes whose literal prefix the path starts with, bucket by bucket; each bucket is
    /// in precedence order, so the winner is the best of the buckets' first hits.
    fn find_regex(&self, req: &RequestView<'_>) -> Option<usize> {
        let path = req.path.as_bytes();
        let mut best: Option<usize> = None;
        for &len in &self.regex_key_lengths {
            let Some(key) = path.get(..len) else {
                break; // lengths ascend: no longer key fits this path
            };
            let Some(ids) = self.regex_by_prefix.get(key) else {
                continue;
            };
            // Conditions first: a method or header check is cheaper than running a regex.
            let hit = ids.iter().map(|&i| i as usize).find(|&i| {
                self.entries
                    .get(i)
                    .is_some_and(|e| e.conditions.matches(req) && e.path.matches(req.path))
            });
            // Indexes are positions in precedence order: the smaller one ranks first.
            best = match (best, hit) {
                (Some(b), Some(h)) => Some(b.min(h)),
                (b, h) => b.or(h),
            };
        }
        best
    }
}

/// `entries` sorted by [`RouteEntry::precedence`], stably, in a block of their size.
///
/// The comparisons go by a number packed from the precedence's numeric fields (a coarser
/// order: clamping keeps `<` where it was) and, on a tie, by the full precedence; indices are
/// sorted and the entries moved once. Sorting the entries themselves computed both sides'
/// precedence per comparison and moved entries around: 16 % of compiling a 25,000-rule
/// table (perf).
///
/// The block is exact because the compiler's list has room to spare (reserved ahead, or grown
/// by doubling), held as long as the table: `shrink_to_fit` does not give it back, since
/// mimalloc keeps a block that shrinks by no more than half where it is, slack included
/// (100,000 rules: 200,000 entries in 72 MB of lists, heaptrack).
fn in_precedence_order(entries: Vec<RouteEntry>) -> Vec<RouteEntry> {
    let mut order: Vec<(u64, u32)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (packed_precedence(e), i as u32))
        .collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (x, y) = (&entries[a.1 as usize], &entries[b.1 as usize]);
            x.precedence().cmp(&y.precedence())
        })
    });
    let mut slots: Vec<Option<RouteEntry>> = entries.into_iter().map(Some).collect();
    let mut sorted = Vec::with_capacity(slots.len());
    sorted.extend(order.iter().filter_map(|&(_, i)| slots[i as usize].take()));
    sorted
}

/// [`Precedence`] without the path string, smaller first: kind (2 bits), path length
/// descending (31), method first (1), more headers (15), more query parameters (15). Counts
/// past a field's width clamp to it, so this orders as the precedence does or ties.
fn packed_precedence(e: &RouteEntry) -> u64 {
    const LEN: u64 = (1 << 31) - 1;
    const COUNT: u64 = (1 << 15) - 1;
    let kind = e.path.kind as u64;
    let len = (e.path.value.len() as u64).min(LEN);
    let no_method = u64::from(e.conditions.method().is_none());
    let headers = (e.conditions.header_count_for_precedence() as u64).min(COUNT);
    let query = (e.conditions.query().len() as u64).min(COUNT);
    (kind << 62)
        | ((LEN - len) << 31)
        | (no_method << 30)
        | ((COUNT - headers) << 15)
        | (COUNT - query)
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
    use super::super::matchers::{HeaderMatcher, QueryMatcher};
    use super::super::regex::full_match_regex;
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue, Method};

    fn entry(kind: PathKind, value: &str, name: &str) -> RouteEntry {
        RouteEntry {
            path: PathMatcher {
                kind,
                value: value.into(),
                regex: (kind == PathKind::Regex)
                    .then(|| Arc::new(full_match_regex(value).unwrap())),
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
    fn the_exact_index_lists_each_paths_entries_in_order_and_nothing_else() {
        let entries = vec![
            entry(PathKind::Exact, "/a", "a1"),
            entry(PathKind::Prefix, "/a/", "p"),
            entry(PathKind::Exact, "/b", "b"),
            entry(PathKind::Exact, "/a", "a2"),
            entry(PathKind::Regex, "/c", "r"),
            entry(PathKind::Exact, "/a", "a3"),
        ];
        let index = ExactPaths::new(&entries);
        let get = |path: &str| index.get(&entries, path).map(Iterator::collect::<Vec<_>>);
        assert_eq!(get("/a"), Some(vec![0, 3, 5]));
        assert_eq!(get("/b"), Some(vec![2]));
        assert_eq!(get("/a/"), None, "prefix entries are not exact");
        assert_eq!(get("/c"), None, "regex entries are not exact");
        assert_eq!(get(""), None);
        assert_eq!(get("/"), None);
    }

    #[test]
    fn the_exact_index_finds_every_path_of_a_large_table() {
        let entries: Vec<RouteEntry> = (0..20_000)
            .map(|i| entry(PathKind::Exact, &format!("/p/{}", i / 2), "x"))
            .collect();
        let index = ExactPaths::new(&entries);
        for k in 0..10_000u32 {
            let ids: Option<Vec<u32>> = index
                .get(&entries, &format!("/p/{k}"))
                .map(Iterator::collect);
            assert_eq!(ids, Some(vec![2 * k, 2 * k + 1]), "/p/{k}");
        }
        assert!(index.get(&entries, "/p/10000").is_none());
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
    fn entries_are_ordered_as_a_stable_sort_by_precedence_orders_them() {
        // Every combination of the fields the packed number holds, each twice (stability),
        // in a scrambled order.
        let mut entries = Vec::new();
        let mut n = 0;
        for kind in [PathKind::Regex, PathKind::Exact, PathKind::Prefix] {
            for path in ["/b", "/a", "/long/er", "/"] {
                for method in [None, Some(Method::POST)] {
                    for headers in 0..3 {
                        for query in 0..2 {
                            for _twice in 0..2 {
                                let mut e = entry(kind, path, &format!("e{n}"));
                                n += 1;
                                let mut header_list: Vec<HeaderMatcher> = (0..headers)
                                    .map(|h| {
                                        HeaderMatcher::Present(HeaderName::from_static(
                                            ["x-a", "x-b", "x-c"][h],
                                        ))
                                    })
                                    .collect();
                                // A Prefix header condition does not count.
                                header_list.push(HeaderMatcher::Prefix(
                                    HeaderName::from_static("x-p"),
                                    "v".into(),
                                ));
                                e.conditions = Conditions::new(
                                    method.clone(),
                                    header_list,
                                    (0..query)
                                        .map(|q| QueryMatcher::Exact(format!("q{q}"), "1".into()))
                                        .collect(),
                                );
                                entries.push(e);
                            }
                        }
                    }
                }
            }
        }
        entries.reverse();
        entries.swap(3, 200);
        let mut expected = entries.clone();
        expected.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
        let names = |es: &[RouteEntry]| {
            es.iter()
                .map(|e| e.route_name.to_string())
                .collect::<Vec<_>>()
        };
        let table = RouteTable::new(entries);
        assert_eq!(names(table.entries()), names(&expected));
        assert_eq!(table.entries.capacity(), table.entries.len());
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
    fn regex_literal_prefix_index() {
        // Buckets of different key lengths still compete by precedence.
        let t = RouteTable::new(vec![
            entry(PathKind::Regex, "/.*/x", "short"),
            entry(PathKind::Regex, "/api/[a-z]+/x", "long"),
            entry(PathKind::Regex, ".*/zz/x", "anywhere"),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "/api/b/x", &h), Some("long"));
        // Both unindexed patterns match: the longer pattern ranks first (§4.5).
        assert_eq!(find(&t, "/zz/x", &h), Some("anywhere"));
        assert_eq!(find(&t, "/q/x", &h), Some("short"));
        // A key longer than the path is never probed past the path's end.
        assert_eq!(find(&t, "/", &h), None);
    }

    #[test]
    fn bound_skips_kinds_that_cannot_win() {
        let t = RouteTable::new(vec![
            entry(PathKind::Exact, "/a/b", "exact"),
            entry(PathKind::Prefix, "/a/", "prefix"),
            entry(PathKind::Regex, "/a/.*", "regex"),
        ]);
        let other = RouteTable::new(vec![
            entry(PathKind::Exact, "/a/b", "other-exact"),
            entry(PathKind::Prefix, "/a/b/", "other-prefix"),
        ]);
        let h = HeaderMap::new();
        let req = |path| RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &h,
        };
        let exact = &other.entries()[other.find_index(&req("/a/b")).unwrap()];
        // An equal exact entry does not beat the bound (ties go to the earlier table).
        assert_eq!(
            t.find_index_before(&req("/a/b"), Some(exact.precedence())),
            None
        );
        // A prefix bound: a longer prefix beats it, a shorter one and regexes do not.
        let long_prefix = &other.entries()[other.find_index(&req("/a/b/c")).unwrap()];
        assert_eq!(
            t.find_index_before(&req("/a/b/c"), Some(long_prefix.precedence())),
            None
        );
        let short = &t.entries()[t.find_index(&req("/a/x")).unwrap()];
        assert_eq!(&*short.route_name, "prefix");
        assert!(other
            .find_index_before(&req("/a/b/c"), Some(short.precedence()))
            .is_some());
    }

    #[test]
    fn more_header_conditions_first_then_declaration_order() {
        let mut two = entry(PathKind::Prefix, "/", "two");
        two.conditions = Conditions::new(
            None,
            vec![
                HeaderMatcher::Present(HeaderName::from_static("x-a")),
                HeaderMatcher::Present(HeaderName::from_static("x-b")),
            ],
            vec![],
        );
        let mut one = entry(PathKind::Prefix, "/", "one");
        one.conditions = Conditions::new(
            None,
            vec![HeaderMatcher::Present(HeaderName::from_static("x-a"))],
            vec![],
        );
        let t = RouteTable::new(vec![one, two, entry(PathKind::Prefix, "/", "none")]);
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        assert_eq!(find(&t, "/", &h), Some("one"));
        h.insert("x-b", HeaderValue::from_static("1"));
        assert_eq!(find(&t, "/", &h), Some("two"));
    }
}
