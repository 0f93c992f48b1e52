//! `ProxyHttp` for HTTP and HTTPS listeners (semantics Appendix C, "per HTTP request").
//!
//! `request_filter` does all the deciding: one `load_full()` of the snapshot, then port →
//! (SNI chain) → virtual host → route entry → action, answering locally (404, redirect, 5xx)
//! or recording the chosen backend and endpoint in the context. The later hooks only apply
//! what was decided; `logging` records metrics and the access log line.

use super::forwarded::forwarded_for;
use super::guard::Guarded;
use super::local::{self, LocalResponse, HSTS, SERVER};
use super::mirror::{self, MirrorBody};
use super::normalize::{normalize, Normalized};
use super::plain_header::{PlainRequest, PlainResponse};
use super::tls::SniName;
use crate::access_log;
use crate::metrics::METRICS;
use crate::snapshot::action::{Action, Forward, HostRewrite, Redirect, Timeouts};
use crate::snapshot::backends::{Backend, BackendState};
use crate::snapshot::hostname::normalize_host;
use crate::snapshot::matchers::RequestView;
use crate::snapshot::route_table::RouteEntry;
use crate::snapshot::{EntryRef, ListenerInfo, Protocol, Serving, Snapshot, VirtualHost};
use crate::state::GatewayState;
use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Constant names: inserting them hashes, it does not parse or copy (see plain_header).
const X_KUMA_TAGS: HeaderName = HeaderName::from_static("x-kuma-tags");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Room reserved before editing: `x-kuma-tags`, `x-forwarded-for`, `x-forwarded-proto`, plus
/// a route's own header filters (more only grow the map once).
const ADDED_REQUEST_HEADERS: usize = 4;

/// The head guard under an HTTP/1 session (`None` for HTTP/2).
fn guard_of(session: &Session) -> Option<&Guarded> {
    let stream = session.stream()?;
    (**stream).as_any().downcast_ref::<Guarded>()
}

/// Kuma's default gateway retry policy retries connect failures up to 5 times.
const MAX_CONNECT_ATTEMPTS: usize = 5;

pub struct HttpGateway {
    pub state: Arc<GatewayState>,
}

/// Per-request state. Holds the snapshot the request started with, so every hook sees one
/// consistent configuration even if a reload happens mid-request.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    /// The local port the request arrived on.
    port: Option<u16>,
    listener: Option<Arc<ListenerInfo>>,
    vhost: Option<Arc<VirtualHost>>,
    entry: Option<EntryRef>,
    backend: Option<Arc<Backend>>,
    endpoint: Option<usize>,
    connect_attempts: usize,
    https: bool,
    /// The normalised path when it differs from what the client sent.
    path: Option<String>,
    host: String,
    local_status: u16,
    flags: &'static str,
    timeout_body: &'static str,
    mirror: Option<MirrorBody>,
}

impl RequestCtx {
    fn entry(&self) -> Option<&RouteEntry> {
        self.vhost.as_ref()?.entry(self.entry?)
    }

    fn forward(&self) -> Option<&Forward> {
        match self.entry()?.action.as_ref() {
            Action::Forward(f) => Some(f),
            Action::Redirect(_) => None,
        }
    }
}

enum Decision {
    Local(u16, &'static [u8], &'static str),
    Redirect(String, u16),
    Proxy,
}

