//! `ProxyHttp` for HTTP and HTTPS listeners (semantics Appendix C, "per HTTP request").
//!
//! The hooks, in the order Pingora calls them for a proxied request:
//! `early_request_filter` (refuse what Kuma refuses; the port's listener timeouts) →
//! `request_filter` (decide: route, backend, endpoint, or a local answer; then the rate limit
//! and fault injection, [`admission`]) → `upstream_peer` (an attempt: the endpoint and its
//! time limits, [`attempt`]) → `upstream_request_filter` (filters and Kuma's headers) →
//! `request_body_filter` (mirror copy, time limits) → `upstream_response_filter` (a
//! retriable status is retried) → `response_filter` (filters, `server`, HSTS, draining) →
//! `logging`. `fail_to_connect` and `error_while_proxy` decide retries of failed attempts;
//! `fail_to_proxy` turns the final failure into Envoy's answer (both in [`failure`]).
//! Deciding happens once, in `request_filter`, on one snapshot held for the whole request;
//! the later hooks only apply the decision recorded in [`RequestCtx`].

pub(crate) mod admission;
pub(crate) mod attempt;
pub(crate) mod checks;
mod compress;
mod ctx;
pub(crate) mod decide;
pub(crate) mod edit;
mod failure;
pub mod forwarded;
pub mod local;
pub mod normalize;
pub mod outcome;
pub mod plain_header;
mod propagation;
mod record;
mod slots;
mod trace;
mod upstream_health;

use crate::admin::metrics::METRICS;
use crate::proxy::tls::SniName;
use crate::runtime::state::GatewayState;
use crate::snapshot::outlier::Outcome;
use async_trait::async_trait;
use attempt::RETRY_RESPONSE;
use bytes::Bytes;
use checks::CheckRules;
pub use ctx::{RequestCtx, Routed, Upstream};
use decide::Decision;
use local::LocalResponse;
use outcome::{Local, ResponseFlag, REQUEST_TIMEOUT};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct HttpGateway {
    pub state: Arc<GatewayState>,
}

fn local_port(session: &ServerSession) -> u16 {
    session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map_or(0, |a| a.port())
}

