//! Kuma policies after validation (spec: `kuma-policies.md`).
//!
//! Every policy kind has the same outer shape — a top-level `targetRef`, `to[]` entries with
//! their own `targetRef`, and an inbound side (`from[]`, `rules[]`) — around a kind-specific
//! `default` conf. [`Policy`] is that shape, generic over the conf; each conf type lives in
//! the module of its kind. A conf keeps Kuma's optional fields optional: several policies
//! that select the same traffic are merged field by field ([`Merge`]) before anything is
//! compiled, exactly as Kuma merges their JSON (RFC 7396 merge patch).

pub mod access_log;
pub mod circuit_breaker;
pub mod fault;
pub mod health_check;
pub mod load_balancing;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
pub mod trace;

use super::target::TargetRef;
use super::Valid;

pub use access_log::AccessLogConf;
pub use circuit_breaker::CircuitBreakerConf;
pub use fault::FaultConf;
pub use health_check::HealthCheckConf;
pub use load_balancing::LoadBalancingConf;
pub use rate_limit::RateLimitConf;
pub use retry::RetryConf;
pub use timeout::TimeoutConf;
pub use trace::{OtelBackend, TraceConf};

/// One policy of any kind.
#[derive(Debug, Clone)]
pub struct Policy<C> {
    /// What the policy selects (an omitted `targetRef` is the whole mesh).
    pub target: TargetRef,
    /// `to[]`: confs for traffic the gateway sends, by destination.
    pub to: Vec<To<C>>,
    /// The catch-all inbound confs (`from[]` and `rules[]` without `matches`), in
    /// declaration order: settings of the listener itself.
    pub inbound: Vec<C>,
    /// `kuma.io/effect: shadow`: validated and shown, never applied.
    pub shadow: bool,
}

/// A `to[]` entry: its destination and its `default`.
#[derive(Debug, Clone)]
pub struct To<C> {
    pub target: TargetRef,
    pub conf: C,
}

/// The validated policies of a directory, per kind, in file order.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub timeouts: Vec<Valid<Policy<TimeoutConf>>>,
    pub retries: Vec<Valid<Policy<RetryConf>>>,
    pub rate_limits: Vec<Valid<Policy<RateLimitConf>>>,
    pub faults: Vec<Valid<Policy<FaultConf>>>,
    pub health_checks: Vec<Valid<Policy<HealthCheckConf>>>,
    pub circuit_breakers: Vec<Valid<Policy<CircuitBreakerConf>>>,
    pub load_balancing: Vec<Valid<Policy<LoadBalancingConf>>>,
    pub access_logs: Vec<Valid<Policy<AccessLogConf>>>,
    pub traces: Vec<Valid<Policy<TraceConf>>>,
    /// Not policies: where MeshTrace's spans go, found by their labels.
    pub otel_backends: Vec<Valid<OtelBackend>>,
}

impl PolicySet {
    pub fn append(&mut self, mut other: PolicySet) {
        self.timeouts.append(&mut other.timeouts);
        self.retries.append(&mut other.retries);
        self.rate_limits.append(&mut other.rate_limits);
        self.faults.append(&mut other.faults);
        self.health_checks.append(&mut other.health_checks);
        self.circuit_breakers.append(&mut other.circuit_breakers);
        self.load_balancing.append(&mut other.load_balancing);
        self.access_logs.append(&mut other.access_logs);
        self.traces.append(&mut other.traces);
        self.otel_backends.append(&mut other.otel_backends);
    }

    pub fn len(&self) -> usize {
        self.timeouts.len()
            + self.retries.len()
            + self.rate_limits.len()
            + self.faults.len()
            + self.health_checks.len()
            + self.circuit_breakers.len()
            + self.load_balancing.len()
            + self.access_logs.len()
            + self.traces.len()
            + self.otel_backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every policy's metadata, whatever its kind (identity for caches, `/config`).
    pub fn metas(&self) -> impl Iterator<Item = &crate::resources::Meta> {
        self.timeouts
            .iter()
            .map(|p| &p.meta)
            .chain(self.retries.iter().map(|p| &p.meta))
            .chain(self.rate_limits.iter().map(|p| &p.meta))
            .chain(self.faults.iter().map(|p| &p.meta))
            .chain(self.health_checks.iter().map(|p| &p.meta))
            .chain(self.circuit_breakers.iter().map(|p| &p.meta))
            .chain(self.load_balancing.iter().map(|p| &p.meta))
            .chain(self.access_logs.iter().map(|p| &p.meta))
            .chain(self.traces.iter().map(|p| &p.meta))
            .chain(self.otel_backends.iter().map(|p| &p.meta))
    }
}

/// RFC 7396 merge patch on a typed conf: `later` (the higher-priority policy) overrides
/// what it sets; nested objects merge field by field; lists and scalars are replaced whole.
pub trait Merge {
    fn merge(&mut self, later: &Self);
}

/// Implements [`Merge`] for a struct of `Option` fields: `replace` fields (scalars, lists,
/// Kuma's non-mergeable structs) take the later value when it is set; `nested` fields
/// (mergeable structs) merge recursively.
#[macro_export]
macro_rules! merge_fields {
    ($ty:ty { replace: [$($r:ident),* $(,)?], nested: [$($n:ident),* $(,)?] $(,)? }) => {
        impl $crate::model::policy::Merge for $ty {
            fn merge(&mut self, later: &Self) {
                $(
                    if later.$r.is_some() {
                        self.$r = later.$r.clone();
                    }
                )*
                $(
                    match (&mut self.$n, &later.$n) {
                        (_, None) => {}
                        (Some(mine), Some(theirs)) => {
                            $crate::model::policy::Merge::merge(mine, theirs)
                        }
                        (mine, Some(theirs)) => *mine = Some(theirs.clone()),
                    }
                )*
            }
        }
    };
}

/// `confs` merged in order (lowest priority first), or `None` when there is none.
pub fn merged<'a, C: Merge + Clone + 'a>(confs: impl IntoIterator<Item = &'a C>) -> Option<C> {
    let mut out: Option<C> = None;
    for c in confs {
        match out.as_mut() {
            Some(o) => o.merge(c),
            None => out = Some(c.clone()),
        }
    }
    out
}
