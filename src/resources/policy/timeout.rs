//! `MeshTimeout` (Kuma `pkg/plugins/policies/meshtimeout/api/v1alpha1`), the parts a gateway
//! applies per route (semantics §8.1): `to[].default` connect, request and stream-idle
//! timeouts. Durations are Go duration strings (`2s`, `500ms`, `1m30s`).

use super::common::TargetRef;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTimeout {
    pub target_ref: Option<TargetRef>,
    pub to: Option<Vec<TimeoutTo>>,
    /// Inbound-side settings; accepted, applied through meshgate's own flags instead.
    pub from: Option<serde_norway::Value>,
    pub rules: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutTo {
    pub target_ref: Option<TargetRef>,
    pub default: Option<TimeoutConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    pub connection_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub http: Option<HttpTimeouts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeouts {
    pub request_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub max_stream_duration: Option<String>,
    pub max_connection_duration: Option<String>,
    pub request_headers_timeout: Option<String>,
}

/// Parses a Go duration (`300ms`, `1.5s`, `2m`, `1h30m`; `0` alone is zero).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
