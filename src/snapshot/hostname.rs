//! Hostnames as Kuma's gateway treats them (semantics §3.3).
//!
//! - `*` (or empty) matches every host; `*.suffix` matches one **or more** labels in front of
//!   `.suffix` (`*.example.com` matches `a.b.example.com`, never `example.com`); anything else
//!   is exact. Comparisons are case-insensitive (names are lower-cased when compiled).
//! - [`HostTable`] is the compiled lookup used per request/handshake: exact map first, then
//!   the longest matching wildcard suffix, then the catch-all, like Envoy's virtual-host and
//!   filter-chain selection. Lookup cost is O(labels of the host), not O(entries).

use foldhash::HashMap;
use std::cmp::Ordering;

/// The catch-all hostname.
pub const ANY: &str = "*";

pub fn is_wildcard(h: &str) -> bool {
    h.starts_with("*.")
}

/// Kuma's "match" relation (`pkg/plugins/runtime/gateway/match/hostnames.go`): equal, or one is
/// a wildcard covering the other, or either is `*`.
pub fn matches(a: &str, b: &str) -> bool {
    a == b || contains(a, b) || contains(b, a)
}

/// `a` contains `b` when every host `b` can denote is denoted by `a`.
pub fn contains(a: &str, b: &str) -> bool {
    if a == ANY {
        return true;
    }
    if b == ANY {
        return false;
    }
    match a.strip_prefix('*') {
        // `*.com` contains `foo.com`, `a.foo.com` and `*.foo.com`, not `com`.
        Some(suffix) => b.len() > suffix.len() && b.ends_with(suffix),
        None => a == b,
    }
}

/// Kuma's exactness order (most exact first): exact names alphabetically, then wildcards with
/// more labels, then fewer, `*` last.
pub fn exactness(a: &str, b: &str) -> Ordering {
    fn rank(h: &str) -> (u8, std::cmp::Reverse<usize>) {
        if h == ANY {
            (2, std::cmp::Reverse(0))
        } else if is_wildcard(h) {
            (1, std::cmp::Reverse(h.split('.').count()))
        } else {
            (0, std::cmp::Reverse(0))
        }
    }
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

/// The host part of a `Host` / `:authority` value, lower-cased, without port, as Kuma matches
/// it (`strip_any_host_port`). IPv6 literals keep their brackets.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(i) => &raw[..=i],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(i) => &raw[..i],
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Host → value lookup compiled once per snapshot.
#[derive(Debug, Clone)]
pub struct HostTable<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any: None,
        }
    }
}

impl<T> HostTable<T> {
    /// Inserts `value` for `hostname` (`*`, `*.suffix` or exact). The first insert for a name
    /// wins: callers insert in precedence order.
    pub fn insert(&mut self, hostname: &str, value: T) {
        let hostname = hostname.to_ascii_lowercase();
        if hostname == ANY || hostname.is_empty() {
            if self.any.is_none() {
                self.any = Some(value);
            }
        } else if let Some(suffix) = hostname.strip_prefix("*.") {
            self.wildcard.entry(suffix.to_string()).or_insert(value);
        } else {
            self.exact.entry(hostname).or_insert(value);
        }
    }

    /// `host` must already be normalised (lower case, no port).
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            // Strip one label at a time: the longest suffix that is a wildcard wins.
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(v) = self.wildcard.get(rest) {
                    return Some(v);
                }
            }
        }
        self.any.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_one_or_more_labels_never_the_bare_domain() {
        // §3.3
        assert!(contains("*.example.com", "a.example.com"));
        assert!(contains("*.example.com", "a.b.example.com"));
        assert!(!contains("*.example.com", "example.com"));
        assert!(!contains("*.example.com", "foo.examples.com"));
    }

    #[test]
    fn containment_between_wildcards_and_catch_all() {
        assert!(contains("*", "*.foo.com"));
        assert!(contains("*.com", "*.foo.com"));
        assert!(!contains("*.foo.com", "*.com"));
        assert!(!contains("foo.com", "*"));
        assert!(matches("*.com", "foo.example.com"));
        assert!(!matches("*.example.com", "foo.examples.com"));
    }

    #[test]
    fn exactness_orders_exact_then_longer_wildcards_then_any() {
        let mut v = vec!["*", "*.com", "b.com", "*.a.com", "a.com"];
        v.sort_by(|a, b| exactness(a, b));
        assert_eq!(v, vec!["a.com", "b.com", "*.a.com", "*.com", "*"]);
    }

    #[test]
    fn host_normalisation_strips_port_and_case() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com"), "foo.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
    }

    #[test]
    fn table_prefers_exact_then_longest_wildcard_then_any() {
        let mut t = HostTable::default();
        t.insert("*", 0);
        t.insert("*.com", 1);
        t.insert("*.example.com", 2);
        t.insert("foo.example.com", 3);
        assert_eq!(t.lookup("foo.example.com"), Some(&3));
        assert_eq!(t.lookup("bar.example.com"), Some(&2));
        assert_eq!(t.lookup("a.b.example.com"), Some(&2));
        assert_eq!(t.lookup("example.com"), Some(&1));
        assert_eq!(t.lookup("example.org"), Some(&0));
    }
}
