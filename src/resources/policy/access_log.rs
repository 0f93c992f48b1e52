//! MeshAccessLog `default` (K:`pkg/plugins/policies/meshaccesslog/api/v1alpha1/meshaccesslog.go`).

use serde::Deserialize;

pub type MeshAccessLog = super::PolicySpec<AccessLogConf>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogConf {
    pub backends: Option<Vec<Backend>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub file: Option<FileBackend>,
    pub tcp: Option<TcpBackend>,
    pub open_telemetry: Option<OtelBackend>,
}

/// `openTelemetry`: OTLP logs to a collector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelBackend {
    /// `host:port`, OTLP/gRPC.
    pub endpoint: Option<String>,
    pub backend_ref: Option<super::trace::BackendRef>,
    pub attributes: Option<Vec<JsonEntry>>,
    /// A string, or an OTLP `AnyValue` (`stringValue`, `kvlistValue`, ...).
    pub body: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileBackend {
    pub path: Option<String>,
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpBackend {
    pub address: Option<String>,
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Format {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub plain: Option<String>,
    pub json: Option<Vec<JsonEntry>>,
    pub omit_empty_values: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonEntry {
    pub key: Option<String>,
    pub value: Option<String>,
}