impl HttpGateway {
    fn local_port(session: &Session) -> Option<u16> {
        session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port())
    }

    /// The virtual host for this request: by port, then (HTTPS) SNI chain, then Host.
    fn find_vhost(
        &self,
        snap: &Snapshot,
        session: &Session,
        host: &str,
        ctx: &mut RequestCtx,
    ) -> Option<Arc<VirtualHost>> {
        let port = snap.port(ctx.port?)?;
        match &port.serving {
            Serving::Http { vhosts } => vhosts.lookup(host).cloned(),
            Serving::Https { chains } => {
                ctx.https = true;
                let sni = session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .and_then(|d| d.extension.get::<SniName>())
                    .map(|s| s.0.as_str())
                    .unwrap_or("");
                let chain = chains.lookup(sni)?;
                ctx.listener = Some(chain.listener.clone());
                // Both SNI and Host must match (§3.5 step 5): Host is looked up in the
                // chain's own table only.
                chain.vhosts.lookup(host).cloned()
            }
            Serving::Tcp { .. } | Serving::Tls { .. } => None,
        }
    }

    fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Decision {
        let snap = self.state.snapshot.load_full();
        ctx.snapshot = Some(snap.clone());
        ctx.port = Self::local_port(session);
        let req = session.req_header();
        let raw_host = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        let host = normalize_host(raw_host).into_owned();
        let path = match normalize(req.uri.path()) {
            Normalized::Path(p) => p,
            Normalized::Redirect(to) => {
                let to = match req.uri.query() {
                    Some(q) => format!("{to}?{q}"),
                    None => to,
                };
                ctx.host = host;
                return Decision::Redirect(to, 307);
            }
            Normalized::Invalid => return Decision::Local(400, b"bad request path\n", "DPE"),
        };
        let Some(vhost) = self.find_vhost(&snap, session, &host, ctx) else {
            ctx.host = host;
            return Decision::Local(404, b"", "NR");
        };
        if ctx.listener.is_none() {
            ctx.listener = Some(vhost.listener.clone());
        }
        let req = session.req_header();
        let view = RequestView {
            method: &req.method,
            path: &path,
            query: req.uri.query(),
            headers: &req.headers,
        };
        let found = vhost.find(&view);
        if path.as_ref() != req.uri.path() {
            ctx.path = Some(path.into_owned());
        }
        ctx.host = host;
        ctx.vhost = Some(vhost.clone());
        let Some(idx) = found else {
            return Decision::Local(404, b"", "NR");
        };
        ctx.entry = Some(idx);
        let Some(entry) = vhost.entry(idx) else {
            return Decision::Local(404, b"", "NR");
        };
        match entry.action.as_ref() {
            Action::Redirect(r) => {
                let listener_port = vhost.listener.port;
                let scheme_default = if vhost.listener.protocol == Protocol::Https {
                    "https"
                } else {
                    "http"
                };
                let path = ctx
                    .path
                    .as_deref()
                    .unwrap_or(session.req_header().uri.path());
                let location =
                    redirect_location(r, entry, scheme_default, &ctx.host, listener_port, path);
                Decision::Redirect(location, r.status)
            }
            Action::Forward(f) => {
                let Some(backend) = f.backends.pick() else {
                    return Decision::Local(500, b"no backend\n", "NC");
                };
                ctx.backend = Some(backend.clone());
                match &backend.state {
                    BackendState::Unresolved(_) => Decision::Local(500, b"", "NC"),
                    BackendState::NoEndpoints => Decision::Local(503, b"no healthy upstream", "UH"),
                    BackendState::Ready => {
                        ctx.endpoint = backend.next_endpoint_index();
                        Decision::Proxy
                    }
                }
            }
        }
    }
}

/// `Location` for a RequestRedirect (§5.2): port always explicit (the listener's unless set),
/// query stripped.
fn redirect_location(
    r: &Redirect,
    entry: &RouteEntry,
    default_scheme: &str,
    host: &str,
    listener_port: u16,
    path: &str,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(default_scheme);
    let host = r.hostname.as_deref().unwrap_or(host);
    let port = r.port.unwrap_or(listener_port);
    let path = match &entry.path_rewrite {
        Some(rw) => rw.apply(path),
        None => path.to_string(),
    };
    format!("{scheme}://{host}:{port}{path}")
}

