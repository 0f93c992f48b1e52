//! The routing decision for one request: normalise the path, look the request up in the
//! snapshot ([`Snapshot::route`]), and turn the matched entry's action into an answer or a
//! backend and endpoint.

use super::normalize::{normalize, Normalized};
use super::outcome::Local;
use super::{RequestCtx, Routed, Upstream};
use crate::proxy::mirror::{self, MirrorBody};
use crate::snapshot::action::{Action, Redirect};
use crate::snapshot::backends::{BackendState, Choice};
use crate::snapshot::balancer::{request_hash, HashInput};
use crate::snapshot::hostname::normalize_host;
use crate::snapshot::matchers::RequestView;
use crate::snapshot::route_table::RouteEntry;
use crate::snapshot::{Protocol, Route, Snapshot};
use pingora::http::RequestHeader;

pub enum Decision {
    /// Forward to the backend and endpoint recorded in the context.
    Proxy,
    /// Answer locally.
    Local(Local),
    Redirect {
        location: String,
        status: u16,
    },
}

/// Decides what happens to `req` on `snap`, recording the route in `ctx` (whose `port` and,
/// for HTTPS, `https` are set). `sni` is the TLS server name of an HTTPS connection.
pub fn decide(
    snap: &Snapshot,
    req: &RequestHeader,
    sni: Option<&str>,
    ctx: &mut RequestCtx,
) -> Decision {
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
    ctx.host = normalize_host(raw_host).into_owned();
    let path = match normalize(req.uri.path()) {
        Normalized::Path(p) => p,
        Normalized::Redirect(to) => {
            let location = match req.uri.query() {
                Some(q) => format!("{to}?{q}"),
                None => to,
            };
            return Decision::Redirect {
                location,
                status: 307,
            };
        }
        Normalized::Invalid => return Decision::Local(Local::BAD_PATH),
    };
    let view = RequestView {
        method: &req.method,
        path: &path,
        query: req.uri.query(),
        headers: &req.headers,
    };
    let (vhost, entry_ref) = match snap.route(ctx.port, sni, &ctx.host, &view) {
        Route::NoListener => return Decision::Local(Local::NO_ROUTE),
        Route::NoRoute { listener } => {
            ctx.listener = listener.cloned();
            return Decision::Local(Local::NO_ROUTE);
        }
        Route::Entry {
            listener,
            vhost,
            entry,
        } => {
            ctx.listener = Some(listener.clone());
            (vhost.clone(), entry)
        }
    };
    if path.as_ref() != req.uri.path() {
        ctx.path = Some(path.into_owned());
    }
    let routed = ctx.routed.insert(Routed {
        vhost,
        entry: entry_ref,
        upstream: None,
    });
    let Some(entry) = routed.vhost.entry(entry_ref) else {
        return Decision::Local(Local::NO_ROUTE);
    };
    match entry.action.as_ref() {
        Action::Redirect(r) => {
            let listener = &routed.vhost.listener;
            let scheme = if listener.protocol == Protocol::Https {
                "https"
            } else {
                "http"
            };
            let path = ctx.path.as_deref().unwrap_or(req.uri.path());
            let location = redirect_location(r, entry, scheme, &ctx.host, listener.port, path);
            Decision::Redirect {
                location,
                status: r.status,
            }
        }
        Action::Forward(f) => {
            let Some(backend) = f.backends.pick() else {
                return Decision::Local(Local::UNRESOLVED_BACKEND);
            };
            match &backend.state {
                BackendState::Unresolved(_) => Decision::Local(Local::UNRESOLVED_BACKEND),
                BackendState::NoEndpoints => Decision::Local(Local::NO_HEALTHY_UPSTREAM),
                BackendState::Ready => {
                    let policies = &backend.cluster.lb.hash_policies;
                    let hash = if policies.is_empty() {
                        None
                    } else {
                        let input = HashInput {
                            headers: &req.headers,
                            query: req.uri.query(),
                            client: ctx.client,
                        };
                        let (hash, cookie) = request_hash(policies, &input);
                        ctx.set_cookie = cookie.map(|c| c.0);
                        hash
                    };
                    if backend.cluster.health.is_some() {
                        backend.runtime.note_traffic();
                    }
                    match backend.choose(hash) {
                        Choice::Endpoint(endpoint) => {
                            routed.upstream = Some(Upstream {
                                backend: backend.clone(),
                                endpoint,
                                hash,
                            });
                            Decision::Proxy
                        }
                        Choice::NoneHealthy => Decision::Local(Local::NO_HEALTHY_UPSTREAM),
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

/// Starts the entry's RequestMirror copy, when it has one and this request is sampled.
pub fn start_mirror(req: &RequestHeader, ctx: &RequestCtx) -> Option<MirrorBody> {
    let m = ctx.entry()?.action.forward()?.mirror.as_ref()?;
    if m.fraction < 1.0 && fastrand::f64() >= m.fraction {
        return None;
    }
    Some(mirror::start(m.backend.clone(), req))
}
