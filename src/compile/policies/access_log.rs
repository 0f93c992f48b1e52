//! MeshAccessLog confs merged for a port → the logs its requests write (spec §11.1): the
//! `to` conf logs the outbound side, the inbound conf (`from`, `rules`) a second line.

use crate::model::policy::access_log::{AccessLogConf, FormatKind, LogBackend};
use crate::model::policy::Policy;
use crate::model::Valid;
use crate::runtime::log_sinks::Target;
use crate::runtime::registry::Registry;
use crate::snapshot::access_log::{AccessLog, Direction, Template, DEFAULT_HTTP, DEFAULT_TCP};
use crate::snapshot::Protocol;

pub fn compile(
    to: Option<&AccessLogConf>,
    inbound: Option<&AccessLogConf>,
    protocol: Protocol,
    registry: &Registry,
) -> Box<[AccessLog]> {
    let mut out = Vec::new();
    for (conf, direction) in [(to, Direction::Outbound), (inbound, Direction::Inbound)] {
        for backend in conf.and_then(|c| c.backends.as_ref()).into_iter().flatten() {
            let (target, format) = match backend {
                LogBackend::File { path, format } => (Target::File(path.clone()), format),
                LogBackend::Tcp { address, format } => (Target::Tcp(address.clone()), format),
                LogBackend::OpenTelemetry => continue,
            };
            let template = match format.as_ref() {
                Some(f) => template(&f.kind, f.omit_empty_values),
                None => {
                    let default = match protocol {
                        Protocol::Http | Protocol::Https => DEFAULT_HTTP,
                        Protocol::Tcp | Protocol::Tls => DEFAULT_TCP,
                    };
                    Template::plain(default, false).0
                }
            };
            out.push(AccessLog {
                direction,
                template,
                sink: registry.log_sink(target),
            });
        }
    }
    out.into_boxed_slice()
}

fn template(kind: &FormatKind, omit_empty: bool) -> Template {
    match kind {
        FormatKind::Plain(text) => Template::plain(text, omit_empty).0,
        FormatKind::Json(entries) => Template::json(entries, omit_empty).0,
    }
}

/// Unknown operators (kept as text) and OpenTelemetry backends (not applied yet), for
/// `--check` and the log.
pub fn warnings(out: &mut Vec<String>, policies: &[Valid<Policy<AccessLogConf>>]) {
    for p in policies {
        let confs = p
            .spec
            .to
            .iter()
            .map(|t| &t.conf)
            .chain(p.spec.inbound.iter());
        for conf in confs {
            for b in conf.backends.iter().flatten() {
                let format = match b {
                    LogBackend::File { format, .. } | LogBackend::Tcp { format, .. } => format,
                    LogBackend::OpenTelemetry => {
                        out.push(format!(
                            "{}: {}: an OpenTelemetry access log backend is not applied by meshgate yet",
                            p.meta.origin,
                            p.meta.display_name()
                        ));
                        continue;
                    }
                };
                let unknown = match format.as_ref().map(|f| &f.kind) {
                    Some(FormatKind::Plain(text)) => Template::plain(text, false).1,
                    Some(FormatKind::Json(entries)) => Template::json(entries, false).1,
                    None => Vec::new(),
                };
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
