//! MeshTrace on the request path (spec §12.1): one SERVER span per sampled request,
//! continuing an incoming W3C `traceparent`, with the route, backend, endpoint, status and
//! retries as attributes and the policy's tags; the request to the backend carries a
//! `traceparent` naming the gateway's span. Spans go to the port's exporter
//! (`runtime::tracing`), which batches them off the request path.

use super::ctx::RequestCtx;
use crate::model::policy::trace::TagValue;
use crate::snapshot::tracing::Tracing;
use http::HeaderValue;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use pingora::http::RequestHeader;
use std::time::SystemTime;

/// The span of a request being traced.
pub struct ActiveSpan {
    span: opentelemetry_sdk::trace::Span,
    /// `traceparent` for the backend: the trace, the gateway's span, sampled.
    pub traceparent: HeaderValue,
}

/// A W3C `traceparent` (version 00): trace id, parent span id, flags.
fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// Starts the request's span when the port traces and the request is sampled (Envoy: an
/// incoming sampled context with probability `client`, others with `random`, all capped by
/// `overall`).
pub fn begin(tracing: &Tracing, req: &RequestHeader, ctx: &RequestCtx) -> Option<ActiveSpan> {
    let incoming = req
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let chance = match &incoming {
        Some(c) if c.is_sampled() => tracing.client,
        _ => tracing.random,
    };
    if fastrand::f64() >= chance.min(tracing.overall) {
        return None;
    }
    let tracer = tracing.exporter.tracer()?;
    let parent = match incoming {
        Some(c) => Context::new().with_remote_span_context(c),
        None => Context::new(),
    };
    let started = SystemTime::now() - ctx.started.elapsed();
    let name = format!("{} {}", req.method, ctx.route_label());
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_start_time(started)
        .start_with_context(tracer, &parent);
    let sc = span.span_context().clone();
    let traceparent =
        HeaderValue::from_str(&format!("00-{}-{}-01", sc.trace_id(), sc.span_id())).ok()?;
    Some(ActiveSpan { span, traceparent })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let c = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(c.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(c.is_sampled());
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("00-xyz").is_none());
    }
}
