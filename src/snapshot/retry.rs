//! A route's retry policy, compiled from MeshRetry (spec §5): what is retried, how often,
//! how long to wait between attempts. The decisions are Envoy's (`RetryStateImpl`): a
//! *reset* (connect failure, upstream reset, per-try timeout) is retried under `reset`,
//! `5xx`, `gateway-error` (and `connect-failure` / `refused-stream` for those resets); a
//! *response* only under the status conditions.

use super::matchers::HeaderMatcher;
use http::{HeaderMap, HeaderName, Method};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Retry conditions (Envoy's `retry_on`), as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(u16);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 6);
    pub const STATUS_CODES: RetryOn = RetryOn(1 << 7);
    pub const RESPONSE_HEADERS: RetryOn = RetryOn(1 << 8);
    /// gRPC statuses (only meaningful with `grpc_codes`).
    pub const GRPC_STATUS: RetryOn = RetryOn(1 << 9);

    /// Kuma's `HttpRetryOnDefault`: `gateway-error,connect-failure,refused-stream`.
    pub const HTTP_DEFAULT: RetryOn =
        RetryOn(Self::GATEWAY_ERROR.0 | Self::CONNECT_FAILURE.0 | Self::REFUSED_STREAM.0);
    /// Kuma's `GrpcRetryOnDefault` without its gRPC statuses:
    /// `connect-failure,gateway-error,refused-stream,reset` (+ cancelled,
    /// resource-exhausted, unavailable).
    pub const GRPC_DEFAULT: RetryOn = RetryOn(
        Self::CONNECT_FAILURE.0
            | Self::GATEWAY_ERROR.0
            | Self::REFUSED_STREAM.0
            | Self::RESET.0
            | Self::GRPC_STATUS.0,
    );

    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    pub const fn has(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Envoy's names, for `/config`.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: &[(RetryOn, &str)] = &[
            (RetryOn::FIVE_XX, "5xx"),
            (RetryOn::GATEWAY_ERROR, "gateway-error"),
            (RetryOn::RESET, "reset"),
            (RetryOn::CONNECT_FAILURE, "connect-failure"),
            (RetryOn::RETRIABLE_4XX, "retriable-4xx"),
            (RetryOn::REFUSED_STREAM, "refused-stream"),
            (RetryOn::ENVOY_RATELIMITED, "envoy-ratelimited"),
            (RetryOn::STATUS_CODES, "retriable-status-codes"),
            (RetryOn::RESPONSE_HEADERS, "retriable-headers"),
            (RetryOn::GRPC_STATUS, "grpc-status"),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// How one attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection to the endpoint could not be made (refused, timed out, TLS).
    ConnectFailure,
    /// The connection broke before the response started.
    Reset,
    /// HTTP/2 REFUSED_STREAM.
    RefusedStream,
    /// `perTryTimeout` passed: Envoy resets the attempt.
    PerTryTimeout,
}

/// Where a rate-limited back-off reads its wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResetHeader {
    pub name: HeaderName,
    /// `true`: a Unix timestamp; `false`: seconds.
    pub unix_timestamp: bool,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (attempts = 1 + retries).
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub base_interval: Duration,
    pub max_interval: Duration,
    pub on: RetryOn,
    pub status_codes: Box<[u16]>,
    /// `grpc-status` values retried (gRPC section).
    pub grpc_codes: Box<[u32]>,
    /// Only these methods are retried (empty: any).
    pub methods: Box<[Method]>,
    /// A request is retried only if one of these matches it (empty: any).
    pub request_headers: Box<[HeaderMatcher]>,
    /// A response matching one of these is retried.
    pub response_headers: Box<[HeaderMatcher]>,
    pub reset_headers: Box<[ResetHeader]>,
    pub rate_limited_max: Duration,
    /// `OmitPreviousHosts`: a retry goes to an endpoint not tried yet, when there is one.
    pub omit_previous_hosts: bool,
}

/// Envoy's defaults: base 25 ms, max 10 × base; rate-limited back-off capped at 300 s.
pub const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);
pub const DEFAULT_RATE_LIMITED_MAX: Duration = Duration::from_secs(300);

impl RetryPolicy {
    /// A policy that retries nothing (a MeshRetry selects the route without HTTP retries):
    /// Envoy's defaults for everything else.
    pub fn never() -> Self {
        RetryPolicy {
            num_retries: 0,
            per_try_timeout: None,
            base_interval: DEFAULT_BASE_INTERVAL,
            max_interval: DEFAULT_BASE_INTERVAL * 10,
            on: RetryOn::default(),
            status_codes: Box::new([]),
            grpc_codes: Box::new([]),
            methods: Box::new([]),
            request_headers: Box::new([]),
            response_headers: Box::new([]),
            reset_headers: Box::new([]),
            rate_limited_max: DEFAULT_RATE_LIMITED_MAX,
            omit_previous_hosts: false,
        }
    }

    /// May this request be retried at all (methods, `retriableRequestHeaders`)?
    pub fn request_is_retriable(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && (self.request_headers.is_empty()
                || self.request_headers.iter().any(|m| m.matches(headers)))
    }

