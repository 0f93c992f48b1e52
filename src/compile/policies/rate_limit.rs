//! MeshRateLimit confs → a rule's HTTP limit and a port's connection rate (spec §9.1).

use crate::model::policy::rate_limit::Rate;
use crate::model::policy::RateLimitConf;
use crate::snapshot::policy::RateLimitSpec;
use http::HeaderValue;

/// Envoy's default status for a locally rate-limited request.
const DEFAULT_STATUS: u16 = 429;

pub fn http(conf: Option<&RateLimitConf>) -> Option<RateLimitSpec> {
    let http = conf?.local.as_ref()?.http.as_ref()?;
    let rate = http.active_rate()?;
    let on = http.on_rate_limit.as_ref();
    let headers = on.and_then(|o| o.headers.as_ref());
    Some(RateLimitSpec {
        rate,
        scope: http.scope.unwrap_or_default(),
        status: on.and_then(|o| o.status).unwrap_or(DEFAULT_STATUS),
        set: headers
            .and_then(|h| h.set.as_ref())
            .map(|l| split_on_commas(l))
            .unwrap_or_default(),
        add: headers.and_then(|h| h.add.clone()).unwrap_or_default(),
    })
}

/// Kuma splits each `set` value on commas into separate header values
/// (K:`pkg/xds/envoy/routes/v3/ratelimit.go`).
fn split_on_commas(
    list: &[(http::HeaderName, HeaderValue)],
) -> Vec<(http::HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in list {
        match value.to_str() {
            Ok(s) if s.contains(',') => {
                for part in s.split(',') {
                    if let Ok(v) = HeaderValue::from_str(part.trim()) {
                        out.push((name.clone(), v));
                    }
                }
            }
            _ => out.push((name.clone(), value.clone())),
        }
    }
    out
}

pub fn connection_rate(conf: Option<&RateLimitConf>) -> Option<Rate> {
    conf?.local.as_ref()?.tcp.as_ref()?.active_rate()
}
