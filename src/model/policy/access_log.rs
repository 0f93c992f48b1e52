//! MeshAccessLog `default` (K:`pkg/plugins/policies/meshaccesslog/api/v1alpha1`; spec §11).

pub use super::trace::OtelTarget;
use crate::merge_fields;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AccessLogConf {
    /// Replaced whole by a higher-priority policy (two policies do not add up).
    pub backends: Option<Vec<LogBackend>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogBackend {
    File {
        path: String,
        format: Option<LogFormat>,
    },
    Tcp {
        address: String,
        format: Option<LogFormat>,
    },
    OpenTelemetry(OtelLog),
}

/// OTLP logs: where to, the record's body and attributes (templates).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtelLog {
    pub target: OtelTarget,
    /// `None`: Kuma's default line for the listener's protocol.
    pub body: Option<BodyValue>,
    /// (key, value template), in order.
    pub attributes: Vec<(String, String)>,
}

/// An OTLP `AnyValue` whose strings are templates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BodyValue {
    String(String),
    Bool(bool),
    Int(i64),
    /// Kept as written (validated as a number), so the model stays `Eq`.
    Double(String),
    Bytes(Vec<u8>),
    Array(Vec<BodyValue>),
    KvList(Vec<(String, BodyValue)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogFormat {
    pub kind: FormatKind,
    pub omit_empty_values: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FormatKind {
    Plain(String),
    /// (key, value template), in order.
    Json(Vec<(String, String)>),
}

merge_fields!(AccessLogConf {
    replace: [backends],
    nested: []
});
