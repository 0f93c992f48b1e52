//! The pool of idle upstream connections of a [`super::TransportConnector`] (meshgate's patch,
//! see vendor/README.md).
//!
//! It replaces `pingora_pool::ConnectionPool` for streams. That pool watched every released
//! connection with a task of its own: a task spawned, a oneshot channel, a `Notify` and an
//! `Arc<Mutex>` per release, and on reuse the taker waited for the watcher task to let the
//! connection go (a second task switch per request): about 8 % of a proxied request's CPU
//! in meshgate's benchmark (perf). Here a released connection is only stored. A connection
//! the peer closed is found when it is taken (the caller's read test, as before) or by
//! [`IdlePool::sweep`], which the connector runs every [`SWEEP_EVERY`] and which also closes
//! connections idle past their idle timeout; taking one checks its idle timeout exactly.
//!
//! Connections are kept per reuse key, the most recently released taken first (its peer is
//! the least likely to have timed it out), and evicted oldest first beyond the capacity.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often idle connections are checked for a peer's close and for their idle timeout.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A connection waiting in the pool.
pub(crate) struct Idle<S> {
    seq: u64,
    pub(crate) stream: S,
    pub(crate) since: Instant,
    timeout: Option<Duration>,
}

impl<S> Idle<S> {
    fn expired(&self, now: Instant) -> bool {
        self.timeout
            .is_some_and(|t| now.saturating_duration_since(self.since) >= t)
    }
}

/// Idle connections by reuse key, at most `capacity` of them.
pub(crate) struct IdlePool<S> {
    capacity: usize,
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    next_seq: u64,
    /// Each key's connections in release order (oldest first); a queue emptied by `take`
    /// stays until the next sweep.
    by_key: HashMap<u64, VecDeque<Idle<S>>>,
    /// (seq, key) of every connection in release order, for eviction. Entries of connections
    /// taken since are skipped when met, and dropped once they outnumber the live ones.
    order: VecDeque<(u64, u64)>,
    len: usize,
}

impl<S> Inner<S> {
    fn holds(&self, seq: u64, key: u64) -> bool {
        self.by_key
            .get(&key)
            .is_some_and(|d| d.binary_search_by_key(&seq, |i| i.seq).is_ok())
    }

    /// Removes the oldest connection. The oldest live entry of `order` is always the front of
    /// its key's queue: every older connection of that key has an older entry.
    fn evict_oldest(&mut self) -> Option<Idle<S>> {
        while let Some((seq, key)) = self.order.pop_front() {
            let Some(queue) = self.by_key.get_mut(&key) else {
                continue;
            };
            if queue.front().is_some_and(|i| i.seq == seq) {
                let idle = queue.pop_front();
                if queue.is_empty() {
                    self.by_key.remove(&key);
                }
                self.len -= 1;
                return idle;
            }
        }
        None
    }

    fn compact_order(&mut self) {
        let mut order = std::mem::take(&mut self.order);
        order.retain(|&(seq, key)| self.holds(seq, key));
        self.order = order;
    }
}

