//! What the OTLP exporters of spans (`tracing`) and access log records (`otel_logs`) share:
//! how an exporter is built for its transport, and the runtime a gRPC one runs on.
//!
//! The gRPC client (tonic) needs a Tokio runtime for its connection: each gRPC exporter owns
//! a one-thread runtime rather than borrowing a Pingora request thread's.

pub use crate::model::policy::trace::OtlpProtocol;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use std::time::Duration;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime of a gRPC exporter, stopped without blocking when dropped: exporters are
/// dropped by reload tasks inside Pingora's runtime, where a blocking drop panics.
pub struct GrpcRuntime(Option<tokio::runtime::Runtime>);

impl Drop for GrpcRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Builds an exporter to `url` over `protocol` from its builder's two forms; a gRPC one is
/// built inside its own runtime, returned to be kept as long as the exporter.
pub fn build<E, H, G>(
    protocol: OtlpProtocol,
    url: &str,
    http: impl FnOnce() -> H,
    grpc: impl FnOnce() -> G,
) -> Result<(E, GrpcRuntime), String>
where
    H: WithExportConfig + WithHttpConfig + Buildable<E>,
    G: WithExportConfig + WithTonicConfig + Buildable<E>,
{
    match protocol {
        OtlpProtocol::Http => {
            let exporter = http()
                .with_endpoint(url)
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(EXPORT_TIMEOUT)
                .build_exporter()?;
            Ok((exporter, GrpcRuntime(None)))
        }
        OtlpProtocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime: {e}"))?;
            let exporter = {
                let _entered = runtime.enter();
                grpc()
                    .with_endpoint(url)
                    .with_timeout(EXPORT_TIMEOUT)
                    .build_exporter()?
            };
            Ok((exporter, GrpcRuntime(Some(runtime))))
        }
    }
}

/// An exporter builder's last step, named alike for spans and logs.
pub trait Buildable<E> {
    fn build_exporter(self) -> Result<E, String>;
}

macro_rules! buildable {
    ($builder:ident, $exporter:ident) => {
        impl Buildable<opentelemetry_otlp::$exporter>
            for opentelemetry_otlp::$builder<opentelemetry_otlp::HttpExporterBuilderSet>
        {
            fn build_exporter(self) -> Result<opentelemetry_otlp::$exporter, String> {
                self.build().map_err(|e| e.to_string())
            }
        }
        impl Buildable<opentelemetry_otlp::$exporter>
            for opentelemetry_otlp::$builder<opentelemetry_otlp::TonicExporterBuilderSet>
        {
            fn build_exporter(self) -> Result<opentelemetry_otlp::$exporter, String> {
                self.build().map_err(|e| e.to_string())
            }
        }
    };
}
buildable!(SpanExporterBuilder, SpanExporter);
buildable!(LogExporterBuilder, LogExporter);
