//! MeshTrace as the request path reads it (spec §12.1): per HTTP port, where spans go, how
//! requests are sampled and the tags each span carries.

use crate::model::policy::trace::TraceTag;
use crate::runtime::tracing::Exporter;
use std::sync::Arc;

#[derive(Debug)]
pub struct Tracing {
    pub exporter: Arc<Exporter>,
    /// Fractions (0–1) of Envoy's `overall`, `client` and `random` sampling.
    pub overall: f64,
    pub client: f64,
    pub random: f64,
    pub tags: Vec<TraceTag>,
}