impl<S> IdlePool<S> {
    pub(crate) fn new(capacity: usize) -> Self {
        IdlePool {
            capacity,
            inner: Mutex::new(Inner {
                next_seq: 0,
                by_key: HashMap::new(),
                order: VecDeque::new(),
                len: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        // Nothing under the lock can panic half-way through an update.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `stream` under `key`; returns the connection evicted to make room, if any, for
    /// the caller to close outside the lock. A capacity of 0 keeps nothing.
    pub(crate) fn put(
        &self,
        key: u64,
        stream: S,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Option<Idle<S>> {
        if self.capacity == 0 {
            return Some(Idle {
                seq: 0,
                stream,
                since: now,
                timeout,
            });
        }
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.by_key.entry(key).or_default().push_back(Idle {
            seq,
            stream,
            since: now,
            timeout,
        });
        inner.order.push_back((seq, key));
        inner.len += 1;
        let evicted = if inner.len > self.capacity {
            inner.evict_oldest()
        } else {
            None
        };
        if inner.order.len() > 2 * inner.len + 64 {
            inner.compact_order();
        }
        evicted
    }

    /// The most recently released connection under `key` still within its idle timeout.
    /// Expired ones are returned in `expired` for the caller to close outside the lock.
    pub(crate) fn take(&self, key: u64, now: Instant, expired: &mut Vec<Idle<S>>) -> Option<S> {
        let mut inner = self.lock();
        let queue = inner.by_key.get_mut(&key)?;
        let before = expired.len();
        let found = match queue.pop_back() {
            Some(idle) if idle.expired(now) => {
                // Every older connection of the key has been idle longer still.
                expired.push(idle);
                expired.extend(queue.drain(..));
                None
            }
            other => other,
        };
        let removed = usize::from(found.is_some()) + expired.len() - before;
        // An emptied queue stays (the sweep drops it): a busy key's connection goes back in
        // within microseconds, and removing it would free and reallocate the queue then.
        inner.len -= removed;
        found.map(|i| i.stream)
    }

    /// Removes every connection past its idle timeout or for which `alive` says no; returns
    /// them for the caller to close outside the lock.
    pub(crate) fn sweep(
        &self,
        now: Instant,
        mut alive: impl FnMut(&mut S) -> bool,
    ) -> Vec<Idle<S>> {
        let mut dead = Vec::new();
        let mut inner = self.lock();
        inner.by_key.retain(|_, queue| {
            let mut kept = VecDeque::with_capacity(queue.len());
            for mut idle in queue.drain(..) {
                if idle.expired(now) || !alive(&mut idle.stream) {
                    dead.push(idle);
                } else {
                    kept.push_back(idle);
                }
            }
            *queue = kept;
            !queue.is_empty()
        });
        inner.len -= dead.len();
        if !dead.is_empty() {
            inner.compact_order();
        }
        dead
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(pool: &IdlePool<&'static str>, key: u64, now: Instant) -> Option<&'static str> {
        let mut expired = Vec::new();
        pool.take(key, now, &mut expired)
    }

    #[test]
    fn the_latest_connection_of_a_key_is_taken_first_and_only_once() {
        let pool = IdlePool::new(8);
        let now = Instant::now();
        assert!(pool.put(1, "a", None, now).is_none());
        assert!(pool.put(1, "b", None, now).is_none());
        assert!(pool.put(2, "c", None, now).is_none());
        assert_eq!(taken(&pool, 1, now), Some("b"));
        assert_eq!(taken(&pool, 1, now), Some("a"));
        assert_eq!(taken(&pool, 1, now), None);
        assert_eq!(taken(&pool, 3, now), None);
        assert_eq!(taken(&pool, 2, now), Some("c"));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn beyond_the_capacity_the_oldest_connection_of_any_key_goes() {
        let pool = IdlePool::new(2);
        let now = Instant::now();
        assert!(pool.put(1, "a", None, now).is_none());
        assert!(pool.put(2, "b", None, now).is_none());
        assert_eq!(pool.put(2, "c", None, now).map(|i| i.stream), Some("a"));
        // "b" was taken: the next eviction skips its entry and takes "c".
        assert_eq!(taken(&pool, 2, now), Some("c"));
        assert!(pool.put(3, "d", None, now).is_none());
        assert_eq!(pool.put(3, "e", None, now).map(|i| i.stream), Some("b"));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.put(1, "x", None, now).map(|i| i.stream), Some("d"));
    }

    #[test]
    fn a_capacity_of_zero_keeps_nothing() {
        let pool = IdlePool::new(0);
        let now = Instant::now();
        assert_eq!(pool.put(1, "a", None, now).map(|i| i.stream), Some("a"));
        assert_eq!(taken(&pool, 1, now), None);
    }

    #[test]
    fn an_expired_connection_is_not_taken_and_neither_are_older_ones() {
        let pool = IdlePool::new(8);
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        pool.put(1, "old", Some(second), t0);
        pool.put(1, "newer", Some(second), t0 + second / 2);
        pool.put(2, "other", Some(second), t0);
        let mut expired = Vec::new();
        assert_eq!(pool.take(1, t0 + second * 2, &mut expired), None);
        let mut gone: Vec<_> = expired.iter().map(|i| i.stream).collect();
        gone.sort();
        assert_eq!(gone, ["newer", "old"]);
        assert_eq!(pool.len(), 1);
        // Within its timeout a connection is taken.
        assert_eq!(taken(&pool, 2, t0 + second / 2), Some("other"));
    }

    #[test]
    fn a_sweep_removes_expired_and_dead_connections_only() {
        let pool = IdlePool::new(8);
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        pool.put(1, "expired", Some(second), t0);
        pool.put(1, "closed", None, t0);
        pool.put(2, "alive", Some(second * 10), t0);
        let dead = pool.sweep(t0 + second * 2, |s| *s != "closed");
        let mut gone: Vec<_> = dead.iter().map(|i| i.stream).collect();
        gone.sort();
        assert_eq!(gone, ["closed", "expired"]);
        assert_eq!(pool.len(), 1);
        assert_eq!(taken(&pool, 1, t0), None);
        assert_eq!(taken(&pool, 2, t0), Some("alive"));
        // The queue "alive" left stays for the next release, until a sweep drops it.
        assert!(pool.lock().by_key.contains_key(&2));
        assert!(pool.sweep(t0, |_| true).is_empty());
        assert!(pool.lock().by_key.is_empty());
    }

    #[test]
    fn taken_connections_do_not_grow_the_eviction_order_without_bound() {
        let pool = IdlePool::new(4);
        let now = Instant::now();
        pool.put(9, "kept", None, now);
        for _ in 0..10_000 {
            pool.put(1, "busy", None, now);
            assert_eq!(taken(&pool, 1, now), Some("busy"));
        }
        let order = pool.lock().order.len();
        assert!(order <= 2 * 1 + 64 + 1, "{order} entries for 1 connection");
        assert_eq!(taken(&pool, 9, now), Some("kept"));
    }
}