/// Kuma's answer to an upstream that stayed silent too long: 504 with Envoy's body for the
/// limit that ran out, counted per backend.
fn upstream_timeout(ctx: &mut RequestCtx) -> u16 {
    ctx.flags = "UT";
    ctx.timeout_body = ctx
        .forward()
        .map(|f| f.timeouts.read_timeout().1)
        .unwrap_or("stream timeout");
    if let Some(b) = &ctx.backend {
        METRICS.upstream_timeouts.with_label_values(&[&b.key]).inc();
    }
    504
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one valid `Host` (HTTP/2 carries
/// `:authority` in the URI instead).
fn check_host(req: &RequestHeader) -> std::result::Result<(), &'static str> {
    if req.uri.authority().is_some() {
        return Ok(()); // h2 :authority or absolute-form; Pingora checks Host agrees
    }
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) if req.version == http::Version::HTTP_11 => return Err("missing_host"),
        (None, _) => return Ok(()),
        (Some(h), None) => h.as_bytes(),
        (Some(_), Some(_)) => return Err("duplicate_host"),
    };
    if valid_host(host) {
        Ok(())
    } else {
        Err("invalid_host")
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): a bracketed IP literal or a reg-name, then an
/// optional all-digit port.
fn valid_host(host: &[u8]) -> bool {
    let (name_ok, rest) = if let Some(inner) = host.strip_prefix(b"[") {
        match inner.iter().position(|&c| c == b']') {
            Some(end) => (
                end > 0
                    && inner[..end]
                        .iter()
                        .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
                &inner[end + 1..],
            ),
            None => return false,
        }
    } else {
        let end = host.iter().position(|&c| c == b':').unwrap_or(host.len());
        let name = &host[..end];
        (
            !name.is_empty()
                && name.iter().all(|&c| {
                    c.is_ascii_alphanumeric()
                        || matches!(
                            c,
                            b'-' | b'.'
                                | b'_'
                                | b'~'
                                | b'!'
                                | b'$'
                                | b'&'
                                | b'\''
                                | b'('
                                | b')'
                                | b'*'
                                | b'+'
                                | b','
                                | b';'
                                | b'='
                                | b'%'
                        )
                }),
            &host[end..],
        )
    };
    let port_ok = match rest.strip_prefix(b":") {
        None => rest.is_empty(),
        Some(p) => p.len() <= 5 && p.iter().all(u8::is_ascii_digit),
    };
    name_ok && port_ok
}

fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

