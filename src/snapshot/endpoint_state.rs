//! Run-time state of endpoints and clusters that outlives snapshots (spec §6.2, §7).
//!
//! A snapshot's [`super::backends::Endpoint`] points at the [`EndpointState`] of its
//! identity (backend, address, TLS name), handed out by `runtime::registry`: a reload that
//! keeps an endpoint keeps its health, ejection and counters; one that drops it drops them
//! with the last snapshot that used it. [`ClusterState`] does the same for what Envoy counts
//! per cluster (requests and connections in flight, retries in flight).
//!
//! The request path reads one byte (`flags`) to know whether an endpoint may take traffic;
//! everything else is counters with relaxed atomics, written only where the policies that
//! need them apply.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Milliseconds since the process started: ejection times fit an atomic.
pub fn now_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

const CHECK_FAILED: u8 = 1;
const EJECTED: u8 = 2;

/// Why an endpoint was ejected (for `/config` and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Detector {
    None = 0,
    TotalFailures = 1,
    GatewayFailures = 2,
    LocalOriginFailures = 3,
    SuccessRate = 4,
    FailurePercentage = 5,
}

impl Detector {
    fn from_u8(v: u8) -> Detector {
        match v {
            1 => Detector::TotalFailures,
            2 => Detector::GatewayFailures,
            3 => Detector::LocalOriginFailures,
            4 => Detector::SuccessRate,
            5 => Detector::FailurePercentage,
            _ => Detector::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::None => "",
            Detector::TotalFailures => "totalFailures",
            Detector::GatewayFailures => "gatewayFailures",
            Detector::LocalOriginFailures => "localOriginFailures",
            Detector::SuccessRate => "successRate",
            Detector::FailurePercentage => "failurePercentage",
        }
    }
}

#[derive(Debug, Default)]
pub struct EndpointState {
    /// [`CHECK_FAILED`] | [`EJECTED`]: no new requests while either is set.
    flags: AtomicU8,
    /// Requests in flight to this endpoint (LeastRequest; `/config`).
    pub in_flight: AtomicU32,
    // Outlier detection (Envoy's `DetectorHostMonitorImpl`).
    pub(crate) consecutive_5xx: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
    pub(crate) consecutive_local: AtomicU32,
    /// Ejections so far, decaying while the endpoint stays in: the next ejection lasts
    /// `baseEjectionTime × (ejections)`.
    pub(crate) ejections: AtomicU32,
    pub(crate) ejected_at_ms: AtomicU64,
    ejected_by: AtomicU8,
    /// Requests and failures in the current `interval` (success-rate detectors).
    pub(crate) window_total: AtomicU32,
    pub(crate) window_failed: AtomicU32,
}

impl EndpointState {
    /// May the endpoint take new requests (not failing its health check, not ejected)?
    #[inline]
    pub fn available(&self) -> bool {
        self.flags.load(Ordering::Relaxed) == 0
    }

    pub fn check_failed(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & CHECK_FAILED != 0
    }

    pub fn ejected(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EJECTED != 0
    }

    /// Sets the health check's verdict; `true` when it changed.
    pub fn set_check_failed(&self, failed: bool) -> bool {
        let before = if failed {
            self.flags.fetch_or(CHECK_FAILED, Ordering::Relaxed)
        } else {
            self.flags.fetch_and(!CHECK_FAILED, Ordering::Relaxed)
        };
        (before & CHECK_FAILED != 0) != failed
    }

    /// Ejects the endpoint now; `false` when it already was.
    pub fn eject(&self, by: Detector) -> bool {
        let before = self.flags.fetch_or(EJECTED, Ordering::Relaxed);
        if before & EJECTED != 0 {
            return false;
        }
        self.ejected_at_ms.store(now_ms(), Ordering::Relaxed);
        self.ejected_by.store(by as u8, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.consecutive_local.store(0, Ordering::Relaxed);
        true
    }

    /// Returns an ejected endpoint to service.
    pub fn uneject(&self) {
        self.flags.fetch_and(!EJECTED, Ordering::Relaxed);
        self.ejected_by.store(0, Ordering::Relaxed);
    }

    /// When the current ejection ends (`base × ejections`, capped at `max`), if ejected.
    pub fn ejected_until_ms(&self, base: Duration, max: Duration) -> Option<u64> {
        if !self.ejected() {
            return None;
        }
        let n = self.ejections.load(Ordering::Relaxed).max(1);
        let span = base.saturating_mul(n).min(max.max(base));
        Some(
            self.ejected_at_ms
                .load(Ordering::Relaxed)
                .saturating_add(u64::try_from(span.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn ejected_by(&self) -> Detector {
        Detector::from_u8(self.ejected_by.load(Ordering::Relaxed))
    }
}

/// What Envoy counts per cluster for its circuit breakers, and whether the cluster has seen
/// traffic (health checks run at `noTrafficInterval` until it has).
#[derive(Debug, Default)]
pub struct ClusterState {
    pub requests: AtomicU32,
    /// Attempts holding an upstream connection (HTTP/1: one connection each).
    pub connections: AtomicU32,
    pub pending: AtomicU32,
    pub retries: AtomicU32,
    seen_traffic: AtomicBool,
    /// Woken when a connection slot frees up (pending requests wait on it).
    pub released: tokio::sync::Notify,
}

impl ClusterState {
    #[inline]
    pub fn note_traffic(&self) {
        if !self.seen_traffic.load(Ordering::Relaxed) {
            self.seen_traffic.store(true, Ordering::Relaxed);
        }
    }

    pub fn has_seen_traffic(&self) -> bool {
        self.seen_traffic.load(Ordering::Relaxed)
    }

    /// Takes one of `max` slots of `counter`, or `false` when all are taken.
    pub fn try_take(counter: &AtomicU32, max: u32) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn give_back(counter: &AtomicU32) {
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_ejection_both_take_an_endpoint_out() {
        let s = EndpointState::default();
        assert!(s.available());
        assert!(s.set_check_failed(true));
        assert!(!s.set_check_failed(true), "no change");
        assert!(!s.available());
        assert!(s.eject(Detector::GatewayFailures));
        assert!(s.set_check_failed(false));
        assert!(!s.available(), "still ejected");
        assert_eq!(s.ejected_by(), Detector::GatewayFailures);
        s.uneject();
        assert!(s.available());
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_the_cap() {
        let s = EndpointState::default();
        let base = Duration::from_secs(30);
        let max = Duration::from_secs(300);
        s.eject(Detector::TotalFailures);
        let at = s.ejected_at_ms.load(Ordering::Relaxed);
        assert_eq!(s.ejected_until_ms(base, max), Some(at + 30_000));
        s.uneject();
        s.eject(Detector::TotalFailures);
        let at = s.ejected_at_ms.load(Ordering::Relaxed);
        assert_eq!(s.ejected_until_ms(base, max), Some(at + 60_000));
        s.ejections.store(50, Ordering::Relaxed);
        assert_eq!(s.ejected_until_ms(base, max), Some(at + 300_000));
    }

    #[test]
    fn slots_are_bounded() {
        let c = ClusterState::default();
        assert!(ClusterState::try_take(&c.requests, 1));
        assert!(!ClusterState::try_take(&c.requests, 1));
        ClusterState::give_back(&c.requests);
        assert!(ClusterState::try_take(&c.requests, 1));
    }
}
