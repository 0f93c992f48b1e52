//! Responses meshgate writes itself (404, redirects, 5xx, rejections), with the headers every
//! gateway response carries.

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
}

impl LocalResponse<'_> {
    pub fn status(status: u16) -> Self {
        LocalResponse {
            status,
            body: b"",
            location: None,
            https: false,
            close: false,
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
