//! MeshRateLimit `default` (K:`pkg/plugins/policies/meshratelimit/api/v1alpha1/meshratelimit.go`).

use crate::merge_fields;
use http::{HeaderName, HeaderValue};
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RateLimitConf {
    pub local: Option<LocalRateLimit>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LocalRateLimit {
    pub http: Option<HttpRateLimit>,
    pub tcp: Option<TcpRateLimit>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpRateLimit {
    pub disabled: Option<bool>,
    /// Kuma's non-mergeable struct: replaced whole.
    pub request_rate: Option<Rate>,
    pub on_rate_limit: Option<OnRateLimit>,
    /// meshgate's extension, from the policy's `meshgate.io/rate-limit-scope` label (Kuma
    /// ignores labels, so the file stays valid for Kuma): `Fleet` counts in the shared store
    /// (`--rate-limit-store`) across every instance; Kuma's limits are per instance.
    pub scope: Option<LimitScope>,
}

/// Where a limit's requests are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// In this process (Kuma's local rate limit).
    #[default]
    Instance,
    /// In the shared store, so N instances together allow `num` per `interval`.
    Fleet,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TcpRateLimit {
    pub disabled: Option<bool>,
    pub connection_rate: Option<Rate>,
}

/// `num` per `interval`, refilled to full every interval (Envoy's token bucket with
/// `max_tokens = tokens_per_fill = num`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub num: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OnRateLimit {
    pub status: Option<u16>,
    pub headers: Option<RateLimitHeaders>,
}

/// `onRateLimit.headers`: `set` overwrites, `add` appends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RateLimitHeaders {
    pub set: Option<Vec<(HeaderName, HeaderValue)>>,
    pub add: Option<Vec<(HeaderName, HeaderValue)>>,
}

merge_fields!(RateLimitConf {
    replace: [],
    nested: [local]
});
merge_fields!(LocalRateLimit {
    replace: [],
    nested: [http, tcp]
});
merge_fields!(HttpRateLimit {
    replace: [disabled, request_rate, scope],
    nested: [on_rate_limit],
});
merge_fields!(TcpRateLimit {
    replace: [disabled, connection_rate],
    nested: []
});
merge_fields!(OnRateLimit {
    replace: [status],
    nested: [headers]
});
merge_fields!(RateLimitHeaders {
    replace: [set, add],
    nested: []
});

impl HttpRateLimit {
    /// The limit in force: a rate that is not disabled.
    pub fn active_rate(&self) -> Option<Rate> {
        match self.disabled {
            Some(true) => None,
            _ => self.request_rate,
        }
    }
}

impl TcpRateLimit {
    pub fn active_rate(&self) -> Option<Rate> {
        match self.disabled {
            Some(true) => None,
            _ => self.connection_rate,
        }
    }
}
