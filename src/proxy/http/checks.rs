//! Requests Kuma's gateway refuses that Pingora's parser accepts (operations.md §2.2, §2.4),
//! judged on the request Pingora parsed. Pingora's reader itself refuses heads that are
//! malformed, too large or too slow (the limits meshgate sets on it, see
//! `crate::proxy::conn`), request-targets `http::Uri` cannot hold (`<`, `"`, ...), repeated
//! `Host` fields, userinfo, and absolute-form targets whose authority differs from `Host`.
//! These checks cover what it lets through:
//! - a request-target with spaces or control bytes, which Pingora percent-escapes and would
//!   forward escaped,
//! - `Transfer-Encoding` together with `Content-Length` (Pingora drops `Content-Length` and
//!   closes afterwards, RFC 9112 §6.1; Envoy refuses the request),
//! - more header fields, or more header bytes, than meshgate allows (for HTTP/2; Pingora's
//!   HTTP/1 reader applies the same limits to the head). `h2` itself only cuts off header
//!   blocks far beyond them (see `crate::proxy::h2`), with a GOAWAY that ends every stream of
//!   the connection; this answers the one stream 431, as Envoy does,
//! - header names containing `_` (Envoy's `headers_with_underscores_action: REJECT_REQUEST`),
//! - a missing (HTTP/1.1) or malformed `Host`.
//!
//! A refusal is answered with its status and `Connection: close`, so nothing the client sent
//! after the refused head is ever read as another request.

use http::header::HOST;
use http::Version;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::server::RequestHeadFacts;

/// Why a request is refused: the status to answer and the metric reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

impl Refusal {
    pub const BAD_TARGET: Refusal = Refusal::bad("bad_request_target");
    pub const BAD_FRAMING: Refusal = Refusal::bad("bad_framing");
    pub const UNDERSCORE: Refusal = Refusal::bad("underscore_header");
    pub const MISSING_HOST: Refusal = Refusal::bad("missing_host");
    pub const DUPLICATE_HOST: Refusal = Refusal::bad("duplicate_host");
    pub const INVALID_HOST: Refusal = Refusal::bad("invalid_host");
    /// Too many header fields or bytes.
    pub const HEADERS_TOO_LARGE: Refusal = Refusal {
        status: 431,
        reason: "header_too_large",
    };
    /// Envoy's answer to HTTP/1.0 (`accept_http_10: false`), with `--http10 reject`.
    pub const HTTP10: Refusal = Refusal {
        status: 426,
        reason: "http10",
    };

    const fn bad(reason: &'static str) -> Refusal {
        Refusal {
            status: 400,
            reason,
        }
    }
}

/// What the checks allow (meshgate's command-line settings).
#[derive(Clone, Copy, Debug)]
pub struct CheckRules {
    pub allow_underscore_headers: bool,
    pub max_header_fields: usize,
    /// HTTP/2 header lists, measured as Envoy measures `max_request_headers_kb`: the bytes
    /// of every name and value, pseudo-headers included.
    pub max_header_bytes: usize,
    pub reject_http10: bool,
}

/// The first reason to refuse `req`, if any. `facts` is what Pingora's HTTP/1 reader saw
/// (`None` for HTTP/2, whose framing `h2` checks).
pub fn refusal(
    req: &RequestHeader,
    facts: Option<RequestHeadFacts>,
    rules: CheckRules,
) -> Option<Refusal> {
    match facts {
        Some(facts) => {
            if facts.target_escaped {
                return Some(Refusal::BAD_TARGET);
            }
            if facts.te_with_content_length {
                return Some(Refusal::BAD_FRAMING);
            }
        }
        None => {
            if header_list_bytes(req) > rules.max_header_bytes {
                return Some(Refusal::HEADERS_TOO_LARGE);
            }
        }
    }
    if rules.reject_http10 && req.version == Version::HTTP_10 {
        return Some(Refusal::HTTP10);
    }
    if req.headers.len() > rules.max_header_fields {
        return Some(Refusal::HEADERS_TOO_LARGE);
    }
    if !rules.allow_underscore_headers && req.headers.keys().any(|n| n.as_str().contains('_')) {
        return Some(Refusal::UNDERSCORE);
    }
    check_host(req).err()
}

