//! What a routed request meets before it is forwarded, in Kuma's filter order (spec §14):
//! the route entry's local rate limit (MeshRateLimit), then the port's fault injection
//! entries in order (MeshFaultInjection: delay, abort, response bandwidth).

use super::ctx::RequestCtx;
use super::outcome::{Local, ResponseFlag};
use crate::admin::metrics::METRICS;
use crate::model::policy::fault::Fault;
use crate::snapshot::rate_limit::{HttpLimit, RATE_LIMITED_BODY};
use pingora::proxy::Session;
use std::time::Duration;

/// Envoy's body for a fault-injected abort.
pub const FAULT_ABORT_BODY: &str = "fault filter abort";

/// The request's fate at admission.
pub enum Admission<'a> {
    /// Forward it (after `delay`, with the response throttled to `bandwidth` bit/s).
    Forward {
        delay: Option<Duration>,
        bandwidth: Option<u64>,
    },
    /// Answer it here.
    RateLimited(&'a HttpLimit),
    Aborted(u16),
}

fn fires(percentage: f64) -> bool {
    percentage >= 100.0 || (percentage > 0.0 && fastrand::f64() * 100.0 < percentage)
}

/// Applies the rate limit and the faults to one request of listener `port_label` / `route`.
pub fn admit<'a>(
    limit: Option<&'a HttpLimit>,
    faults: &[Fault],
    port_label: &str,
    route: &str,
) -> Admission<'a> {
    if let Some(limit) = limit {
        if !limit.bucket.try_take() {
            METRICS
                .rate_limited
                .with_label_values(&[port_label, route])
                .inc();
            return Admission::RateLimited(limit);
        }
    }
    let mut delay = Duration::ZERO;
    let mut bandwidth = None;
    for f in faults {
        if let Some(d) = f.delay.filter(|d| fires(d.percentage)) {
            delay += d.value;
            METRICS
                .faults_injected
                .with_label_values(&[port_label, "delay"])
                .inc();
        }
        if let Some(a) = f.abort.filter(|a| fires(a.percentage)) {
            METRICS
                .faults_injected
                .with_label_values(&[port_label, "abort"])
                .inc();
            return Admission::Aborted(a.http_status);
        }
        if let Some(b) = f.response_bandwidth.filter(|b| fires(b.percentage)) {
            bandwidth = Some(b.bits_per_second);
            METRICS
                .faults_injected
                .with_label_values(&[port_label, "bandwidth"])
                .inc();
        }
    }
    Admission::Forward {
        delay: (!delay.is_zero()).then_some(delay),
        bandwidth,
    }
}

/// The local answer for a refused request.
pub fn local(status: u16, rate_limited: bool) -> Local {
    Local {
        status,
        body: if rate_limited {
            RATE_LIMITED_BODY
        } else {
            FAULT_ABORT_BODY
        },
        flag: if rate_limited {
            ResponseFlag::RateLimited
        } else {
            ResponseFlag::FaultInjected
        },
    }
}

/// How long to hold a response chunk of `bytes` so the body flows at `bits_per_second`.
pub fn throttle(bytes: usize, bits_per_second: u64) -> Option<Duration> {
    if bytes == 0 || bits_per_second == 0 {
        return None;
    }
    let nanos = (bytes as u128 * 8 * 1_000_000_000) / u128::from(bits_per_second);
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// The rate limit and fault injection of a routed request ([`admission`]): `None` to
/// forward it (after any injected delay), or the local answer.
pub async fn admit_routed(session: &Session, ctx: &mut RequestCtx) -> Option<Local> {
    // Only a route whose MeshRetry has a `grpc` section asks what the request is.
    ctx.grpc = ctx
        .forward()
        .is_some_and(|f| f.policies.grpc_retry.is_some())
        && session
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let faults = ctx.port_policy.as_ref().map_or(&[][..], |p| &p.faults[..]);
    let limit = ctx.forward().and_then(|f| f.rate_limit.as_deref());
    if limit.is_none() && faults.is_empty() {
        return None;
    }
    let port = ctx.port_label();
    // A fleet limit is counted in the shared store; the instance's own bucket decides only
    // when the store cannot answer.
    let mut local_limit = limit;
    if let (Some(limit), Some(store)) = (limit, crate::runtime::shared_limits::store()) {
        if let Some(fleet) = &limit.fleet {
            match store.try_take(fleet).await {
                Some(true) => local_limit = None,
                Some(false) => {
                    METRICS
                        .rate_limited
                        .with_label_values(&[&port, ctx.route_label()])
                        .inc();
                    return Some(local(limit.status, true));
                }
                None => {}
            }
        }
    }
    match admit(local_limit, faults, &port, ctx.route_label()) {
        Admission::Forward { delay, bandwidth } => {
            ctx.bandwidth = bandwidth;
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            None
        }
        Admission::RateLimited(limit) => Some(local(limit.status, true)),
        Admission::Aborted(status) => Some(local(status, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::fault::{Abort, Delay};

    #[test]
    fn delay_then_abort_in_entry_order_and_an_abort_ends_the_list() {
        let faults = [
            Fault {
                delay: Some(Delay {
                    value: Duration::from_millis(10),
                    percentage: 100.0,
                }),
                ..Default::default()
            },
            Fault {
                abort: Some(Abort {
                    http_status: 421,
                    percentage: 100.0,
                }),
                ..Default::default()
            },
            Fault {
                abort: Some(Abort {
                    http_status: 500,
                    percentage: 100.0,
                }),
                ..Default::default()
            },
        ];
        assert!(matches!(
            admit(None, &faults, "1", "r"),
            Admission::Aborted(421)
        ));
    }

    #[test]
    fn zero_percent_never_fires() {
        let faults = [Fault {
            abort: Some(Abort {
                http_status: 500,
                percentage: 0.0,
            }),
            ..Default::default()
        }];
        for _ in 0..100 {
            assert!(matches!(
                admit(None, &faults, "1", "r"),
                Admission::Forward { .. }
            ));
        }
    }

    #[test]
    fn throttle_paces_at_the_rate() {
        assert_eq!(throttle(1000, 8000), Some(Duration::from_secs(1)));
        assert_eq!(throttle(0, 8000), None);
    }
}
