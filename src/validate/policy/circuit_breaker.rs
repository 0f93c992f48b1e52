//! MeshCircuitBreaker (K:`pkg/plugins/policies/meshcircuitbreaker/api/v1alpha1/validator.go`;
//! spec §7.3). `from[]` and `rules[]` are checked and have no effect on a gateway (Kuma
//! applies only `to[]` there).

use super::{
    check_top, duration, hundredths, lower_from, lower_rules, lower_to, policy, Sign,
    PROXY_POLICY_TOP,
};
use crate::model::policy::circuit_breaker::{
    CircuitBreakerConf, ConnectionLimits, Consecutive, Detectors, FailurePercentage,
    OutlierDetection, SuccessRate,
};
use crate::model::policy::Policy;
use crate::resources::policy::circuit_breaker::{self as raw, MeshCircuitBreaker};
use crate::validate::messages::{must_have_at_least_one, MUST_BE_DEFINED};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

const TO_KINDS: &[&str] = &[
    "Mesh",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
];

const GREATER_THAN_0: &str = "must be greater than 0";

pub fn lower(r: &mut Report, spec: &MeshCircuitBreaker) -> Option<Policy<CircuitBreakerConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &PROXY_POLICY_TOP);
    let non_empty = |v: Option<usize>| v.is_some_and(|n| n > 0);
    let (to_n, from_n, rules_n) = (
        spec.to.as_ref().map(Vec::len),
        spec.from.as_ref().map(Vec::len),
        spec.rules.as_ref().map(Vec::len),
    );
    if !non_empty(to_n) && !non_empty(from_n) && !non_empty(rules_n) {
        r.add(
            &root,
            "at least one of 'from', 'to' or 'rules' has to be defined",
        );
    }
    if non_empty(rules_n) && (non_empty(to_n) || non_empty(from_n)) {
        r.add(
            &root,
            "fields 'to' and 'from' must be empty when 'rules' is defined",
        );
    }
    // Kept to be named in `--check`: a gateway applies only `to`.
    let mut inbound = lower_from(r, &root, spec.from.as_ref(), conf);
    inbound.extend(lower_rules(r, &root, spec.rules.as_ref(), conf));
    let to = lower_to(r, &root, spec.to.as_ref(), TO_KINDS, conf);
    Some(policy(r, spec, to, inbound))
}

fn conf(
    r: &mut Report,
    at: &FieldPath,
    d: Option<&raw::CircuitBreakerConf>,
) -> Option<CircuitBreakerConf> {
    let empty = raw::CircuitBreakerConf::default();
    let d = d.unwrap_or(&empty);
    if d.connection_limits.is_none() && d.outlier_detection.is_none() {
        r.add(
            at,
            "at least one of: 'connectionLimits' or 'outlierDetection' should be configured",
        );
        return None;
    }
    Some(CircuitBreakerConf {
        connection_limits: d
            .connection_limits
            .as_ref()
            .map(|c| limits(r, &at.field("connectionLimits"), c)),
        outlier_detection: d
            .outlier_detection
            .as_ref()
            .map(|o| outlier(r, &at.field("outlierDetection"), o)),
    })
}

/// A count that must be above zero when set.
fn above_zero(r: &mut Report, at: &FieldPath, v: Option<i64>) -> Option<u32> {
    let v = v?;
    match u32::try_from(v) {
        Ok(n) if n > 0 => Some(n),
        _ if v <= 0 => {
            r.add(at, GREATER_THAN_0);
            None
        }
        _ => super::count(r, at, v, true),
    }
}

fn limits(r: &mut Report, at: &FieldPath, c: &raw::ConnectionLimits) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: above_zero(r, &at.field("maxConnections"), c.max_connections),
        max_connection_pools: above_zero(
            r,
            &at.field("maxConnectionPools"),
            c.max_connection_pools,
        ),
        max_pending_requests: above_zero(
            r,
            &at.field("maxPendingRequests"),
            c.max_pending_requests,
        ),
        max_requests: above_zero(r, &at.field("maxRequests"), c.max_requests),
        max_retries: above_zero(r, &at.field("maxRetries"), c.max_retries),
    }
}

fn percent(r: &mut Report, at: &FieldPath, v: Option<i64>) -> Option<u32> {
    let v = v?;
    if (0..=100).contains(&v) {
        u32::try_from(v).ok()
    } else {
        r.add(at, "must be in inclusive range [0, 100]");
        None
    }
}

