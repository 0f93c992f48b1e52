//! Policies → [`crate::model::policy`].

use super::route::target;
use super::{unreadable, Lowered};
use crate::model::policy::{Entry, MeshTimeout, TimeoutConf};
use crate::resources::timeout::{MeshTimeout as RawTimeout, TimeoutConf as RawConf};
use crate::validate::values;
use std::time::Duration;

pub fn timeout(spec: &RawTimeout) -> Lowered<MeshTimeout> {
    let mut to = Vec::new();
    for (i, entry) in spec.to.iter().flatten().enumerate() {
        let at = format!("spec.to[{i}].default");
        let conf = match &entry.default {
            Some(c) => timeout_conf(c, &at)?,
            None => TimeoutConf::default(),
        };
        to.push(Entry {
            target: target(entry.target_ref.as_ref()),
            conf,
        });
    }
    Ok(MeshTimeout {
        target: target(spec.target_ref.as_ref()),
        to,
    })
}

fn duration(v: &Option<String>, at: &str) -> Lowered<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) => match values::go_duration(s) {
            Some(Ok(d)) => Ok(Some(d)),
            _ => Err(unreadable(at, format!("invalid duration {s:?}"))),
        },
    }
}

fn timeout_conf(c: &RawConf, at: &str) -> Lowered<TimeoutConf> {
    let http = c.http.as_ref();
    let field = |f: &str| format!("{at}.{f}");
    Ok(TimeoutConf {
        connection_timeout: duration(&c.connection_timeout, &field("connectionTimeout"))?,
        idle_timeout: duration(&c.idle_timeout, &field("idleTimeout"))?,
        request_timeout: duration(
            &http.and_then(|h| h.request_timeout.clone()),
            &field("http.requestTimeout"),
        )?,
        stream_idle_timeout: duration(
            &http.and_then(|h| h.stream_idle_timeout.clone()),
            &field("http.streamIdleTimeout"),
        )?,
        max_stream_duration: duration(
            &http.and_then(|h| h.max_stream_duration.clone()),
            &field("http.maxStreamDuration"),
        )?,
        max_connection_duration: duration(
            &http.and_then(|h| h.max_connection_duration.clone()),
            &field("http.maxConnectionDuration"),
        )?,
        request_headers_timeout: duration(
            &http.and_then(|h| h.request_headers_timeout.clone()),
            &field("http.requestHeadersTimeout"),
        )?,
    })
}
