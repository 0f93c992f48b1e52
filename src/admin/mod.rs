//! What the gateway shows of itself: the admin endpoint (`/ready`, `/config`, `/metrics`,
//! `POST /reopen_logs`),
//! served here, the `/config` description ([`summary`]), the Prometheus metrics
//! ([`metrics`]) and the access log ([`access_log`]).
//!
//! The endpoint is a Pingora listening service, so its socket is handed over in a graceful
//! upgrade like the gateway's own listeners.

pub mod access_log;
pub mod metrics;
pub mod policies;
pub mod summary;

use crate::runtime::state::GatewayState;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

pub struct Admin {
    pub state: Arc<GatewayState>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

impl Admin {
    fn config(&self, full: bool) -> Vec<u8> {
        let snap = self.state.snapshot.load();
        let listeners = self.state.listeners.load();
        let last_error = self.state.last_error.load();
        let errors: serde_json::Map<String, serde_json::Value> = listeners
            .errors
            .iter()
            .map(|(p, e)| (p.to_string(), json!(e)))
            .collect();
        let doc = json!({
            "generation": snap.generation,
            "last_error": last_error.as_deref(),
            "ready": self.state.readiness().is_ok(),
            "listeners": {
                "bound": listeners.bound.iter().collect::<Vec<_>>(),
                "errors": errors,
            },
            "route_entries": snap.route_entries,
            "snapshot": crate::admin::summary::describe(&snap, full),
        });
        serde_json::to_vec_pretty(&doc).unwrap_or_default()
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let full = session
            .req_header()
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "routes=full"));
        match path.as_str() {
            "/ready" => match self.state.readiness() {
                Ok(()) => reply(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            "/config" => reply(StatusCode::OK, "application/json", self.config(full)),
            // logrotate's postrotate: every access log file is reopened before its next line.
            "/reopen_logs" if session.req_header().method == http::Method::POST => {
                crate::runtime::log_sinks::reopen_all();
                reply(StatusCode::OK, "text/plain", b"reopening\n".to_vec())
            }
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::render(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"try /ready, /config, /metrics or POST /reopen_logs\n".to_vec(),
            ),
        }
    }
}
