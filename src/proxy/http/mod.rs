//! `ProxyHttp` for HTTP and HTTPS listeners (semantics Appendix C, "per HTTP request").
//!
//! The hooks, in the order Pingora calls them for a proxied request:
//! `early_request_filter` (refuse what Kuma refuses) → `request_filter` (decide: route,
//! backend, endpoint, or a local answer) → `upstream_peer` (the chosen endpoint, with its
//! timeouts) → `upstream_request_filter` (filters and Kuma's headers) → `request_body_filter`
//! (mirror copy) → `response_filter` (filters, `server`, HSTS, draining) → `logging`.
//! `fail_to_connect` and `fail_to_proxy` turn failures into Envoy's answers. Deciding happens
//! once, in `request_filter`, on one snapshot held for the whole request; the later hooks
//! only apply the decision recorded in [`RequestCtx`].

pub(crate) mod checks;
pub(crate) mod decide;
pub(crate) mod edit;
pub mod forwarded;
pub mod local;
pub mod normalize;
pub mod outcome;
pub mod plain_header;

use crate::admin::access_log;
use crate::admin::metrics::METRICS;
use crate::proxy::mirror::MirrorBody;
use crate::proxy::tls::SniName;
use crate::runtime::state::GatewayState;
use crate::snapshot::backends::Backend;
use crate::snapshot::route_table::RouteEntry;
use crate::snapshot::{EntryRef, ListenerInfo, Snapshot, VirtualHost};
use async_trait::async_trait;
use bytes::Bytes;
use checks::{CheckRules, Refusal};
use decide::Decision;
use local::LocalResponse;
use outcome::{Local, ResponseFlag, UPSTREAM_RESET_BODY};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::server::{REQUEST_HEAD_TIMEOUT, REQUEST_HEAD_TOO_LARGE};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kuma's default gateway retry policy retries connect failures up to 5 times.
const MAX_CONNECT_ATTEMPTS: usize = 5;
/// Pingora's read timeout for request bodies (its default), restored after the first head.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

pub struct HttpGateway {
    pub state: Arc<GatewayState>,
}

/// The request as routed: the virtual host and entry that matched and, when the entry
/// forwards, the chosen backend and endpoint. Built by `request_filter`.
pub struct Routed {
    pub vhost: Arc<VirtualHost>,
    pub entry: EntryRef,
    pub upstream: Option<Upstream>,
}

impl Routed {
    pub fn entry(&self) -> Option<&RouteEntry> {
        self.vhost.entry(self.entry)
    }
}

/// Where a forwarded request goes.
pub struct Upstream {
    pub backend: Arc<Backend>,
    /// Index into `backend.endpoints` of the current attempt.
    pub endpoint: usize,
    pub connect_attempts: usize,
}

/// Per-request state. Holds the snapshot the request started with, so every hook sees one
/// consistent configuration even if a reload happens mid-request.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    /// The local port the request arrived on.
    port: u16,
    https: bool,
    /// The listener hostname that took the request, once known.
    listener: Option<Arc<ListenerInfo>>,
    routed: Option<Routed>,
    /// The normalised path when it differs from what the client sent.
    path: Option<String>,
    /// The normalised Host.
    host: String,
    /// Set when meshgate answered (or will answer) itself.
    local: Option<Local>,
    /// Set when the request was refused before routing.
    refused: Option<Refusal>,
    flag: ResponseFlag,
    mirror: Option<MirrorBody>,
}

impl RequestCtx {
    /// A fresh context for a request on local `port` (over TLS when `https`).
    pub(crate) fn for_connection(port: u16, https: bool) -> Self {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            port,
            https,
            listener: None,
            routed: None,
            path: None,
            host: String::new(),
            local: None,
            refused: None,
            flag: ResponseFlag::None,
            mirror: None,
        }
    }

    pub(crate) fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = Some(snapshot);
    }

    pub(crate) fn entry(&self) -> Option<&RouteEntry> {
        self.routed.as_ref()?.entry()
    }

    pub(crate) fn upstream(&self) -> Option<&Upstream> {
        self.routed.as_ref()?.upstream.as_ref()
    }

    fn port_label(&self) -> String {
        self.port.to_string()
    }
}

