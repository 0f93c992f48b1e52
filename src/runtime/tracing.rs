//! Where MeshTrace's spans go: one OpenTelemetry tracer provider per OTLP endpoint and
//! gateway service, shared across snapshots (registry), exporting over OTLP/gRPC (Kuma's
//! default) or OTLP/HTTP with the SDK's batch processor (its own thread, a bounded queue:
//! spans beyond it are dropped, the request path never waits). Built by the first span, so
//! `--check` and a daemonizing start start nothing.

use super::otlp::{self, GrpcRuntime};
pub use crate::model::policy::trace::OtlpProtocol;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;

/// A built exporter: the provider, its tracer and, for gRPC, the runtime its client runs on.
struct Built {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Kept as long as the exporter (gRPC only).
    _runtime: GrpcRuntime,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Built")
    }
}

#[derive(Debug)]
pub struct Exporter {
    url: String,
    protocol: OtlpProtocol,
    service: String,
    tracer: OnceLock<Option<Built>>,
}

impl Exporter {
    pub fn new(url: String, protocol: OtlpProtocol, service: String) -> Exporter {
        Exporter {
            url,
            protocol,
            service,
            tracer: OnceLock::new(),
        }
    }

    fn build(&self) -> Result<Built, String> {
        let (exporter, runtime) = otlp::build(
            self.protocol,
            &self.url,
            || opentelemetry_otlp::SpanExporter::builder().with_http(),
            || opentelemetry_otlp::SpanExporter::builder().with_tonic(),
        )?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(self.service.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("meshgate");
        Ok(Built {
            provider,
            tracer,
            _runtime: runtime,
        })
    }

    /// Builds the exporter (its batch thread, its HTTP client or gRPC runtime) if it is not
    /// built yet; logs once when it cannot be. Called when a snapshot using it is applied,
    /// never on the request path: building spawns and joins a thread and, over HTTPS, reads
    /// the system's trust store.
    pub fn start(&self) {
        self.tracer.get_or_init(|| match self.build() {
            Ok(built) => Some(built),
            Err(e) => {
                log::error!("MeshTrace: cannot export to {}: {e}", self.url);
                None
            }
        });
    }

    /// The tracer; `None` until [`Exporter::start`] built it, or when it could not be built.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer.get()?.as_ref().map(|b| &b.tracer)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(Some(built)) = self.tracer.take() {
            // Sends what is queued; the provider's thread ends (then the runtime, if any).
            let _ = built.provider.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}
