//! Where MeshTrace's spans go: one OpenTelemetry tracer provider per OTLP endpoint and
//! gateway service, shared across snapshots (registry), exporting over OTLP/gRPC (Kuma's
//! default) or OTLP/HTTP with the SDK's batch processor (its own thread, a bounded queue:
//! spans beyond it are dropped, the request path never waits). Built by the first span, so
//! `--check` and a daemonizing start start nothing.
//!
//! The gRPC client (tonic) needs a Tokio runtime for its connection: each gRPC exporter owns
//! a one-thread runtime rather than borrowing a Pingora request thread's.

pub use crate::model::policy::trace::OtlpProtocol;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;

/// A built exporter: the provider, its tracer and, for gRPC, the runtime its client runs on.
struct Built {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    runtime: Option<tokio::runtime::Runtime>,
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
        let (exporter, runtime) = match self.protocol {
            OtlpProtocol::Http => (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(&self.url)
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(Duration::from_secs(5))
                    .build(),
                None,
            ),
            OtlpProtocol::Grpc => {
                let runtime = grpc_runtime()?;
                let exporter = {
                    let _entered = runtime.enter();
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(&self.url)
                        .with_timeout(Duration::from_secs(5))
                        .build()
                };
                (exporter, Some(runtime))
            }
        };
        let exporter = exporter.map_err(|e| e.to_string())?;
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
            runtime,
        })
    }

    /// The tracer, built on first use; `None` when the exporter cannot be built (logged once).
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.tracer
            .get_or_init(|| match self.build() {
                Ok(built) => Some(built),
                Err(e) => {
                    log::error!("MeshTrace: cannot export to {}: {e}", self.url);
                    None
                }
            })
            .as_ref()
            .map(|b| &b.tracer)
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The runtime a gRPC exporter's client (tonic) runs on: one thread of its own.
pub(crate) fn grpc_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(Some(built)) = self.tracer.take() {
            // Sends what is queued; the provider's thread ends.
            let _ = built.provider.shutdown_with_timeout(Duration::from_secs(2));
            if let Some(runtime) = built.runtime {
                // Dropped from a reload task, inside Pingora's runtime: a blocking drop panics.
                runtime.shutdown_background();
            }
        }
    }
}
