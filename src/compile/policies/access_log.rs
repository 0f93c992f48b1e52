//! MeshAccessLog confs merged for a port → the logs its requests write (spec §11.1): the
//! `to` conf logs the outbound side, the inbound conf (`from`, `rules`) a second line (or
//! record).

use crate::model::policy::access_log::{AccessLogConf, BodyValue, FormatKind, LogBackend, OtelLog};
use crate::model::policy::trace::OtelBackend;
use crate::model::policy::Policy;
use crate::model::Valid;
use crate::runtime::log_sinks::Target;
use crate::runtime::registry::Registry;
use crate::snapshot::access_log::{
    attribute_templates, AccessLog, BodyTemplate, Direction, LogOutput, Template, DEFAULT_HTTP,
    DEFAULT_TCP,
};
use crate::snapshot::Protocol;

/// What the logs of a port need besides their confs.
pub struct LogContext<'a> {
    pub protocol: Protocol,
    /// The gateway's service: `service.name` of OpenTelemetry records.
    pub service: &'a str,
    pub otel_backends: &'a [Valid<OtelBackend>],
    pub registry: &'a Registry,
}

pub fn compile(
    to: Option<&AccessLogConf>,
    inbound: Option<&AccessLogConf>,
    cx: &LogContext<'_>,
) -> Box<[AccessLog]> {
    let default_line = match cx.protocol {
        Protocol::Http | Protocol::Https => DEFAULT_HTTP,
        Protocol::Tcp | Protocol::Tls => DEFAULT_TCP,
    };
    let mut out = Vec::new();
    for (conf, direction) in [(to, Direction::Outbound), (inbound, Direction::Inbound)] {
        for backend in conf.and_then(|c| c.backends.as_ref()).into_iter().flatten() {
            let (target, format) = match backend {
                LogBackend::File { path, format } => (Target::File(path.clone()), format),
                LogBackend::Tcp { address, format } => (Target::Tcp(address.clone()), format),
                LogBackend::OpenTelemetry(otel) => {
                    if let Some(output) = records(otel, default_line, cx) {
                        out.push(AccessLog { direction, output });
                    }
                    continue;
                }
            };
            let template = match format.as_ref() {
                Some(f) => template(&f.kind, f.omit_empty_values),
                None => Template::plain(default_line, false).0,
            };
            out.push(AccessLog {
                direction,
                output: LogOutput::Lines {
                    template,
                    sink: cx.registry.log_sink(target),
                },
            });
        }
    }
    out.into_boxed_slice()
}

/// OpenTelemetry records: the body (Kuma's default line when none is given) and attributes,
/// to the collector the backend names. `None` when its labels select no backend (a
/// `--check` warning).
fn records(otel: &OtelLog, default_line: &str, cx: &LogContext<'_>) -> Option<LogOutput> {
    let (url, protocol) = otel
        .target
        .resolve(cx.otel_backends, OtelBackend::logs_target)?;
    let mut unknown = Vec::new();
    let body = match &otel.body {
        Some(b) => body_template(b, &mut unknown),
        None => BodyTemplate::text(default_line, &mut unknown),
    };
    Some(LogOutput::Records {
        body,
        attributes: attribute_templates(&otel.attributes, &mut unknown),
        sink: cx.registry.otel_log_sink(&url, protocol, cx.service),
    })
}

fn body_template(b: &BodyValue, unknown: &mut Vec<String>) -> BodyTemplate {
    match b {
        BodyValue::String(s) => BodyTemplate::text(s, unknown),
        BodyValue::Bool(v) => BodyTemplate::Bool(*v),
        BodyValue::Int(v) => BodyTemplate::Int(*v),
        BodyValue::Double(v) => BodyTemplate::Double(v.parse().unwrap_or_default()),
        BodyValue::Bytes(v) => BodyTemplate::Bytes(v.clone()),
        BodyValue::Array(items) => {
            BodyTemplate::Array(items.iter().map(|i| body_template(i, unknown)).collect())
        }
        BodyValue::KvList(items) => BodyTemplate::KvList(
            items
                .iter()
                .map(|(k, v)| (k.clone(), body_template(v, unknown)))
                .collect(),
        ),
    }
}

fn template(kind: &FormatKind, omit_empty: bool) -> Template {
    match kind {
        FormatKind::Plain(text) => Template::plain(text, omit_empty).0,
        FormatKind::Json(entries) => Template::json(entries, omit_empty).0,
    }
}

/// Unknown operators (kept as text) and OpenTelemetry backends whose labels select no
/// MeshOpenTelemetryBackend, for `--check` and the log.
pub fn warnings(
    out: &mut Vec<String>,
    policies: &[Valid<Policy<AccessLogConf>>],
    otel_backends: &[Valid<OtelBackend>],
) {
    for p in policies {
        let confs = p
            .spec
            .to
            .iter()
            .map(|t| &t.conf)
            .chain(p.spec.inbound.iter());
        for conf in confs {
            for b in conf.backends.iter().flatten() {
                let mut unknown = Vec::new();
                match b {
                    LogBackend::File { format, .. } | LogBackend::Tcp { format, .. } => {
                        unknown = match format.as_ref().map(|f| &f.kind) {
                            Some(FormatKind::Plain(text)) => Template::plain(text, false).1,
                            Some(FormatKind::Json(entries)) => Template::json(entries, false).1,
                            None => Vec::new(),
                        };
                    }
                    LogBackend::OpenTelemetry(otel) => {
                        if otel
                            .target
                            .resolve(otel_backends, OtelBackend::logs_target)
                            .is_none()
                        {
                            out.push(format!(
                                "{}: {}: no access log records are exported: its backendRef labels select no MeshOpenTelemetryBackend",
                                p.meta.origin,
                                p.meta.display_name()
                            ));
                        }
                        if let Some(body) = &otel.body {
                            body_template(body, &mut unknown);
                        }
                        attribute_templates(&otel.attributes, &mut unknown);
                    }
                }
                for op in unknown {
                    out.push(format!(
                        "{}: {}: unknown access log operator %{op}% is written as it is",
                        p.meta.origin,
                        p.meta.display_name()
                    ));
                }
            }
        }
    }
}