fn outlier(r: &mut Report, at: &FieldPath, o: &raw::OutlierDetection) -> OutlierDetection {
    OutlierDetection {
        disabled: o.disabled,
        interval: duration(
            r,
            &at.field("interval"),
            o.interval.as_ref(),
            Sign::Positive,
        ),
        base_ejection_time: duration(
            r,
            &at.field("baseEjectionTime"),
            o.base_ejection_time.as_ref(),
            Sign::Positive,
        ),
        max_ejection_percent: percent(r, &at.field("maxEjectionPercent"), o.max_ejection_percent),
        split_external_and_local_errors: o.split_external_and_local_errors,
        healthy_panic_threshold: hundredths(
            r,
            &at.field("healthyPanicThreshold"),
            o.healthy_panic_threshold.as_ref(),
        ),
        detectors: match &o.detectors {
            None => {
                r.add(&at.field("detectors"), MUST_BE_DEFINED);
                None
            }
            Some(d) => Some(detectors(r, &at.field("detectors"), d)),
        },
    }
}

fn detectors(r: &mut Report, at: &FieldPath, d: &raw::Detectors) -> Detectors {
    if d.total_failures.is_none()
        && d.gateway_failures.is_none()
        && d.local_origin_failures.is_none()
        && d.success_rate.is_none()
        && d.failure_percentage.is_none()
    {
        r.add(
            at,
            must_have_at_least_one(&[
                "totalFailures",
                "gatewayFailures",
                "localOriginFailures",
                "successRate",
                "failurePercentage",
            ]),
        );
    }
    let consecutive = |r: &mut Report, field: &str, c: &Option<raw::Consecutive>| {
        c.as_ref().map(|c| Consecutive {
            consecutive: above_zero(r, &at.field(field).field("consecutive"), c.consecutive),
        })
    };
    Detectors {
        total_failures: consecutive(r, "totalFailures", &d.total_failures),
        gateway_failures: consecutive(r, "gatewayFailures", &d.gateway_failures),
        local_origin_failures: consecutive(r, "localOriginFailures", &d.local_origin_failures),
        success_rate: d.success_rate.as_ref().map(|s| {
            let at = at.field("successRate");
            let factor = s
                .standard_deviation_factor
                .as_ref()
                .and_then(|f| match f.as_f64() {
                    Some(v) if v > 0.0 => Some((v * 1000.0).round() as u32),
                    Some(_) => {
                        r.add(&at.field("standardDeviationFactor"), GREATER_THAN_0);
                        None
                    }
                    None => {
                        r.add(
                            &at.field("standardDeviationFactor"),
                            "string must be a valid number",
                        );
                        None
                    }
                });
            SuccessRate {
                minimum_hosts: s
                    .minimum_hosts
                    .and_then(|n| super::count(r, &at.field("minimumHosts"), n, false)),
                request_volume: s
                    .request_volume
                    .and_then(|n| super::count(r, &at.field("requestVolume"), n, false)),
                standard_deviation_factor: factor,
            }
        }),
        failure_percentage: d.failure_percentage.as_ref().map(|f| {
            let at = at.field("failurePercentage");
            FailurePercentage {
                minimum_hosts: f
                    .minimum_hosts
                    .and_then(|n| super::count(r, &at.field("minimumHosts"), n, false)),
                request_volume: f
                    .request_volume
                    .and_then(|n| super::count(r, &at.field("requestVolume"), n, false)),
                threshold: percent(r, &at.field("threshold"), f.threshold),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(default: &str) -> String {
        format!(
            "type: MeshCircuitBreaker\nname: cb\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default: {default}\n"
        )
    }

    #[test]
    fn kuma_default_is_valid() {
        assert_yaml(
            &doc("{connectionLimits: {maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3}, outlierDetection: {interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 20, detectors: {totalFailures: {consecutive: 5}, successRate: {minimumHosts: 3, requestVolume: 10, standardDeviationFactor: '1.9'}, failurePercentage: {threshold: 85}}}}"),
            &[],
        );
    }

    #[test]
    fn kuma_rules_and_messages() {
        assert_yaml(
            &doc("{connectionLimits: {maxConnections: 0}, outlierDetection: {baseEjectionTime: 10s}}"),
            &[
                "spec.to[0].default.connectionLimits.maxConnections: must be greater than 0",
                "spec.to[0].default.outlierDetection.detectors: must be defined",
            ],
        );
        assert_yaml(
            &doc("{}"),
            &["spec.to[0].default: at least one of: 'connectionLimits' or 'outlierDetection' should be configured"],
        );
        assert_yaml(
            &doc("{outlierDetection: {interval: 0s, maxEjectionPercent: 101, detectors: {}}}"),
            &[
                "spec.to[0].default.outlierDetection.interval: must be greater than zero when defined",
                "spec.to[0].default.outlierDetection.maxEjectionPercent: must be in inclusive range [0, 100]",
                "spec.to[0].default.outlierDetection.detectors: must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage",
            ],
        );
        assert_yaml(
            &doc("{outlierDetection: {detectors: {gatewayFailures: {consecutive: 0}, failurePercentage: {threshold: 101}}}}"),
            &[
                "spec.to[0].default.outlierDetection.detectors.gatewayFailures.consecutive: must be greater than 0",
                "spec.to[0].default.outlierDetection.detectors.failurePercentage.threshold: must be in inclusive range [0, 100]",
            ],
        );
    }
}
