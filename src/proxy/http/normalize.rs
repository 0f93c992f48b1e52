//! Request path normalisation before matching, as Kuma configures Envoy (operations.md §2.3):
//! `normalize_path` (percent-decoding of unreserved characters, RFC 3986 dot-segment removal),
//! `merge_slashes`, and `UNESCAPE_AND_REDIRECT` for encoded slashes (`%2F`, `%5C`). The
//! normalised path is also what the backend receives, so gateway and backend agree on what
//! was routed.

use std::borrow::Cow;

#[derive(Debug, PartialEq, Eq)]
pub enum Normalized<'a> {
    /// Route and forward this path (borrowed when nothing changed).
    Path(Cow<'a, str>),
    /// The path held encoded slashes: redirect the client to this unescaped path.
    Redirect(String),
    /// Not an origin-form path we can route (e.g. `*`, or dot segments above the root).
    Invalid,
}

pub fn normalize(path: &str) -> Normalized<'_> {
    if !path.starts_with('/') {
        return Normalized::Invalid;
    }
    // One pass over the bytes: `%`, `//` or `/.` (three `contains` scans cost several times
    // more on the request path).
    let bytes = path.as_bytes();
    let needs_work = bytes.contains(&b'%')
        || bytes
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'));
    if !needs_work {
        return Normalized::Path(Cow::Borrowed(path));
    }
    let mut encoded_slash = false;
    let decoded = match decode_unreserved(path, &mut encoded_slash) {
        Some(d) => d,
        None => return Normalized::Invalid,
    };
    let merged = merge_slashes(&decoded);
    let Some(clean) = remove_dot_segments(&merged) else {
        return Normalized::Invalid;
    };
    if encoded_slash {
        return Normalized::Redirect(clean);
    }
    if clean == path {
        Normalized::Path(Cow::Borrowed(path))
    } else {
        Normalized::Path(Cow::Owned(clean))
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` of unreserved characters (and `/`, `\` with `encoded_slash` set); leaves
/// other escapes as they are, upper-cased. `None` for a malformed escape.
fn decode_unreserved(path: &str, encoded_slash: &mut bool) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return None;
        };
        let c = h * 16 + l;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else if c == b'/' || c == b'\\' {
            *encoded_slash = true;
            out.push('/');
        } else {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
        }
        i += 3;
    }
    Some(out)
}

fn merge_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    Cow::Owned(out)
}

/// RFC 3986 §5.2.4 on an absolute path. A `..` above the root is clamped to the root, as
/// Envoy does (so `/../etc` becomes `/etc`).
fn remove_dot_segments(path: &str) -> Option<String> {
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    // `split` leaves an empty last segment for a trailing slash; drop it and re-add below.
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> String {
        match normalize(p) {
            Normalized::Path(c) => c.into_owned(),
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        assert_eq!(normalize("/a/b"), Normalized::Path(Cow::Borrowed("/a/b")));
        assert_eq!(path("/"), "/");
        assert_eq!(path("/a/b/"), "/a/b/");
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(path("/public/../admin"), "/admin");
        assert_eq!(path("/a/./b"), "/a/b");
        assert_eq!(path("/a/b/.."), "/a/");
        assert_eq!(path("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(path("/%2e%2e/admin"), "/admin");
        assert_eq!(path("/a/%2E/b"), "/a/b");
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(path("//a///b"), "/a/b");
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_kept() {
        assert_eq!(path("/%61bc"), "/abc");
        assert_eq!(path("/a%20b"), "/a%20b");
        assert_eq!(path("/a%3fb"), "/a%3Fb");
    }

    #[test]
    fn encoded_slashes_redirect() {
        assert_eq!(normalize("/a%2Fb"), Normalized::Redirect("/a/b".into()));
        assert_eq!(normalize("/a%5cb"), Normalized::Redirect("/a/b".into()));
    }

    #[test]
    fn malformed_and_non_origin_paths_are_invalid() {
        assert_eq!(normalize("/a%zz"), Normalized::Invalid);
        assert_eq!(normalize("*"), Normalized::Invalid);
    }
}
