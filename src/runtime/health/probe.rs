//! One health check of one endpoint (spec §6.1): HTTP through Pingora's own connector and
//! HTTP/1 client (`pingora-load-balancing`'s `HttpHealthCheck`), TCP by hand (connect,
//! write `send`, find every `receive` block in order in what comes back).

use crate::snapshot::backends::Backend;
use crate::snapshot::cluster::{HealthCheck, Probe};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType};
use pingora_load_balancing::health_check::{HealthCheck as _, HttpHealthCheck};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The error a status outside `expectedStatuses` gives: the endpoint is unhealthy at once,
/// whatever `unhealthyThreshold` says (Envoy's rule for HTTP checks).
const UNEXPECTED_STATUS: &str = "unexpected health check status";

/// Bytes read at most while looking for the `receive` blocks.
const MAX_TCP_REPLY: usize = 64 * 1024;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// A failure that counts towards `unhealthyThreshold` (timeout, connection failure,
    /// missing `receive` block).
    Failed(String),
    /// A failure that marks the endpoint unhealthy at once (an unexpected HTTP status).
    Unhealthy(String),
}

/// The checks of one backend under one plan.
pub enum Prober {
    Http(Box<HttpHealthCheck>),
    Tcp {
        send: Option<Vec<u8>>,
        receive: Vec<Vec<u8>>,
    },
}

impl Prober {
    pub fn new(plan: &HealthCheck, backend: &Backend) -> Prober {
        match &plan.probe {
            Probe::Tcp { send, receive } => Prober::Tcp {
                send: send.clone(),
                receive: receive.clone(),
            },
            Probe::Http {
                path,
                set,
                add,
                expected,
            } => {
                let first = backend.endpoints.first();
                let host = first
                    .and_then(|e| e.host_header.as_ref())
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or(&backend.service)
                    .to_string();
                let tls = first.is_some_and(|e| e.peer.is_tls());
                let mut hc = HttpHealthCheck::new(&host, tls);
                // One kept connection per endpoint: Pingora's default pool (128) would evict
                // most of a large backend's, and every check would open a new connection
                // (1,000 endpoints at 1 s: 8.1 % of a core that way, 2.1 % with the connections kept;
                // scripts/bench/health_cpu.sh).
                let pool = backend.endpoints.len().max(16) * 2;
                hc.set_connector(pingora::connectors::http::Connector::new(Some(
                    pingora::connectors::ConnectorOptions::new(pool),
                )));
                if let Some(e) = first {
                    hc.peer_template = e.peer.clone();
                }
                // Envoy's HTTP health checks speak HTTP/1.1 whatever the cluster speaks.
                hc.peer_template.options.set_http_version(1, 1);
                hc.peer_template.options.connection_timeout = Some(plan.timeout);
                hc.peer_template.options.read_timeout = Some(plan.timeout);
                hc.peer_template.options.write_timeout = Some(plan.timeout);
                hc.peer_template.options.total_connection_timeout = Some(plan.timeout);
                hc.reuse_connection = plan.reuse_connection;
                hc.req = request(path, &host, set, add);
                let expected = expected.clone();
                hc.validator = Some(Box::new(move |resp: &ResponseHeader| {
                    let status = resp.status.as_u16();
                    if expected.contains(&status) {
                        Ok(())
                    } else {
                        Error::e_explain(
                            ErrorType::Custom(UNEXPECTED_STATUS),
                            format!("status {status}"),
                        )
                    }
                }));
                Prober::Http(Box::new(hc))
            }
        }
    }

    /// Checks the endpoint at `addr`, within `timeout`.
    pub async fn check(&self, addr: SocketAddr, timeout: std::time::Duration) -> Verdict {
        let result = tokio::time::timeout(timeout, self.check_once(addr)).await;
        match result {
            Err(_) => Verdict::Failed(format!("no answer within {timeout:?}")),
            Ok(v) => v,
        }
    }

    async fn check_once(&self, addr: SocketAddr) -> Verdict {
        match self {
            Prober::Http(hc) => {
                let target = match pingora_load_balancing::Backend::new(&addr.to_string()) {
                    Ok(t) => t,
                    Err(e) => return Verdict::Failed(e.to_string()),
                };
                match hc.check(&target).await {
                    Ok(()) => Verdict::Healthy,
                    Err(e) if *e.etype() == ErrorType::Custom(UNEXPECTED_STATUS) => {
                        Verdict::Unhealthy(e.to_string())
                    }
                    Err(e) => Verdict::Failed(e.to_string()),
                }
            }
            Prober::Tcp { send, receive } => tcp(addr, send.as_deref(), receive).await,
        }
    }
}

/// `GET path` with the check's headers; Envoy's health-check user agent.
fn request(
    path: &str,
    host: &str,
    set: &[(http::HeaderName, http::HeaderValue)],
    add: &[(http::HeaderName, http::HeaderValue)],
) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None)
        .or_else(|_| RequestHeader::build("GET", b"/", None))
        .expect("GET / is a valid request");
    let _ = req.insert_header(http::header::HOST, host);
    let _ = req.insert_header(http::header::USER_AGENT, "Envoy/HC");
    for (name, value) in set {
        let _ = req.insert_header(name.clone(), value.clone());
    }
    for (name, value) in add {
        let _ = req.append_header(name.clone(), value.clone());
    }
    req
}

async fn tcp(addr: SocketAddr, send: Option<&[u8]>, receive: &[Vec<u8>]) -> Verdict {
    let mut stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Verdict::Failed(format!("connect: {e}")),
    };
    if let Some(bytes) = send {
        if let Err(e) = stream.write_all(bytes).await {
            return Verdict::Failed(format!("send: {e}"));
        }
    }
    if receive.is_empty() {
        return Verdict::Healthy;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < MAX_TCP_REPLY {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if blocks_in_order(&got, receive) {
                    return Verdict::Healthy;
                }
            }
            Err(e) => return Verdict::Failed(format!("receive: {e}")),
        }
    }
    Verdict::Failed("the expected reply did not come".to_string())
}

/// Does every block appear in `got`, each after the previous one?
fn blocks_in_order(got: &[u8], blocks: &[Vec<u8>]) -> bool {
    let mut rest = got;
    for b in blocks {
        match rest.windows(b.len().max(1)).position(|w| w == b.as_slice()) {
            Some(i) => rest = &rest[i + b.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_blocks_must_come_in_order() {
        let blocks = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(blocks_in_order(b"+PONG\r\n", &blocks));
        assert!(!blocks_in_order(b"NG PO", &blocks));
    }

    #[tokio::test]
    async fn tcp_check_sends_and_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"PING" {
                    let _ = s.write_all(b"+PONG\r\n").await;
                }
            }
        });
        let ok = tcp(addr, Some(b"PING"), &[b"PONG".to_vec()]).await;
        assert_eq!(ok, Verdict::Healthy);
        let bad = tcp(addr, Some(b"PINX"), &[b"PONG".to_vec()]).await;
        assert!(matches!(bad, Verdict::Failed(_)), "{bad:?}");
    }
}
