//! MeshRetry confs → a rule's retry policies and a TCP port's connect attempts (spec §5.1).

use crate::compile::reuse::RegexCache;
use crate::compile::rules::header_matcher;
use crate::model::policy::retry::{
    BackOff, GrpcRetry, HostPredicate, HttpRetry, HttpRetryOn, RateLimitedBackOff, ResetFormat,
};
use crate::model::policy::RetryConf;
use crate::model::route::HeaderMatch;
use crate::snapshot::matchers::HeaderMatcher;
use crate::snapshot::retry::{
    ResetHeader, RetryOn, RetryPolicy, DEFAULT_BASE_INTERVAL, DEFAULT_RATE_LIMITED_MAX,
};
use std::time::Duration;

/// Connect attempts of a TCP route when no MeshRetry sets `tcp.maxConnectAttempt`:
/// meshgate's default, one per endpoint up to five (Kuma's own default policy's value).
pub const DEFAULT_TCP_CONNECT_ATTEMPTS: u32 = 5;

/// The `http` and `grpc` policies of a rule, when a MeshRetry selects it. A MeshRetry
/// without the section (or with `numRetries: 0`) yields a policy that never retries: Kuma
/// configures no retry policy on the route then.
pub fn compile(
    conf: Option<&RetryConf>,
    regexes: &mut RegexCache,
) -> (Option<RetryPolicy>, Option<RetryPolicy>) {
    let Some(conf) = conf else {
        return (None, None);
    };
    let http = match &conf.http {
        Some(h) => http(h, regexes),
        None => RetryPolicy::never(),
    };
    let grpc = conf.grpc.as_ref().map(grpc);
    (Some(http), grpc)
}

pub fn tcp_connect_attempts(conf: Option<&RetryConf>) -> u32 {
    conf.and_then(|c| c.tcp.as_ref())
        .and_then(|t| t.max_connect_attempt)
        .unwrap_or(DEFAULT_TCP_CONNECT_ATTEMPTS)
}

/// Envoy's defaults: base 25 ms, max 10 × base.
fn intervals(b: Option<&BackOff>) -> (Duration, Duration) {
    let base = b
        .and_then(|b| b.base_interval)
        .unwrap_or(DEFAULT_BASE_INTERVAL);
    let max = b.and_then(|b| b.max_interval).unwrap_or(base * 10);
    (base, max.max(base))
}

fn reset_headers(r: Option<&RateLimitedBackOff>) -> (Box<[ResetHeader]>, Duration) {
    let Some(r) = r else {
        return (Box::new([]), DEFAULT_RATE_LIMITED_MAX);
    };
    let headers = r
        .reset_headers
        .iter()
        .flatten()
        .map(|h| ResetHeader {
            name: h.name.clone(),
            unix_timestamp: h.format == ResetFormat::UnixTimestamp,
        })
        .collect();
    (headers, r.max_interval.unwrap_or(DEFAULT_RATE_LIMITED_MAX))
}

fn matchers(list: Option<&Vec<HeaderMatch>>, regexes: &mut RegexCache) -> Box<[HeaderMatcher]> {
    list.into_iter()
        .flatten()
        .filter_map(|h| header_matcher(h, regexes).ok())
        .collect()
}

