//! What a finished request leaves behind: its metrics and its access log line.

use super::RequestCtx;
use crate::admin::access_log;
use crate::admin::metrics::METRICS;
use crate::snapshot::access_log::{Direction, Fields, Op, Value};
use pingora::proxy::Session;
use std::time::Duration;

/// Records a finished request in the metrics and, when enabled, the access log.
pub fn request(session: &Session, ctx: &mut RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or(ctx.local.map(|l| l.status))
        .unwrap_or(0);
    if ctx.attempt.retries() > 0 {
        let outcome = if status > 0 && status < 500 {
            "success"
        } else {
            "failure"
        };
        METRICS
            .retried_requests
            .with_label_values(&[ctx.route_label(), outcome])
            .inc();
    }
    let elapsed = ctx.started.elapsed();
    if let Some(snap) = &ctx.snapshot {
        let port_label;
        let listener = match &ctx.listener {
            Some(l) => l.label.as_str(),
            None => {
                port_label = ctx.port_label();
                port_label.as_str()
            }
        };
        let route = ctx.entry().map(|e| &*e.route_name).unwrap_or("");
        let upstream = ctx
            .upstream()
            .filter(|_| ctx.local.is_none() && session.response_written().is_some())
            .map(|u| {
                let answered = ctx.attempt.upstream_time().map(|d| d.as_secs_f64());
                (u.backend.key.as_str(), answered)
            });
        crate::admin::metrics::observe_request(
            snap.generation,
            listener,
            route,
            upstream,
            status,
            elapsed.as_secs_f64(),
        );
    }
    if let (Some(span), Some(tracing)) = (
        ctx.span.take(),
        ctx.port_policy.as_ref().and_then(|p| p.tracing.as_ref()),
    ) {
        super::trace::end(*span, tracing, session.req_header(), ctx, status);
    }
    let policy_logs = ctx
        .port_policy
        .as_ref()
        .map_or(&[][..], |p| &p.access_logs[..]);
    if !policy_logs.is_empty() {
        // One clock read for every log of the request (`%START_TIME%`, a record's time).
        let began = std::time::SystemTime::now() - elapsed;
        let fields = LogFields {
            session,
            ctx,
            status,
            elapsed,
            began,
            direction: Direction::Outbound,
        };
        for log in policy_logs {
            let fields = LogFields {
                direction: log.direction,
                ..fields
            };
            log.write(&fields, began);
        }
    } else if access_log::enabled() {
        log_access(session, ctx, status, elapsed);
    }
}

/// The values of one finished request for MeshAccessLog's operators. Kuma's values for the
/// gateway: outbound lines name the gateway's service as source and `*` as destination,
/// inbound ones `unknown` as source and the gateway's service as destination; the source
/// address is the gateway's own (the address the request came in on).
#[derive(Clone, Copy)]
struct LogFields<'a> {
    session: &'a Session,
    ctx: &'a RequestCtx,
    status: u16,
    elapsed: Duration,
    /// When the request began (wall clock).
    began: std::time::SystemTime,
    direction: Direction,
}

