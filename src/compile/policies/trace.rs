//! MeshTrace merged for an HTTP port → where its spans go and how it samples (spec §12.1).

use crate::model::policy::trace::{OtelBackend, TraceBackend, TraceConf};
use crate::model::Valid;
use crate::runtime::registry::Registry;
use crate::runtime::tracing::OtlpProtocol;
use crate::snapshot::tracing::Tracing;

pub fn compile(
    conf: Option<&TraceConf>,
    backends: &[Valid<OtelBackend>],
    service: &str,
    registry: &Registry,
) -> Option<Tracing> {
    let conf = conf?;
    let (url, protocol) = traces_target(conf, backends)?;
    let sampling = conf.sampling.clone().unwrap_or_default();
    let fraction = |p: Option<f64>| p.unwrap_or(100.0) / 100.0;
    Some(Tracing {
        exporter: registry.exporter(&url, protocol, service),
        overall: fraction(sampling.overall),
        client: fraction(sampling.client),
        random: fraction(sampling.random),
        tags: conf.tags.clone().unwrap_or_default(),
    })
}

/// Where a conf's spans go (the first backend; Zipkin and Datadog are not applied).
fn traces_target(
    conf: &TraceConf,
    backends: &[Valid<OtelBackend>],
) -> Option<(String, OtlpProtocol)> {
    match conf.backends.as_ref()?.first()? {
        TraceBackend::Otel(target) => target.resolve(backends, OtelBackend::traces_target),
        TraceBackend::Zipkin | TraceBackend::Datadog => None,
    }
}

/// What of MeshTrace meshgate does not apply: for `--check` and the log.
pub fn warnings(out: &mut Vec<String>, set: &crate::model::policy::PolicySet) {
    for p in &set.traces {
        for conf in &p.spec.inbound {
            let Some(b) = conf.backends.as_ref().and_then(|b| b.first()) else {
                continue;
            };
            let why = match b {
                TraceBackend::Otel(target) => target
                    .resolve(&set.otel_backends, OtelBackend::traces_target)
                    .is_none()
                    .then(|| {
                        "its backendRef labels select no MeshOpenTelemetryBackend".to_string()
                    }),
                // The Rust OpenTelemetry Zipkin exporter is deprecated (Zipkin takes OTLP).
                TraceBackend::Zipkin => Some(
                    "Zipkin backends are not applied by meshgate; Zipkin accepts OTLP, use an OpenTelemetry backend".to_string(),
                ),
                TraceBackend::Datadog => {
                    Some("Datadog backends are not applied by meshgate".to_string())
                }
            };
            if let Some(why) = why {
                out.push(format!(
                    "{}: {}: no spans are exported: {why}",
                    p.meta.origin,
                    p.meta.display_name()
                ));
            }
        }
    }
}
