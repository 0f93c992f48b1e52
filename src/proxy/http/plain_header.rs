//! Editing a proxied header as plain `http` parts instead of through Pingora's
//! case-preserving wrappers.
//!
//! Pingora's `RequestHeader`/`ResponseHeader` keep a second map with each name's original
//! spelling, and every `insert_header` parses the name into a new `HeaderName` (a copy for a
//! non-standard name) and inserts it into both maps, growing both. Per proxied request the
//! gateway adds `x-kuma-tags`, `x-forwarded-for`, `x-forwarded-proto` and `server`: through
//! the wrappers that was about 5,000 instructions of the request path (callgrind, 10,000
//! routes), more than the route lookup. Taken out as `http::request::Parts`, the header is
//! edited in one map, pre-sized, with constant `HeaderName`s.
//!
//! Header names then go out lower-cased, which is also what Kuma's gateway (Envoy) sends:
//! it does not preserve the client's or the backend's spelling either.

use http::request::Parts as RequestParts;
use http::response::Parts as ResponseParts;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// A request header taken out of a `RequestHeader` for editing; [`PlainRequest::put_back`]
/// returns it.
pub struct PlainRequest {
    pub parts: RequestParts,
    /// The request-target as received when the URI does not reproduce it (absolute-form,
    /// non-UTF-8): restored unless the URI is replaced.
    raw_target: Option<Box<[u8]>>,
    /// HTTP/2 only: whether END_STREAM may go on the HEADERS frame.
    send_end_stream: Option<bool>,
}

impl PlainRequest {
    /// Takes `req`'s parts out of it, with room for `additional` more headers.
    pub fn take(req: &mut RequestHeader, additional: usize) -> Self {
        let from_uri = req.uri.path_and_query().map(|p| p.as_str().as_bytes());
        let raw_target = (from_uri != Some(req.raw_path())).then(|| Box::from(req.raw_path()));
        let send_end_stream = req.send_end_stream();
        // An empty `Parts` allocates nothing; it only holds `req`'s place until `put_back`.
        let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts = RequestParts::from(std::mem::replace(req, empty));
        parts.headers.reserve(additional);
        PlainRequest {
            parts,
            raw_target,
            send_end_stream,
        }
    }

    /// Replaces the request-target; the original bytes are no longer sent.
    pub fn set_uri(&mut self, uri: http::Uri) {
        self.parts.uri = uri;
        self.raw_target = None;
    }

    pub fn put_back(self, req: &mut RequestHeader) -> Result<()> {
        *req = RequestHeader::from(self.parts);
        if let Some(raw) = &self.raw_target {
            req.set_raw_path(raw)?;
        }
        if let Some(end) = self.send_end_stream {
            req.set_send_end_stream(end);
        }
        Ok(())
    }
}

/// A response header taken out of a `ResponseHeader` for editing.
pub struct PlainResponse {
    pub parts: ResponseParts,
    /// A reason phrase other than the status code's standard one.
    reason: Option<String>,
}

impl PlainResponse {
    /// Not pre-sized: a parsed response has room to spare, and reserving would rehash it
    /// (a backend's `server` header is replaced, not added).
    pub fn take(resp: &mut ResponseHeader) -> Self {
        let reason = resp
            .get_reason_phrase()
            .filter(|r| Some(*r) != resp.status.canonical_reason())
            .map(str::to_owned);
        let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
        let parts = ResponseParts::from(std::mem::replace(resp, empty));
        PlainResponse { parts, reason }
    }

    pub fn put_back(self, resp: &mut ResponseHeader) -> Result<()> {
        *resp = ResponseHeader::from(self.parts);
        if self.reason.is_some() {
            resp.set_reason_phrase(self.reason.as_deref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn request_round_trip_keeps_target_method_and_values() {
        let mut req = RequestHeader::build("POST", b"/a/b?x=1", None).unwrap();
        req.append_header("X-Custom", "one").unwrap();
        req.append_header("X-Custom", "two").unwrap();
        let mut plain = PlainRequest::take(&mut req, 1);
        plain.parts.headers.insert(
            HeaderName::from_static("x-added"),
            HeaderValue::from_static("yes"),
        );
        plain.put_back(&mut req).unwrap();
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.raw_path(), b"/a/b?x=1");
        let values: Vec<_> = req.headers.get_all("x-custom").iter().collect();
        assert_eq!(values, ["one", "two"]);
        // Lower-cased on the wire, as Envoy sends them.
        assert_eq!(
            wire(&req),
            "x-custom: one\r\nx-custom: two\r\nx-added: yes\r\n"
        );
    }

    #[test]
    fn an_absolute_form_target_survives_unless_the_uri_is_replaced() {
        let target = b"http://a.test/p?q=1";
        let mut req = RequestHeader::build("GET", target, None).unwrap();
        PlainRequest::take(&mut req, 0).put_back(&mut req).unwrap();
        assert_eq!(req.raw_path(), target);

        let mut plain = PlainRequest::take(&mut req, 0);
        plain.set_uri(http::Uri::from_static("/new"));
        plain.put_back(&mut req).unwrap();
        assert_eq!(req.raw_path(), b"/new");
    }

    #[test]
    fn response_round_trip_keeps_a_custom_reason() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.set_reason_phrase(Some("Fine")).unwrap();
        resp.append_header("Content-Type", "text/plain").unwrap();
        let plain = PlainResponse::take(&mut resp);
        plain.put_back(&mut resp).unwrap();
        assert_eq!(resp.get_reason_phrase(), Some("Fine"));
        assert_eq!(resp.headers["content-type"], "text/plain");

        let mut standard = ResponseHeader::build(404, None).unwrap();
        PlainResponse::take(&mut standard)
            .put_back(&mut standard)
            .unwrap();
        assert_eq!(standard.get_reason_phrase(), Some("Not Found"));
    }
}
