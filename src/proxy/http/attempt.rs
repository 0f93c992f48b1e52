//! The attempts of one forwarded request: which endpoint each goes to, when it must end, and
//! whether a failed one is tried again (MeshRetry, spec §5.2; MeshTimeout, §4.2).
//!
//! Pingora drives the loop: every attempt starts in `upstream_peer`, and an error marked
//! retriable (by `fail_to_connect`, `error_while_proxy`, or `upstream_response_filter` for a
//! retriable status) makes it call `upstream_peer` again. This module holds what those hooks
//! decide with, so each stays a few lines.
//!
//! Time limits are one [`ReadDeadline`] per request, moved as the exchange progresses
//! (Pingora's per-read timeout restarts at every read, so it can bound neither a whole
//! response nor tell silence from an upload still in progress):
//! - the route's `requestTimeout`, from when the request has been fully received (Envoy's
//!   route timeout), over all attempts;
//! - `perTryTimeout`, per attempt, from when the request has been sent;
//! - `maxStreamDuration`, per attempt, from its start;
//! - the route's `streamIdleTimeout`, from the last byte either way.

use crate::snapshot::cluster::ClusterConf;
use crate::snapshot::policy::RoutePolicies;
use crate::snapshot::retry::{Failure, Retriable, RetryPolicy};
use pingora::protocols::http::deadline::ReadDeadline;
use pingora::{Error, ErrorSource, ErrorType};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When no MeshRetry selects a route, meshgate retries connect failures on the next
/// endpoint, up to five attempts (Kuma's default policy's count), and nothing else.
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = 5;

/// The error `upstream_response_filter` returns to have Pingora drop a retriable response
/// and try again.
pub const RETRY_RESPONSE: ErrorType = ErrorType::Custom("retriable upstream response");

/// Which time limit ended an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The route's `requestTimeout`: 504 `upstream request timeout`.
    Route,
    /// `perTryTimeout`: retried as a reset, else 504 `upstream request timeout`.
    PerTry,
    /// `maxStreamDuration`: 504 `upstream max stream duration reached`.
    MaxStream,
    /// `streamIdleTimeout`: 504 `stream timeout`.
    Idle,
}

impl Expiry {
    /// Envoy's body for the 504 it answers.
    pub fn body(self) -> &'static str {
        match self {
            Expiry::Route | Expiry::PerTry => "upstream request timeout",
            Expiry::MaxStream => "upstream max stream duration reached",
            Expiry::Idle => "stream timeout",
        }
    }
}

#[derive(Debug, Default)]
pub struct Attempts {
    /// Attempts started, the first included.
    pub started: u32,
    /// Pingora retries a request that met a pooled connection closed under it on its own;
    /// that is not one of the policy's retries.
    pooled_retry: bool,
    /// Endpoints tried (for `OmitPreviousHosts`).
    tried: Vec<usize>,
    /// Wait before the next attempt.
    back_off: Option<Duration>,
    deadline: Option<Arc<ReadDeadline>>,
    idle: Option<Duration>,
    route_timeout: Option<Duration>,
    per_try_timeout: Option<Duration>,
    route_by: Option<Instant>,
    per_try_by: Option<Instant>,
    max_stream_by: Option<Instant>,
    /// What expired, once something did.
    pub expired: Option<Expiry>,
    /// When the current attempt started, and how long it took to the response head.
    attempt_started: Option<Instant>,
    upstream_time: Option<Duration>,
}

impl Attempts {
    /// Retries made so far (attempts after the first, Pingora's own excluded).
    pub fn retries(&self) -> u32 {
        self.started.saturating_sub(1)
    }

    /// Starts an attempt at `now`: its limits, and the shared deadline for the session.
    pub fn begin(
        &mut self,
        now: Instant,
        route: &RoutePolicies,
        retry: Option<&RetryPolicy>,
        cluster: &ClusterConf,
        request_complete: bool,
    ) -> Arc<ReadDeadline> {
        if std::mem::take(&mut self.pooled_retry) {
            self.started = self.started.max(1);
        } else {
            self.started += 1;
        }
        self.attempt_started = Some(now);
        self.upstream_time = None;
        self.idle = route.timeouts.stream_idle;
        self.route_timeout = route.timeouts.request;
        self.per_try_timeout = retry.and_then(|r| r.per_try_timeout);
        self.per_try_by = None;
        self.max_stream_by = cluster.max_stream_duration.map(|d| now + d);
        let deadline = self.deadline.get_or_insert_with(Default::default).clone();
        if request_complete {
            self.request_complete(now);
        } else {
            self.refresh(now);
        }
        deadline
    }

