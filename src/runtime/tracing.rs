//! Where MeshTrace's spans go: one OpenTelemetry tracer provider per OTLP endpoint and
//! gateway service, shared across snapshots (registry), exporting over OTLP/HTTP with the
//! SDK's batch processor (its own thread, a bounded queue: spans beyond it are dropped, the
//! request path never waits). Built by the first span, so `--check` and a daemonizing start
//! start nothing.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug)]
pub struct Exporter {
    url: String,
    service: String,
    tracer: OnceLock<Option<(SdkTracerProvider, SdkTracer)>>,
}

impl Exporter {
    pub fn new(url: String, service: String) -> Exporter {
        Exporter {
            url,
            service,
            tracer: OnceLock::new(),
        }
    }

    /// The tracer, built on first use; `None` when the exporter cannot be built (logged once).
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer
            .get_or_init(|| {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(&self.url)
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(Duration::from_secs(5))
                    .build();
                let exporter = match exporter {
                    Ok(e) => e,
                    Err(e) => {
                        log::error!("MeshTrace: cannot export to {}: {e}", self.url);
                        return None;
                    }
                };
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder_empty()
                            .with_service_name(self.service.clone())
                            .build(),
                    )
                    .build();
                let tracer = provider.tracer("meshgate");
                Some((provider, tracer))
            })
            .as_ref()
            .map(|(_, t)| t)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(Some((provider, _))) = self.tracer.take() {
            // Sends what is queued; the provider's thread ends.
            let _ = provider.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}
