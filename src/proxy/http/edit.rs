//! The edits a routed request and its response get: the entry's filters (path rewrite,
//! header modifiers, host rewrite) and the headers Kuma's gateway adds (§3.8, §5).

use super::forwarded::forwarded_for;
use super::local::{HSTS, SERVER};
use super::plain_header::{PlainRequest, PlainResponse};
use super::RequestCtx;
use crate::snapshot::action::HostRewrite;
use http::{HeaderName, HeaderValue, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};
use std::net::IpAddr;

// Constant names: inserting them hashes, it does not parse or copy (see plain_header).
const X_KUMA_TAGS: HeaderName = HeaderName::from_static("x-kuma-tags");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Room reserved before editing: `x-kuma-tags`, `x-forwarded-for`, `x-forwarded-proto`, plus
/// a route's own header filters (more only grow the map once).
const ADDED_REQUEST_HEADERS: usize = 4;

/// A random UUID v4 (`x-request-id`); not for anything secret. Written on the stack by
/// hand: `format!` with five padded hex fields cost four allocations (the string grows)
/// and `core::fmt`'s per-field work on every request without an id (heaptrack, perf).
fn request_id() -> HeaderValue {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    // Version 4 in the third group's first digit, variant 10xx in the fourth's.
    let a = (a & !0xf000) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut text = [b'-'; 36];
    let digits = (0..16)
        .rev()
        .map(|i| (a >> (4 * i)) & 0xf)
        .chain((0..16).rev().map(|i| (b >> (4 * i)) & 0xf));
    // The UUID's 32 hex digits skip the four dashes at 8, 13, 18 and 23.
    let slots = (0..36).filter(|i| !matches!(i, 8 | 13 | 18 | 23));
    for (slot, digit) in slots.zip(digits) {
        text[slot] = b"0123456789abcdef"[digit as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request as it goes to the backend.
pub fn upstream_request(
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
    client: Option<IpAddr>,
) -> Result<()> {
    let mut plain = PlainRequest::take(upstream, ADDED_REQUEST_HEADERS);
    let entry = ctx.entry();
    let rewrite = entry.and_then(|e| e.path_rewrite.as_deref());
    if ctx.path.is_some() || rewrite.is_some() {
        let path = ctx.path.as_deref().unwrap_or(plain.parts.uri.path());
        let path = match rewrite {
            Some(rw) => rw.apply(path),
            None => path.to_string(),
        };
        let path_and_query = match plain.parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri: Uri = path_and_query
            .parse()
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "rewritten path invalid"))?;
        plain.set_uri(uri);
    }
    let headers = &mut plain.parts.headers;
    // Clients must not inject mesh identity (§3.8).
    headers.remove(&X_KUMA_TAGS);
    if let Some(f) = entry.and_then(|e| e.action.forward()) {
        f.request_headers.apply(headers);
        let host = match &f.host_rewrite {
            Some(HostRewrite::Literal(h)) => Some(h),
            Some(HostRewrite::BackendHostname) => ctx
                .upstream()
                .and_then(|u| u.backend.endpoints.get(u.endpoint))
                .and_then(|e| e.host_header.as_ref()),
            None => None,
        };
        if let Some(h) = host {
            headers.insert(http::header::HOST, h.clone());
        }
    }
    if let (Some(u), Some(snap)) = (ctx.upstream(), &ctx.snapshot) {
        if !u.backend.external {
            headers.insert(X_KUMA_TAGS, snap.gateway.kuma_tags.clone());
        }
    }
    // Envoy with use_remote_address: append the client to x-forwarded-for.
    if let Some(client) = client {
        let previous = headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes());
        if let Ok(xff) = forwarded_for(previous, client) {
            headers.insert(X_FORWARDED_FOR, xff);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if ctx.https { "https" } else { "http" }),
    );
    // Envoy's `generate_request_id`: a request without an id gets a UUID v4.
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, request_id());
    }
    if let Some(span) = &ctx.span {
        for (name, value) in &span.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    plain.put_back(upstream)
}

/// The backend's response as it goes to the client.
pub fn response(resp: &mut ResponseHeader, ctx: &RequestCtx, draining: bool) -> Result<()> {
    let mut plain = PlainResponse::take(resp);
    let headers = &mut plain.parts.headers;
    if let Some(f) = ctx.entry().and_then(|e| e.action.forward()) {
        f.response_headers.apply(headers);
    }
    headers.insert(http::header::SERVER, HeaderValue::from_static(SERVER));
    if ctx.https {
        headers.insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if let Some(cookie) = &ctx.set_cookie {
        headers.append(http::header::SET_COOKIE, cookie.clone());
    }
    if draining && plain.parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    plain.put_back(resp)
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn request_ids_are_uuid_v4_text() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = request_id();
            let text = id.to_str().unwrap();
            let groups: Vec<&str> = text.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{text}");
            assert!(groups
                .concat()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(groups[2].starts_with('4'), "version 4: {text}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant: {text}"
            );
            seen.insert(text.to_owned());
        }
        assert_eq!(seen.len(), 1000, "ids repeat");
    }
}