#[async_trait]
impl ProxyHttp for HttpGateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a disabled response-compression module
    /// that still costs an allocation and filter calls per request; Kuma's gateway does not
    /// compress either.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            port: None,
            listener: None,
            vhost: None,
            entry: None,
            backend: None,
            endpoint: None,
            connect_attempts: 0,
            https: false,
            path: None,
            host: String::new(),
            local_status: 0,
            flags: "",
            timeout_body: "",
            mirror: None,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        // Kuma's idle timeout between requests (Pingora's default is 60 s). On a guarded
        // connection (every HTTP/1 one) the guard enforces it with one lazily re-armed timer;
        // Pingora's would register a timer for every request, so it is told "no timeout".
        let guard = guard_of(session);
        let idle = match guard {
            Some(_) => 0,
            None => self.state.settings.idle_timeout.as_secs(),
        };
        // A request the head guard refused behind a pipelined one (see guard::REFUSED_HEADER);
        // the guard counted it already. Looked for only once the guard has queued one.
        let refused = guard
            .filter(|g| g.stand_in_queued())
            .and_then(|_| {
                session
                    .req_header()
                    .headers
                    .get(super::guard::REFUSED_HEADER)
            })
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok());
        session.set_keepalive(Some(idle));
        // Pipelined HTTP/1.1 requests are answered in order (RFC 9112 §9.3.2) instead of
        // Pingora's default of answering the first and closing.
        session.set_pipelining_enabled(true);
        if let Some(status) = refused {
            ctx.flags = "DPE";
            session.set_keepalive(None);
            return Err(Error::explain(
                ErrorType::HTTPStatus(status),
                "refused request head",
            ));
        }
        if let Err(reason) = check_host(session.req_header()) {
            ctx.flags = "DPE";
            let label = Self::local_port(session)
                .map(|p| p.to_string())
                .unwrap_or_default();
            METRICS
                .http_rejected
                .with_label_values(&[&label, reason])
                .inc();
            return Err(Error::explain(ErrorType::HTTPStatus(400), reason));
        }
        Ok(())
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        // Refusing a bad request is routine, not an error worth a log line per request.
        matches!(error.etype(), ErrorType::HTTPStatus(code) if *code < 500)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let decision = self.decide(session, ctx);
        let close = self.state.is_draining();
        match decision {
            Decision::Proxy => {
                if let Some(f) = ctx.forward() {
                    if let Some(m) = &f.mirror {
                        if m.fraction >= 1.0 || rand::random::<f64>() < m.fraction {
                            let req = session.req_header();
                            let path_and_query =
                                req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                            let host = req
                                .headers
                                .get(http::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or(ctx.host.as_str());
                            ctx.mirror = Some(mirror::start(
                                m.backend.clone(),
                                &req.method,
                                path_and_query,
                                host,
                                &req.headers,
                                has_body(req),
                            ));
                        }
                    }
                }
                Ok(false)
            }
            Decision::Local(status, body, flags) => {
                ctx.local_status = status;
                ctx.flags = flags;
                if flags == "NR" {
                    let label = ctx.port.map(|p| p.to_string()).unwrap_or_default();
                    METRICS
                        .http_rejected
                        .with_label_values(&[&label, "no_route"])
                        .inc();
                }
                let https = ctx.https && status != 404;
                local::write(
                    session,
                    LocalResponse {
                        status,
                        body,
                        location: None,
                        https,
                        close,
                    },
                )
                .await?;
                Ok(true)
            }
            Decision::Redirect(location, status) => {
                ctx.local_status = status;
                local::write(
                    session,
                    LocalResponse {
                        status,
                        body: b"",
                        location: Some(&location),
                        https: ctx.https,
                        close,
                    },
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(m) = ctx.mirror.as_mut() {
            match body {
                Some(b) => m.offer(b, end_of_stream),
                None => m.offer(&Bytes::new(), end_of_stream),
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let backend = ctx
            .backend
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(500), "no backend chosen"))?;
        if ctx.connect_attempts > 0 {
            // A retry after a failed connect: move on to the next endpoint.
            ctx.endpoint = backend.next_endpoint_index();
        }
        let endpoint = ctx
            .endpoint
            .and_then(|i| backend.endpoints.get(i))
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "no healthy upstream"))?;
        let mut peer = endpoint.peer.clone();
        let route_timeouts = ctx.forward().map(|f| &f.timeouts);
        if let Some(t) = route_timeouts.filter(|t| **t != Default::default()) {
            peer.options.connection_timeout = Some(t.connect);
            peer.options.read_timeout = t.read_timeout().0;
            peer.options.write_timeout = t.stream_idle;
        }
        if let Some(guard) = guard_of(session) {
            // HTTP/1 (every guarded connection): the head guard bounds the upstream's silence
            // with one timer per connection; Pingora would register a timer for every
            // upstream read (~2,000 instructions, ~3 % of the request rate: BENCHMARKS.md).
            let default_timeouts = Timeouts::default();
            let timeouts = route_timeouts.unwrap_or(&default_timeouts);
            guard.watch_upstream(timeouts.read_timeout().0);
            peer.options.read_timeout = None;
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_attempts += 1;
        if let Some(b) = &ctx.backend {
            METRICS
                .upstream_connect_failures
                .with_label_values(&[&b.key])
                .inc();
            // Connect failures are safe to retry for any method: nothing was sent.
            if ctx.connect_attempts < MAX_CONNECT_ATTEMPTS.min(b.endpoints.len().max(2)) {
                e.set_retry(true);
            }
        }
        ctx.flags = "UF";
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let mut plain = PlainRequest::take(upstream, ADDED_REQUEST_HEADERS);
        let entry = ctx.entry();
        let rewrite = entry.and_then(|e| e.path_rewrite.as_ref());
        if ctx.path.is_some() || rewrite.is_some() {
            let path = ctx.path.as_deref().unwrap_or(plain.parts.uri.path());
            let path = match rewrite {
                Some(rw) => rw.apply(path),
                None => path.to_string(),
            };
            let pq = match plain.parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let uri: Uri = pq.parse().map_err(|_| {
                Error::explain(ErrorType::HTTPStatus(400), "rewritten path invalid")
            })?;
            plain.set_uri(uri);
        }
        let headers = &mut plain.parts.headers;
        // Clients must not inject mesh identity (§3.8).
        headers.remove(&X_KUMA_TAGS);
        if let Some(f) = ctx.forward() {
            for name in &f.request_headers.remove {
                headers.remove(name);
            }
            for (name, value) in &f.request_headers.set {
                headers.insert(name.clone(), value.clone());
            }
            for (name, value) in &f.request_headers.add {
                headers.append(name.clone(), value.clone());
            }
            let host = match &f.host_rewrite {
                Some(HostRewrite::Literal(h)) => Some(h),
                Some(HostRewrite::BackendHostname) => ctx
                    .backend
                    .as_ref()
                    .zip(ctx.endpoint)
                    .and_then(|(b, i)| b.endpoints.get(i))
                    .and_then(|e| e.host_header.as_ref()),
                None => None,
            };
            if let Some(h) = host {
                headers.insert(http::header::HOST, h.clone());
            }
        }
        if let (Some(b), Some(snap)) = (&ctx.backend, &ctx.snapshot) {
            if !b.external {
                headers.insert(X_KUMA_TAGS, snap.gateway.kuma_tags.clone());
            }
        }
        // Envoy with use_remote_address: append the client to x-forwarded-for.
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let previous = headers.get(&X_FORWARDED_FOR).map(|v| v.as_bytes());
            if let Ok(xff) = forwarded_for(previous, client.ip()) {
                headers.insert(X_FORWARDED_FOR, xff);
            }
        }
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if ctx.https { "https" } else { "http" }),
        );
        plain.put_back(upstream)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let mut plain = PlainResponse::take(resp);
        let headers = &mut plain.parts.headers;
        if let Some(f) = ctx.forward() {
            let mods = &f.response_headers;
            for name in &mods.remove {
                headers.remove(name);
            }
            for (name, value) in &mods.set {
                headers.insert(name.clone(), value.clone());
            }
            for (name, value) in &mods.add {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(http::header::SERVER, HeaderValue::from_static(SERVER));
        if ctx.https {
            headers.insert(
                http::header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
        if self.state.is_draining() && plain.parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
            session.set_keepalive(None);
            plain
                .parts
                .headers
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        plain.put_back(resp)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::ConnectProxyFailure
            | ErrorType::TLSHandshakeFailure => {
                ctx.flags = "UF";
                503
            }
            // Pingora's read/write timeouts, or the head guard's bound on an HTTP/1 request
            // (a read error on the client side to Pingora; see `upstream_peer`).
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => upstream_timeout(ctx),
            _ if guard_of(session).is_some_and(Guarded::upstream_timed_out) => {
                upstream_timeout(ctx)
            }
            _ => match e.esource() {
                ErrorSource::Upstream => {
                    ctx.flags = "UC";
                    503
                }
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        ctx.flags = "DC";
                        0
                    }
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // Refusals from early_request_filter ("DPE") were counted with their reason already.
        if code == 400 && ctx.flags != "DPE" {
            let label = Self::local_port(session)
                .map(|p| p.to_string())
                .unwrap_or_default();
            METRICS
                .http_rejected
                .with_label_values(&[&label, "bad_request"])
                .inc();
        }
        if code > 0 && session.response_written().is_none() {
            ctx.local_status = code;
            let body: &[u8] = match code {
                503 => b"upstream connect error or disconnect/reset before headers",
                504 => ctx.timeout_body.as_bytes(),
                _ => b"",
            };
            let _ = local::write(
                session,
                LocalResponse {
                    status: code,
                    body,
                    location: None,
                    https: ctx.https,
                    close: true,
                },
            )
            .await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(guard) = guard_of(session) {
            guard.request_finished();
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.local_status);
        let elapsed = ctx.started.elapsed();
        if let Some(snap) = &ctx.snapshot {
            let listener = match &ctx.listener {
                Some(l) => l.label.as_str(),
                None => ctx
                    .port
                    .and_then(|p| snap.port(p))
                    .map(|p| p.label.as_str())
                    .unwrap_or(""),
            };
            let route = ctx.entry().map(|e| &*e.route_name).unwrap_or("");
            let upstream = ctx
                .backend
                .as_ref()
                .filter(|_| ctx.local_status == 0 && session.response_written().is_some())
                .map(|b| b.key.as_str());
            crate::metrics::observe_request(
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
        .backend
        .as_ref()
        .zip(ctx.endpoint)
        .and_then(|(b, i)| b.endpoints.get(i))
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
        flags: ctx.flags,
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
            .backend
            .as_ref()
            .map(|b| b.service.as_str())
            .unwrap_or(""),
        source_address: &client,
        upstream_host: &upstream,
    });
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn host_syntax() {
        for ok in [
            "a.test",
            "a.test:8080",
            "[::1]",
            "[::1]:80",
            "127.0.0.1:1",
            "x_y",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "example.com:abc",
            "[::1",
            "a b",
            "a/b",
            "a@b",
            ":80",
            "a:123456",
            "",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
