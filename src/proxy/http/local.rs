//! Responses meshgate writes itself (404, redirects, 5xx, rejections), with the headers every
//! gateway response carries.

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::Result;

/// Envoy in Kuma's gateway overwrites `server` on every response (semantics §3.8).
pub const SERVER: &str = "Kuma Gateway";
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

pub struct LocalResponse<'a> {
    pub status: u16,
    pub body: &'a [u8],
    pub location: Option<&'a str>,
    pub https: bool,
    pub close: bool,
    /// Headers set (replacing) then added, e.g. MeshRateLimit's `onRateLimit.headers`.
    pub set: &'a [(HeaderName, HeaderValue)],
    pub add: &'a [(HeaderName, HeaderValue)],
}

impl LocalResponse<'_> {
    pub fn status(status: u16) -> Self {
        LocalResponse {
            status,
            body: b"",
            location: None,
            https: false,
            close: false,
            set: &[],
            add: &[],
        }
    }
}

pub fn header(r: &LocalResponse<'_>) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(r.status, Some(6))?;
    resp.insert_header("server", http::HeaderValue::from_static(SERVER))?;
    resp.insert_header("content-length", r.body.len().to_string())?;
    if !r.body.is_empty() {
        resp.insert_header("content-type", "text/plain")?;
    }
    if let Some(l) = r.location {
        resp.insert_header("location", l)?;
    }
    if r.https {
        resp.insert_header(
            "strict-transport-security",
            http::HeaderValue::from_static(HSTS),
        )?;
    }
    if r.close {
        resp.insert_header("connection", "close")?;
    }
    let mut set_names: Vec<&HeaderName> = Vec::new();
    for (name, value) in r.set {
        // The first value of a name replaces; Kuma's comma-split `set` values follow it.
        if set_names.contains(&name) {
            resp.append_header(name.clone(), value.clone())?;
        } else {
            resp.insert_header(name.clone(), value.clone())?;
            set_names.push(name);
        }
    }
    for (name, value) in r.add {
        resp.append_header(name.clone(), value.clone())?;
    }
    Ok(resp)
}

pub async fn write(session: &mut Session, r: LocalResponse<'_>) -> Result<()> {
    if r.close {
        session.set_keepalive(None);
    }
    if is_grpc(session.req_header()) && r.location.is_none() {
        let resp = Box::new(grpc_header(&r)?);
        // Trailers-only: one HEADERS frame that ends the stream (Pingora's session API ends
        // an HTTP/2 stream with a DATA frame, which gRPC clients refuse without trailers).
        if let ServerSession::H2(h2) = session.as_downstream_mut() {
            return h2.write_response_header(resp, true);
        }
        return session.write_response_header(resp, true).await;
    }
    let resp = header(&r)?;
    let empty = r.body.is_empty();
    session.write_response_header(Box::new(resp), empty).await?;
    if !empty {
        session
            .write_response_body(Some(bytes::Bytes::copy_from_slice(r.body)), true)
            .await?;
    }
    Ok(())
}

/// A gRPC request (`content-type: application/grpc...`): its local answers are gRPC ones.
pub fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Envoy's gRPC status for the HTTP status of a local answer (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status(http_status: u16) -> u8 {
    match http_status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// A local answer to a gRPC request as Envoy sends it: a trailers-only response (HTTP 200,
/// `grpc-status` from the HTTP status, `grpc-message` the body, percent-encoded), with the
/// answer's own headers (a rate limit's, `x-envoy-overloaded`).
pub fn grpc_header(r: &LocalResponse<'_>) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header("server", http::HeaderValue::from_static(SERVER))?;
    resp.insert_header("content-type", "application/grpc")?;
    resp.insert_header("grpc-status", grpc_status(r.status).to_string())?;
    let message = String::from_utf8_lossy(r.body);
    let message = message.trim_end();
    if !message.is_empty() {
        resp.insert_header("grpc-message", percent_encode(message))?;
    }
    if r.https {
        resp.insert_header(
            "strict-transport-security",
            http::HeaderValue::from_static(HSTS),
        )?;
    }
    for (name, value) in r.set {
        resp.insert_header(name.clone(), value.clone())?;
    }
    for (name, value) in r.add {
        resp.append_header(name.clone(), value.clone())?;
    }
    Ok(resp)
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, the rest as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod grpc_tests {
    use super::*;

    #[test]
    fn local_answers_map_to_envoys_grpc_statuses() {
        assert_eq!(grpc_status(404), 12);
        assert_eq!(grpc_status(503), 14);
        assert_eq!(grpc_status(429), 14);
        assert_eq!(grpc_status(500), 2);
        let r = LocalResponse {
            body: b"no healthy upstream",
            ..LocalResponse::status(503)
        };
        let h = grpc_header(&r).expect("header");
        assert_eq!(h.status.as_u16(), 200);
        assert_eq!(
            h.headers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"14"[..])
        );
        assert_eq!(
            h.headers.get("grpc-message").map(|v| v.as_bytes()),
            Some(&b"no healthy upstream"[..])
        );
        assert_eq!(percent_encode("50% \u{e9}"), "50%25 %C3%A9");
    }
}
