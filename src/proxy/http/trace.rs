//! MeshTrace on the request path (spec §12.1): one SERVER span per sampled request,
//! continuing an incoming trace context (W3C, or B3: `propagation`), with the route,
//! backend, endpoint, status and retries as attributes and the policy's tags; the request to
//! the backend carries a `traceparent` naming the gateway's span (and B3 headers when the
//! request used B3). Spans go to the port's exporter
//! (`runtime::tracing`), which batches them off the request path.

use super::ctx::RequestCtx;
use super::propagation;
use crate::model::policy::trace::TagValue;
use crate::snapshot::tracing::Tracing;
use http::{HeaderName, HeaderValue};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use pingora::http::RequestHeader;
use std::time::SystemTime;

/// The span of a request being traced.
pub struct ActiveSpan {
    span: opentelemetry_sdk::trace::Span,
    /// Trace headers for the backend: `traceparent` naming the gateway's span, and B3 when
    /// the request came with B3 (`propagation`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Starts the request's span when the port traces and the request is sampled (Envoy: an
/// incoming sampled context with probability `client`, others with `random`, all capped by
/// `overall`).
pub fn begin(tracing: &Tracing, req: &RequestHeader, ctx: &RequestCtx) -> Option<ActiveSpan> {
    let incoming = propagation::extract(&req.headers);
    let chance = match &incoming {
        Some((c, _)) if c.is_sampled() => tracing.client,
        _ => tracing.random,
    };
    if fastrand::f64() >= chance.min(tracing.overall) {
        return None;
    }
    let tracer = tracing.exporter.tracer()?;
    let parent = match &incoming {
        Some((c, _)) => Context::new().with_remote_span_context(c.clone()),
        None => Context::new(),
    };
    let started = SystemTime::now() - ctx.started.elapsed();
    let name = format!("{} {}", req.method, ctx.route_label());
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_start_time(started)
        .start_with_context(tracer, &parent);
    let headers = propagation::inject(span.span_context(), incoming.as_ref().map(|(c, f)| (c, *f)));
    Some(ActiveSpan { span, headers })
}

/// Ends the span with what happened to the request.
pub fn end(
    mut active: ActiveSpan,
    tracing: &Tracing,
    req: &RequestHeader,
    ctx: &RequestCtx,
    status: u16,
) {
    let span = &mut active.span;
    span.set_attribute(KeyValue::new("http.request.method", req.method.to_string()));
    span.set_attribute(KeyValue::new("url.path", req.uri.path().to_string()));
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    span.set_attribute(KeyValue::new("http.route", ctx.route_label().to_string()));
    if let Some(snap) = &ctx.snapshot {
        span.set_attribute(KeyValue::new("kuma.mesh", snap.gateway.mesh.clone()));
    }
    if let Some(u) = ctx.upstream() {
        span.set_attribute(KeyValue::new("upstream.cluster", u.backend.key.clone()));
        if let Some(e) = u.backend.endpoints.get(u.endpoint) {
            span.set_attribute(KeyValue::new("upstream.address", e.addr.to_string()));
        }
    }
    span.set_attribute(KeyValue::new("response_flags", ctx.flag.as_str()));
    span.set_attribute(KeyValue::new("retries", i64::from(ctx.attempt.retries())));
    for tag in &tracing.tags {
        let value = match &tag.value {
            TagValue::Literal(v) => Some(v.clone()),
            TagValue::Header { name, default } => req
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| default.clone()),
        };
        if let Some(v) = value {
            span.set_attribute(KeyValue::new(tag.name.clone(), v));
        }
    }
    if status >= 500 || status == 0 {
        span.set_status(opentelemetry::trace::Status::error(format!(
            "status {status}"
        )));
    }
    span.end();
}
