//! What the request path tells the circuit breaker and outlier detection (spec §7): every
//! attempt's outcome is recorded on its endpoint's run-time state, an ejection is counted
//! and logged, and the request's circuit-breaker slots are taken through [`super::slots`].
//! All of it is skipped for destinations without a MeshCircuitBreaker, a MeshHealthCheck or
//! a least-request balancer: their requests pay one branch.

use super::ctx::RequestCtx;
use super::slots::Overflow;
use crate::admin::metrics::METRICS;
use crate::snapshot::backends::Backend;
use crate::snapshot::cluster::LbKind;
use crate::snapshot::outlier::Outcome;

/// Does this destination count requests per endpoint (least request, limits, `/config` of
/// guarded endpoints)?
pub fn tracks_in_flight(backend: &Backend) -> bool {
    matches!(backend.cluster.lb.kind, LbKind::LeastRequest { .. })
        || backend.cluster.limits.is_some()
        || backend.cluster.guards_endpoints()
}

/// Records the outcome of the current attempt for outlier detection.
pub fn record(ctx: &RequestCtx, outcome: Outcome) {
    let Some(upstream) = ctx.upstream() else {
        return;
    };
    let backend = &upstream.backend;
    let Some(outlier) = &backend.cluster.outlier else {
        return;
    };
    if let Some(detector) = outlier.record(&**backend, upstream.endpoint, outcome) {
        let addr = backend
            .endpoints
            .get(upstream.endpoint)
            .map(|e| e.addr.to_string())
            .unwrap_or_default();
        log::warn!(
            "outlier detection: {} endpoint {addr} ejected ({})",
            backend.key,
            detector.as_str()
        );
        METRICS
            .outlier_ejections
            .with_label_values(&[&backend.key, detector.as_str()])
            .inc();
    }
}

/// Takes the request's circuit-breaker slot on its destination (`maxRequests`).
pub fn take_request(ctx: &mut RequestCtx) -> Result<(), Overflow> {
    let Some(backend) = ctx.upstream().map(|u| u.backend.clone()) else {
        return Ok(());
    };
    let taken = ctx.slots.take_request(&backend);
    if taken.is_err() {
        overflow(&backend, "max_requests");
    }
    taken
}

/// May the request be retried as far as `maxRetries` is concerned?
pub fn take_retry(ctx: &mut RequestCtx) -> bool {
    let Some(backend) = ctx.upstream().map(|u| u.backend.clone()) else {
        return true;
    };
    let ok = ctx.slots.take_retry(&backend);
    if !ok {
        overflow(&backend, "max_retries");
    }
    ok
}

/// Counts a circuit breaker's refusal.
pub fn overflow(backend: &Backend, limit: &str) {
    METRICS
        .upstream_overflows
        .with_label_values(&[&backend.key, limit])
        .inc();
}
