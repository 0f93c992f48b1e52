// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! A deadline for reading a response that the application may move while the read waits.
//!
//! The per-read `read_timeout` of the client sessions restarts at every read, so it cannot
//! bound a whole response (a backend trickling a byte now and then never times out), and it
//! cannot tell a silent exchange from one where only the request body is still flowing. A
//! [`ReadDeadline`] is an instant shared between the application and the session: a read
//! waits until it passes, re-checking when its timer fires in case the application moved it
//! later (on request body progress, say), and fails with `ReadTimedout` once it has really
//! passed.

use std::future::Future;
use std::task::Poll;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An optional instant, settable from any thread.
#[derive(Debug)]
pub struct ReadDeadline {
    /// Nanoseconds after [`epoch`], plus one; zero: no deadline.
    at: AtomicU64,
}

/// The instant deadlines count from: one per process, so that making a deadline (one per
/// proxied request) reads no clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Default for ReadDeadline {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadDeadline {
    /// No deadline yet.
    pub fn new() -> Self {
        ReadDeadline {
            at: AtomicU64::new(0),
        }
    }

    /// Sets (`Some`) or clears (`None`) the deadline.
    pub fn set(&self, at: Option<Instant>) {
        let v = at.map_or(0, |at| {
            u64::try_from(at.saturating_duration_since(epoch()).as_nanos())
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1)
        });
        self.at.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            0 => None,
            v => Some(epoch() + Duration::from_nanos(v - 1)),
        }
    }
}

/// Runs `read` until it completes, `read_timeout` passes (counted from now), or `deadline`
/// passes; `None` on a timeout. The read future is kept across re-checks, never dropped
/// half-way. Timers tick at 10 ms, as Pingora's own read timeouts do. A read that completes
/// at once (a body already buffered) reads no clock and arms no timer.
pub(crate) async fn read_within<F: Future>(
    read_timeout: Option<Duration>,
    deadline: Option<&ReadDeadline>,
    read: F,
) -> Option<F::Output> {
    tokio::pin!(read);
    if let Poll::Ready(out) = futures::poll!(read.as_mut()) {
        return Some(out);
    }
    let mut now = Instant::now();
    let read_by = read_timeout.map(|t| now + t);
    loop {
        let by = match (read_by, deadline.and_then(ReadDeadline::get)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(by) = by else {
            return Some(read.await);
        };
        if by <= now {
            return None;
        }
        // Pingora's fast timeout: no timer at all when the read is ready at once, and a
        // shared 10 ms-tick wheel instead of tokio's per-timer entries otherwise.
        if let Ok(out) = pingora_timeout::timeout(by - now, read.as_mut()).await {
            return Some(out);
        }
        // The timer fired: done unless the deadline moved later meanwhile.
        now = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_moved_later_keeps_the_read_waiting() {
        let d = std::sync::Arc::new(ReadDeadline::new());
        d.set(Some(Instant::now() + Duration::from_millis(50)));
        let mover = d.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            mover.set(Some(Instant::now() + Duration::from_millis(100)));
        });
        let out = read_within(None, Some(&d), async {
            tokio::time::sleep(Duration::from_millis(90)).await;
            7
        })
        .await;
        assert_eq!(out, Some(7));
    }

    #[tokio::test]
    async fn a_passed_deadline_ends_the_read() {
        let d = ReadDeadline::new();
        d.set(Some(Instant::now() + Duration::from_millis(20)));
        let out = read_within(Some(Duration::from_secs(5)), Some(&d), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        assert!(out.is_none());
        d.set(None);
        assert!(d.get().is_none());
    }
}