    /// The request has been fully received (or, on a retry, sent again): the route timeout
    /// starts (once) and the attempt's per-try timeout.
    pub fn request_complete(&mut self, now: Instant) {
        if self.route_by.is_none() {
            self.route_by = self.route_timeout.map(|d| now + d);
        }
        self.per_try_by = self.per_try_timeout.map(|d| now + d);
        self.refresh(now);
    }

    /// The backend answered 101: the exchange is now a tunnel. The response is complete, so
    /// the route, per-try and stream-duration limits end; the idle limit stays (Envoy's
    /// stream idle timeout covers upgraded streams, traffic either way resetting it).
    pub fn upgraded(&mut self, now: Instant) {
        self.route_timeout = None;
        self.per_try_timeout = None;
        self.route_by = None;
        self.per_try_by = None;
        self.max_stream_by = None;
        self.refresh(now);
    }

    /// The backend's response head arrived at `now`.
    pub fn answered(&mut self, now: Instant) {
        if let Some(start) = self.attempt_started {
            self.upstream_time = Some(now.saturating_duration_since(start));
        }
    }

    /// The answering attempt's time from its start to the response head.
    pub fn upstream_time(&self) -> Option<Duration> {
        self.upstream_time
    }

    /// Bytes moved (either way) at `now`: the idle limit starts over.
    pub fn activity(&mut self, now: Instant) {
        if self.deadline.is_some() {
            self.refresh(now);
        }
    }

    fn refresh(&self, now: Instant) {
        let Some(deadline) = &self.deadline else {
            return;
        };
        let by = [
            self.idle.map(|d| now + d),
            self.route_by,
            self.per_try_by,
            self.max_stream_by,
        ]
        .into_iter()
        .flatten()
        .min();
        deadline.set(by);
    }

    /// Which limit a read timeout at `now` hit.
    pub fn expiry_at(&self, now: Instant) -> Expiry {
        let passed = |by: Option<Instant>| by.is_some_and(|b| b <= now);
        if passed(self.route_by) {
            Expiry::Route
        } else if passed(self.max_stream_by) {
            Expiry::MaxStream
        } else if passed(self.per_try_by) {
            Expiry::PerTry
        } else {
            Expiry::Idle
        }
    }

    /// The endpoint of the next attempt: with `omit_previous`, one not tried yet when there
    /// is one; otherwise the backend's next in turn (`next`).
    pub fn next_endpoint(
        &mut self,
        endpoints: usize,
        omit_previous: bool,
        mut next: impl FnMut() -> Option<usize>,
    ) -> Option<usize> {
        let mut pick = next()?;
        if omit_previous && self.tried.len() < endpoints {
            for _ in 0..endpoints {
                if !self.tried.contains(&pick) {
                    break;
                }
                pick = next()?;
            }
        }
        Some(pick)
    }

    /// Records the endpoint an attempt goes to.
    pub fn went_to(&mut self, endpoint: usize) {
        if !self.tried.contains(&endpoint) {
            self.tried.push(endpoint);
        }
    }

    /// Takes the wait scheduled before the next attempt.
    pub fn take_back_off(&mut self) -> Option<Duration> {
        self.back_off.take()
    }

    /// May `policy` retry once more?
    fn has_retry_left(&self, policy: &RetryPolicy) -> bool {
        self.started <= policy.num_retries
    }

    /// Decides whether a failure is retried under `policy`, and schedules the back-off.
    pub fn retry_failure(&mut self, policy: &RetryPolicy, failure: Failure) -> bool {
        if !self.has_retry_left(policy) || !policy.retries_failure(failure) {
            return false;
        }
        self.back_off = Some(policy.back_off(self.started, fastrand::u64(..)));
        true
    }