fn local_port(session: &ServerSession) -> u16 {
    session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map_or(0, |a| a.port())
}

/// The metric reason and answer for a head Pingora's reader refused.
fn head_error_answer(e: &Error) -> Option<(&'static str, Option<u16>)> {
    let etype = e.etype();
    if *etype == REQUEST_HEAD_TOO_LARGE {
        return Some(("header_too_large", Some(431)));
    }
    if *etype == REQUEST_HEAD_TIMEOUT {
        return Some(("header_timeout", Some(408)));
    }
    match etype {
        // The first request did not start within the header timeout.
        ErrorType::ReadTimedout => Some(("header_timeout", Some(408))),
        ErrorType::InvalidHTTPHeader => {
            let cause = e.root_cause();
            let reason = match cause.downcast_ref::<httparse::Error>() {
                Some(httparse::Error::Version) => "bad_version",
                Some(httparse::Error::Token) => "bad_request_target",
                Some(_) => "bad_header",
                None if cause.is::<http::uri::InvalidUri>() => "bad_request_target",
                // Pingora's other checks of a parsed head: Content-Length,
                // Transfer-Encoding, Host and authority.
                None => "bad_request",
            };
            Some((reason, Some(400)))
        }
        _ => None,
    }
}

#[async_trait]
impl ProxyHttp for HttpGateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a disabled response-compression module
    /// that still costs an allocation and filter calls per request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Self::CTX {
        // The port and TLS are filled in by the first hooks.
        RequestCtx::for_connection(0, false)
    }

    /// Runs when Pingora's HTTP/1 reader refused a request head (malformed, larger than
    /// [`crate::proxy::conn::MAX_HEAD_BYTES`], not complete within the header timeout):
    /// counts the refusal and answers it, closing the connection. No other hook runs for it.
    fn request_head_error(
        &self,
        session: &ServerSession,
        e: &Error,
    ) -> Option<(ResponseHeader, Bytes)> {
        let (reason, status) = head_error_answer(e)?;
        METRICS
            .http_rejected
            .with_label_values(&[&local_port(session).to_string(), reason])
            .inc();
        let response = LocalResponse {
            close: true,
            ..LocalResponse::status(status?)
        };
        local::header(&response).ok().map(|h| (h, Bytes::new()))
    }

    /// Runs first for every parsed request: refuses what Kuma's gateway refuses and Pingora
    /// accepts ([`checks`]), and sets the keep-alive wait for the next request on the
    /// connection. A refusal becomes an error answered by `fail_to_proxy` with its status
    /// and `Connection: close`.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        ctx.port = local_port(session.as_downstream());
        let settings = &self.state.settings;
        session.set_keepalive(Some(settings.idle_timeout.as_secs()));
        // Pipelined HTTP/1.1 requests are answered in order (RFC 9112 §9.3.2) instead of
        // Pingora's default of answering the first and closing.
        session.set_pipelining_enabled(true);
        let facts = match session.as_downstream_mut() {
            ServerSession::H1(h1) => {
                // The first head of a connection ran under the header timeout (see
                // `proxy::conn`); its body gets Pingora's usual per-read timeout.
                h1.set_read_timeout(Some(BODY_READ_TIMEOUT));
                Some(h1.request_head_facts())
            }
            _ => None,
        };
        let rules = CheckRules {
            allow_underscore_headers: settings.allow_underscore_headers,
            max_header_fields: crate::proxy::conn::MAX_HEAD_FIELDS,
        };
        if let Some(refusal) = checks::refusal(session.req_header(), facts, rules) {
            METRICS
                .http_rejected
                .with_label_values(&[&ctx.port_label(), refusal.reason])
                .inc();
            ctx.refused = Some(refusal);
            ctx.flag = ResponseFlag::DownstreamProtocolError;
            session.set_keepalive(None);
            return Err(Error::explain(
                ErrorType::HTTPStatus(refusal.status),
                refusal.reason,
            ));
        }
        Ok(())
    }

    /// Refusing a bad request is routine, not an error worth a log line per request.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        matches!(error.etype(), ErrorType::HTTPStatus(code) if *code < 500)
    }

    /// Decides what happens to the request (see [`decide`]): answers it here (404,
    /// redirect, 5xx without a backend) and returns `true`, or records the route, backend
    /// and endpoint in the context (and starts the mirror copy) and returns `false`.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snapshot = self.state.snapshot.load_full();
        let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.https = ssl.is_some();
        let sni = ssl
            .and_then(|d| d.extension.get::<SniName>())
            .map(|s| s.0.as_str());
        let decision = decide::decide(&snapshot, session.req_header(), sni, ctx);
        ctx.snapshot = Some(snapshot);
        let close = self.state.is_draining();
        match decision {
            Decision::Proxy => {
                ctx.mirror = decide::start_mirror(session.req_header(), ctx);
                Ok(false)
            }
            Decision::Local(answer) => {
                ctx.local = Some(answer);
                ctx.flag = answer.flag;
                if answer.flag == ResponseFlag::NoRoute {
                    METRICS
                        .http_rejected
                        .with_label_values(&[&ctx.port_label(), "no_route"])
                        .inc();
                }
                let response = LocalResponse {
                    body: answer.body.as_bytes(),
                    // Envoy sends HSTS with every answer of an HTTPS listener but its 404.
                    https: ctx.https && answer.status != 404,
                    close,
                    ..LocalResponse::status(answer.status)
                };
                local::write(session, response).await?;
                Ok(true)
            }
            Decision::Redirect { location, status } => {
                ctx.local = Some(Local {
                    status,
                    body: "",
                    flag: ResponseFlag::None,
                });
                let response = LocalResponse {
                    location: Some(&location),
                    https: ctx.https,
                    close,
                    ..LocalResponse::status(status)
                };
                local::write(session, response).await?;
                Ok(true)
            }
        }
    }

    /// Offers each chunk of the request body to the mirror copy, if one runs.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(mirror) = ctx.mirror.as_mut() {
            mirror.offer(body.as_ref(), end_of_stream);
        }
        Ok(())
    }

    /// The endpoint `request_filter` chose (the next one in turn after a failed connect),
    /// with the route's timeouts: connect, and per read the tighter of the request and
    /// stream-idle timeouts (Pingora times each upstream read).
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let timeouts = ctx
            .entry()
            .and_then(|e| e.action.forward())
            .map(|f| f.timeouts)
            .unwrap_or_default();
        let upstream = ctx
            .routed
            .as_mut()
            .and_then(|r| r.upstream.as_mut())
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(500), "no backend chosen"))?;
        if upstream.connect_attempts > 0 {
            // A retry after a failed connect: move on to the next endpoint.
            if let Some(next) = upstream.backend.next_endpoint_index() {
                upstream.endpoint = next;
            }
        }
        let endpoint = upstream
            .backend
            .endpoints
            .get(upstream.endpoint)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"))?;
        let mut peer = endpoint.peer.clone();
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = timeouts.read_timeout().0;
        peer.options.write_timeout = timeouts.stream_idle;
        Ok(Box::new(peer))
    }

    /// A failed connect is retried on the next endpoint, up to Kuma's five attempts: nothing
    /// was sent, so any method may be retried.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.flag = ResponseFlag::UpstreamConnectionFailure;
        if let Some(upstream) = ctx.routed.as_mut().and_then(|r| r.upstream.as_mut()) {
            upstream.connect_attempts += 1;
            METRICS
                .upstream_connect_failures
                .with_label_values(&[&upstream.backend.key])
                .inc();
            let endpoints = upstream.backend.endpoints.len();
            if upstream.connect_attempts < MAX_CONNECT_ATTEMPTS.min(endpoints.max(2)) {
                e.set_retry(true);
            }
        }
        e
    }

    /// Applies the entry's request filters (path rewrite, header modifiers, host rewrite)
    /// and Kuma's own headers to the request sent upstream (see [`edit`]).
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        edit::upstream_request(upstream, ctx, client)
    }

    /// Applies the entry's response header modifiers and the headers every gateway
    /// response carries; while draining, asks the client to close.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let draining = self.state.is_draining();
        if draining && resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
            session.set_keepalive(None);
        }
        edit::response(resp, ctx, draining)
    }

    /// Answers a request that could not be proxied as Envoy would (503 after connect
    /// failures, 504 after an upstream timeout, the refusal's status for a refused request),
    /// unless a response has already started; the connection is not reused.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let (status, flag) = outcome::failure(e);
        if ctx.refused.is_none() && flag != ResponseFlag::None {
            ctx.flag = flag;
        }
        if flag == ResponseFlag::UpstreamRequestTimeout {
            if let Some(u) = ctx.upstream() {
                METRICS
                    .upstream_timeouts
                    .with_label_values(&[&u.backend.key])
                    .inc();
            }
        }
        if status == Some(400) && ctx.refused.is_none() {
            METRICS
                .http_rejected
                .with_label_values(&[&ctx.port_label(), "bad_request"])
                .inc();
        }
        let code = status.unwrap_or(0);
        if code > 0 && session.response_written().is_none() {
            let body = match code {
                503 => UPSTREAM_RESET_BODY,
                504 => ctx
                    .entry()
                    .and_then(|e| e.action.forward())
                    .map(|f| f.timeouts.read_timeout().1)
                    .unwrap_or("stream timeout"),
                _ => "",
            };
            ctx.local = Some(Local {
                status: code,
                body,
                flag: ctx.flag,
            });
            let response = LocalResponse {
                body: body.as_bytes(),
                https: ctx.https,
                close: true,
                ..LocalResponse::status(code)
            };
            let _ = local::write(session, response).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Records the request in the metrics and the access log.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local.map(|l| l.status))
            .unwrap_or(0);
        let elapsed = ctx.started.elapsed();
        if let Some(snap) = &ctx.snapshot {
            let port_label;
            let listener = match &ctx.listener {
                Some(l) => l.label.as_str(),
                None => {
                    port_label = ctx.port_label();
                    port_label.as_str()
                }
            };
            let route = ctx.entry().map(|e| &*e.route_name).unwrap_or("");
            let upstream = ctx
                .upstream()
                .filter(|_| ctx.local.is_none() && session.response_written().is_some())
                .map(|u| u.backend.key.as_str());
            crate::admin::metrics::observe_request(
                snap.generation,
                listener,
                route,
                upstream,
                status,
                elapsed.as_secs_f64(),
            );
        }
        if access_log::enabled() {
            log_access(session, ctx, status, elapsed);
        }
    }
}

