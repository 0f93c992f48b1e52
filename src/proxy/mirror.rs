//! RequestMirror (semantics §5.4): a copy of the request goes to the mirror backend, fire and
//! forget. The client never waits on it: the copy runs in its own task, its body chunks are
//! offered through a bounded channel with `try_send`, and when the mirror falls behind the
//! copy is abandoned rather than slowing the real request down.
//!
//! The copy goes through Pingora's HTTP connector to the endpoint's ready `HttpPeer`, so it
//! speaks what the real request would: TLS to TLS backends, HTTP/2 to h2 backends, and any
//! header bytes the client sent (the request head is Pingora's own, copied).

use crate::admin::metrics::METRICS;
use crate::snapshot::backends::Backend;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::mpsc;

const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_QUEUE: usize = 64;

/// One connector (and upstream connection pool) for every mirror copy of the process.
static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| Connector::new(None));

/// The body side of a running mirror: `None` once abandoned or finished.
pub struct MirrorBody {
    tx: Option<mpsc::Sender<Bytes>>,
}

impl MirrorBody {
    pub fn offer(&mut self, chunk: Option<&Bytes>, end: bool) {
        if let (Some(tx), Some(chunk)) = (&self.tx, chunk) {
            if !chunk.is_empty() && tx.try_send(chunk.clone()).is_err() {
                self.tx = None; // mirror too slow or gone: abandon the copy
                return;
            }
        }
        if end {
            self.tx = None; // dropping the sender ends the body
        }
    }
}

/// Starts mirroring the request whose head is `req`. Envoy appends `-shadow` to the host.
pub fn start(backend: Arc<Backend>, req: &RequestHeader) -> MirrorBody {
    let Some(endpoint) = backend.next_endpoint() else {
        METRICS
            .mirror_requests
            .with_label_values(&[&backend.key, "no_endpoint"])
            .inc();
        return MirrorBody { tx: None };
    };
    let peer = endpoint.peer.clone();
    let mut head = Box::new(req.clone());
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let _ = head.insert_header(http::header::HOST, shadow(host));
    // The copy is a plain request: no protocol switch, Pingora's client frames the body.
    head.remove_header(&http::header::UPGRADE);
    head.remove_header(&http::header::CONNECTION);
    let has_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let (tx, rx) = if has_body {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let key = backend.key.clone();
    tokio::spawn(async move {
        let result = tokio::time::timeout(MIRROR_TIMEOUT, send(&peer, head, rx)).await;
        let outcome = match result {
            Ok(Ok(())) => "sent",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        METRICS
            .mirror_requests
            .with_label_values(&[&key, outcome])
            .inc();
    });
    MirrorBody { tx }
}

async fn send(
    peer: &pingora::upstreams::peer::HttpPeer,
    head: Box<RequestHeader>,
    body: Option<mpsc::Receiver<Bytes>>,
) -> pingora::Result<()> {
    let (mut session, _reused) = CONNECTOR.get_http_session(peer).await?;
    session.write_request_header(head).await?;
    if let Some(mut rx) = body {
        while let Some(chunk) = rx.recv().await {
            session.write_request_body(chunk, false).await?;
        }
    }
    session.finish_request_body().await?;
    // Read (and discard) the response so the backend is not reset mid-answer and the
    // connection can be pooled.
    session.read_response_header().await?;
    while session.read_response_body().await?.is_some() {}
    CONNECTOR
        .release_http_session(session, peer, Some(Duration::from_secs(60)))
        .await;
    Ok(())
}

fn shadow(host: &str) -> String {
    // `-shadow` goes before any `:port`.
    match host.rfind(':') {
        Some(i) if !host.ends_with(']') => format!("{}-shadow{}", &host[..i], &host[i..]),
        _ => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::shadow;

    #[test]
    fn shadow_suffix_goes_before_the_port() {
        assert_eq!(shadow("a.test"), "a.test-shadow");
        assert_eq!(shadow("a.test:8080"), "a.test-shadow:8080");
    }
}
