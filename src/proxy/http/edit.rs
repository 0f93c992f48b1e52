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

/// A random UUID v4 (`x-request-id`); not for anything secret.
fn request_id() -> HeaderValue {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let text = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        b >> 48,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
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
