//! Failed attempts and failed requests: whether a failed connect or a failed exchange is
//! retried (`fail_to_connect`, `error_while_proxy`), and the answer Envoy would give when the
//! request cannot be proxied at all (`fail_to_proxy`).

use super::attempt::{self, RETRY_RESPONSE};
use super::local::{self, LocalResponse};
use super::outcome::{
    self, Local, ResponseFlag, OVERFLOW_BODY, REQUEST_TIMEOUT, UPSTREAM_RESET_BODY,
};
use super::{upstream_health, RequestCtx};
use crate::admin::metrics::METRICS;
use crate::snapshot::outlier::Outcome;
use crate::snapshot::retry::Failure;
use pingora::proxy::{FailToProxy, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, RetryType};
use std::time::Instant;

/// Counts a retry by route and reason (`meshgate_upstream_retries_total`).
pub(super) fn count_retry(ctx: &RequestCtx, reason: &str) {
    METRICS
        .upstream_retries
        .with_label_values(&[ctx.route_label(), reason])
        .inc();
}

/// A failed connect is retried as the route's MeshRetry says (under `connect-failure`,
/// `reset`, `5xx`, `gateway-error`), or without one on the next endpoint, up to five
/// attempts: nothing was sent, so any method may be retried.
pub(super) fn connect_failed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    ctx.flag = ResponseFlag::UpstreamConnectionFailure;
    let Some(upstream) = ctx.upstream() else {
        return e;
    };
    let endpoints = upstream.backend.endpoints.len();
    METRICS
        .upstream_connect_failures
        .with_label_values(&[&upstream.backend.key])
        .inc();
    upstream_health::record(ctx, Outcome::LocalFailure);
    let retry = match ctx.retry_policy() {
        Some(policy) => {
            let req = session.req_header();
            policy.request_is_retriable(&req.method, &req.headers)
                && ctx.attempt.retry_failure(&policy, Failure::ConnectFailure)
        }
        None => ctx.attempt.retry_connect_by_default(endpoints),
    } && upstream_health::take_retry(ctx);
    if retry {
        count_retry(ctx, "connect_failure");
        e.set_retry(true);
    }
    e
}

/// An attempt that failed after connecting: retried as the route's MeshRetry says when
/// nothing reached the client yet and the request body can be replayed (Pingora keeps
/// the first 64 KiB); a request that met a pooled connection closed under it is retried
/// once by Pingora itself (idempotent methods only), whatever the policy.
pub(super) fn attempt_failed(
    peer: &HttpPeer,
    session: &mut Session,
    e: Box<Error>,
    ctx: &mut RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    if *e.etype() == RETRY_RESPONSE {
        return e; // decided in upstream_response_filter
    }
    let now = Instant::now();
    if e.esource() == &pingora::ErrorSource::Upstream {
        upstream_health::record(ctx, Outcome::LocalFailure);
    }
    if *e.etype() == ErrorType::ReadTimedout && e.esource() == &pingora::ErrorSource::Upstream {
        ctx.attempt.expired = Some(ctx.attempt.expiry_at(now));
    }
    let pooled = matches!(e.retry, RetryType::ReusedOnly);
    e.set_retry(false);
    let replayable =
        session.response_written().is_none() && !session.as_ref().retry_buffer_truncated();
    if !replayable {
        return e;
    }
    if pooled && client_reused && session.req_header().method.is_idempotent() {
        ctx.attempt.pooled_connection_retry();
        e.set_retry(true);
        return e;
    }
    let Some(policy) = ctx.retry_policy() else {
        return e;
    };
    let Some(failure) = attempt::classify(&e, &ctx.attempt, now) else {
        return e;
    };
    let req = session.req_header();
    if policy.request_is_retriable(&req.method, &req.headers)
        && ctx.attempt.retry_failure(&policy, failure)
        && upstream_health::take_retry(ctx)
    {
        ctx.attempt.expired = None;
        let reason = match failure {
            Failure::ConnectFailure => "connect_failure",
            Failure::Reset => "reset",
            Failure::RefusedStream => "refused_stream",
            Failure::PerTryTimeout => "per_try_timeout",
        };
        count_retry(ctx, reason);
        e.set_retry(true);
    }
    e
}

/// Answers a request that could not be proxied as Envoy would (503 after connect
/// failures or resets, 504 with the expired limit's body, 408 for a request that did
/// not arrive in time, the refusal's status for a refused request), unless a response
/// has already started; the connection is not reused.
pub(super) async fn answer(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let (status, mut flag) = outcome::failure(e);
    if status == Some(504) {
        flag = match ctx.attempt.expired {
            Some(attempt::Expiry::Idle) => ResponseFlag::StreamIdleTimeout,
            Some(attempt::Expiry::MaxStream) => ResponseFlag::MaxStreamDurationReached,
            _ => flag,
        };
    }
    if ctx.attempt.retries() > 0 && status.is_some_and(|s| s >= 500) {
        flag = ResponseFlag::RetryLimitExceeded;
    }
    if ctx.refused.is_none() && flag != ResponseFlag::None {
        ctx.flag = flag;
    }
    if status == Some(504) {
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
            503 if flag == ResponseFlag::UpstreamOverflow => OVERFLOW_BODY,
            503 => UPSTREAM_RESET_BODY,
            504 => ctx
                .attempt
                .expired
                .map_or("upstream request timeout", attempt::Expiry::body),
            408 if *e.etype() == REQUEST_TIMEOUT => "request timeout",
            408 if flag == ResponseFlag::StreamIdleTimeout => "stream timeout",
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
            set: if flag == ResponseFlag::UpstreamOverflow {
                outcome::overloaded_header()
            } else {
                &[]
            },
            ..LocalResponse::status(code)
        };
        let _ = local::write(session, response).await;
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}