    /// Is a failed attempt retried (before any response)?
    pub fn retries_failure(&self, f: Failure) -> bool {
        let on = self.on;
        let any_reset = on.has(
            RetryOn::RESET
                .union(RetryOn::FIVE_XX)
                .union(RetryOn::GATEWAY_ERROR),
        );
        match f {
            Failure::ConnectFailure => any_reset || on.has(RetryOn::CONNECT_FAILURE),
            Failure::RefusedStream => any_reset || on.has(RetryOn::REFUSED_STREAM),
            Failure::Reset | Failure::PerTryTimeout => any_reset,
        }
    }

    /// Is a response retried? `grpc_status` is the `grpc-status` of a trailers-only answer.
    pub fn retries_response(&self, status: u16, headers: &HeaderMap) -> Retriable {
        // A response an overloaded Envoy (or meshgate) answered is never retried.
        if headers.contains_key("x-envoy-overloaded") {
            return Retriable::No;
        }
        let on = self.on;
        if on.has(RetryOn::STATUS_CODES) && self.status_codes.contains(&status) {
            return Retriable::ByStatusOrHeader;
        }
        if on.has(RetryOn::RESPONSE_HEADERS)
            && self.response_headers.iter().any(|m| m.matches(headers))
        {
            return Retriable::ByStatusOrHeader;
        }
        let yes = (on.has(RetryOn::FIVE_XX) && status >= 500)
            || (on.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (on.has(RetryOn::RETRIABLE_4XX) && status == 409)
            || (on.has(RetryOn::ENVOY_RATELIMITED) && headers.contains_key("x-envoy-ratelimited"))
            || (on.has(RetryOn::GRPC_STATUS) && self.grpc_status_matches(headers));
        if yes {
            Retriable::ByCondition
        } else {
            Retriable::No
        }
    }

    fn grpc_status_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|code| self.grpc_codes.contains(&code))
    }

    /// Envoy's fully jittered exponential back-off before retry number `retry` (1-based):
    /// uniform in [0, min((2^retry − 1) × base, max)).
    pub fn back_off(&self, retry: u32, random: u64) -> Duration {
        let multiplier = (1u64 << retry.min(32)).saturating_sub(1);
        let base_ms = u64::try_from(self.base_interval.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(self.max_interval.as_millis()).unwrap_or(u64::MAX);
        let cap = multiplier.saturating_mul(base_ms).min(max_ms);
        if cap == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(random % cap)
    }

    /// The wait a rate-limited response asks for through a reset header, capped.
    pub fn rate_limited_wait(&self, headers: &HeaderMap) -> Option<Duration> {
        self.reset_headers.iter().find_map(|h| {
            let v = headers.get(&h.name)?.to_str().ok()?.trim();
            let n: u64 = v.parse().ok()?;
            let wait = if h.unix_timestamp {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
                Duration::from_secs(n.checked_sub(now)?)
            } else {
                Duration::from_secs(n)
            };
            Some(wait.min(self.rate_limited_max))
        })
    }
}

/// Why a response is retried: rate-limited back-off applies only to responses retried by
/// status code or response header (spec Appendix B.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retriable {
    No,
    ByCondition,
    ByStatusOrHeader,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            num_retries: 1,
            on,
            ..RetryPolicy::never()
        }
    }

    #[test]
    fn kumas_default_conditions_retry_gateway_errors_not_500() {
        let p = policy(RetryOn::HTTP_DEFAULT);
        let h = HeaderMap::new();
        assert_eq!(p.retries_response(503, &h), Retriable::ByCondition);
        assert_eq!(p.retries_response(500, &h), Retriable::No);
        assert!(p.retries_failure(Failure::ConnectFailure));
        assert!(
            p.retries_failure(Failure::Reset),
            "gateway-error covers resets"
        );
    }

    #[test]
    fn reset_alone_retries_resets_but_not_responses() {
        let p = policy(RetryOn::RESET);
        assert!(p.retries_failure(Failure::PerTryTimeout));
        assert_eq!(p.retries_response(503, &HeaderMap::new()), Retriable::No);
    }

    #[test]
    fn connect_failure_alone_does_not_retry_resets() {
        let p = policy(RetryOn::CONNECT_FAILURE);
        assert!(p.retries_failure(Failure::ConnectFailure));
        assert!(!p.retries_failure(Failure::Reset));
    }

    #[test]
    fn overloaded_answers_are_never_retried() {
        let p = policy(RetryOn::FIVE_XX);
        let mut h = HeaderMap::new();
        h.insert("x-envoy-overloaded", "true".parse().expect("value"));
        assert_eq!(p.retries_response(503, &h), Retriable::No);
    }

    #[test]
    fn back_off_is_bounded_by_the_exponential_cap_and_the_maximum() {
        let p = policy(RetryOn::FIVE_XX);
        for r in 0..1000u64 {
            assert!(p.back_off(1, r) < Duration::from_millis(25));
            assert!(p.back_off(2, r) < Duration::from_millis(75));
            assert!(p.back_off(10, r) < Duration::from_millis(250));
        }
    }

    #[test]
    fn reset_headers_give_the_wait() {
        let mut p = policy(RetryOn::STATUS_CODES);
        p.reset_headers = Box::new([ResetHeader {
            name: HeaderName::from_static("retry-after"),
            unix_timestamp: false,
        }]);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().expect("value"));
        assert_eq!(p.rate_limited_wait(&h), Some(Duration::from_secs(2)));
    }
}
