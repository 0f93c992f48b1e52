//! What the gateway shows of itself: the admin endpoint (`/ready`, `/config`, `/metrics`,
//! `/server_info`, Envoy's `/config_dump` and `/stats/prometheus` names, `POST /reopen_logs`,
//! `POST /healthcheck/fail`),
//! served here, the `/config` description ([`summary`]), the Prometheus metrics
//! ([`metrics`]) and the access log ([`access_log`]).
//!
//! The endpoint is a Pingora listening service, so its socket is handed over in a graceful
//! upgrade like the gateway's own listeners.

pub mod access_log;
mod lookup;
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
    /// Envoy's `/server_info`, meshgate's facts: version, commit, Pingora, PGO, uptime, state.
    fn server_info(&self) -> Vec<u8> {
        use crate::build_info;
        let doc = json!({
            "version": build_info::VERSION,
            "commit": build_info::COMMIT,
            "pingora": build_info::PINGORA,
            "pgo": build_info::PGO,
            "uptime_seconds": crate::admin::metrics::uptime().as_secs(),
            "state": if self.state.is_draining() { "DRAINING" } else { "LIVE" },
            "generation": self.state.snapshot.load().generation,
        });
        serde_json::to_vec_pretty(&doc).unwrap_or_default()
    }

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
            "source": self.state.source.describe(),
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
            // A small read-only page over /config, /metrics and /route (no external assets).
            "/" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                include_bytes!("page.html").to_vec(),
            ),
            "/route" => {
                let query = session.req_header().uri.query().unwrap_or("").to_string();
                let answer = lookup::route(&self.state.snapshot.load(), &query);
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec_pretty(&answer).unwrap_or_default(),
                )
            }
            "/ready" => match self.state.readiness() {
                // Serving goes on while the policy source is away: still ready, but said.
                Ok(()) => match self.state.source.degraded() {
                    None => reply(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
                    Some(why) => reply(
                        StatusCode::OK,
                        "text/plain",
                        format!("ready; {why}\n").into_bytes(),
                    ),
                },
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            "/config" | "/config_dump" => {
                reply(StatusCode::OK, "application/json", self.config(full))
            }
            "/server_info" => reply(StatusCode::OK, "application/json", self.server_info()),
            // A Kubernetes preStop hook: start draining (`/ready` answers 503, responses
            // close their connections) while the process keeps serving.
            "/healthcheck/fail" if session.req_header().method == http::Method::POST => {
                crate::runtime::drain::start(&self.state, "POST /healthcheck/fail");
                reply(StatusCode::OK, "text/plain", b"draining\n".to_vec())
            }
            // logrotate's postrotate: every access log file is reopened before its next line.
            "/reopen_logs" if session.req_header().method == http::Method::POST => {
                crate::runtime::log_sinks::reopen_all();
                reply(StatusCode::OK, "text/plain", b"reopening\n".to_vec())
            }
            "/metrics" | "/stats/prometheus" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::render(),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"try /ready, /config, /metrics, /server_info, POST /reopen_logs or POST /healthcheck/fail\n"
                    .to_vec(),
            ),
        }
    }
}
