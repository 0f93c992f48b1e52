//! Responses meshgate writes itself (404, redirects, 5xx, rejections), with the headers every
//! gateway response carries.

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
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