fn http(h: &HttpRetry, regexes: &mut RegexCache) -> RetryPolicy {
    let num_retries = h.num_retries.unwrap_or(1);
    let (base_interval, max_interval) = intervals(h.back_off.as_ref());
    let (reset_headers, rate_limited_max) = reset_headers(h.rate_limited_back_off.as_ref());
    let mut on = RetryOn::default();
    let mut codes = Vec::new();
    let mut methods = Vec::new();
    for item in h.retry_on.iter().flatten() {
        on = on.union(match item {
            HttpRetryOn::FiveXx => RetryOn::FIVE_XX,
            HttpRetryOn::GatewayError => RetryOn::GATEWAY_ERROR,
            HttpRetryOn::Reset => RetryOn::RESET,
            HttpRetryOn::Retriable4xx => RetryOn::RETRIABLE_4XX,
            HttpRetryOn::ConnectFailure => RetryOn::CONNECT_FAILURE,
            HttpRetryOn::EnvoyRatelimited => RetryOn::ENVOY_RATELIMITED,
            HttpRetryOn::RefusedStream => RetryOn::REFUSED_STREAM,
            // No HTTP/3 upstreams: never matches.
            HttpRetryOn::Http3PostConnectFailure => RetryOn::default(),
            HttpRetryOn::Status(code) => {
                codes.push(*code);
                continue;
            }
            HttpRetryOn::Method(m) => {
                methods.push(m.clone());
                continue;
            }
        });
    }
    // Kuma's `splitRetryOn`: without any condition (only codes and methods, or nothing)
    // the default conditions stay.
    if on.is_empty() {
        on = RetryOn::HTTP_DEFAULT;
    }
    if !codes.is_empty() {
        on = on.union(RetryOn::STATUS_CODES);
    }
    let response_headers = matchers(h.retriable_response_headers.as_ref(), regexes);
    if !response_headers.is_empty() {
        on = on.union(RetryOn::RESPONSE_HEADERS);
    }
    RetryPolicy {
        num_retries,
        per_try_timeout: h.per_try_timeout.filter(|d| !d.is_zero()),
        base_interval,
        max_interval,
        on,
        status_codes: codes.into_boxed_slice(),
        grpc_codes: Box::new([]),
        methods: methods.into_boxed_slice(),
        request_headers: matchers(h.retriable_request_headers.as_ref(), regexes),
        response_headers,
        reset_headers,
        rate_limited_max,
        omit_previous_hosts: h
            .host_selection
            .iter()
            .flatten()
            .any(|p| *p == HostPredicate::OmitPreviousHosts),
    }
}

fn grpc(g: &GrpcRetry) -> RetryPolicy {
    let (base_interval, max_interval) = intervals(g.back_off.as_ref());
    let (reset_headers, rate_limited_max) = reset_headers(g.rate_limited_back_off.as_ref());
    // Kuma's `GrpcRetryOnDefault`; a `retryOn` list replaces it whole.
    let (on, codes): (RetryOn, Vec<u32>) = match &g.retry_on {
        Some(list) if !list.is_empty() => (
            RetryOn::GRPC_STATUS,
            list.iter().map(|c| c.code()).collect(),
        ),
        _ => (RetryOn::GRPC_DEFAULT, vec![1, 8, 14]),
    };
    RetryPolicy {
        num_retries: g.num_retries.unwrap_or(1),
        per_try_timeout: g.per_try_timeout.filter(|d| !d.is_zero()),
        base_interval,
        max_interval,
        on,
        grpc_codes: codes.into_boxed_slice(),
        reset_headers,
        rate_limited_max,
        ..RetryPolicy::never()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::retry::HttpRetry;

    fn compiled(retry_on: Vec<HttpRetryOn>) -> RetryPolicy {
        let conf = RetryConf {
            http: Some(HttpRetry {
                retry_on: Some(retry_on),
                ..Default::default()
            }),
            ..Default::default()
        };
        compile(Some(&conf), &mut RegexCache::default())
            .0
            .expect("a policy")
    }

    #[test]
    fn status_codes_alone_keep_the_default_conditions() {
        let p = compiled(vec![HttpRetryOn::Status(409)]);
        assert!(p.on.has(RetryOn::GATEWAY_ERROR) && p.on.has(RetryOn::STATUS_CODES));
        assert_eq!(&*p.status_codes, &[409]);
    }

    #[test]
    fn a_condition_replaces_the_defaults() {
        let p = compiled(vec![HttpRetryOn::ConnectFailure, HttpRetryOn::Status(500)]);
        assert!(!p.on.has(RetryOn::GATEWAY_ERROR));
        assert!(p.on.has(RetryOn::CONNECT_FAILURE) && p.on.has(RetryOn::STATUS_CODES));
    }

    #[test]
    fn an_http_section_without_num_retries_retries_once() {
        assert_eq!(compiled(vec![]).num_retries, 1);
    }

    #[test]
    fn a_policy_without_http_never_retries() {
        let conf = RetryConf::default();
        let (http, grpc) = compile(Some(&conf), &mut RegexCache::default());
        assert_eq!(http.map(|p| p.num_retries), Some(0));
        assert!(grpc.is_none());
    }
}
