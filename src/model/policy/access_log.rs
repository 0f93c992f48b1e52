//! MeshAccessLog `default` (K:`pkg/plugins/policies/meshaccesslog/api/v1alpha1`; spec §11).

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
    /// Validated, not applied yet.
    OpenTelemetry,
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
