//! MeshTrace `default` and MeshOpenTelemetryBackend (spec §12).

use crate::merge_fields;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceConf {
    /// Zero or one; replaced whole.
    pub backends: Option<Vec<TraceBackend>>,
    pub sampling: Option<Sampling>,
    /// Replaced whole.
    pub tags: Option<Vec<TraceTag>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceBackend {
    Otel(OtelTarget),
    /// Validated (Kuma's rules), not applied.
    Zipkin,
    Datadog,
}

/// Percentages (0–100).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub overall: Option<f64>,
    pub client: Option<f64>,
    pub random: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceTag {
    pub name: String,
    pub value: TagValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Literal(String),
    Header {
        name: http::HeaderName,
        default: Option<String>,
    },
}

merge_fields!(TraceConf {
    replace: [backends, tags],
    nested: [sampling]
});
merge_fields!(Sampling {
    replace: [overall, client, random],
    nested: []
});

/// Where an OpenTelemetry backend of MeshTrace or MeshAccessLog sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OtelTarget {
    /// `host:port`, OTLP/gRPC (as Envoy's OpenTelemetry tracer and access logger send).
    Endpoint(String),
    /// The MeshOpenTelemetryBackend these labels select.
    Labels(BTreeMap<String, String>),
}

impl OtelTarget {
    /// The collector's URL and protocol for one signal (`OtelBackend::traces_target` or
    /// `logs_target`); with labels, the first backend in file order they select (Kuma takes
    /// the oldest), `None` when they select none.
    pub fn resolve(
        &self,
        backends: &[crate::model::Valid<OtelBackend>],
        signal: fn(&OtelBackend) -> (String, OtlpProtocol),
    ) -> Option<(String, OtlpProtocol)> {
        match self {
            OtelTarget::Endpoint(address) => {
                Some((format!("http://{address}"), OtlpProtocol::Grpc))
            }
            OtelTarget::Labels(labels) => backends
                .iter()
                .find(|b| labels.iter().all(|(k, v)| b.meta.labels.get(k) == Some(v)))
                .map(|b| signal(&b.spec)),
        }
    }
}

/// How spans and log records travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtlpProtocol {
    /// OTLP/gRPC to `http://host:port`.
    Grpc,
    /// OTLP/HTTP (protobuf) to the signal's full URL (`…/v1/traces`, `…/v1/logs`).
    Http,
}

/// A MeshOpenTelemetryBackend: where OTLP goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelBackend {
    pub address: String,
    pub port: u16,
    pub path: String,
    /// `protocol: http`; else OTLP/gRPC (Kuma's default).
    pub http: bool,
}

impl OtelBackend {
    /// Where spans go: OTLP/HTTP's `/v1/traces` URL, or the gRPC collector.
    pub fn traces_target(&self) -> (String, OtlpProtocol) {
        self.target("/v1/traces")
    }

    /// Where access log records go: OTLP/HTTP's `/v1/logs` URL, or the gRPC collector.
    pub fn logs_target(&self) -> (String, OtlpProtocol) {
        self.target("/v1/logs")
    }

    /// OTLP/HTTP: `http://address:port<path><signal>` (`https` on port 443); gRPC: the
    /// collector's address (plain text).
    fn target(&self, signal: &str) -> (String, OtlpProtocol) {
        if self.http {
            let scheme = if self.port == 443 { "https" } else { "http" };
            let path = self.path.trim_end_matches('/');
            (
                format!("{scheme}://{}:{}{path}{signal}", self.address, self.port),
                OtlpProtocol::Http,
            )
        } else {
            (
                format!("http://{}:{}", self.address, self.port),
                OtlpProtocol::Grpc,
            )
        }
    }
}
