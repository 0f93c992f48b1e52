//! State that must outlive a snapshot, in one place, keyed by stable identity (not by
//! memory address): a reload builds new snapshots, and anything that counts over time would
//! otherwise start from zero at every reload.
//!
//! Today: rate-limit buckets, keyed by what the limit applies to and its rate, so a reload
//! that keeps a limit keeps its bucket and a changed limit starts a fresh one. Entries are
//! weak: a bucket no snapshot uses any more is dropped with its last snapshot.
//!
//! Used at compile time only (a lock here never touches the request path).

use crate::snapshot::rate_limit::TokenBucket;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Registry {
    buckets: Mutex<HashMap<u64, Weak<TokenBucket>>>,
}

impl Registry {
    /// The bucket for `identity` (a hash of what it limits) with this rate: the one a
    /// previous snapshot uses, or a new full one.
    pub fn bucket(&self, identity: u64, num: u32, interval: Duration) -> Arc<TokenBucket> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (identity, num, interval).hash(&mut h);
        let key = h.finish();
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(b) = map.get(&key).and_then(Weak::upgrade) {
            return b;
        }
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let b = Arc::new(TokenBucket::new(num, interval));
        map.insert(key, Arc::downgrade(&b));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_limit_gets_the_same_bucket_a_changed_one_a_fresh_one() {
        let r = Registry::default();
        let a = r.bucket(7, 1, Duration::from_secs(60));
        assert!(a.try_take());
        let again = r.bucket(7, 1, Duration::from_secs(60));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!again.try_take(), "the allowance is not handed out twice");
        let changed = r.bucket(7, 2, Duration::from_secs(60));
        assert!(changed.try_take());
        drop((a, again));
        let fresh = r.bucket(7, 1, Duration::from_secs(60));
        assert!(fresh.try_take(), "a bucket no snapshot holds is gone");
    }
}
