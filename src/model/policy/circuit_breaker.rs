//! MeshCircuitBreaker `default` (K:`pkg/plugins/policies/meshcircuitbreaker/api/v1alpha1`;
//! spec §7).

use super::health_check::Hundredths;
use crate::merge_fields;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CircuitBreakerConf {
    pub connection_limits: Option<ConnectionLimits>,
    pub outlier_detection: Option<OutlierDetection>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConnectionLimits {
    pub max_connections: Option<u32>,
    pub max_connection_pools: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OutlierDetection {
    pub disabled: Option<bool>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
    pub split_external_and_local_errors: Option<bool>,
    pub healthy_panic_threshold: Option<Hundredths>,
    pub detectors: Option<Detectors>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Detectors {
    pub total_failures: Option<Consecutive>,
    pub gateway_failures: Option<Consecutive>,
    pub local_origin_failures: Option<Consecutive>,
    pub success_rate: Option<SuccessRate>,
    pub failure_percentage: Option<FailurePercentage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Consecutive {
    pub consecutive: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SuccessRate {
    pub minimum_hosts: Option<u32>,
    pub request_volume: Option<u32>,
    /// Thousandths, as Envoy takes it (Kuma's `"1.9"` → 1900).
    pub standard_deviation_factor: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FailurePercentage {
    pub minimum_hosts: Option<u32>,
    pub request_volume: Option<u32>,
    pub threshold: Option<u32>,
}

merge_fields!(CircuitBreakerConf {
    replace: [],
    nested: [connection_limits, outlier_detection],
});
merge_fields!(ConnectionLimits {
    replace: [
        max_connections,
        max_connection_pools,
        max_pending_requests,
        max_requests,
        max_retries,
    ],
    nested: [],
});
merge_fields!(OutlierDetection {
    replace: [
        disabled,
        interval,
        base_ejection_time,
        max_ejection_percent,
        split_external_and_local_errors,
        healthy_panic_threshold,
    ],
    nested: [detectors],
});
merge_fields!(Detectors {
    replace: [],
    nested: [
        total_failures,
        gateway_failures,
        local_origin_failures,
        success_rate,
        failure_percentage,
    ],
});
merge_fields!(Consecutive {
    replace: [consecutive],
    nested: []
});
merge_fields!(SuccessRate {
    replace: [minimum_hosts, request_volume, standard_deviation_factor],
    nested: [],
});
merge_fields!(FailurePercentage {
    replace: [minimum_hosts, request_volume, threshold],
    nested: [],
});
