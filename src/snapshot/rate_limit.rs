//! Local rate limits (MeshRateLimit, spec §9): Envoy's token bucket with
//! `max_tokens = tokens_per_fill = num` and `fill_interval = interval`, i.e. `num` requests
//! (or connections) per interval, refilled to full at every interval boundary counted from
//! when the bucket was made.
//!
//! The bucket is one atomic word (fill period, tokens left) updated by compare-and-swap: no
//! lock on the request path. Buckets outlive snapshots: a reload that keeps a limit keeps
//! its bucket (`runtime::registry`), so reloading never hands out a fresh allowance.

use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    num: u32,
    interval_nanos: u64,
    origin: Instant,
    /// `(fill period << 32) | tokens left in that period`.
    state: AtomicU64,
}

impl TokenBucket {
    /// A full bucket of `num` tokens per `interval` (validation keeps both positive).
    pub fn new(num: u32, interval: Duration) -> Self {
        TokenBucket {
            num,
            interval_nanos: u64::try_from(interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            origin: Instant::now(),
            state: AtomicU64::new(u64::from(num)),
        }
    }

    pub fn num(&self) -> u32 {
        self.num
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// The fill period `now` falls in (wrapping: only equality matters).
    fn period(&self, now: Instant) -> u32 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        (elapsed / self.interval_nanos) as u32
    }

    /// Takes a token if one is left in the current period.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    pub fn try_take_at(&self, now: Instant) -> bool {
        let period = self.period(now);
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (p, left) = ((current >> 32) as u32, current as u32);
            let left = if p == period { left } else { self.num };
            if left == 0 {
                return false;
            }
            let next = (u64::from(period) << 32) | u64::from(left - 1);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// A route entry's HTTP limit: its bucket and what a rejected request gets.
#[derive(Debug)]
pub struct HttpLimit {
    /// This instance's bucket: the whole limit, or (for a fleet limit) what is counted when
    /// the shared store cannot answer.
    pub bucket: Arc<TokenBucket>,
    /// A limit counted across the fleet (`meshgate.io/rate-limit-scope: fleet`).
    pub fleet: Option<FleetKey>,
    /// `onRateLimit.status` (429 by default).
    pub status: u16,
    /// `onRateLimit.headers.set`, split on commas as Kuma does: the first value of a name
    /// replaces, the others are appended.
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

/// Where a fleet-wide limit is counted in the shared store: every instance running the
/// same policies computes the same key.
#[derive(Debug)]
pub struct FleetKey {
    /// `meshgate:rl:<gateway>:<limit hash>`; the store appends the window number.
    pub prefix: Box<str>,
    pub num: u32,
    pub interval_ms: u64,
}

impl FleetKey {
    /// The key of one limit. `identity` must be the same in every instance for the same
    /// route rule (it hashes the gateway, port, hostname, route and matches).
    pub fn new(gateway: &str, identity: u64, num: u32, interval: Duration) -> Self {
        use std::hash::Hasher;
        // xxHash64 with a fixed seed: the same in every process, unlike a randomly keyed
        // hasher.
        let mut h = twox_hash::XxHash64::with_seed(0);
        h.write_u64(identity);
        h.write_u32(num);
        h.write_u128(interval.as_millis());
        FleetKey {
            prefix: format!("meshgate:rl:{gateway}:{:016x}", h.finish()).into_boxed_str(),
            num,
            interval_ms: u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }
}

/// Envoy's body for a locally rate-limited request.
pub const RATE_LIMITED_BODY: &str = "local_rate_limited";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_to_full_at_each_interval_boundary() {
        let b = TokenBucket::new(2, Duration::from_secs(10));
        let t0 = b.origin;
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0 + Duration::from_secs(1)));
        assert!(!b.try_take_at(t0 + Duration::from_secs(9)));
        // The next period starts full, whatever was left.
        assert!(b.try_take_at(t0 + Duration::from_secs(10)));
        assert!(b.try_take_at(t0 + Duration::from_secs(11)));
        assert!(!b.try_take_at(t0 + Duration::from_secs(12)));
    }

    #[test]
    fn concurrent_takers_never_get_more_than_num() {
        let b = Arc::new(TokenBucket::new(1000, Duration::from_secs(3600)));
        let taken: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..1000).filter(|_| b.try_take()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(taken, 1000);
    }
}
