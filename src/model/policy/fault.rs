//! MeshFaultInjection `default` (K:`pkg/plugins/policies/meshfaultinjection/api/v1alpha1`).

use crate::merge_fields;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConf {
    /// Applied in order; replaced whole by a higher-priority policy.
    pub http: Option<Vec<Fault>>,
}

/// One `http[]` entry: within it, the delay first, then the abort, then the bandwidth limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fault {
    pub abort: Option<Abort>,
    pub delay: Option<Delay>,
    pub response_bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Abort {
    pub http_status: u16,
    /// 0.0..=100.0
    pub percentage: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delay {
    pub value: Duration,
    pub percentage: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    /// Bits per second (1 kbps = 1000 bit/s).
    pub bits_per_second: u64,
    pub percentage: f64,
}

merge_fields!(FaultConf {
    replace: [http],
    nested: []
});
