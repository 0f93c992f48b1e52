//! Passive outlier detection (MeshCircuitBreaker `outlierDetection`, spec §7.2), as Envoy's
//! `DetectorImpl` does it: every response or local failure of an endpoint is recorded on its
//! [`EndpointState`]; a consecutive-failure detector ejects the moment its count is reached;
//! the sweep every `interval` returns endpoints whose ejection time is over, lets the
//! ejection count decay, and runs the success-rate and failure-percentage detectors.

use super::balancer::Endpoints;
use super::cluster::Outlier;
use super::endpoint_state::{now_ms, Detector, EndpointState};
use std::sync::atomic::Ordering;

/// What one attempt at an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// Connect failure, reset, or timeout: an error meshgate saw, not a response.
    LocalFailure,
    /// A connection was established (split mode resets the local-origin count on it).
    Connected,
}

impl Outlier {
    /// Records `outcome` for endpoint `i` of `endpoints`; the detector that ejected it, if
    /// one did.
    pub fn record(
        &self,
        endpoints: &dyn Endpoints,
        i: usize,
        outcome: Outcome,
    ) -> Option<Detector> {
        if i >= endpoints.endpoint_count() {
            return None;
        }
        let ep = endpoints.state(i);
        let status = match outcome {
            Outcome::Connected => {
                if self.split_local_errors {
                    ep.consecutive_local.store(0, Ordering::Relaxed);
                }
                return None;
            }
            Outcome::LocalFailure if self.split_local_errors => {
                ep.window_total.fetch_add(1, Ordering::Relaxed);
                ep.window_failed.fetch_add(1, Ordering::Relaxed);
                let n = ep.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                return self
                    .local_origin_failures
                    .filter(|&t| n == t)
                    .and_then(|_| self.try_eject(endpoints, ep, Detector::LocalOriginFailures));
            }
            // Without split mode a local failure counts as the 503 Envoy would answer.
            Outcome::LocalFailure => 503,
            Outcome::Status(s) => s,
        };
        ep.window_total.fetch_add(1, Ordering::Relaxed);
        if status < 500 {
            ep.consecutive_5xx.store(0, Ordering::Relaxed);
            ep.consecutive_gateway.store(0, Ordering::Relaxed);
            return None;
        }
        ep.window_failed.fetch_add(1, Ordering::Relaxed);
        if matches!(status, 502..=504) {
            let n = ep.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
            if self.gateway_failures == Some(n) {
                if let Some(d) = self.try_eject(endpoints, ep, Detector::GatewayFailures) {
                    return Some(d);
                }
            }
        } else {
            ep.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        let n = ep.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if self.total_failures == Some(n) {
            return self.try_eject(endpoints, ep, Detector::TotalFailures);
        }
        None
    }

    /// Ejects `ep` unless that would pass `maxEjectionPercent` (one endpoint may always be
    /// ejected).
    fn try_eject(
        &self,
        endpoints: &dyn Endpoints,
        ep: &EndpointState,
        by: Detector,
    ) -> Option<Detector> {
        if ep.ejected() {
            return None;
        }
        let total = endpoints.endpoint_count();
        let ejected = (0..total).filter(|&i| endpoints.state(i).ejected()).count() as u64;
        let total = total as u64;
        let within = (ejected + 1) * 100 <= total * u64::from(self.max_ejection_percent);
        if ejected > 0 && !within {
            return None;
        }
        ep.eject(by).then_some(by)
    }

    /// The sweep every `interval`: endpoints whose ejection is over come back (returned as
    /// `(index, false)`), the others' ejection counts decay, and the statistical detectors
    /// eject (`(index, true)`, with the detector).
    pub fn sweep(&self, endpoints: &dyn Endpoints) -> Vec<(usize, Option<Detector>)> {
        let now = now_ms();
        let mut changes = Vec::new();
        let states: Vec<&EndpointState> = (0..endpoints.endpoint_count())
            .map(|i| endpoints.state(i))
            .collect();
        for (i, ep) in states.iter().enumerate() {
            match ep.ejected_until_ms(self.base_ejection_time, self.max_ejection_time) {
                Some(until) if until <= now => {
                    ep.uneject();
                    changes.push((i, None));
                }
                Some(_) => {}
                None => {
                    let _ = ep
                        .ejections
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                }
            }
        }
        let windows: Vec<(u32, u32)> = states
            .iter()
            .map(|e| {
                (
                    e.window_total.swap(0, Ordering::Relaxed),
                    e.window_failed.swap(0, Ordering::Relaxed),
                )
            })
            .collect();
        if let Some(sr) = &self.success_rate {
            let rates: Vec<(usize, f64)> = windows
                .iter()
                .enumerate()
                .filter(|(i, (total, _))| *total >= sr.request_volume && !states[*i].ejected())
                .map(|(i, (total, failed))| {
                    (i, 100.0 * f64::from(total - failed) / f64::from(*total))
                })
                .collect();
            if rates.len() >= sr.minimum_hosts as usize && !rates.is_empty() {
                let mean = rates.iter().map(|r| r.1).sum::<f64>() / rates.len() as f64;
                let var =
                    rates.iter().map(|r| (r.1 - mean).powi(2)).sum::<f64>() / rates.len() as f64;
                let threshold = mean - f64::from(sr.stdev_factor) / 1000.0 * var.sqrt();
                for (i, rate) in rates {
                    if rate < threshold {
                        if let Some(d) = self.try_eject(endpoints, states[i], Detector::SuccessRate)
                        {
                            changes.push((i, Some(d)));
                        }
                    }
                }
            }
        }
        if let Some(fp) = &self.failure_percentage {
            let eligible: Vec<(usize, f64)> = windows
                .iter()
                .enumerate()
                .filter(|(i, (total, _))| *total >= fp.request_volume && !states[*i].ejected())
                .map(|(i, (total, failed))| (i, 100.0 * f64::from(*failed) / f64::from(*total)))
                .collect();
            if eligible.len() >= fp.minimum_hosts as usize {
                for (i, pct) in eligible {
                    if pct >= f64::from(fp.threshold) {
                        if let Some(d) =
                            self.try_eject(endpoints, states[i], Detector::FailurePercentage)
                        {
                            changes.push((i, Some(d)));
                        }
                    }
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::cluster::{FailurePercentage, SuccessRate};
    use std::time::Duration;

    fn conf() -> Outlier {
        Outlier {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_millis(0),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            split_local_errors: false,
            total_failures: None,
            gateway_failures: Some(3),
            local_origin_failures: None,
            success_rate: None,
            failure_percentage: None,
        }
    }

    fn states(n: usize) -> Vec<EndpointState> {
        (0..n).map(|_| EndpointState::default()).collect()
    }

    #[test]
    fn consecutive_gateway_failures_eject_at_the_count_and_a_success_resets_it() {
        let o = conf();
        let s = states(3);
        let eps: Vec<&EndpointState> = s.iter().collect();
        assert_eq!(o.record(&eps, 0, Outcome::Status(503)), None);
        assert_eq!(o.record(&eps, 0, Outcome::Status(200)), None);
        assert_eq!(o.record(&eps, 0, Outcome::Status(502)), None);
        assert_eq!(
            o.record(&eps, 0, Outcome::Status(500)),
            None,
            "a 500 is not a gateway failure"
        );
        assert_eq!(o.record(&eps, 0, Outcome::Status(504)), None);
        assert_eq!(o.record(&eps, 0, Outcome::LocalFailure), None);
        assert_eq!(
            o.record(&eps, 0, Outcome::Status(503)),
            Some(Detector::GatewayFailures)
        );
        assert!(eps[0].ejected());
    }

    #[test]
    fn at_most_max_ejection_percent_but_always_one() {
        let o = conf();
        let s = states(4);
        let eps: Vec<&EndpointState> = s.iter().collect();
        for i in [0, 1] {
            for _ in 0..3 {
                o.record(&eps, i, Outcome::Status(503));
            }
        }
        assert!(eps[0].ejected());
        assert!(!eps[1].ejected(), "10 % of 4: only the first one");
    }

    #[test]
    fn split_mode_counts_local_failures_apart() {
        let o = Outlier {
            split_local_errors: true,
            local_origin_failures: Some(2),
            gateway_failures: None,
            ..conf()
        };
        let s = states(2);
        let eps: Vec<&EndpointState> = s.iter().collect();
        assert_eq!(o.record(&eps, 1, Outcome::LocalFailure), None);
        o.record(&eps, 1, Outcome::Connected);
        assert_eq!(o.record(&eps, 1, Outcome::LocalFailure), None);
        assert_eq!(
            o.record(&eps, 1, Outcome::LocalFailure),
            Some(Detector::LocalOriginFailures)
        );
    }

    #[test]
    fn the_sweep_returns_endpoints_whose_time_is_over() {
        let o = conf();
        let s = states(3);
        let eps: Vec<&EndpointState> = s.iter().collect();
        for _ in 0..3 {
            o.record(&eps, 2, Outcome::Status(502));
        }
        assert!(eps[2].ejected());
        let changes = o.sweep(&eps);
        assert_eq!(
            changes,
            vec![(2, None)],
            "base ejection time 0: back at once"
        );
        assert!(eps[2].available());
    }

    #[test]
    fn statistical_detectors_eject_the_outlier() {
        let o = Outlier {
            gateway_failures: None,
            max_ejection_percent: 100,
            base_ejection_time: Duration::from_secs(30),
            success_rate: Some(SuccessRate {
                minimum_hosts: 3,
                request_volume: 10,
                stdev_factor: 1000,
            }),
            failure_percentage: Some(FailurePercentage {
                minimum_hosts: 3,
                request_volume: 10,
                threshold: 90,
            }),
            ..conf()
        };
        let s = states(4);
        let eps: Vec<&EndpointState> = s.iter().collect();
        for i in 0..4 {
            for k in 0..20 {
                let status = if i == 3 && k < 12 { 500 } else { 200 };
                o.record(&eps, i, Outcome::Status(status));
            }
        }
        let changes = o.sweep(&eps);
        assert_eq!(changes, vec![(3, Some(Detector::SuccessRate))]);
    }
}