    /// Decides whether a response is retried under `policy`, and schedules the back-off
    /// (the wait a reset header asks for, for responses retried by status or header).
    pub fn retry_response(
        &mut self,
        policy: &RetryPolicy,
        status: u16,
        headers: &http::HeaderMap,
    ) -> bool {
        if !self.has_retry_left(policy) {
            return false;
        }
        let why = policy.retries_response(status, headers);
        if why == Retriable::No {
            return false;
        }
        let rate_limited = match why {
            Retriable::ByStatusOrHeader => policy.rate_limited_wait(headers),
            _ => None,
        };
        self.back_off =
            Some(rate_limited.unwrap_or_else(|| policy.back_off(self.started, fastrand::u64(..))));
        true
    }

    /// Without a MeshRetry: a connect failure is retried on another endpoint, up to
    /// [`DEFAULT_CONNECT_ATTEMPTS`] (and not beyond one try per endpoint, two at least).
    pub fn retry_connect_by_default(&self, endpoints: usize) -> bool {
        let cap = DEFAULT_CONNECT_ATTEMPTS.min(u32::try_from(endpoints.max(2)).unwrap_or(u32::MAX));
        self.started < cap
    }

    /// Pingora retries a request that met a pooled connection closed under it; the next
    /// attempt is not one of the policy's.
    pub fn pooled_connection_retry(&mut self) {
        self.pooled_retry = true;
    }
}

/// What an upstream error means for retrying: `None` for errors that are not the
/// upstream's failure (the client went away, an answer meshgate gave itself).
pub fn classify(e: &Error, attempts: &Attempts, now: Instant) -> Option<Failure> {
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout => Some(Failure::ConnectFailure),
        ErrorType::ReadTimedout => match attempts.expiry_at(now) {
            Expiry::PerTry => Some(Failure::PerTryTimeout),
            // The route timeout covers every attempt; idle and stream limits are not
            // upstream resets.
            _ => None,
        },
        ErrorType::H2Error if refused_stream(e) => Some(Failure::RefusedStream),
        ErrorType::HTTPStatus(_) => None,
        _ => Some(Failure::Reset),
    }
}

fn refused_stream(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<h2::Error>()
        .and_then(h2::Error::reason)
        .is_some_and(|r| r == h2::Reason::REFUSED_STREAM)
}

/// The current period of `max_age` since the epoch: pooled connections are keyed by it.
pub fn connection_period(max_age: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let period = max_age.as_millis().max(1);
    u64::try_from(now.as_millis() / period).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::timeouts::RouteTimeouts;

    fn route(request: u64, idle: u64) -> RoutePolicies {
        RoutePolicies {
            timeouts: RouteTimeouts {
                request: Some(Duration::from_millis(request)),
                stream_idle: Some(Duration::from_millis(idle)),
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_deadline_is_the_nearest_limit_and_idle_restarts_on_activity() {
        let mut a = Attempts::default();
        let t0 = Instant::now();
        let d = a.begin(t0, &route(1000, 100), None, &ClusterConf::default(), false);
        assert_eq!(d.get(), Some(t0 + Duration::from_millis(100)), "idle");
        a.activity(t0 + Duration::from_millis(950));
        assert_eq!(
            d.get(),
            Some(t0 + Duration::from_millis(1050)),
            "no route timeout before the request is complete"
        );
        a.request_complete(t0 + Duration::from_millis(960));
        assert_eq!(d.get(), Some(t0 + Duration::from_millis(1060)));
        a.activity(t0 + Duration::from_millis(1500));
        assert_eq!(d.get(), Some(t0 + Duration::from_millis(1600)));
        a.activity(t0 + Duration::from_millis(1900));
        assert_eq!(
            d.get(),
            Some(t0 + Duration::from_millis(1960)),
            "the route timeout from request complete caps it"
        );
        assert_eq!(a.expiry_at(t0 + Duration::from_millis(1970)), Expiry::Route);
    }

    #[test]
    fn omit_previous_hosts_skips_tried_endpoints_while_untried_ones_remain() {
        let mut a = Attempts::default();
        let mut rr = 0usize;
        let mut next = || {
            rr += 1;
            Some(rr % 3)
        };
        a.went_to(1);
        a.went_to(2);
        assert_eq!(a.next_endpoint(3, true, &mut next), Some(0));
        a.went_to(0);
        assert!(a.next_endpoint(3, true, &mut next).is_some());
    }
}
