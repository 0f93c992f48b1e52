//! MeshRetry `default` (K:`pkg/plugins/policies/meshretry/api/v1alpha1/meshretry.go`).

use crate::merge_fields;
use crate::model::route::HeaderMatch;
use crate::resources::common::Tags;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RetryConf {
    pub tcp: Option<TcpRetry>,
    pub http: Option<HttpRetry>,
    pub grpc: Option<GrpcRetry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TcpRetry {
    pub max_connect_attempt: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpRetry {
    pub num_retries: Option<u32>,
    pub per_try_timeout: Option<Duration>,
    pub back_off: Option<BackOff>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    pub retry_on: Option<Vec<HttpRetryOn>>,
    pub retriable_response_headers: Option<Vec<HeaderMatch>>,
    pub retriable_request_headers: Option<Vec<HeaderMatch>>,
    pub host_selection: Option<Vec<HostPredicate>>,
    pub host_selection_max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GrpcRetry {
    pub num_retries: Option<u32>,
    pub per_try_timeout: Option<Duration>,
    pub back_off: Option<BackOff>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    pub retry_on: Option<Vec<GrpcRetryOn>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BackOff {
    pub base_interval: Option<Duration>,
    pub max_interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RateLimitedBackOff {
    pub reset_headers: Option<Vec<ResetHeader>>,
    pub max_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResetHeader {
    pub name: http::HeaderName,
    pub format: ResetFormat,
}

/// How a reset header gives the wait: `Retry-After: 2` or `X-RateLimit-Reset: <unix time>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetFormat {
    Seconds,
    UnixTimestamp,
}

/// A `retryOn` item (K:`HttpRetryOn`), Kuma's spelling in comments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HttpRetryOn {
    /// `5xx`
    FiveXx,
    /// `GatewayError`: 502, 503, 504 and resets.
    GatewayError,
    /// `Reset`
    Reset,
    /// `Retriable4xx`: 409.
    Retriable4xx,
    /// `ConnectFailure`
    ConnectFailure,
    /// `EnvoyRatelimited`: a response carrying `x-envoy-ratelimited`.
    EnvoyRatelimited,
    /// `RefusedStream`: HTTP/2 REFUSED_STREAM.
    RefusedStream,
    /// `Http3PostConnectFailure`: meshgate has no HTTP/3 upstreams; never matches.
    Http3PostConnectFailure,
    /// A numeric status code (`"503"`).
    Status(u16),
    /// `HttpMethodGET` ...: only requests with one of these methods are retried.
    Method(http::Method),
}

/// A `grpc.retryOn` item: the gRPC status of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcRetryOn {
    Canceled,
    DeadlineExceeded,
    Internal,
    ResourceExhausted,
    Unavailable,
}

impl GrpcRetryOn {
    /// The `grpc-status` code this condition matches.
    pub fn code(self) -> u32 {
        match self {
            GrpcRetryOn::Canceled => 1,
            GrpcRetryOn::DeadlineExceeded => 4,
            GrpcRetryOn::ResourceExhausted => 8,
            GrpcRetryOn::Internal => 13,
            GrpcRetryOn::Unavailable => 14,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPredicate {
    OmitPreviousHosts,
    OmitHostsWithTags(Tags),
    OmitPreviousPriorities { update_frequency: u32 },
}

merge_fields!(RetryConf {
    replace: [],
    nested: [tcp, http, grpc]
});
merge_fields!(TcpRetry {
    replace: [max_connect_attempt],
    nested: []
});
merge_fields!(HttpRetry {
    replace: [
        num_retries,
        per_try_timeout,
        retry_on,
        retriable_response_headers,
        retriable_request_headers,
        host_selection,
        host_selection_max_attempts,
    ],
    nested: [back_off, rate_limited_back_off],
});
merge_fields!(GrpcRetry {
    replace: [num_retries, per_try_timeout, retry_on],
    nested: [back_off, rate_limited_back_off],
});
merge_fields!(BackOff {
    replace: [base_interval, max_interval],
    nested: []
});
merge_fields!(RateLimitedBackOff {
    replace: [reset_headers, max_interval],
    nested: []
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::Merge;

    #[test]
    fn lists_are_replaced_and_structs_merged() {
        let mut base = RetryConf {
            http: Some(HttpRetry {
                num_retries: Some(5),
                retry_on: Some(vec![HttpRetryOn::FiveXx, HttpRetryOn::Reset]),
                back_off: Some(BackOff {
                    base_interval: Some(Duration::from_millis(25)),
                    max_interval: Some(Duration::from_millis(250)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        base.merge(&RetryConf {
            http: Some(HttpRetry {
                retry_on: Some(vec![HttpRetryOn::Status(409)]),
                back_off: Some(BackOff {
                    base_interval: Some(Duration::from_millis(10)),
                    max_interval: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let http = base.http.expect("http");
        assert_eq!(http.num_retries, Some(5));
        assert_eq!(http.retry_on, Some(vec![HttpRetryOn::Status(409)]));
        let back_off = http.back_off.expect("backOff");
        assert_eq!(back_off.base_interval, Some(Duration::from_millis(10)));
        assert_eq!(back_off.max_interval, Some(Duration::from_millis(250)));
    }
}
