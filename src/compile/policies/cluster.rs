//! MeshHealthCheck, MeshCircuitBreaker and MeshLoadBalancingStrategy confs merged for one
//! destination → the cluster settings of [`ClusterConf`], Envoy's defaults filled in where
//! the policies leave a field out (spec §6–§8).

use crate::model::policy::circuit_breaker::CircuitBreakerConf;
use crate::model::policy::health_check::HealthCheckConf;
use crate::model::policy::load_balancing::{HashFunction, LoadBalancer, LoadBalancingConf};
use crate::snapshot::cluster::{
    FailurePercentage, HealthCheck, Lb, LbKind, Limits, Outlier, Probe, SuccessRate,
};
use crate::snapshot::Protocol;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's defaults as Kuma's configurer leaves them.
mod defaults {
    use std::time::Duration;
    pub const INTERVAL: Duration = Duration::from_secs(60);
    pub const TIMEOUT: Duration = Duration::from_secs(15);
    pub const UNHEALTHY_THRESHOLD: u32 = 5;
    pub const HEALTHY_THRESHOLD: u32 = 1;
    pub const OUTLIER_INTERVAL: Duration = Duration::from_secs(10);
    pub const BASE_EJECTION: Duration = Duration::from_secs(30);
    pub const MAX_EJECTION: Duration = Duration::from_secs(300);
    pub const MAX_EJECTION_PERCENT: u32 = 10;
    pub const CONSECUTIVE: u32 = 5;
    pub const PANIC_THRESHOLD: u32 = 5000;
}

/// The check the port's protocol takes (§6.1): HTTP and HTTPS listeners run the `http`
/// check, or the `tcp` one when `http` is there but disabled; TCP and TLS listeners the
/// `tcp` check; `grpc` never applies on a gateway.
pub fn health(conf: Option<&HealthCheckConf>, protocol: Protocol) -> Option<Arc<HealthCheck>> {
    let c = conf?;
    let on = |d: Option<bool>| d != Some(true);
    let tcp = c
        .tcp
        .as_ref()
        .filter(|t| on(t.disabled))
        .map(|t| Probe::Tcp {
            send: t.send.as_ref().map(|s| s.as_bytes().to_vec()),
            receive: t
                .receive
                .iter()
                .flatten()
                .map(|r| r.as_bytes().to_vec())
                .collect(),
        });
    let probe = match protocol {
        Protocol::Http | Protocol::Https => match &c.http {
            Some(h) if on(h.disabled) => Probe::Http {
                path: h.path.clone().unwrap_or_else(|| "/".to_string()),
                set: h
                    .request_headers_to_add
                    .as_ref()
                    .and_then(|m| m.set.clone())
                    .unwrap_or_default(),
                add: h
                    .request_headers_to_add
                    .as_ref()
                    .and_then(|m| m.add.clone())
                    .unwrap_or_default(),
                expected: h.expected_statuses.clone().unwrap_or_else(|| vec![200]),
            },
            Some(_) => tcp?,
            None => return None,
        },
        Protocol::Tcp | Protocol::Tls => tcp?,
    };
    Some(Arc::new(HealthCheck {
        interval: c.interval.unwrap_or(defaults::INTERVAL),
        timeout: c.timeout.unwrap_or(defaults::TIMEOUT),
        unhealthy_threshold: c
            .unhealthy_threshold
            .unwrap_or(defaults::UNHEALTHY_THRESHOLD),
        healthy_threshold: c.healthy_threshold.unwrap_or(defaults::HEALTHY_THRESHOLD),
        initial_jitter: c.initial_jitter.unwrap_or_default(),
        interval_jitter: c.interval_jitter.unwrap_or_default(),
        interval_jitter_percent: c.interval_jitter_percent.unwrap_or(0),
        // Envoy's own default (60 s) applies only until the first check's connection counts
        // as cluster traffic: in effect, checks run at `interval` unless this is set.
        no_traffic_interval: c.no_traffic_interval.unwrap_or(Duration::ZERO),
        reuse_connection: c.reuse_connection.unwrap_or(true),
        always_log_failures: c.always_log_health_check_failures.unwrap_or(false),
        event_log_path: c.event_log_path.clone(),
        probe,
    }))
}

/// `connectionLimits`, Envoy's defaults for the fields left out; `None` without a policy.
pub fn limits(conf: Option<&CircuitBreakerConf>) -> Option<Limits> {
    let l = conf?.connection_limits.as_ref()?;
    let d = Limits::default();
    Some(Limits {
        max_connections: l.max_connections.unwrap_or(d.max_connections),
        max_pending_requests: l.max_pending_requests.unwrap_or(d.max_pending_requests),
        max_requests: l.max_requests.unwrap_or(d.max_requests),
        max_retries: l.max_retries.unwrap_or(d.max_retries),
    })
}