impl Fields for LogFields<'_> {
    fn value(&self, op: &Op) -> Option<Value<'_>> {
        let req = self.session.req_header();
        let ctx = self.ctx;
        let gateway = ctx.snapshot.as_ref().map(|s| &s.gateway);
        fn header<'h>(names: &[String], map: &'h http::HeaderMap) -> Option<Value<'h>> {
            names.iter().find_map(|n| {
                map.get(n.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(Value::Str)
            })
        }
        Some(match op {
            Op::StartTime => Value::Time(self.began),
            Op::Req(names) => {
                return names.iter().find_map(|n| match n.as_str() {
                    ":method" => Some(Value::Str(req.method.as_str())),
                    ":path" => req.uri.path_and_query().map(|p| Value::Str(p.as_str())),
                    ":authority" => {
                        req.uri
                            .authority()
                            .map(|a| Value::Str(a.as_str()))
                            .or_else(|| {
                                let host = req.headers.get(http::header::HOST)?;
                                host.to_str().ok().map(Value::Str)
                            })
                    }
                    ":scheme" => Some(Value::Str(if ctx.https { "https" } else { "http" })),
                    _ => header(std::slice::from_ref(n), &req.headers),
                })
            }
            Op::Resp(names) => {
                return self
                    .session
                    .response_written()
                    .and_then(|r| header(names, &r.headers))
            }
            Op::Protocol => Value::Str(match req.version {
                http::Version::HTTP_09 => "HTTP/0.9",
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_3 => "HTTP/3",
                _ => "HTTP/1.1",
            }),
            Op::ResponseCode => Value::Uint(u64::from(self.status)),
            Op::ResponseFlags => Value::Str(ctx.flag.as_str()),
            Op::BytesReceived => Value::Uint(self.session.body_bytes_read() as u64),
            Op::BytesSent => Value::Uint(self.session.body_bytes_sent() as u64),
            Op::Duration => Value::Uint(self.elapsed.as_millis() as u64),
            Op::UpstreamHost => {
                let u = ctx.upstream()?;
                Value::Addr(u.backend.endpoints.get(u.endpoint)?.addr)
            }
            Op::UpstreamCluster => Value::Str(ctx.upstream()?.backend.key.as_str()),
            Op::DownstreamRemoteAddress => {
                let client = self.session.client_addr()?;
                match client.as_inet() {
                    Some(inet) => Value::Addr(*inet),
                    None => Value::Owned(client.to_string()),
                }
            }
            Op::DownstreamRemoteAddressWithoutPort => {
                Value::Ip(self.session.client_addr()?.as_inet()?.ip())
            }
            Op::RouteName => Value::Str(&ctx.entry()?.route_name),
            Op::RequestedServerName => {
                let ssl = self.session.digest()?.ssl_digest.as_ref()?;
                Value::Str(
                    ssl.extension
                        .get::<crate::proxy::tls::SniName>()?
                        .0
                        .as_str(),
                )
            }
            Op::KumaMesh => Value::Str(gateway?.mesh.as_str()),
            Op::KumaSourceService => match self.direction {
                Direction::Outbound => Value::Str(gateway?.service.as_str()),
                Direction::Inbound => Value::Str("unknown"),
            },
            Op::KumaDestinationService => match self.direction {
                Direction::Outbound => Value::Str("*"),
                Direction::Inbound => Value::Str(gateway?.service.as_str()),
            },
            Op::KumaSourceAddressWithoutPort => {
                Value::Ip(self.session.as_downstream().server_addr()?.as_inet()?.ip())
            }
            Op::KumaTrafficDirection => Value::Str(match self.direction {
                Direction::Outbound => "OUTBOUND",
                Direction::Inbound => "INBOUND",
            }),
        })
    }
}

fn log_access(session: &Session, ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let req = session.req_header();
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let upstream = ctx
        .upstream()
        .and_then(|u| u.backend.endpoints.get(u.endpoint))
        .map(|e| e.addr.to_string())
        .unwrap_or_default();
    let (mesh, source) = ctx
        .snapshot
        .as_ref()
        .map(|s| (s.gateway.mesh.as_str(), s.gateway.service.as_str()))
        .unwrap_or(("", ""));
    let protocol = format!("{:?}", req.version);
    access_log::http(&access_log::HttpRecord {
        mesh,
        method: req.method.as_str(),
        path: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        protocol: &protocol,
        status,
        flags: ctx.flag.as_str(),
        bytes_received: session.body_bytes_read(),
        bytes_sent: session.body_bytes_sent(),
        duration_ms: elapsed.as_millis(),
        forwarded_for: header("x-forwarded-for"),
        user_agent: header("user-agent"),
        trace_id: header("x-b3-traceid"),
        request_id: header("x-request-id"),
        authority: header("host"),
        source_service: source,
        destination_service: ctx
            .upstream()
            .map(|u| u.backend.service.as_str())
            .unwrap_or(""),
        source_address: &client,
        upstream_host: &upstream,
    });
}