fn log_access(session: &Session, ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let req = session.req_header();
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let upstream = ctx
        .upstream()
        .and_then(|u| u.backend.endpoints.get(u.endpoint))
        .map(|e| e.addr.to_string())
        .unwrap_or_default();
    let (mesh, source) = ctx
        .snapshot
        .as_ref()
        .map(|s| (s.gateway.mesh.as_str(), s.gateway.service.as_str()))
        .unwrap_or(("", ""));
    let protocol = format!("{:?}", req.version);
    access_log::http(&access_log::HttpRecord {
        mesh,
        method: req.method.as_str(),
        path: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        protocol: &protocol,
        status,
        flags: ctx.flag.as_str(),
        bytes_received: session.body_bytes_read(),
        bytes_sent: session.body_bytes_sent(),
        duration_ms: elapsed.as_millis(),
        forwarded_for: header("x-forwarded-for"),
        user_agent: header("user-agent"),
        trace_id: header("x-b3-traceid"),
        request_id: header("x-request-id"),
        authority: header("host"),
        source_service: source,
        destination_service: ctx
            .upstream()
            .map(|u| u.backend.service.as_str())
            .unwrap_or(""),
        source_address: &client,
        upstream_host: &upstream,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_heads_are_counted_by_reason() {
        let too_large = Error::new(REQUEST_HEAD_TOO_LARGE);
        assert_eq!(
            head_error_answer(&too_large),
            Some(("header_too_large", Some(431)))
        );
        let slow = Error::new(REQUEST_HEAD_TIMEOUT);
        assert_eq!(
            head_error_answer(&slow),
            Some(("header_timeout", Some(408)))
        );
        let malformed = Error::because(
            ErrorType::InvalidHTTPHeader,
            "buf",
            httparse::Error::Version,
        );
        assert_eq!(
            head_error_answer(&malformed),
            Some(("bad_version", Some(400)))
        );
        assert_eq!(
            head_error_answer(&Error::new(ErrorType::ConnectionClosed)),
            None,
            "a client leaving mid-head is not refused"
        );
    }
}
