//! Trace context on the wire: which parent an incoming request names, and what the request
//! to the backend carries. W3C `traceparent` (with `tracestate`) first, as Envoy's
//! OpenTelemetry tracer reads it; without one, Zipkin's B3 (`b3` single header or the
//! `x-b3-*` headers), so clients instrumented for Zipkin still continue their traces. The
//! backend always gets a W3C `traceparent` naming the gateway's span, and B3 headers in the
//! form the request used, when it used B3.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use std::str::FromStr;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// How the incoming request carried its trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    W3c,
    B3Single,
    B3Multi,
}

/// The parent an incoming request names, and in which format.
pub fn extract(headers: &HeaderMap) -> Option<(SpanContext, Format)> {
    if let Some(c) = text(headers, &TRACEPARENT).and_then(parse_traceparent) {
        let state = text(headers, &TRACESTATE)
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default();
        let c = SpanContext::new(c.trace_id(), c.span_id(), c.trace_flags(), true, state);
        return Some((c, Format::W3c));
    }
    if let Some(c) = text(headers, &B3).and_then(parse_b3_single) {
        return Some((c, Format::B3Single));
    }
    parse_b3_multi(headers).map(|c| (c, Format::B3Multi))
}

/// The headers the backend gets for the gateway's span `own` (sampled), whose parent was
/// `parent` (when the request named one).
pub fn inject(
    own: &SpanContext,
    parent: Option<(&SpanContext, Format)>,
) -> Vec<(HeaderName, HeaderValue)> {
    let (trace, span) = (own.trace_id(), own.span_id());
    let mut out = Vec::with_capacity(4);
    let value = |s: String| HeaderValue::from_str(&s).ok();
    if let Some(v) = value(format!("00-{trace}-{span}-01")) {
        out.push((TRACEPARENT, v));
    }
    match parent {
        Some((_, Format::B3Single)) => {
            if let Some(v) = value(format!("{trace}-{span}-1")) {
                out.push((B3, v));
            }
        }
        Some((p, Format::B3Multi)) => {
            for (name, v) in [
                (B3_TRACE_ID, trace.to_string()),
                (B3_SPAN_ID, span.to_string()),
                (B3_PARENT_SPAN_ID, p.span_id().to_string()),
                (B3_SAMPLED, "1".to_string()),
            ] {
                if let Some(v) = value(v) {
                    out.push((name, v));
                }
            }
        }
        _ => {}
    }
    out
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A W3C `traceparent` (version 00 and later ones read as 00): trace id, parent span id,
/// flags.
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
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
    let flags = u8::from_str_radix(flags, 16).ok()?;
    context(trace, span, flags & 1 == 1)
}

/// `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`; a sampling-only value (`0`,
/// `1`, `d`) names no parent.
fn parse_b3_single(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (trace, span) = (parts.next()?, parts.next()?);
    let sampled = match parts.next() {
        None => true,
        Some("1" | "d") => true,
        Some("0") => false,
        Some(_) => return None,
    };
    context(trace, span, sampled)
}

/// `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled` (`1`/`true`), `X-B3-Flags: 1` (debug).
fn parse_b3_multi(headers: &HeaderMap) -> Option<SpanContext> {
    let trace = text(headers, &B3_TRACE_ID)?;
    let span = text(headers, &B3_SPAN_ID)?;
    let sampled = match text(headers, &B3_SAMPLED) {
        Some("0" | "false") => text(headers, &B3_FLAGS) == Some("1"),
        _ => true,
    };
    context(trace, span, sampled)
}

/// A remote span context from hex ids (a 64-bit B3 trace id is left-padded to 128 bits);
/// all-zero ids are invalid.
fn context(trace: &str, span: &str, sampled: bool) -> Option<SpanContext> {
    let trace = match trace.len() {
        32 => TraceId::from_hex(trace).ok()?,
        16 => TraceId::from_hex(&format!("{:0>32}", trace)).ok()?,
        _ => return None,
    };
    if trace == TraceId::INVALID || span.len() != 16 {
        return None;
    }
    let span = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        trace,
        span,
        flags,
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

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

    #[test]
    fn w3c_wins_and_keeps_its_tracestate() {
        let h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=abc"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ]);
        let (c, format) = extract(&h).expect("a parent");
        assert_eq!(format, Format::W3c);
        assert_eq!(c.trace_state().header(), "vendor=abc");
    }

    #[test]
    fn b3_single_and_multi() {
        let (c, f) = extract(&headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0",
        )]))
        .expect("single");
        assert_eq!(f, Format::B3Single);
        assert_eq!(c.trace_id().to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert!(!c.is_sampled());
        assert!(extract(&headers(&[("b3", "1")])).is_none(), "sampling only");
        let (c, f) = extract(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "1"),
        ]))
        .expect("multi");
        assert_eq!(f, Format::B3Multi);
        assert_eq!(c.trace_id().to_string(), "0000000000000000a3ce929d0e0e4736");
        assert!(c.is_sampled());
        let own = SpanContext::new(
            c.trace_id(),
            SpanId::from_hex("1111111111111111").expect("id"),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let out = inject(&own, Some((&c, f)));
        let get = |n: &str| {
            out.iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(get("x-b3-spanid").as_deref(), Some("1111111111111111"));
        assert_eq!(
            get("x-b3-parentspanid").as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(
            get("traceparent").as_deref(),
            Some("00-0000000000000000a3ce929d0e0e4736-1111111111111111-01")
        );
    }
}
