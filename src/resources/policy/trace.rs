//! MeshTrace (K:`pkg/plugins/policies/meshtrace/api/v1alpha1/meshtrace.go`) and
//! MeshOpenTelemetryBackend (K:`pkg/core/resources/apis/meshopentelemetrybackend`).

use crate::resources::common::{IntOrString, TargetRef};
use serde::Deserialize;
use std::collections::BTreeMap;

/// MeshTrace's `spec`: one `default`, no `to`/`from`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTrace {
    pub target_ref: Option<TargetRef>,
    pub default: Option<TraceConf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceConf {
    pub backends: Option<Vec<Backend>>,
    pub sampling: Option<Sampling>,
    pub tags: Option<Vec<Tag>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub open_telemetry: Option<OpenTelemetry>,
    pub zipkin: Option<Zipkin>,
    pub datadog: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Zipkin {
    pub url: Option<String>,
    #[serde(rename = "traceId128bit")]
    pub trace_id_128bit: Option<bool>,
    pub api_version: Option<String>,
    pub shared_span_context: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetry {
    pub endpoint: Option<String>,
    pub backend_ref: Option<BackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sampling {
    pub overall: Option<IntOrString>,
    pub client: Option<IntOrString>,
    pub random: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tag {
    pub name: Option<String>,
    pub literal: Option<String>,
    pub header: Option<HeaderTag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderTag {
    pub name: Option<String>,
    pub default: Option<String>,
}

/// MeshOpenTelemetryBackend's `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshOpenTelemetryBackend {
    pub endpoint: Option<Endpoint>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub address: Option<String>,
    pub port: Option<i64>,
    pub path: Option<String>,
}
