//! Response compression as Kuma's gateway does it (Envoy's compressor filter with its
//! defaults and `disable_on_etag_header`, spec kuma-gateway-semantics §3.8): gzip when the
//! client accepts it and the response is worth it; `Vary: Accept-Encoding` on every response
//! that could be compressed. The body is compressed as it streams, each chunk flushed (as
//! Envoy flushes per data frame), so server-sent events and long polls are never held back.
//!
//! Not compressed: a client that does not accept gzip (`gzip;q=0` included), a response to
//! HEAD or without a body (1xx, 204, 304), one already encoded, with an `ETag`, with
//! `Cache-Control: no-transform`, shorter than [`MIN_LENGTH`] by its `Content-Length`, or of
//! a content type outside Envoy's default list.

use flate2::write::GzEncoder;
use flate2::Compression;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use std::io::Write;

/// Envoy's `min_content_length`.
pub const MIN_LENGTH: u64 = 30;

/// Envoy's default `content_type` list.
const CONTENT_TYPES: &[&str] = &[
    "application/javascript",
    "application/json",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/css",
    "text/html",
    "text/plain",
    "text/xml",
];

/// Envoy's gzip defaults: zlib's default level (6); smaller windows and memory are Envoy's
/// (12 bits, level 5), which flate2's Rust backend does not expose.
const LEVEL: u32 = 6;

/// A response being compressed.
pub struct Gzip {
    enc: GzEncoder<Vec<u8>>,
}

impl Gzip {
    /// Compresses one chunk (`end`: the last); what comes out is ready to send.
    pub fn chunk(&mut self, data: &[u8], end: bool) -> bytes::Bytes {
        // Writing to a Vec cannot fail; an error here would be a bug in flate2.
        let _ = self.enc.write_all(data);
        if end {
            let _ = self.enc.try_finish();
        } else {
            let _ = self.enc.flush();
        }
        std::mem::take(self.enc.get_mut()).into()
    }
}

/// Does the client accept gzip (`gzip` or `*` with a non-zero q)?
fn accepts_gzip(req: &RequestHeader) -> bool {
    req.headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// Could this response be compressed (whatever the client accepts)?
fn compressible(method: &Method, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    let h: &HeaderMap = &resp.headers;
    if *method == Method::HEAD || status < 200 || status == 204 || status == 304 {
        return false;
    }
    let encoded = h
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded || h.contains_key(ETAG) {
        return false;
    }
    let no_transform = h
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    if no_transform {
        return false;
    }
    let short = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n < MIN_LENGTH);
    if short {
        return false;
    }
    let Some(ct) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    CONTENT_TYPES.iter().any(|t| media.eq_ignore_ascii_case(t))
}

/// Decides for one response, adjusting its headers: `Some` when its body is to be
/// compressed. `http11`: the client speaks HTTP/1.1 (the compressed body is then chunked).
pub fn start(req: &RequestHeader, resp: &mut ResponseHeader, http11: bool) -> Option<Gzip> {
    if !compressible(&req.method, resp) {
        return None;
    }
    let _ = resp.append_header(VARY, HeaderValue::from_static("Accept-Encoding"));
    if !accepts_gzip(req) {
        return None;
    }
    resp.remove_header(&CONTENT_LENGTH);
    let _ = resp.insert_header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if http11 && !resp.headers.contains_key(TRANSFER_ENCODING) {
        let _ = resp.insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    Some(Gzip {
        enc: GzEncoder::new(Vec::new(), Compression::new(LEVEL)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn req(accept: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        if let Some(a) = accept {
            r.insert_header("accept-encoding", a).expect("header");
        }
        r
    }

    fn resp(ct: &str, extra: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("response");
        r.insert_header("content-type", ct).expect("header");
        for (k, v) in extra {
            r.insert_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn envoys_conditions() {
        let yes =
            |accept: &str, r: &mut ResponseHeader| start(&req(Some(accept)), r, true).is_some();
        assert!(yes(
            "gzip, br",
            &mut resp("application/json; charset=utf-8", &[])
        ));
        assert!(yes("*", &mut resp("text/html", &[])));
        assert!(!yes("gzip;q=0", &mut resp("text/html", &[])));
        assert!(!yes("br", &mut resp("text/html", &[])));
        assert!(!yes("gzip", &mut resp("image/png", &[])));
        assert!(!yes("gzip", &mut resp("text/html", &[("etag", "\"x\"")])));
        assert!(!yes(
            "gzip",
            &mut resp("text/html", &[("content-encoding", "br")])
        ));
        assert!(!yes(
            "gzip",
            &mut resp("text/html", &[("content-length", "29")])
        ));
        assert!(yes(
            "gzip",
            &mut resp("text/html", &[("content-length", "30")])
        ));
        assert!(!yes(
            "gzip",
            &mut resp("text/html", &[("cache-control", "no-transform")])
        ));
        let mut head = req(Some("gzip"));
        head.set_method(Method::HEAD);
        assert!(start(&head, &mut resp("text/html", &[]), true).is_none());
    }

    #[test]
    fn headers_and_a_streamed_body() {
        let mut r = resp("text/plain", &[("content-length", "100")]);
        let mut gz = start(&req(Some("gzip")), &mut r, true).expect("compressed");
        assert!(r.headers.get("content-length").is_none());
        assert_eq!(
            r.headers.get("content-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            r.headers.get("vary").map(|v| v.as_bytes()),
            Some(&b"Accept-Encoding"[..])
        );
        let first = gz.chunk(b"hello ", false);
        assert!(!first.is_empty(), "each chunk is flushed out");
        let mut out = first.to_vec();
        out.extend_from_slice(&gz.chunk(b"world", true));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        assert_eq!(text, "hello world");
        let mut not_accepted = resp("text/plain", &[]);
        assert!(start(&req(None), &mut not_accepted, true).is_none());
        assert_eq!(
            not_accepted.headers.get("vary").map(|v| v.as_bytes()),
            Some(&b"Accept-Encoding"[..]),
            "Vary on every compressible response"
        );
    }
}
