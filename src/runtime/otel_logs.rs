//! MeshAccessLog's OpenTelemetry backend: log records exported over OTLP (gRPC, as Envoy's
//! OpenTelemetry access logger sends them, or HTTP for a MeshOpenTelemetryBackend with
//! `protocol: http`) by the OpenTelemetry SDK's batch log processor: its own thread and a
//! bounded queue, so the request path only hands a record over (a full queue drops it). One
//! per collector and gateway service, shared across snapshots (registry); built by the first
//! record, so `--check` and a daemonizing start start nothing.

use super::otlp::{self, GrpcRuntime, OtlpProtocol};
use crate::snapshot::access_log::{LogRecord as Record, LogValue, RecordSink};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::Key;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::Resource;
use std::sync::OnceLock;
use std::time::Duration;

struct Built {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
    /// Kept as long as the exporter (gRPC only).
    _runtime: GrpcRuntime,
}

pub struct OtelLogSink {
    url: String,
    protocol: OtlpProtocol,
    service: String,
    built: OnceLock<Option<Built>>,
}

impl std::fmt::Debug for OtelLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtelLogSink({} {:?})", self.url, self.protocol)
    }
}

impl OtelLogSink {
    /// `url`: `http://host:port` for gRPC, the full `/v1/logs` URL for HTTP.
    pub fn new(url: String, protocol: OtlpProtocol, service: String) -> OtelLogSink {
        OtelLogSink {
            url,
            protocol,
            service,
            built: OnceLock::new(),
        }
    }

    fn build(&self) -> Result<Built, String> {
        let (exporter, runtime) = otlp::build(
            self.protocol,
            &self.url,
            || opentelemetry_otlp::LogExporter::builder().with_http(),
            || opentelemetry_otlp::LogExporter::builder().with_tonic(),
        )?;
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(self.service.clone())
                    .build(),
            )
            .build();
        let logger = provider.logger("meshgate.access_log");
        Ok(Built {
            provider,
            logger,
            _runtime: runtime,
        })
    }

    /// The logger; `None` until [`RecordSink::start`] built it, or when it could not be.
    fn logger(&self) -> Option<&SdkLogger> {
        self.built.get()?.as_ref().map(|b| &b.logger)
    }
}

fn any_value(v: LogValue) -> AnyValue {
    match v {
        LogValue::String(s) => AnyValue::String(s.into()),
        LogValue::Bool(b) => AnyValue::Boolean(b),
        LogValue::Int(i) => AnyValue::Int(i),
        LogValue::Double(d) => AnyValue::Double(d),
        LogValue::Bytes(b) => AnyValue::Bytes(Box::new(b)),
        LogValue::Array(items) => {
            AnyValue::ListAny(Box::new(items.into_iter().map(any_value).collect()))
        }
        LogValue::KvList(items) => AnyValue::Map(Box::new(
            items
                .into_iter()
                .map(|(k, v)| (Key::from(k), any_value(v)))
                .collect(),
        )),
    }
}

impl RecordSink for OtelLogSink {
    /// Builds the exporter when a snapshot using it is applied, never on the request path
    /// (as `tracing::Exporter::start`).
    fn start(&self) {
        self.built.get_or_init(|| match self.build() {
            Ok(b) => Some(b),
            Err(e) => {
                log::error!("MeshAccessLog: cannot export to {}: {e}", self.url);
                None
            }
        });
    }

    fn send(&self, record: Record) {
        let Some(logger) = self.logger() else {
            return;
        };
        let mut out = logger.create_log_record();
        out.set_timestamp(record.time);
        out.set_observed_timestamp(std::time::SystemTime::now());
        out.set_body(any_value(record.body));
        for (k, v) in record.attributes {
            out.add_attribute(k, v);
        }
        logger.emit(out);
    }
}

impl Drop for OtelLogSink {
    fn drop(&mut self) {
        if let Some(Some(built)) = self.built.take() {
            // Sends what is queued; the processor's thread ends (then the runtime, if any).
            let _ = built.provider.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}