#[async_trait]
impl ProxyHttp for HttpGateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a disabled response-compression module
    /// that still costs an allocation and filter calls per request. Responses are gzipped as
    /// Kuma's gateway gzips them by [`compress`] instead (Pingora's encoder does not flush
    /// per chunk, which would hold streamed responses back).
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
        let (reason, status) = outcome::head_error_answer(e)?;
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

    /// Runs when an HTTP/2 connection ended with an error: counts the ones `h2` cut off
    /// with a GOAWAY of its own (rapid reset and CONTINUATION floods are
    /// `ENHANCE_YOUR_CALM`, a header block past [`crate::proxy::h2::HEADER_BLOCK_CUTOFF`] is
    /// `ENHANCE_YOUR_CALM` when it came in too many CONTINUATION frames, else
    /// `COMPRESSION_ERROR`). A client that goes away is not counted.
    fn h2_connection_error(&self, e: &Error) {
        let cut = e
            .root_cause()
            .downcast_ref::<h2::Error>()
            .filter(|h2| h2.is_go_away() && h2.is_library())
            .and_then(h2::Error::reason);
        if let Some(reason) = cut {
            METRICS
                .http2_connections_cut
                .with_label_values(&[&format!("{reason:?}")])
                .inc();
        }
    }

    /// Runs first for every parsed request: takes the snapshot the request will see, refuses
    /// what Kuma's gateway refuses and Pingora accepts ([`checks`]), and applies the port's
    /// listener timeouts (keep-alive wait, request body silence). A refusal becomes an error
    /// answered by `fail_to_proxy` with its status and `Connection: close`.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        ctx.port = local_port(session.as_downstream());
        let snapshot = self.state.snapshot.load_full();
        ctx.port_policy = snapshot.port(ctx.port).map(|p| p.policy.clone());
        ctx.snapshot = Some(snapshot);
        let listener = ctx.port_policy.as_ref().map(|p| p.listener);
        // Pingora's keep-alive is in seconds, 0 meaning no limit (MeshTimeout `idleTimeout: 0s`).
        let idle = listener
            .and_then(|l| l.idle)
            .map_or(0, |d| d.as_secs().max(1));
        session.set_keepalive(Some(idle));
        // Pipelined HTTP/1.1 requests are answered in order (RFC 9112 §9.3.2) instead of
        // Pingora's default of answering the first and closing.
        session.set_pipelining_enabled(true);
        // A client that stops reading (a zero HTTP/2 window, a full TCP buffer) stalls the
        // response; Kuma's stream idle timeout ends such a stream, so a write waits no longer.
        session
            .as_downstream_mut()
            .set_write_timeout(listener.and_then(|l| l.stream_idle));
        let facts = match session.as_downstream_mut() {
            ServerSession::H1(h1) => {
                // The first head of a connection ran under the header timeout (see
                // `proxy::conn`); the body's reads get the listener's stream idle timeout.
                h1.set_read_timeout(listener.and_then(|l| l.stream_idle));
                Some(h1.request_head_facts())
            }
            _ => None,
        };
        let rules = CheckRules {
            allow_underscore_headers: self.state.settings.allow_underscore_headers,
            max_header_fields: crate::proxy::conn::MAX_HEAD_FIELDS,
            max_header_bytes: crate::proxy::conn::MAX_HEAD_BYTES,
            reject_http10: self.state.settings.reject_http10,
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
    /// redirect, 5xx without a backend, a rate limit, an injected abort) and returns `true`,
    /// or records the route, backend and endpoint in the context (and starts the mirror
    /// copy) and returns `false`.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snapshot = match &ctx.snapshot {
            Some(s) => s.clone(),
            None => self.state.snapshot.load_full(),
        };
        let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.https = ssl.is_some();
        let sni = ssl
            .and_then(|d| d.extension.get::<SniName>())
            .map(|s| s.0.as_str());
        ctx.client = session.client_addr().and_then(|a| a.as_inet()).copied();
        let decision = decide::decide(&snapshot, session.req_header(), sni, ctx);
        ctx.snapshot = Some(snapshot);
        if let Some(tracing) = ctx.port_policy.as_ref().and_then(|p| p.tracing.as_ref()) {
            ctx.span = trace::begin(tracing, session.req_header(), ctx).map(Box::new);
        }
        let close = self.state.is_draining();
        let answer = match decision {
            Decision::Proxy => match admission::admit_routed(session, ctx).await {
                None if upstream_health::take_request(ctx).is_err() => Local::OVERFLOW,
                None => {
                    ctx.mirror = decide::start_mirror(session.req_header(), ctx);
                    return Ok(false);
                }
                Some(answer) => answer,
            },
            Decision::Local(answer) => {
                if answer.flag == ResponseFlag::NoRoute {
                    METRICS
                        .http_rejected
                        .with_label_values(&[&ctx.port_label(), "no_route"])
                        .inc();
                }
                answer
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
                return Ok(true);
            }
        };
        ctx.local = Some(answer);
        ctx.flag = answer.flag;
        let limit = (answer.flag == ResponseFlag::RateLimited)
            .then(|| ctx.forward().and_then(|f| f.rate_limit.clone()))
            .flatten();
        let set = match (&limit, answer.flag) {
            (Some(l), _) => &l.set[..],
            (None, ResponseFlag::UpstreamOverflow) => outcome::overloaded_header(),
            (None, _) => &[],
        };
        let response = LocalResponse {
            body: answer.body.as_bytes(),
            // Envoy sends HSTS with every answer of an HTTPS listener but its 404.
            https: ctx.https && answer.status != 404,
            close,
            set,
            add: limit.as_ref().map_or(&[], |l| &l.add),
            ..LocalResponse::status(answer.status)
        };
        local::write(session, response).await?;
        Ok(true)
    }

    /// Offers each chunk of the request body to the mirror copy (first attempt only: a retry
    /// replays the body), keeps the attempt's time limits current, and enforces the
    /// listener's `requestTimeout`.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if ctx.attempt.started <= 1 {
            if let Some(mirror) = ctx.mirror.as_mut() {
                mirror.offer(body.as_ref(), end_of_stream);
            }
        }
        if end_of_stream && body.as_ref().is_none_or(Bytes::is_empty) && session.is_body_empty() {
            // A request without a body: its attempt began complete (`upstream_peer`).
            return Ok(());
        }
        let now = Instant::now();
        let request_timeout = ctx.port_policy.as_ref().and_then(|p| p.listener.request);
        if let Some(limit) = request_timeout.filter(|_| !session.was_upgraded()) {
            if !end_of_stream && now.duration_since(ctx.started) > limit {
                return Err(Error::explain(REQUEST_TIMEOUT, "request timeout"));
            }
        }
        if end_of_stream {
            ctx.attempt.request_complete(now);
        } else {
            ctx.attempt.activity(now);
        }
        Ok(())
    }

    /// Starts an attempt: the endpoint (on a retry, after the back-off, the next one in
    /// turn, or one not tried yet with `OmitPreviousHosts`) and its limits: connect timeout
    /// (the cluster's), write timeout (the route's stream idle timeout), and the deadline
    /// every response read runs under ([`attempt`]).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let retry = ctx.retry_policy();
        let routed = ctx
            .routed
            .as_mut()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(500), "no route"))?;
        let Routed {
            vhost,
            entry,
            upstream,
        } = routed;
        let forward = vhost
            .entry(*entry)
            .and_then(|e| e.action.forward())
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(500), "no backend chosen"))?;
        let upstream = upstream
            .as_mut()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(500), "no backend chosen"))?;
        let backend = upstream.backend.clone();
        let omit = retry.as_ref().is_some_and(|r| r.omit_previous_hosts);
        if ctx.attempt.started > 0 {
            if let Some(wait) = ctx.attempt.take_back_off() {
                tokio::time::sleep(wait).await;
            }
            let hash = upstream.hash;
            if let Some(next) = ctx
                .attempt
                .next_endpoint(backend.endpoints.len(), omit, || {
                    match backend.choose(hash) {
                        crate::snapshot::backends::Choice::Endpoint(i) => Some(i),
                        crate::snapshot::backends::Choice::NoneHealthy => None,
                    }
                })
            {
                upstream.endpoint = next;
            }
        }
        if omit {
            ctx.attempt.went_to(upstream.endpoint);
        }
        let endpoint = backend
            .endpoints
            .get(upstream.endpoint)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"))?;
        let pending_wait = forward
            .policies
            .timeouts
            .request
            .unwrap_or(backend.cluster.connect_timeout);
        if ctx
            .slots
            .take_connection(&backend, pending_wait)
            .await
            .is_err()
        {
            upstream_health::overflow(&backend, "max_pending_requests");
            return Err(Error::explain(
                outcome::OVERFLOW,
                "connection limit reached",
            ));
        }
        if upstream_health::tracks_in_flight(&backend) {
            ctx.slots.enter(&endpoint.state);
        }
        let request_complete = session.is_body_empty() || session.is_body_done();
        let deadline = ctx.attempt.begin(
            Instant::now(),
            &forward.policies,
            retry.as_deref(),
            &backend.cluster,
            request_complete,
        );
        let mut peer = endpoint.peer.clone();
        // Silence is timed by the deadline (it restarts on traffic either way).
        peer.options.read_timeout = None;
        peer.options.write_timeout = forward.policies.timeouts.stream_idle;
        peer.options.read_deadline = Some(deadline);
        if let Some(age) = backend.cluster.max_connection_duration {
            // MeshTimeout `maxConnectionDuration`: pooled connections of an earlier period are
            // never reused (their pool key differs), so none is used past that age.
            peer.group_key = attempt::connection_period(age);
        }
        Ok(Box::new(peer))
    }

    /// A failed connect is retried as the route's MeshRetry says (under `connect-failure`,
    /// `reset`, `5xx`, `gateway-error`), or without one on the next endpoint, up to five
    /// attempts: nothing was sent, so any method may be retried.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        failure::connect_failed(session, ctx, e)
    }

    /// An attempt that failed after connecting: retried as the route's MeshRetry says when
    /// nothing reached the client yet and the request body can be replayed (Pingora keeps
    /// the first 64 KiB); a request that met a pooled connection closed under it is retried
    /// once by Pingora itself (idempotent methods only), whatever the policy.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        failure::attempt_failed(peer, session, e, ctx, client_reused)
    }

    /// A response the route's MeshRetry retries (by status, response header or gRPC status)
    /// is dropped and the request tried again, while retries are left and the body can be
    /// replayed; otherwise it goes to the client.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        if status >= 200 || status == 101 {
            upstream_health::record(ctx, Outcome::Status(status));
        }
        let now = Instant::now();
        ctx.attempt.answered(now);
        if status == 101 {
            ctx.attempt.upgraded(now);
            return Ok(());
        }
        ctx.attempt.activity(now);
        if status < 200 {
            return Ok(());
        }
        let Some(policy) = ctx.retry_policy() else {
            return Ok(());
        };
        if session.as_ref().retry_buffer_truncated() {
            return Ok(());
        }
        let req = session.req_header();
        if !policy.request_is_retriable(&req.method, &req.headers) {
            return Ok(());
        }
        if ctx
            .attempt
            .retry_response(&policy, status, &upstream_response.headers)
            && upstream_health::take_retry(ctx)
        {
            let reason = if status >= 500 {
                "status_5xx"
            } else {
                "status"
            };
            failure::count_retry(ctx, reason);
            let mut e = Error::explain(RETRY_RESPONSE, format!("retrying a {status} answer"));
            e.set_retry(true);
            return Err(e.into_up());
        }
        Ok(())
    }

    /// Response bytes keep the attempt's idle limit from firing (the last ones need not:
    /// nothing more is read).
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if !end_of_stream {
            ctx.attempt.activity(Instant::now());
        }
        Ok(None)
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
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // A tunnel now: its silence is timed by the attempt's idle limit, which traffic
            // either way resets (`attempt`), not by the client side alone.
            if let ServerSession::H1(h1) = session.as_downstream_mut() {
                h1.set_read_timeout(None);
            }
        } else if draining {
            session.set_keepalive(None);
        }
        edit::response(resp, ctx, draining)?;
        if matches!(session.as_downstream(), ServerSession::H1(_)) {
            // Envoy's codec writes its own status line: HTTP/1.1, or HTTP/1.0 to an HTTP/1.0
            // client; an HTTP/1.0 backend's version is not passed on to an HTTP/1.1 client.
            let http10 = session.req_header().version == http::Version::HTTP_10;
            resp.set_version(if http10 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
        }
        if self.state.settings.compression {
            let req = session.req_header();
            let http11 = req.version == http::Version::HTTP_11
                && matches!(session.as_downstream(), ServerSession::H1(_));
            ctx.gzip = compress::start(req, resp, http11).map(Box::new);
        }
        Ok(())
    }

    /// Compresses the response body when `response_filter` chose to, and paces it when
    /// fault injection limits its bandwidth.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(gz) = ctx.gzip.as_mut() {
            let data = body.take().unwrap_or_default();
            let out = gz.chunk(&data, end_of_stream);
            *body = (!out.is_empty() || end_of_stream).then_some(out);
        }
        Ok(match (ctx.bandwidth, body) {
            (Some(bps), Some(b)) => admission::throttle(b.len(), bps),
            _ => None,
        })
    }

    /// Answers a request that could not be proxied as Envoy would (503 after connect
    /// failures or resets, 504 with the expired limit's body, 408 for a request that did
    /// not arrive in time, the refusal's status for a refused request), unless a response
    /// has already started; the connection is not reused.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        failure::answer(session, e, ctx).await
    }

    /// A connection to the endpoint is up: outlier detection in split mode counts it as a
    /// local-origin success.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        upstream_health::record(ctx, Outcome::Connected);
        Ok(())
    }

    /// Records the request in the metrics and the access log.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        record::request(session, ctx);
    }
}
