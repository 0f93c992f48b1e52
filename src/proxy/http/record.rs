//! What a finished request leaves behind: its metrics and its access log line.

use super::RequestCtx;
use crate::admin::access_log;
use crate::admin::metrics::METRICS;
use pingora::proxy::Session;
use std::time::Duration;

/// Records a finished request in the metrics and, when enabled, the access log.
pub fn request(session: &Session, ctx: &RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.local.map(|l| l.status))
        .unwrap_or(0);
    if ctx.attempt.retries() > 0 {
        let outcome = if status > 0 && status < 500 {
            "success"
        } else {
            "failure"
        };
        METRICS
            .retried_requests
            .with_label_values(&[ctx.route_label(), outcome])
            .inc();
    }
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