/// The bytes of a request's header list: names and values, with the pseudo-headers
/// (`:method`, `:scheme`, `:authority`, `:path`) an HTTP/2 request carries them in.
fn header_list_bytes(req: &RequestHeader) -> usize {
    let pseudo = ":method".len()
        + req.method.as_str().len()
        + ":scheme".len()
        + req.uri.scheme_str().map_or(0, str::len)
        + ":authority".len()
        + req.uri.authority().map_or(0, |a| a.as_str().len())
        + ":path".len()
        + req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    req.headers.iter().fold(pseudo, |n, (name, value)| {
        n + name.as_str().len() + value.len()
    })
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one valid `Host` (HTTP/2 may carry
/// `:authority` in the URI instead).
fn check_host(req: &RequestHeader) -> Result<(), Refusal> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) if req.uri.authority().is_some() || req.version != Version::HTTP_11 => {
            return Ok(())
        }
        (None, _) => return Err(Refusal::MISSING_HOST),
        (Some(h), None) => h.as_bytes(),
        (Some(_), Some(_)) => return Err(Refusal::DUPLICATE_HOST),
    };
    if !valid_host(host) {
        return Err(Refusal::INVALID_HOST);
    }
    Ok(())
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): a bracketed IP literal or a reg-name, then an
/// optional all-digit port.
fn valid_host(host: &[u8]) -> bool {
    let (name_ok, rest) = if let Some(inner) = host.strip_prefix(b"[") {
        match inner.iter().position(|&c| c == b']') {
            Some(end) => (
                end > 0
                    && inner[..end]
                        .iter()
                        .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
                &inner[end + 1..],
            ),
            None => return false,
        }
    } else {
        let end = host.iter().position(|&c| c == b':').unwrap_or(host.len());
        let name = &host[..end];
        (
            !name.is_empty()
                && name.iter().all(|&c| {
                    c.is_ascii_alphanumeric()
                        || matches!(
                            c,
                            b'-' | b'.'
                                | b'_'
                                | b'~'
                                | b'!'
                                | b'$'
                                | b'&'
                                | b'\''
                                | b'('
                                | b')'
                                | b'*'
                                | b'+'
                                | b','
                                | b';'
                                | b'='
                                | b'%'
                        )
                }),
            &host[end..],
        )
    };
    let port_ok = match rest.strip_prefix(b":") {
        None => rest.is_empty(),
        Some(p) => p.len() <= 5 && p.iter().all(u8::is_ascii_digit),
    };
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CheckRules = CheckRules {
        allow_underscore_headers: false,
        max_header_fields: 100,
        max_header_bytes: 1000,
        reject_http10: false,
    };

    fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).expect("header");
        }
        req
    }

    fn check(target: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        refusal(
            &request(target, headers),
            Some(RequestHeadFacts::default()),
            RULES,
        )
        .map(|r| r.reason)
    }

    #[test]
    fn host_syntax() {
        for ok in [
            "a.test",
            "a.test:8080",
            "[::1]",
            "[::1]:80",
            "127.0.0.1:1",
            "x_y",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "example.com:abc",
            "[::1",
            "a b",
            "a/b",
            "a@b",
            ":80",
            "a:123456",
            "",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(check("/a/b?c=d%20e", &[("host", "a.test")]), None);
    }

    #[test]
    fn what_pingora_accepts_but_kuma_refuses() {
        assert_eq!(
            check("/a", &[("host", "a.test"), ("x_y", "1")]),
            Some("underscore_header")
        );
        assert_eq!(check("/a", &[]), Some("missing_host"));
        assert_eq!(
            check("/a", &[("host", "a.test"), ("host", "b.test")]),
            Some("duplicate_host")
        );
        assert_eq!(check("/a", &[("host", "a/b")]), Some("invalid_host"));
        let many: Vec<(String, &str)> = (0..101).map(|i| (format!("x-f{i}"), "v")).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let mut with_host = vec![("host", "a.test")];
        with_host.extend(many);
        assert_eq!(check("/a", &with_host), Some("header_too_large"));
    }

    #[test]
    fn http2_header_lists_are_measured_as_envoy_does() {
        // 1000 bytes allowed: ":method" "GET" ":scheme" ":authority" ":path" "/a" take 34.
        let fits = "v".repeat(1000 - 34 - "host".len() - "a.test".len() - "x-big".len());
        let mut req = request("/a", &[("host", "a.test"), ("x-big", &fits)]);
        req.set_version(Version::HTTP_2);
        assert_eq!(refusal(&req, None, RULES), None);
        req.append_header("x", "").expect("header");
        assert_eq!(refusal(&req, None, RULES), Some(Refusal::HEADERS_TOO_LARGE));
        // HTTP/1 heads are measured by Pingora's reader (the facts say it read them).
        assert_eq!(
            refusal(&req, Some(RequestHeadFacts::default()), RULES),
            None
        );
    }

    #[test]
    fn facts_from_pingoras_reader_are_refusals() {
        let req = request("/a%20b", &[("host", "a.test")]);
        let escaped = RequestHeadFacts {
            target_escaped: true,
            ..Default::default()
        };
        assert_eq!(
            refusal(&req, Some(escaped), RULES),
            Some(Refusal::BAD_TARGET)
        );
        let both = RequestHeadFacts {
            te_with_content_length: true,
            ..Default::default()
        };
        assert_eq!(refusal(&req, Some(both), RULES), Some(Refusal::BAD_FRAMING));
    }
}