/// `outlierDetection` with at least one detector on (Kuma turns off every detector it was
/// not given).
pub fn outlier(conf: Option<&CircuitBreakerConf>) -> Option<Arc<Outlier>> {
    let o = conf?.outlier_detection.as_ref()?;
    if o.disabled == Some(true) {
        return None;
    }
    let d = o.detectors.as_ref()?;
    let consecutive = |c: &Option<crate::model::policy::circuit_breaker::Consecutive>| {
        c.as_ref()
            .map(|c| c.consecutive.unwrap_or(defaults::CONSECUTIVE))
    };
    let out = Outlier {
        interval: o.interval.unwrap_or(defaults::OUTLIER_INTERVAL),
        base_ejection_time: o.base_ejection_time.unwrap_or(defaults::BASE_EJECTION),
        max_ejection_time: defaults::MAX_EJECTION,
        max_ejection_percent: o
            .max_ejection_percent
            .unwrap_or(defaults::MAX_EJECTION_PERCENT),
        split_local_errors: o.split_external_and_local_errors.unwrap_or(false),
        total_failures: consecutive(&d.total_failures),
        gateway_failures: consecutive(&d.gateway_failures),
        local_origin_failures: consecutive(&d.local_origin_failures)
            .filter(|_| o.split_external_and_local_errors == Some(true)),
        success_rate: d.success_rate.as_ref().map(|s| SuccessRate {
            minimum_hosts: s.minimum_hosts.unwrap_or(5),
            request_volume: s.request_volume.unwrap_or(100),
            stdev_factor: s.standard_deviation_factor.unwrap_or(1900),
        }),
        failure_percentage: d.failure_percentage.as_ref().map(|f| FailurePercentage {
            minimum_hosts: f.minimum_hosts.unwrap_or(5),
            request_volume: f.request_volume.unwrap_or(50),
            threshold: f.threshold.unwrap_or(85),
        }),
    };
    let any = out.total_failures.is_some()
        || out.gateway_failures.is_some()
        || out.local_origin_failures.is_some()
        || out.success_rate.is_some()
        || out.failure_percentage.is_some();
    any.then(|| Arc::new(out))
}

/// The panic threshold (MeshCircuitBreaker's wins over MeshHealthCheck's deprecated one)
/// and `failTrafficOnPanic`.
pub fn panic(hc: Option<&HealthCheckConf>, cb: Option<&CircuitBreakerConf>) -> (u32, bool) {
    let from_cb = cb
        .and_then(|c| c.outlier_detection.as_ref())
        .and_then(|o| o.healthy_panic_threshold);
    let threshold = from_cb
        .or_else(|| hc.and_then(|h| h.healthy_panic_threshold))
        .unwrap_or(defaults::PANIC_THRESHOLD);
    let fail = hc.and_then(|h| h.fail_traffic_on_panic).unwrap_or(false);
    (threshold, fail)
}

pub fn lb(conf: Option<&LoadBalancingConf>) -> Arc<Lb> {
    let Some(c) = conf else {
        return Arc::default();
    };
    let kind = match &c.load_balancer {
        None | Some(LoadBalancer::RoundRobin) => LbKind::RoundRobin,
        Some(LoadBalancer::Random) => LbKind::Random,
        Some(LoadBalancer::LeastRequest { choice_count, .. }) => LbKind::LeastRequest {
            choices: *choice_count,
        },
        Some(LoadBalancer::RingHash {
            hash_function,
            min_ring_size,
            max_ring_size,
            ..
        }) => LbKind::RingHash {
            murmur: *hash_function == HashFunction::MurmurHash2,
            min_ring_size: *min_ring_size,
            max_ring_size: *max_ring_size,
        },
        Some(LoadBalancer::Maglev { table_size, .. }) => LbKind::Maglev {
            table_size: *table_size,
        },
    };
    Arc::new(Lb {
        kind,
        hash_policies: c.effective_hash_policies().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::health_check::{HttpCheck, TcpCheck};

    #[test]
    fn the_listener_protocol_picks_the_check() {
        let both = HealthCheckConf {
            http: Some(HttpCheck::default()),
            tcp: Some(TcpCheck::default()),
            ..Default::default()
        };
        let http = health(Some(&both), Protocol::Http).expect("http check");
        assert!(
            matches!(&http.probe, Probe::Http { path, expected, .. } if path == "/" && expected == &[200])
        );
        assert!(matches!(
            health(Some(&both), Protocol::Tcp).map(|h| h.probe.clone()),
            Some(Probe::Tcp { .. })
        ));
        let tcp_only = HealthCheckConf {
            tcp: Some(TcpCheck::default()),
            ..Default::default()
        };
        assert!(
            health(Some(&tcp_only), Protocol::Http).is_none(),
            "Kuma: no check"
        );
        let http_disabled = HealthCheckConf {
            http: Some(HttpCheck {
                disabled: Some(true),
                ..Default::default()
            }),
            tcp: Some(TcpCheck::default()),
            ..Default::default()
        };
        assert!(matches!(
            health(Some(&http_disabled), Protocol::Https).map(|h| h.probe.clone()),
            Some(Probe::Tcp { .. })
        ));
    }
}
