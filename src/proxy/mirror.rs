//! RequestMirror (semantics §5.4): a copy of the request goes to the mirror backend, fire and
//! forget. The client never waits on it: the copy runs in its own task, its body chunks are
//! offered through a bounded channel with `try_send`, and when the mirror falls behind the
//! copy is abandoned rather than slowing the real request down.

use crate::metrics::METRICS;
use crate::snapshot::backends::Backend;
use bytes::Bytes;
use http::{HeaderMap, Method};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_QUEUE: usize = 64;

/// The body side of a running mirror: `None` once abandoned or finished.
pub struct MirrorBody {
    tx: Option<mpsc::Sender<Bytes>>,
}

impl MirrorBody {
    pub fn offer(&mut self, chunk: &Bytes, end: bool) {
        if let Some(tx) = &self.tx {
            if !chunk.is_empty() && tx.try_send(chunk.clone()).is_err() {
                self.tx = None; // mirror too slow or gone: abandon the copy
                return;
            }
        }
        if end {
            self.tx = None; // dropping the sender ends the chunked body
        }
    }
}

/// Starts mirroring a request whose head is given. Envoy appends `-shadow` to the host.
pub fn start(
    backend: Arc<Backend>,
    method: &Method,
    path_and_query: &str,
    host: &str,
    headers: &HeaderMap,
    has_body: bool,
) -> MirrorBody {
    let Some(endpoint) = backend.next_endpoint() else {
        METRICS
            .mirror_requests
            .with_label_values(&[&backend.key, "no_endpoint"])
            .inc();
        return MirrorBody { tx: None };
    };
    let addr = endpoint.addr;
    let shadow_host = shadow(host);
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\nhost: {shadow_host}\r\n");
    for (name, value) in headers {
        if is_hop_by_hop(name.as_str()) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }
    head.push_str("connection: close\r\n");
    let (tx, rx) = if has_body {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        (Some(tx), Some(rx))
    } else {
        head.push_str("content-length: 0\r\n\r\n");
        (None, None)
    };
    let key = backend.key.clone();
    tokio::spawn(async move {
        let result = tokio::time::timeout(MIRROR_TIMEOUT, send(addr, head, rx)).await;
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
    addr: std::net::SocketAddr,
    head: String,
    body: Option<mpsc::Receiver<Bytes>>,
) -> std::io::Result<()> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(head.as_bytes()).await?;
    if let Some(mut rx) = body {
        while let Some(chunk) = rx.recv().await {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            conn.write_all(&chunk).await?;
            conn.write_all(b"\r\n").await?;
        }
        conn.write_all(b"0\r\n\r\n").await?;
    }
    // Read (and discard) the response so the backend is not reset mid-answer.
    let mut buf = [0u8; 4096];
    while conn.read(&mut buf).await? > 0 {}
    Ok(())
}

fn shadow(host: &str) -> String {
    // `-shadow` goes before any `:port`.
    match host.rfind(':') {
        Some(i) if !host.ends_with(']') => format!("{}-shadow{}", &host[..i], &host[i..]),
        _ => format!("{host}-shadow"),
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "trailer"
            | "upgrade"
    )
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
