//! The policies part of `/config`: for each port and route, which policies apply and what
//! they merged into, so a user can see why a request behaved as it did.

use crate::snapshot::policy::{PortPolicy, RoutePolicies};
use crate::snapshot::retry::RetryPolicy;
use serde_json::{json, Value};
use std::time::Duration;

fn secs(d: Option<Duration>) -> Value {
    match d {
        Some(d) => json!(format!("{}ms", d.as_millis())),
        None => json!("off"),
    }
}

pub fn port(p: &PortPolicy) -> Value {
    let l = &p.listener;
    json!({
        "applied": p.applied.iter().map(|a| &**a).collect::<Vec<&str>>(),
        "listener_timeouts": {
            "request_headers": secs(l.request_headers),
            "idle": secs(l.idle),
            "stream_idle": secs(l.stream_idle),
            "request": secs(l.request),
        },
        "tcp_idle_timeout": secs(p.tcp_idle),
        "tcp_connect_attempts": p.tcp_connect_attempts,
        "connection_rate": p.connection_rate.as_ref().map(|b| json!({
            "num": b.num(),
            "interval": secs(Some(b.interval())),
        })),
        "faults": p.faults.iter().map(|f| json!({
            "abort": f.abort.map(|a| json!({"status": a.http_status, "percentage": a.percentage})),
            "delay": f.delay.map(|d| json!({"value": secs(Some(d.value)), "percentage": d.percentage})),
            "response_bandwidth": f.response_bandwidth.map(|b| json!({
                "bits_per_second": b.bits_per_second,
                "percentage": b.percentage,
            })),
        })).collect::<Vec<_>>(),
    })
}

fn retry(r: &RetryPolicy) -> Value {
    json!({
        "num_retries": r.num_retries,
        "retry_on": r.on.names(),
        "status_codes": &*r.status_codes,
        "grpc_codes": &*r.grpc_codes,
        "methods": r.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "per_try_timeout": secs(r.per_try_timeout),
        "back_off": {"base": secs(Some(r.base_interval)), "max": secs(Some(r.max_interval))},
        "omit_previous_hosts": r.omit_previous_hosts,
    })
}

pub fn route(p: &RoutePolicies) -> Value {
    json!({
        "applied": p.applied.iter().map(|a| &**a).collect::<Vec<&str>>(),
        "timeouts": {
            "request": secs(p.timeouts.request),
            "stream_idle": secs(p.timeouts.stream_idle),
        },
        "retry": p.retry.as_deref().map(retry),
        "grpc_retry": p.grpc_retry.as_deref().map(retry),
        "rate_limit": p.rate_limit.as_ref().map(|r| json!({
            "num": r.rate.num,
            "interval": secs(Some(r.rate.interval)),
            "status": r.status,
        })),
    })
}
