//! The active health check of one endpoint, as a task (spec §6.2): checks every `interval`
//! (plus jitter), marks the endpoint unhealthy after `unhealthyThreshold` failures in a row
//! (at once for an unexpected HTTP status) and healthy again after `healthyThreshold`
//! passes. An endpoint starts healthy (Envoy waits for the first check while a cluster warms
//! up; the difference lasts one check).

use super::probe::{Prober, Verdict};
use crate::admin::metrics::METRICS;
use crate::snapshot::backends::{Backend, Endpoint};
use crate::snapshot::cluster::HealthCheck;
use crate::snapshot::endpoint_state::{ClusterState, EndpointState};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What a check task checks, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: String,
    pub addr: SocketAddr,
}

impl Target {
    pub fn of(backend: &Backend, endpoint: &Endpoint) -> Target {
        Target {
            backend: backend.key.clone(),
            addr: endpoint.addr,
        }
    }
}

/// A random share of `max`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(fastrand::f64())
}

/// The wait before the next check: the interval plus `intervalJitter` and
/// `intervalJitterPercent` of the interval, each a random share.
fn next_wait(plan: &HealthCheck) -> Duration {
    plan.interval
        + jitter(plan.interval_jitter)
        + jitter(plan.interval * plan.interval_jitter_percent / 100)
}

pub async fn run(
    plan: Arc<HealthCheck>,
    target: Target,
    state: Arc<EndpointState>,
    cluster: Arc<ClusterState>,
    prober: Arc<Prober>,
    limit: Arc<Semaphore>,
) {
    tokio::time::sleep(jitter(plan.initial_jitter)).await;
    let mut streak = Streak::default();
    let mut last: Option<Instant> = None;
    loop {
        let quiet = !plan.no_traffic_interval.is_zero() && !cluster.has_seen_traffic();
        let due = match last {
            Some(at) if quiet => at.elapsed() >= plan.no_traffic_interval,
            _ => true,
        };
        if due {
            let verdict = {
                let Ok(_permit) = limit.acquire().await else {
                    return;
                };
                prober.check(target.addr, plan.timeout).await
            };
            last = Some(Instant::now());
            apply(&plan, &target, &state, &mut streak, verdict);
        }
        tokio::time::sleep(next_wait(&plan)).await;
    }
}

#[derive(Debug, Default)]
struct Streak {
    failures: u32,
    passes: u32,
}

fn apply(
    plan: &HealthCheck,
    target: &Target,
    state: &EndpointState,
    streak: &mut Streak,
    verdict: Verdict,
) {
    let failed_now = state.check_failed();
    let (mark, why) = match &verdict {
        Verdict::Healthy => {
            streak.failures = 0;
            streak.passes += 1;
            (
                failed_now && streak.passes >= plan.healthy_threshold,
                String::new(),
            )
        }
        Verdict::Failed(why) => {
            streak.passes = 0;
            streak.failures += 1;
            (
                !failed_now && streak.failures >= plan.unhealthy_threshold,
                why.clone(),
            )
        }
        Verdict::Unhealthy(why) => {
            streak.passes = 0;
            streak.failures += 1;
            (!failed_now, why.clone())
        }
    };
    if !why.is_empty() && (plan.always_log_failures || mark) {
        log::warn!(
            "health check of {} endpoint {} failed: {why}",
            target.backend,
            target.addr
        );
    }
    if !mark {
        return;
    }
    let to_unhealthy = verdict != Verdict::Healthy;
    state.set_check_failed(to_unhealthy);
    let to = if to_unhealthy { "unhealthy" } else { "healthy" };
    log::info!(
        "health check: {} endpoint {} is now {to}",
        target.backend,
        target.addr
    );
    METRICS
        .health_transitions
        .with_label_values(&[&target.backend, to])
        .inc();
    if let Some(path) = &plan.event_log_path {
        log_event(path, target, to, &why);
    }
}

/// Appends a health event to `eventLogPath` as one JSON line.
fn log_event(path: &str, target: &Target, to: &str, why: &str) {
    let line = serde_json::json!({
        "time": crate::admin::metrics::unix_now(),
        "backend": target.backend,
        "endpoint": target.addr.to_string(),
        "health": to,
        "reason": why,
    });
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        log::warn!("health check event log {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::cluster::Probe;

    fn plan(unhealthy: u32, healthy: u32) -> HealthCheck {
        HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            initial_jitter: Duration::ZERO,
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            no_traffic_interval: Duration::ZERO,
            reuse_connection: true,
            always_log_failures: false,
            event_log_path: None,
            probe: Probe::Tcp {
                send: None,
                receive: Vec::new(),
            },
        }
    }

    #[test]
    fn thresholds_decide_transitions_and_a_bad_status_is_immediate() {
        let p = plan(3, 2);
        let t = Target {
            backend: "a".into(),
            addr: ([127, 0, 0, 1], 1).into(),
        };
        let s = EndpointState::default();
        let mut k = Streak::default();
        let fail = || Verdict::Failed("timeout".into());
        apply(&p, &t, &s, &mut k, fail());
        apply(&p, &t, &s, &mut k, fail());
        assert!(!s.check_failed(), "two of three");
        apply(&p, &t, &s, &mut k, fail());
        assert!(s.check_failed());
        apply(&p, &t, &s, &mut k, Verdict::Healthy);
        assert!(s.check_failed(), "one of two passes");
        apply(&p, &t, &s, &mut k, Verdict::Healthy);
        assert!(!s.check_failed());
        apply(&p, &t, &s, &mut k, Verdict::Unhealthy("status 503".into()));
        assert!(s.check_failed(), "an unexpected status counts at once");
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let mut p = plan(1, 1);
        p.interval_jitter_percent = 50;
        for _ in 0..100 {
            let w = next_wait(&p);
            assert!(w >= Duration::from_secs(1) && w <= Duration::from_millis(1500));
        }
    }
}
